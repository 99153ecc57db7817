"""The text of closeloop's notices.

- :class:`Templates` renders a :class:`~closeloop.notify.NoticeContent` into a
  subject, a plain-text body and an HTML body with Jinja2 (sandboxed, HTML
  autoescaped), from the default templates shipped in this package or the
  host's own, per recipient language and time zone.
- :func:`render_assignment` and :func:`render_escalation` are the fixed English
  renderers the loop uses while notices are still rendered when written.
"""

from closeloop.notify.templates.engine import DEFAULT_TEMPLATES, Rendered, Templates, quote_lines
from closeloop.notify.templates.legacy import (
    RenderedNotice,
    one_line,
    render_assignment,
    render_escalation,
)

__all__ = [
    "DEFAULT_TEMPLATES",
    "Rendered",
    "RenderedNotice",
    "Templates",
    "one_line",
    "quote_lines",
    "render_assignment",
    "render_escalation",
]
