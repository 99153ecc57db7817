"""The text of closeloop's notices: subject, plain text and HTML.

Every case field is escaped in HTML and folded to one line in subjects, so a
customer id or comment can never inject a mail header or markup.
"""

from __future__ import annotations

import re
from html import escape

from attrs import frozen

from closeloop.model import Case

__all__ = ["RenderedNotice", "one_line", "render_assignment", "render_escalation"]

_LINE_BREAKS = re.compile(r"[\r\n\x0b\x0c\x1c-\x1e\x85\u2028\u2029]+")
_MAX_SUBJECT = 200


@frozen
class RenderedNotice:
    """A notice's subject and bodies."""

    subject: str
    text: str
    html: str


def one_line(value: str, limit: int = _MAX_SUBJECT) -> str:
    """Fold every kind of line break (and runs of them) to one space, and shorten."""
    folded = _LINE_BREAKS.sub(" ", value).strip()
    return folded if len(folded) <= limit else folded[: limit - 1] + "…"


def _details(case: Case) -> list[tuple[str, str]]:
    rows = [
        ("Case", case.id),
        ("Customer", case.customer_id),
        ("Status", case.status.display_name),
        ("Priority", case.priority.value),
    ]
    if case.reasons:
        rows.append(("Reasons", ", ".join(case.reasons)))
    if case.due_at is not None:
        rows.append(("Due", case.due_at.isoformat(timespec="minutes")))
    return rows


def _render(
    case: Case, subject: str, intro: str, link: str | None, action: str,
    comment: str | None = None,
) -> RenderedNotice:
    rows = _details(case)
    if comment:
        rows.append(("Comment", comment))
    text_lines = [intro, ""] + [f"{label}: {value}" for label, value in rows]
    html_rows = "".join(
        f"<tr><th align='left'>{escape(label)}</th><td>{escape(value)}</td></tr>"
        for label, value in rows
    )
    if link:
        text_lines += ["", f"{action}: {link}"]
        button = (
            f"<p><a href=\"{escape(link, quote=True)}\" style=\"display:inline-block;"
            "padding:16px 32px;font-size:20px;background:#1a73e8;color:#fff;"
            f"text-decoration:none;border-radius:8px\">{escape(action)}</a></p>"
        )
    else:
        text_lines += ["", "Open the case in your app to work on it."]
        button = "<p>Open the case in your app to work on it.</p>"
    html = (
        "<!doctype html><html><body style=\"font-family:sans-serif\">"
        f"<p>{escape(intro)}</p><table>{html_rows}</table>{button}</body></html>"
    )
    return RenderedNotice(one_line(subject), "\n".join(text_lines) + "\n", html)


def render_assignment(
    case: Case, assigner: str, link: str | None, *, comment: str | None = None,
    action: str = "Change",
) -> RenderedNotice:
    """The notice an assignee gets: what the case is, who assigned it, and a link.

    ``link`` is the one-touch Change link when one-touch is configured, else the
    app's case URL if one is configured, else ``None``; ``action`` labels it.
    ``comment`` is the assigner's note, if any.
    """
    return _render(
        case,
        subject=f"Case {case.id} for customer {case.customer_id} assigned to you",
        intro=f"{assigner} assigned you a case for customer {case.customer_id}.",
        link=link,
        action=action,
        comment=comment,
    )


def render_escalation(
    case: Case, why: str, link: str | None, *, action: str = "Change"
) -> RenderedNotice:
    """The notice sent when a case is escalated (overdue or untouched)."""
    return _render(
        case,
        subject=f"Escalation: case {case.id} for customer {case.customer_id} is {why}",
        intro=f"Case {case.id} for customer {case.customer_id} is {why}.",
        link=link,
        action=action,
    )
