"""The facade: :class:`CloseLoop`, the one place where the parts are wired together."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from attrs import evolve, frozen

from closeloop.errors import ConcurrentUpdate, InvalidInput, NothingToChange
from closeloop.escalation import EscalationPolicy, EscalationRun, escalate
from closeloop.intake import DEFAULT_BATCH, BacktestSummary, Decision, Dedupe, IngestSummary, Intake
from closeloop.model import (
    Assigned,
    Case,
    Commented,
    Event,
    Notice,
    Opened,
    Priority,
    Status,
    StatusChanged,
    SurveyResponse,
)
from closeloop.notify.base import Message, Notifier
from closeloop.notify.log import LogNotifier
from closeloop.notify.templates import RenderedNotice, render_assignment
from closeloop.reporting import Report, ReportQuery
from closeloop.storage.base import Change, Store
from closeloop.storage.memory import MemoryStore
from closeloop.triggers import Trigger, TriggerSet
from closeloop.validate import (
    check_comment,
    check_id,
    check_optional_id,
    optional_aware_datetime,
)
from closeloop.workflow import CommentPolicy, check_transition

if TYPE_CHECKING:
    from closeloop.onetouch import OneTouch, OneTouchService

__all__ = ["Clock", "CloseLoop", "DeliveryReport"]

log = logging.getLogger("closeloop")

#: A callable returning the current time as an aware datetime.
Clock = Callable[[], datetime]


def utc_now() -> datetime:
    """The default clock: the current time in UTC."""
    return datetime.now(UTC)


def retry_delay(attempts: int) -> timedelta:
    """How long a notice that has failed ``attempts`` times waits before the next try.

    The first retry may come at once (the next ``deliver_pending()``); then 1, 2, 4 …
    minutes, at most an hour. The back-off keeps notices that cannot be delivered
    (a user without an address) from filling every batch and starving new ones.
    """
    if attempts <= 1:
        return timedelta(0)
    return min(timedelta(minutes=2 ** min(attempts - 2, 10)), timedelta(hours=1))


def new_id() -> str:
    """The default id factory: a random 32-character hex string."""
    return uuid.uuid4().hex


def _check_case_url(case_url: str | None) -> str | None:
    if case_url is None:
        return None
    try:
        ok = isinstance(case_url, str) and "{case_id}" in case_url
        ok = ok and case_url.format(case_id="x") != case_url.format(case_id="y")
    except (KeyError, IndexError, ValueError):
        ok = False
    if not ok:
        raise InvalidInput(
            "case_url", case_url, "must be a string whose only placeholder is {case_id}"
        )
    return case_url


@frozen
class DeliveryReport:
    """What :meth:`CloseLoop.deliver_pending` did."""

    sent: int
    failed: int


class CloseLoop:
    """Closed-loop feedback: open cases, assign them, work them to Closed, report.

    Args:
        store: where cases live; default :class:`~closeloop.storage.MemoryStore`.
        notifier: how notices are delivered; default
            :class:`~closeloop.notify.LogNotifier` (log lines only).
        clock: returns the current time as an aware datetime; default UTC now.
        triggers: the rules that open cases from survey responses (see :meth:`ingest`),
            evaluated in order.
        dedupe: what a matching response from a customer who already has a case does:
            ``"open-case"`` (default: join the case while it is not Closed),
            ``"none"`` (always open a new case), or a timedelta cool-down (also join
            a case closed less than that long ago).
        escalation: when :meth:`escalate` escalates cases and to whom; default
            overdue cases only, to their assignee, at most once a day.
        comment_policy: which workflow changes need a comment; default closing and
            reopening.
        case_url: the app's page for a case, used as the link in notices when
            one-touch is not configured; a format string with ``{case_id}``.
        one_touch: signed single-use Change links in assignment and escalation
            emails (:class:`~closeloop.onetouch.OneTouch`); use them as
            :attr:`one_touch`. Default none: notices link to ``case_url``.
        id_factory: makes case and notice ids; default random hex.
        delivery_lease: how long a process may hold a notice it is delivering
            before another process may retry it.
        deliver_notices: deliver notices right after each change (default). With
            ``False`` they are only written to the outbox, for another process to
            send with :meth:`deliver_pending` (e.g. a cron job without a mailer).

    Example::

        loop = CloseLoop(store=SQLiteStore("closeloop.db"), notifier=MemoryNotifier())
        case = loop.open_case("c-7", by="agent-1", comment="Called in upset")
        loop.assign(case.id, to="alice", by="bob")
        loop.set_status(case.id, Status.CLOSED, by="alice", comment="Refund issued")
    """

    def __init__(
        self,
        store: Store | None = None,
        notifier: Notifier | None = None,
        clock: Clock | None = None,
        *,
        triggers: Iterable[Trigger] = (),
        dedupe: Dedupe | str | timedelta = "open-case",
        escalation: EscalationPolicy | None = None,
        comment_policy: CommentPolicy | None = None,
        case_url: str | None = None,
        id_factory: Callable[[], str] | None = None,
        delivery_lease: timedelta = timedelta(minutes=5),
        deliver_notices: bool = True,
        one_touch: OneTouch | None = None,
    ) -> None:
        self.store: Store = MemoryStore() if store is None else store
        self.notifier: Notifier = LogNotifier() if notifier is None else notifier
        if not isinstance(self.store, Store):
            raise InvalidInput("store", store, "must implement the closeloop Store protocol")
        if not isinstance(self.notifier, Notifier):
            raise InvalidInput("notifier", notifier, "must have a send(message) method")
        if clock is not None and not callable(clock):
            raise InvalidInput("clock", clock, "must be a callable returning an aware datetime")
        self.clock: Clock = utc_now if clock is None else clock
        if comment_policy is not None and not isinstance(comment_policy, CommentPolicy):
            raise InvalidInput("comment_policy", comment_policy, "must be a CommentPolicy")
        self.comment_policy = CommentPolicy() if comment_policy is None else comment_policy
        self.case_url = _check_case_url(case_url)
        if id_factory is not None and not callable(id_factory):
            raise InvalidInput("id_factory", id_factory, "must be a callable returning a string id")
        self.new_id: Callable[[], str] = new_id if id_factory is None else id_factory
        if not isinstance(delivery_lease, timedelta) or delivery_lease <= timedelta(0):
            raise InvalidInput("delivery_lease", delivery_lease, "must be a positive timedelta")
        self.delivery_lease = delivery_lease
        if not isinstance(deliver_notices, bool):
            raise InvalidInput("deliver_notices", deliver_notices, "must be True or False")
        self.deliver_notices = deliver_notices
        self._intake = Intake(self, triggers, dedupe)
        if escalation is not None and not isinstance(escalation, EscalationPolicy):
            raise InvalidInput("escalation", escalation, "must be an EscalationPolicy")
        self.escalation = EscalationPolicy() if escalation is None else escalation
        if one_touch is not None and not callable(getattr(one_touch, "bind", None)):
            raise InvalidInput("one_touch", type(one_touch).__name__,
                               "must be a closeloop.onetouch.OneTouch")
        self._one_touch = None if one_touch is None else one_touch.bind(self)

    # -- time and ids -------------------------------------------------------------

    def now(self) -> datetime:
        """The loop's clock, checked to be timezone-aware."""
        now = self.clock()
        if not isinstance(now, datetime) or now.utcoffset() is None:
            raise InvalidInput("clock", now, "must return a timezone-aware datetime")
        return now

    # -- one-touch ----------------------------------------------------------------

    @property
    def one_touch(self) -> OneTouchService:
        """The one-touch links of this loop: ``link``, ``open``, ``prepare``, ``confirm``.

        Raises InvalidInput when the loop was made without ``one_touch=``.
        """
        if self._one_touch is None:
            raise InvalidInput("one_touch", None, "one-touch is not configured; pass "
                               "CloseLoop(one_touch=OneTouch(...))")
        return self._one_touch

    # -- survey responses -----------------------------------------------------------

    @property
    def triggers(self) -> TriggerSet:
        """The loop's triggers, compiled, in evaluation order."""
        return self._intake.triggers

    def ingest(self, response: SurveyResponse) -> Case | None:
        """Run a survey response through the triggers; return the case it opened or joined.

        Returns ``None`` when no trigger matched. Ingesting the same response id again
        returns the same case and changes nothing; a matching response from a customer
        with a case still open joins that case (see ``dedupe``). A new case is routed,
        prioritised and given a due date by the first matching trigger, and records
        every matching trigger's reason.

        Raises:
            InvalidInput: ``response`` is not a SurveyResponse, or a trigger's
                condition failed on it; nothing is written.
        """
        return self._intake.ingest(response)

    def ingest_many(
        self, responses: Sequence[SurveyResponse], *, batch_size: int = DEFAULT_BATCH
    ) -> IngestSummary:
        """Ingest a batch with the same rules as :meth:`ingest`, ``batch_size`` per transaction.

        Every item is checked first: one bad item raises InvalidInput naming its
        index (``responses[3]``) and nothing is written.
        """
        return self._intake.ingest_many(responses, batch_size)

    def explain(self, response: SurveyResponse) -> Decision:
        """What ingesting ``response`` would do, and why each trigger matched or not.

        Writes nothing (round-robin routing is previewed without taking a turn).
        """
        return self._intake.explain(response)

    def backtest(self, responses: Sequence[SurveyResponse]) -> BacktestSummary:
        """Run historical responses through the rules without writing; summarise the outcome."""
        return self._intake.backtest(responses)

    def escalate(self, *, dry_run: bool = False, limit: int = 500) -> EscalationRun:
        """Escalate overdue (and, per policy, untouched) cases: an event and an email each.

        The assignee (or the policy's fallback for unassigned cases) gets an
        escalation notice with the one-touch Change link when one-touch is
        configured. A case is escalated at most once per ``resend_after``, even
        with several processes running this at once. ``dry_run`` only reports.
        """
        return escalate(self, self.escalation, dry_run=dry_run, limit=limit)

    # -- reporting ------------------------------------------------------------------

    def report(
        self,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
        assignee: str | None = None,
        reason: str | None = None,
    ) -> Report:
        """The KPIs over cases opened in ``[since, until)``, optionally one assignee's or reason's.

        Computed inside the store. ``loop.report().status_counts`` is the sums of
        Open, Progress and Closed cases; see :class:`~closeloop.reporting.Report`.
        """
        query = ReportQuery(now=self.now(), since=since, until=until, assignee=assignee,
                            reason=reason)
        if since is not None and until is not None and since >= until:
            raise InvalidInput("until", until, "must be later than since")
        return self.store.report(query)

    # -- reading ------------------------------------------------------------------

    def get(self, case_id: str) -> Case:
        """The case with this id. Raises CaseNotFound."""
        return self.store.get(check_id("case_id", case_id))

    def cases(
        self,
        *,
        assignee: str | None = None,
        status: Status | str | None = None,
        customer_id: str | None = None,
        limit: int | None = None,
    ) -> list[Case]:
        """Cases matching every filter given, oldest first.

        ``cases(assignee="alice")`` is Alice's home page.
        """
        check_optional_id("assignee", assignee)
        check_optional_id("customer_id", customer_id)
        wanted = None if status is None else Status.parse(status)
        if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 0):
            raise InvalidInput("limit", limit, "must be a non-negative integer or None")
        return self.store.find(
            assignee=assignee, status=wanted, customer_id=customer_id, limit=limit
        )

    def history(self, case_id: str) -> list[Event]:
        """The case's events, oldest first. Raises CaseNotFound."""
        return self.store.history(check_id("case_id", case_id))

    # -- changing -----------------------------------------------------------------

    def open_case(
        self,
        customer_id: str,
        *,
        by: str,
        comment: str | None = None,
        priority: Priority | str = Priority.NORMAL,
        due_at: datetime | None = None,
        reasons: Sequence[str] = (),
    ) -> Case:
        """Open a case by hand for ``customer_id``; ``by`` is the agent.

        Returns the new case (status Open, version 1, one "opened" event).
        """
        check_id("customer_id", customer_id)
        check_id("by", by)
        check_comment("comment", comment)
        optional_aware_datetime("due_at", due_at)
        now = self.now()
        case = Case(
            id=check_id("id_factory()", self.new_id()),
            customer_id=customer_id,
            status=Status.OPEN,
            opened_at=now,
            updated_at=now,
            opened_by=by,
            version=1,
            reasons=reasons,
            priority=Priority.parse(priority),
            due_at=due_at,
        )
        event = Opened(case_id=case.id, actor=by, at=now, seq=1, comment=comment)
        self.store.commit(Change(case=case, expected_version=None, events=(event,)))
        return case

    def assign(
        self,
        case_id: str,
        *,
        to: str,
        by: str,
        comment: str | None = None,
        expected_version: int | None = None,
    ) -> Case:
        """Assign the case to user ``to``; ``by`` is who assigns. The assignee is notified.

        Raises:
            NothingToChange: ``to`` already holds the case.
            ConcurrentUpdate: the case changed since ``expected_version`` (or while
                this call ran).
        """
        check_id("to", to)
        check_id("by", by)
        check_comment("comment", comment)
        case = self._read(case_id, expected_version)
        if case.assignee == to:
            raise NothingToChange(case.id, f"case {case.id!r} is already assigned to {to!r}")
        now = self.now()
        updated = evolve(case, assignee=to, updated_at=now, version=case.version + 1)
        event = Assigned(
            case_id=case.id, actor=by, at=now, seq=updated.version, comment=comment,
            assignee=to, previous=case.assignee,
        )
        rendered = render_assignment(updated, by, self._link_for(updated), comment=comment,
                                     action=self._link_label(updated))
        notice = self._notice(updated, "assigned", to, rendered, now)
        self._commit(Change(case=updated, expected_version=case.version, events=(event,),
                            notices=(notice,)))
        return updated

    def set_status(
        self,
        case_id: str,
        status: Status | str,
        *,
        by: str,
        comment: str | None = None,
        expected_version: int | None = None,
        via: str | None = None,
    ) -> Case:
        """Move the case to ``status`` through the workflow; ``by`` is who does it.

        Raises:
            TransitionNotAllowed: the workflow has no such change (or it is the
                current status).
            CommentRequired: the comment policy asks for a comment here.
            ConcurrentUpdate: the case changed since ``expected_version``.
        """
        target = Status.parse(status)
        check_id("by", by)
        check_comment("comment", comment)
        case = self._read(case_id, expected_version)
        return self.apply_status(case, target, by=by, comment=comment, via=via)

    def apply_status(
        self,
        case: Case,
        target: Status,
        *,
        by: str,
        comment: str | None,
        via: str | None = None,
        consume_link: str | None = None,
    ) -> Case:
        """Move ``case`` (as read) to ``target``: the workflow step under set_status.

        For integrations such as one-touch: the change is based on ``case.version``
        (a concurrent change raises ConcurrentUpdate), and ``consume_link`` marks a
        one-touch link used in the same transaction (TokenUsed if it already was).
        Arguments are assumed validated.
        """
        check_transition(case.id, case.status, target, comment, self.comment_policy)
        now = self.now()
        updated = evolve(
            case,
            status=target,
            updated_at=now,
            version=case.version + 1,
            closed_at=now if target is Status.CLOSED else None,
        )
        event = StatusChanged(
            case_id=case.id, actor=by, at=now, seq=updated.version, comment=comment,
            from_status=case.status, to_status=target, via=via,
        )
        self._commit(Change(case=updated, expected_version=case.version, events=(event,),
                            consume_link=consume_link))
        return updated

    def comment(
        self, case_id: str, text: str, *, by: str, expected_version: int | None = None
    ) -> Case:
        """Add an agent comment to the case's history. It never emails the customer."""
        check_id("by", by)
        check_comment("text", text)
        if not isinstance(text, str) or not text.strip():
            raise InvalidInput("text", text, "a comment must not be blank")
        case = self._read(case_id, expected_version)
        now = self.now()
        updated = evolve(case, updated_at=now, version=case.version + 1)
        event = Commented(case_id=case.id, actor=by, at=now, seq=updated.version, comment=text)
        self._commit(Change(case=updated, expected_version=case.version, events=(event,)))
        return updated

    # -- notices ------------------------------------------------------------------

    def deliver_pending(self, limit: int = 100) -> DeliveryReport:
        """Deliver notices still waiting in the outbox (failed or left by a crash).

        Safe to run from several processes at once: each notice is claimed by one.
        Call it from a scheduler (cron, a worker loop) every minute or so. A notice
        that keeps failing is retried with back-off (see :func:`retry_delay`).
        """
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise InvalidInput("limit", limit, "must be a positive integer")
        notices = self.store.claim_notices(now=self.now(), lease=self.delivery_lease, limit=limit)
        sent = self._deliver_all(notices)
        return DeliveryReport(sent=sent, failed=len(notices) - sent)

    def _deliver_all(self, notices: Sequence[Notice]) -> int:
        """Send each notice; record failures one by one and successes in one write."""
        sent = [notice.id for notice in notices if self._send(notice)]
        if sent:
            self._safely(self.store.notices_sent, sent, at=self.now())
        return len(sent)

    def _send(self, notice: Notice) -> bool:
        try:
            self.notifier.send(Message.from_notice(notice))
        except Exception as exc:  # any notifier failure leaves the notice pending
            log.warning("could not deliver notice %r for case %r: %r", notice.id,
                        notice.case_id, exc)
            retry_at = self.now() + retry_delay(notice.attempts + 1)
            self._safely(self.store.notice_failed, notice.id, error=repr(exc)[:1000],
                         retry_at=retry_at)
            return False
        return True

    @staticmethod
    def _safely(record: Callable[..., None], notices: object, **kwargs: Any) -> None:
        # The case change is committed; a failure to book-keep delivery must not
        # look like a failed change. At worst the notice is delivered again.
        try:
            record(notices, **kwargs)
        except Exception:
            log.exception("could not record delivery state of notice(s) %r", notices)

    def _notice(
        self, case: Case, kind: str, to: str, rendered: RenderedNotice, now: datetime
    ) -> Notice:
        return Notice(
            id=check_id("id_factory()", self.new_id()),
            case_id=case.id,
            kind=kind,
            to=to,
            subject=rendered.subject,
            text=rendered.text,
            html=rendered.html,
            created_at=now,
            # Claimed by this process, which delivers it right after the commit
            # (or, when this loop does not deliver, due at once for whoever does).
            next_attempt_at=now + self.delivery_lease if self.deliver_notices else now,
        )

    def _link_for(self, case: Case) -> str | None:
        if self._one_touch is not None and case.assignee is not None:
            return self._one_touch.link_for(case)
        return self._case_link(case)

    def _link_label(self, case: Case) -> str:
        """"Change" for a one-touch link, "Open the case" for the app's page."""
        return "Change" if self._one_touch is not None and case.assignee else "Open the case"

    def _case_link(self, case: Case) -> str | None:
        """The app's page for the case (``case_url``), if configured."""
        if self.case_url is not None:
            return self.case_url.format(case_id=quote(case.id, safe=""))
        return None

    # -- internals ----------------------------------------------------------------

    def _read(self, case_id: str, expected_version: int | None) -> Case:
        check_id("case_id", case_id)
        if expected_version is not None and (
            isinstance(expected_version, bool) or not isinstance(expected_version, int)
        ):
            raise InvalidInput("expected_version", expected_version, "must be an integer")
        case = self.store.get(case_id)
        if expected_version is not None and case.version != expected_version:
            raise ConcurrentUpdate(case.id, expected_version, case.version)
        return case

    def _commit(self, change: Change) -> None:
        self.store.commit(change)
        if self.deliver_notices and change.notices:
            self._deliver_all(change.notices)

