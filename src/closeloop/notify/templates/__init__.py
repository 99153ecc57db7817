"""The text of closeloop's notices, rendered when they are delivered.

:class:`Templates` renders a :class:`~closeloop.notify.NoticeContent` into a
subject, a plain-text body and an HTML body with Jinja2 (sandboxed, HTML
autoescaped), from the default templates shipped in this package or the host's
own, in the recipient's language and time zone.
"""

from closeloop.notify.templates.engine import DEFAULT_TEMPLATES, PARTS, Rendered, Templates
from closeloop.notify.templates.filters import MAX_SUBJECT, one_line, quote_lines

__all__ = [
    "DEFAULT_TEMPLATES",
    "MAX_SUBJECT",
    "PARTS",
    "Rendered",
    "Templates",
    "one_line",
    "quote_lines",
]
