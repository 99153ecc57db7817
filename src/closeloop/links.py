"""Which links a notice or page shows: the one-touch Change link and the app's case page.

One place decides, so an assignment email, an escalation email, a case-event
webhook and the one-touch pages never disagree about what a link is. A notice
to the case's assignee carries the one-touch Change link (when one-touch is on)
next to the app's case page (when ``case_url`` is set); anyone else gets the
case page only, since a one-touch link belongs to the assignee.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Protocol
from urllib.parse import quote

from closeloop.errors import InvalidInput
from closeloop.model import Case
from closeloop.notify.content import Links as NoticeLinks

__all__ = ["LinkSigner", "Links", "check_case_url"]


def check_case_url(case_url: object) -> str | None:
    """Return ``case_url`` if it is an absolute http(s) URL format with only ``{case_id}``.

    It must be absolute: it is the link in emails and webhooks, read far from the app.
    """
    if case_url is None:
        return None
    try:
        ok = isinstance(case_url, str) and "{case_id}" in case_url
        ok = ok and isinstance(case_url, str) and case_url.startswith(("https://", "http://"))
        ok = ok and isinstance(case_url, str) and (
            case_url.format(case_id="x") != case_url.format(case_id="y")
        )
    except (KeyError, IndexError, ValueError):
        ok = False
    if not ok:
        raise InvalidInput(
            "case_url", case_url,
            "must be an absolute http(s) URL whose only placeholder is {case_id}",
        )
    assert isinstance(case_url, str)
    return case_url


class LinkSigner(Protocol):
    """Protocol: what signs one-touch links (:class:`closeloop.onetouch.OneTouch` does).

    ``issue_link`` returns the full URL of a new single-use link for ``case_id``,
    bound to ``assignee``, issued at ``issued_at``.
    """

    def issue_link(self, case_id: str, assignee: str, issued_at: datetime) -> str:
        """A new signed link URL."""
        ...


class Links:
    """The links of one loop: signed one-touch links and the app's case page.

    Args:
        one_touch: the one-touch configuration, or ``None`` when links go to the app.
        case_url: the app's page for a case, a format string with ``{case_id}``.
        clock: the loop's clock; a one-touch link is issued at ``clock()``.
    """

    def __init__(
        self, one_touch: LinkSigner | None, case_url: str | None, clock: Callable[[], datetime]
    ) -> None:
        self.one_touch = one_touch
        self.case_url = check_case_url(case_url)
        self._clock = clock

    def case_page(self, case_id: str) -> str | None:
        """The app's page for the case (``case_url``), if configured."""
        if self.case_url is None:
            return None
        return self.case_url.format(case_id=quote(case_id, safe=""))

    def one_touch_link(self, case: Case) -> str:
        """A new signed Change link for ``case``'s assignee, issued now.

        Raises:
            InvalidInput: one-touch is not configured, or the case has no assignee
                (a link always belongs to one person).
        """
        if self.one_touch is None:
            raise InvalidInput("one_touch", None, "one-touch is not configured")
        if case.assignee is None:
            raise InvalidInput("case_id", case.id, "the case has no assignee to send a link to")
        return self.one_touch.issue_link(case.id, case.assignee, self._clock())

    def for_notice(self, case: Case, recipient: str | None) -> NoticeLinks:
        """The links a notice about ``case`` to ``recipient`` carries.

        The assignee gets the one-touch Change link when one-touch is on (a link is
        bound to the assignee, so nobody else gets one); everyone gets the app's
        case page when ``case_url`` is set.
        """
        change = None
        if self.one_touch is not None and case.assignee is not None and recipient == case.assignee:
            change = self.one_touch_link(case)
        return NoticeLinks(change=change, case_page=self.case_page(case.id))
