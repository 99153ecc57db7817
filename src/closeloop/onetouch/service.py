"""The one-touch protocol, bound to a loop: issue a link, open it, prepare a change, confirm it.

:class:`OneTouchService` is what ``loop.one_touch`` returns. Every step verifies
the token again and judges time by the loop's clock, so nothing is kept
between steps except what the signed tokens carry and the store's record of
used links.

The rules, in the order they are checked for a link:

1. the token is one this configuration signed for this purpose (else TokenInvalid);
2. the link has not changed the case yet (else TokenUsed);
3. it is at most ``max_age`` old, judged by ``loop.now()`` (else TokenExpired);
4. the case exists and is still assigned to the person the link was sent to
   (else TokenInvalid, "the case was reassigned").

A confirmation is checked the same way, in the same order (a used *and*
expired confirmation is TokenUsed), and is also at most ``confirm_max_age``
old. It is bound to the case version it was prepared against: if anything but
a comment or an attached survey response happened to the case since then (a
status change, even one that came back, Progress → Open → Progress; an
assignment, even back to the same person; an escalation), confirm raises
:class:`~closeloop.errors.ConcurrentUpdate` and leaves the link unused. The
assignee confirmed what they saw and should see the case as it now is before
deciding again. A version clash with a comment is retried.
"""

from __future__ import annotations

from datetime import datetime

from attrs import Factory, field, frozen

from closeloop.errors import (
    CaseNotFound,
    ConcurrentUpdate,
    InvalidInput,
    TokenExpired,
    TokenInvalid,
    TokenUsed,
)
from closeloop.model import Case, Event, Status
from closeloop.notify.content import ResponseFacts
from closeloop.notify.directory import Customer
from closeloop.onetouch.tokens import ConfirmClaims, LinkClaims, OneTouch, Receipt
from closeloop.service import CaseService
from closeloop.validate import check_comment
from closeloop.workflow import DEFAULT_WORKFLOW, KINDS, CommentPolicy, Workflow, WorkflowStatus

__all__ = ["VIA", "LinkView", "OneTouchService", "PendingChange"]

#: The ``via`` recorded on status changes made through a one-touch link.
VIA = "one-touch"
#: How many of the latest history events :meth:`OneTouchService.open` returns.
HISTORY_SHOWN = 5
#: A one-touch change always needs a comment, whatever the loop's comment policy.
_COMMENT_ALWAYS = CommentPolicy.for_events(KINDS)
#: How often confirm re-reads the case after losing a version race to an unrelated change.
_ATTEMPTS = 3
#: Event kinds that may happen between prepare and confirm without refusing the
#: confirmation: they add to the case's history but change nothing the assignee decided on.
#: Every other kind (present or future) refuses it.
HARMLESS_KINDS = frozenset({"commented", "response_attached", "notice_failed"})


@frozen
class LinkView:
    """What the update page shows for a link.

    Attributes:
        case: the case as it is now.
        assignee: who the link was sent to (the case's assignee).
        allowed: the statuses the case may move to, in workflow order, by name (the
            standard ones as :class:`~closeloop.Status`). Never an assignee: a link
            cannot reassign.
        expires_at: when the link stops working.
        history: the latest events of the case (at most :data:`HISTORY_SHOWN`), oldest first.
        customer: what the loop's customer directory says about the customer, if anything.
        response: the customer's latest survey response (score, comment), if any.
        status: the workflow status the case is in (its label is what to show).
        choices: the statuses of ``allowed``, with their labels.
        close_reasons: the reasons to choose from when the change closes the case
            (empty when the workflow has none, or no choice closes the case).
        workflow: the loop's workflow (labels of statuses and close reasons).
    """

    case: Case
    assignee: str
    allowed: tuple[Status | str, ...]
    expires_at: datetime
    history: tuple[Event, ...]
    status: WorkflowStatus
    choices: tuple[WorkflowStatus, ...]
    customer: Customer | None = None
    response: ResponseFacts | None = None
    close_reasons: tuple[str, ...] = ()
    workflow: Workflow = field(default=DEFAULT_WORKFLOW, repr=False)


@frozen
class PendingChange:
    """A change the assignee asked for, waiting for confirmation.

    Attributes:
        token: the confirmation token to pass to :meth:`OneTouchService.confirm`
            (kept out of ``repr`` so it does not end up in logs).
        case_id: the case to change.
        from_status: its status when the change was prepared.
        to_status: the status asked for.
        comment: the comment that goes with the change.
        expires_at: when the confirmation stops working (at most ``confirm_max_age``
            from now, and never after the link itself expires).
        from_custom_status, to_custom_status: the workflow's names for the two
            statuses (``from_status`` and ``to_status`` are their categories).
        close_reason: why the case is closed, when the change closes it.
    """

    token: str = field(repr=False)
    case_id: str
    from_status: Status
    to_status: Status
    comment: str
    expires_at: datetime
    from_custom_status: str = Factory(lambda self: self.from_status.value, takes_self=True)
    to_custom_status: str = Factory(lambda self: self.to_status.value, takes_self=True)
    close_reason: str | None = None


class OneTouchService:
    """One-touch links for one loop. Get it as ``loop.one_touch``; do not build it yourself.

    Example::

        link = loop.one_touch.link(case.id)          # "<base_url>?token=…"
        view = loop.one_touch.open(token)            # what the update page shows
        pending = loop.one_touch.prepare(token, status=Status.CLOSED, comment="Sorted")
        loop.one_touch.confirm(pending.token)        # the change, once
    """

    def __init__(self, config: OneTouch, service: CaseService) -> None:
        self.config = config
        self._service = service

    @property
    def workflow(self) -> Workflow:
        """The loop's workflow (the pages show its labels and close reasons)."""
        return self._service.workflow

    # -- issuing --------------------------------------------------------------------

    def link(self, case_id: str) -> str:
        """A new link for the case, for its current assignee, issued now.

        Raises:
            CaseNotFound: no such case.
            InvalidInput: the case has no assignee (a link always belongs to one).
        """
        return self.link_for(self._service.read(case_id))

    def link_for(self, case: Case) -> str:
        """A new link for ``case`` as given (not re-read), for its assignee, issued now.

        The facade calls this while writing an assignment or escalation notice.
        """
        if case.assignee is None:
            raise InvalidInput("case_id", case.id, "the case has no assignee to send a link to")
        return self.config.issue_link(case.id, case.assignee, self._service.now())

    # -- using ----------------------------------------------------------------------

    def open(self, token: str) -> LinkView:
        """What the update page shows. Changes nothing (email scanners may open links).

        Raises:
            TokenInvalid, TokenUsed, TokenExpired: see the module docstring.
        """
        claims = self.config.read_link(token)
        case = self._usable_case(claims)
        history = self._service.history(case.id)[-HISTORY_SHOWN:]
        current = self._service.current_status(case)
        choices = self.workflow.allowed(current.name)
        closing = any(choice.category is Status.CLOSED for choice in choices)
        return LinkView(
            case=case,
            assignee=claims.assignee,
            allowed=tuple(choice.key for choice in choices),
            expires_at=self._link_expiry(claims),
            history=tuple(history),
            status=current,
            choices=choices,
            customer=self._customer(case.customer_id),
            response=self._service.latest_response(case),
            close_reasons=self.workflow.close_reasons if closing else (),
            workflow=self.workflow,
        )

    def _customer(self, customer_id: str) -> Customer | None:
        found = self._service.customers.lookup(customer_id)
        return found if isinstance(found, Customer) else None

    def prepare(
        self, token: str, *, status: Status | str, comment: str, close_reason: str | None = None,
    ) -> PendingChange:
        """Check the change the assignee asks for and return it for confirmation.

        Nothing is written. The comment is required, whatever the loop's
        comment policy; ``close_reason`` as for ``loop.set_status``.

        Raises:
            TokenInvalid, TokenUsed, TokenExpired: the link does not work (see the
                module docstring); checked before anything else.
            InvalidInput: an unknown status, a missing or unknown close reason, or a
                comment that is too long.
            TransitionNotAllowed: the workflow does not allow this change now.
            CommentRequired: the comment is missing or blank.
        """
        claims = self.config.read_link(token)
        case = self._usable_case(claims)
        target = self.workflow.resolve(status)
        check_comment("comment", comment)
        if close_reason is not None and not isinstance(close_reason, str):
            raise InvalidInput("close_reason", close_reason, "must be a string or None")
        current = self._service.current_status(case)
        self.workflow.check(case.id, current.name, target, comment=comment,
                            close_reason=close_reason, comment_policy=_COMMENT_ALWAYS)
        now = self._service.now()
        expires_at = min(now + self.config.confirm_max_age, self._link_expiry(claims))
        confirm = ConfirmClaims(
            link=claims, from_status=case.status, to_status=target.category, comment=comment,
            version=case.version, prepared_at=now, from_custom_status=case.custom_status,
            to_custom_status=target.name, close_reason=close_reason,
        )
        return PendingChange(
            token=self.config.sign_confirmation(confirm), case_id=case.id,
            from_status=case.status, to_status=target.category, comment=comment,
            expires_at=expires_at, from_custom_status=case.custom_status,
            to_custom_status=target.name, close_reason=close_reason,
        )

    def confirm(self, confirmation_token: str) -> Case:
        """Make the prepared change and use up the link, in one transaction.

        The change goes through the workflow like any other (``CaseService.set_status``):
        same rules, same history; the event's actor is the assignee and its
        ``via`` is ``"one-touch"``. Of several confirmations racing, in threads or
        processes, exactly one changes the case; the others get TokenUsed.

        Returns the changed case.

        Raises:
            TokenInvalid, TokenUsed, TokenExpired: the confirmation or its link does
                not work (see the module docstring).
            ConcurrentUpdate: the case's status changed since the change was
                prepared; the link still works, open it again.
        """
        claims = self.config.read_confirmation(confirmation_token)
        confirm_by = claims.prepared_at + self.config.confirm_max_age
        expires_at = min(confirm_by, self._link_expiry(claims.link))
        what = "confirmation" if expires_at == confirm_by else "link"
        link = claims.link
        for attempt in range(_ATTEMPTS):
            case = self._usable_case(link, expires_at=expires_at, what=what)
            self._check_unchanged(case, claims)
            try:
                target = self.workflow.status(claims.to_custom_status)
            except InvalidInput:  # the workflow changed since: prepare again
                raise TokenInvalid("the workflow no longer has that status") from None
            try:
                return self._service.set_status(
                    case, target, by=link.assignee, comment=claims.comment,
                    close_reason=claims.close_reason, via=VIA, consume_link=link.link_id,
                )
            except ConcurrentUpdate:
                # Most often another confirmation of this same link won.
                if self._service.store.link_used(link.link_id):
                    raise TokenUsed() from None
                if attempt == _ATTEMPTS - 1:
                    raise
        raise AssertionError("unreachable")  # pragma: no cover

    # -- after the change: the done page ---------------------------------------------

    def receipt(self, case: Case) -> str:
        """A receipt for a change :meth:`confirm` just made (``case`` as it returned).

        The done page shows it after the redirect that follows a confirmation. It
        is signed under its own salt, so it can never act as a link or a confirmation.
        """
        return self.config.sign_receipt(Receipt(case_id=case.id, status=case.status,
                                                at=case.updated_at,
                                                custom_status=case.custom_status))

    def done(self, receipt: str) -> Receipt:
        """What a receipt says was done. Reads nothing from the store; changes nothing.

        Raises:
            TokenInvalid: not a receipt signed with one of the keys.
        """
        return self.config.read_receipt(receipt)

    def case_link(self, case_id: str) -> str | None:
        """The app's page for the case (the loop's ``case_url``), if it has one."""
        return self._service.links.case_page(case_id)

    def case_id_of(self, token: str) -> str | None:
        """The case a link or confirmation token was signed for, or None if it is not valid.

        For refusal pages (used, expired, reassigned), which may point to the case
        in the app: the holder of a valid token can read this id from it anyway.
        """
        for read in (self.config.read_link, self.config.read_confirmation):
            try:
                claims = read(token)
            except TokenInvalid:
                continue
            return claims.case_id if isinstance(claims, LinkClaims) else claims.link.case_id
        return None

    # -- checks ---------------------------------------------------------------------

    def _link_expiry(self, claims: LinkClaims) -> datetime:
        return claims.issued_at + self.config.max_age

    def _check_unchanged(self, case: Case, claims: ConfirmClaims) -> None:
        """ConcurrentUpdate unless only harmless events happened since ``claims.version``."""
        same_status = (case.status is claims.from_status
                       and case.custom_status == claims.from_custom_status)
        if case.version == claims.version and same_status:
            return
        # The status alone cannot tell Open → Progress → Open from "nothing happened":
        # the events since the signed version can (an event's seq is the version it made).
        since = [event for event in self._service.store.history(case.id)
                 if event.seq > claims.version]
        if (case.version < claims.version or not same_status
                or any(event.kind not in HARMLESS_KINDS for event in since)):
            raise ConcurrentUpdate(case.id, claims.version, case.version)

    def _usable_case(self, claims: LinkClaims, *, expires_at: datetime | None = None,
                     what: str = "link") -> Case:
        """The case the link is for, if the link still works (rules 2–4).

        ``expires_at`` and ``what`` override the link's own expiry, for a
        confirmation, so that it is judged in the same order as a link.
        """
        # The case is read before the link's use is checked: a change and its link's
        # use commit together, so a case read before an unused link is a case the
        # link has not changed yet, and a racing confirm loses on the version check.
        try:
            case: Case | None = self._service.store.get(claims.case_id)
        except CaseNotFound:
            case = None
        if self._service.store.link_used(claims.link_id):
            raise TokenUsed()
        if expires_at is None:
            expires_at = self._link_expiry(claims)
        if self._service.now() > expires_at:
            raise TokenExpired(expires_at, what)
        if case is None:
            raise TokenInvalid()  # signed for another database: say nothing more
        if case.assignee != claims.assignee:
            raise TokenInvalid("the case was reassigned")
        return case
