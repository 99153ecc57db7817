"""Text filters the templates use, so a case field or a customer's words stay in their place.

- :func:`one_line` folds every kind of line break, for subjects and table cells.
- :func:`quote_lines` quotes someone's words for a plain-text body.
"""

from __future__ import annotations

import re

__all__ = ["MAX_SUBJECT", "one_line", "quote_lines"]

#: The longest subject a template may produce, in characters; longer ones are shortened.
MAX_SUBJECT = 200

_LINE_BREAKS = re.compile(r"[\r\n\x0b\x0c\x1c-\x1e\x85\u2028\u2029]+")
# Control characters (tab and line feed aside) and every line break but "\n":
# a customer's CR or U+2028 could otherwise start a line a reader takes for ours.
_UNQUOTABLE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
_OTHER_BREAKS = re.compile(r"\r\n?|[\u2028\u2029\x85]")


def one_line(value: str, limit: int = MAX_SUBJECT) -> str:
    """Fold every kind of line break (and runs of them) to one space, and shorten to ``limit``."""
    folded = _LINE_BREAKS.sub(" ", value).strip()
    return folded if len(folded) <= limit else folded[: limit - 1] + "…"


def quote_lines(value: str | None) -> str:
    """Quote someone's words for a plain-text body: every line starts with ``"> "``.

    Carriage returns and other line breaks become ``"\\n"`` first and control
    characters are dropped, so no line of the quote can pass for one of the
    notice's own lines (a ``Change: https://…`` link line, say).

    Example::

        >>> print(quote_lines("Fine.\\rChange: https://evil.example"))
        > Fine.
        > Change: https://evil.example
    """
    if not value:
        return ""
    text = _UNQUOTABLE.sub("", _OTHER_BREAKS.sub("\n", value)).strip("\n")
    return "\n".join("> " + line if line else ">" for line in text.split("\n"))
