"""The facade: :class:`CloseLoop`, the one place where the parts are wired together."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from attrs import evolve

from closeloop import lifecycle
from closeloop.calendar import BusinessHours
from closeloop.cursor import decode_cursor, encode_cursor
from closeloop.errors import InvalidInput, NothingToChange
from closeloop.escalation import EscalationPolicy, EscalationRun, escalate
from closeloop.intake import (
    DEFAULT_BATCH,
    BacktestSummary,
    Decision,
    Dedupe,
    IngestOutcome,
    IngestSummary,
    Intake,
)
from closeloop.lifecycle import Erasure, PurgeSummary
from closeloop.links import Links
from closeloop.model import (
    CATEGORY_NAMES,
    Assigned,
    Case,
    Commented,
    Event,
    Opened,
    Priority,
    Status,
    SurveyResponse,
)
from closeloop.notify.base import Notifier
from closeloop.notify.channel import DEFAULT_CHANNEL, Channel, channels_of
from closeloop.notify.directory import CustomerDirectory, UserDirectory
from closeloop.notify.templates import Templates
from closeloop.onetouch.service import OneTouchService
from closeloop.onetouch.tokens import OneTouch
from closeloop.outbox import DeliveryReport, Outbox, retry_delay
from closeloop.protocol_check import protocol_problems
from closeloop.query import MAX_PAGE_SIZE, CaseCounts, CasePage, CaseQuery
from closeloop.reporting import Report, ReportQuery
from closeloop.service import CaseService, draft
from closeloop.storage.base import Store
from closeloop.storage.memory import MemoryStore
from closeloop.triggers import Trigger, TriggerSet
from closeloop.validate import (
    aware_datetime,
    check_bool,
    check_callable,
    check_comment,
    check_id,
    check_int,
    check_optional_id,
    check_optional_label,
    check_positive_int,
    check_positive_timedelta,
    optional_aware_datetime,
)
from closeloop.worker import WorkerStats, run_worker
from closeloop.workflow import DEFAULT_WORKFLOW, CommentPolicy, Workflow, WorkflowStatus

__all__ = ["Clock", "CloseLoop", "DeliveryReport", "retry_delay"]

#: A callable returning the current time as an aware datetime.
Clock = Callable[[], datetime]


def utc_now() -> datetime:
    """The default clock: the current time in UTC."""
    return datetime.now(UTC)


def new_id() -> str:
    """The default id factory: a random 32-character hex string."""
    return uuid.uuid4().hex


class CloseLoop:
    """Closed-loop feedback: open cases, assign them, work them to Closed, report.

    Args:
        store: where cases live; default :class:`~closeloop.storage.MemoryStore`.
        notifier: how notices are delivered, as the loop's one channel (named
            ``"default"``); default :class:`~closeloop.notify.LogNotifier` (log lines
            only). Give this or ``notifiers``.
        notifiers: several channels by name, each a notifier (it takes the notices
            addressed to people) or a :class:`~closeloop.notify.Channel` (choose
            people and case events): ``{"email": SmtpNotifier(...), "crm":
            Channel(WebhookNotifier(...), people=False, events=CASE_EVENTS)}``. Each
            notice is delivered once per channel that takes it, each delivery with
            its own attempts and back-off.
        clock: returns the current time as an aware datetime; default UTC now.
        triggers: the rules that open cases from survey responses (see :meth:`ingest`),
            evaluated in order.
        dedupe: what a matching response from a customer who already has a case does:
            ``"open-case"`` (default: join the case while it is not Closed),
            ``"none"`` (always open a new case), or a timedelta cool-down (also join
            a case closed less than that long ago).
        escalation: when :meth:`escalate` escalates cases and to whom; default
            overdue cases only, to their assignee, at most once a day.
        comment_policy: which kinds of status change need a comment; default closing
            and reopening. Given with ``workflow``, it replaces the workflow's own.
        workflow: the case statuses and the moves between them
            (:class:`~closeloop.workflow.Workflow`); default the standard Open,
            Progress, Closed.
        calendar: business hours (:class:`~closeloop.calendar.BusinessHours`): when
            given, triggers' ``due_in``, escalation's ``untouched_for`` and the
            report's business-time figures count only business time.
        case_url: the app's page for a case, an absolute URL format with
            ``{case_id}`` (inserted URL-encoded); every notice links to it, and the
            one-touch pages do for anything a link cannot do.
        one_touch: signed single-use Change links in assignment and escalation
            notices to the assignee (:class:`~closeloop.onetouch.OneTouch`), next
            to the ``case_url`` link; use them as :attr:`one_touch`.
        templates: renders notices when they are delivered; default the templates
            shipped with closeloop (:class:`~closeloop.notify.Templates`).
        users: the host's users (:class:`~closeloop.notify.UserDirectory`): their
            addresses, display names, time zones and locales, used when a notice is
            delivered. Default none: user ids, UTC, English.
        customers: the host's customers (:class:`~closeloop.notify.CustomerDirectory`):
            names and contact details shown in notices and on the one-touch page.
        id_factory: makes case and notice ids; default random hex.
        delivery_lease: how long a process may hold a notice it is delivering
            before another process may retry it.
        deliver_notices: deliver notices right after each change, in the calling
            thread (default). With ``False`` they are only written to the outbox,
            for a worker (:meth:`run_worker`, ``closeloop worker``) or
            :meth:`deliver_pending` to send: requests never wait for a mail server.

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
        notifiers: Mapping[str, Notifier | Channel] | None = None,
        templates: Templates | None = None,
        users: UserDirectory | None = None,
        customers: CustomerDirectory | None = None,
        workflow: Workflow | None = None,
        calendar: BusinessHours | None = None,
    ) -> None:
        self.store: Store = MemoryStore() if store is None else store
        problems = protocol_problems(self.store, Store)
        if problems:
            raise InvalidInput("store", store, "must implement the closeloop Store protocol: "
                               + "; ".join(problems))
        self.channels = channels_of(notifier, notifiers)
        if templates is not None and not isinstance(templates, Templates):
            raise InvalidInput("templates", templates, "must be a closeloop.notify.Templates")
        for name, directory in (("users", users), ("customers", customers)):
            if directory is not None and not callable(getattr(directory, "lookup", None)):
                raise InvalidInput(name, directory, "must have a lookup(id) method")
        self.templates = Templates() if templates is None else templates
        self.users = users
        self.customers = customers
        if clock is not None:
            check_callable("clock", clock, "a callable returning an aware datetime")
        self.clock: Clock = utc_now if clock is None else clock
        if comment_policy is not None and not isinstance(comment_policy, CommentPolicy):
            raise InvalidInput("comment_policy", comment_policy, "must be a CommentPolicy")
        if workflow is not None and not isinstance(workflow, Workflow):
            raise InvalidInput("workflow", type(workflow).__name__,
                               "must be a closeloop.workflow.Workflow (Workflow.from_dict(...) "
                               "builds one from plain data)")
        if calendar is not None and not isinstance(calendar, BusinessHours):
            raise InvalidInput("calendar", type(calendar).__name__,
                               "must be a closeloop.calendar.BusinessHours")
        self.workflow: Workflow = DEFAULT_WORKFLOW if workflow is None else workflow
        if comment_policy is not None and comment_policy != self.workflow.comment_policy:
            self.workflow = self.workflow.with_comment_policy(comment_policy)
        self.comment_policy = self.workflow.comment_policy
        self.calendar = calendar
        if id_factory is not None:
            check_callable("id_factory", id_factory, "a callable returning a string id")
        self.new_id: Callable[[], str] = new_id if id_factory is None else id_factory
        self.delivery_lease = check_positive_timedelta("delivery_lease", delivery_lease)
        self.deliver_notices = check_bool("deliver_notices", deliver_notices)
        if escalation is not None and not isinstance(escalation, EscalationPolicy):
            raise InvalidInput("escalation", escalation, "must be an EscalationPolicy")
        self.escalation = EscalationPolicy() if escalation is None else escalation
        if one_touch is not None and not isinstance(one_touch, OneTouch):
            raise InvalidInput("one_touch", type(one_touch).__name__,
                               "must be a closeloop.onetouch.OneTouch")
        links = Links(one_touch, case_url, self.now)
        self.case_url = links.case_url
        outbox = Outbox(self.store, self.channels, self.now, self.delivery_lease,
                        templates=self.templates, users=users, customers=customers)
        self.service = CaseService(
            store=self.store,
            outbox=outbox,
            clock=self.clock,
            new_id=self.new_id,
            links=links,
            workflow=self.workflow,
            calendar=self.calendar,
            deliver_notices=self.deliver_notices,
            customers=customers,
        )
        self._intake = Intake(self.service, triggers, dedupe)
        self._one_touch = None if one_touch is None else OneTouchService(one_touch, self.service)

    # -- time and ids -------------------------------------------------------------

    def now(self) -> datetime:
        """The loop's clock, checked to be timezone-aware."""
        return self.service.now()

    @property
    def notifier(self) -> Notifier:
        """The notifier of the ``"default"`` channel, else of the first channel."""
        channel = self.channels.get(DEFAULT_CHANNEL) or next(iter(self.channels.values()))
        return channel.notifier

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
        return self._intake.ingest(response).case

    def ingest_outcome(self, response: SurveyResponse) -> IngestOutcome:
        """Like :meth:`ingest`, but say what happened: opened, joined, updated, duplicate, ignored.

        The answer is decided by the transaction that wrote the response, so of
        ten concurrent deliveries of one response exactly one is told
        ``"opened"`` and nine ``"duplicate"``. A webhook endpoint can return it
        to the survey tool as is.

        Example::

            outcome = loop.ingest_outcome(response)
            if outcome.kind == "opened":
                print("new case", outcome.case.id)
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
        return escalate(self.service, self.escalation, dry_run=dry_run, limit=limit)

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
                            reason=reason, statuses=tuple(s.name for s in self.workflow.statuses),
                            close_reasons=self.workflow.close_reasons, calendar=self.calendar)
        if since is not None and until is not None and since >= until:
            raise InvalidInput("until", until, "must be later than since")
        return self.store.report(query)

    # -- reading ------------------------------------------------------------------

    def get(self, case_id: str) -> Case:
        """The case with this id. Raises CaseNotFound."""
        return self.service.read(case_id)

    def cases(
        self,
        *,
        assignee: str | None = None,
        status: Status | str | None = None,
        customer_id: str | None = None,
        limit: int | None = None,
    ) -> list[Case]:
        """Cases matching every filter given, oldest first.

        ``cases(assignee="alice")`` is Alice's home page. ``status`` is a category
        (a :class:`Status` or its value, any case) or, with a :class:`Workflow`, one of
        its status names (``status="waiting"``). For more filters, other orders, pages
        and counts, see :meth:`page` and :meth:`count`.
        """
        check_optional_id("assignee", assignee)
        check_optional_id("customer_id", customer_id)
        if limit is not None:
            check_int("limit", limit)
        if status is None or isinstance(status, Status) or (
            isinstance(status, str) and status.lower() in CATEGORY_NAMES
        ):
            wanted = None if status is None else Status.parse(status)
            return self.store.find(
                assignee=assignee, status=wanted, customer_id=customer_id, limit=limit
            )
        named = self.workflow.resolve(status)  # a team's own status: InvalidInput if unknown
        found = [case for case in self.store.find(assignee=assignee, status=named.category,
                                                  customer_id=customer_id)
                 if case.custom_status == named.name]
        return found if limit is None else found[:limit]

    def page(
        self, query: CaseQuery | None = None, *, after: str | None = None, size: int = 50
    ) -> CasePage:
        """One page of the cases ``query`` selects, in its order; ``after`` continues a listing.

        ``query`` defaults to every case, oldest opened first. Pass the page's
        ``next_cursor`` as ``after`` for the next page (it is ``None`` on the last).
        Paging is keyset-based: a case that exists when paging starts and matches the
        query throughout is listed exactly once, whatever is added or changed
        meanwhile, as long as its place in the order stays (see
        :mod:`closeloop.cursor`). ``overdue`` is judged at the loop's clock.

        Example::

            query = CaseQuery(assignee="alice", status=["open", "progress"], sort="due")
            first = loop.page(query)
            second = loop.page(query, after=first.next_cursor)

        Raises:
            InvalidInput: ``query`` is not a CaseQuery, ``size`` is not 1 to
                :data:`~closeloop.query.MAX_PAGE_SIZE`, or ``after`` is not a cursor of
                this query (from another query, damaged or edited).
        """
        query = _query(query)
        check_int("size", size, minimum=1, maximum=MAX_PAGE_SIZE)
        position = None if after is None else decode_cursor(query, after)
        cases = self.store.find_page(query, now=self.now(), after=position, limit=size + 1)
        if len(cases) <= size:
            return CasePage(tuple(cases), None)
        return CasePage(tuple(cases[:size]), encode_cursor(query, cases[size - 1]))

    def count(self, query: CaseQuery | None = None, *, by_assignee: bool = False) -> CaseCounts:
        """How many cases ``query`` selects, per status (and per assignee with ``by_assignee``).

        One ``GROUP BY`` in the SQL stores. The query's sort does not matter here.

        Example::

            loop.count(CaseQuery(assignee="alice")).by_status[Status.OPEN]
            loop.count(CaseQuery(status="open"), by_assignee=True).by_assignee["bob"]
        """
        query = _query(query)
        check_bool("by_assignee", by_assignee)
        return self.store.count_cases(query, now=self.now(), by_assignee=by_assignee)

    def history(self, case_id: str) -> list[Event]:
        """The case's events, oldest first. Raises CaseNotFound."""
        return self.service.history(case_id)

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

        Returns the new case (status Open, in the workflow's initial status, version 1,
        one "opened" event).
        """
        check_id("customer_id", customer_id)
        check_id("by", by)
        check_comment("comment", comment)
        optional_aware_datetime("due_at", due_at)
        now = self.now()
        initial = self.workflow.initial_status
        case = Case(
            id=self.service.new_id(),
            customer_id=customer_id,
            status=Status.OPEN,
            opened_at=now,
            updated_at=now,
            opened_by=by,
            version=1,
            reasons=reasons,
            priority=Priority.parse(priority),
            due_at=due_at,
            custom_status=initial.name,
            paused_at=now if initial.pauses_sla else None,
        )
        change = self.service.opening(case, draft(Opened, actor=by, comment=comment))
        self.service.commit(change)
        return change.case

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

        The notice carries ``comment`` as the assigner's note, the customer's latest
        survey response, and the links (one-touch Change, the app's case page).

        Raises:
            NothingToChange: ``to`` already holds the case.
            ConcurrentUpdate: the case changed since ``expected_version`` (or while
                this call ran).
        """
        check_id("to", to)
        check_id("by", by)
        check_comment("comment", comment)
        service = self.service
        case = service.read(case_id, expected_version)
        if case.assignee == to:
            raise NothingToChange(case.id, f"case {case.id!r} is already assigned to {to!r}")
        now = self.now()
        change = service.advance(
            case,
            draft(Assigned, actor=by, comment=comment, assignee=to, previous=case.assignee),
            now=now, assignee=to,
        )
        updated = change.case
        notices = service.person_notice(updated, "assigned", to, actor=by, now=now, note=comment,
                                        response=service.latest_response(case))
        service.commit(evolve(change, notices=notices))
        return updated

    def set_status(
        self,
        case_id: str,
        status: Status | str,
        *,
        by: str,
        comment: str | None = None,
        close_reason: str | None = None,
        expected_version: int | None = None,
        via: str | None = None,
    ) -> Case:
        """Move the case to ``status`` through the workflow; ``by`` is who does it.

        ``status`` is a status of the loop's workflow, by name (``"waiting"``), or a
        :class:`~closeloop.Status`, which means the first status of that category.
        ``close_reason`` says why the case is closed: required when closing if the
        workflow has close reasons, refused on a change that does not close.

        Raises:
            InvalidInput: an unknown status, or a missing or unknown ``close_reason``;
                nothing is written.
            TransitionNotAllowed: the workflow has no such change (or it is the
                current status).
            CommentRequired: the comment policy asks for a comment here.
            ConcurrentUpdate: the case changed since ``expected_version``.
        """
        target = self.workflow.resolve(status)
        check_id("by", by)
        check_comment("comment", comment)
        check_optional_label("via", via)
        if close_reason is not None and not isinstance(close_reason, str):
            raise InvalidInput("close_reason", close_reason, "must be a string or None")
        return self.service.set_status_of(case_id, target, by=by, comment=comment,
                                          close_reason=close_reason, via=via,
                                          expected_version=expected_version)

    def apply_status(
        self,
        case: Case,
        target: Status | str | WorkflowStatus,
        *,
        by: str,
        comment: str | None,
        close_reason: str | None = None,
        via: str | None = None,
        consume_link: str | None = None,
    ) -> Case:
        """Move ``case`` (as read) to ``target``: the workflow step under set_status.

        For integrations such as one-touch: the change is based on ``case.version``
        (a concurrent change raises ConcurrentUpdate), and ``consume_link`` marks a
        one-touch link used in the same transaction (TokenUsed if it already was).
        ``by``, ``comment`` and ``via`` are checked as by :meth:`set_status`.
        """
        check_id("by", by)
        check_comment("comment", comment)
        check_optional_label("via", via)
        return self.service.set_status(
            case, target, by=by, comment=comment, close_reason=close_reason, via=via,
            consume_link=consume_link,
        )

    def comment(
        self, case_id: str, text: str, *, by: str, expected_version: int | None = None
    ) -> Case:
        """Add an agent comment to the case's history. It never emails the customer."""
        check_id("by", by)
        check_comment("text", text)
        if not isinstance(text, str) or not text.strip():
            raise InvalidInput("text", text, "a comment must not be blank")
        case = self.service.read(case_id, expected_version)
        change = self.service.advance(
            case, draft(Commented, actor=by, comment=text), now=self.now()
        )
        self.service.commit(change)
        return change.case

    # -- personal data ------------------------------------------------------------

    def erase_customer(self, customer_id: str, *, by: str, dry_run: bool = False) -> Erasure:
        """Erase the customer's personal data from everything closeloop keeps ("erase me").

        In one atomic batch: the customer id becomes one random pseudonym
        (``erased-…``) in every case and response record of theirs; every comment
        in their cases' histories, their responses' content, and the customer's
        words in notices about their cases are removed; notices still pending are
        cancelled, never sent; each case gets an ``erased`` event (actor ``by``).
        Times, statuses, scores, reasons and user ids stay, so every report
        figure is exactly as before. Calling it again finds nothing under the id
        and writes nothing. See :mod:`closeloop.redaction` for what is kept where,
        and docs/security.md for backups and database files.

        ``dry_run`` says what would be erased and writes nothing.

        Example::

            erasure = loop.erase_customer("c-42", by="dpo@crm.example")
            erasure.cases, erasure.pseudonym        # (3, 'erased-5f0c…')

        Raises:
            InvalidInput: ``customer_id`` or ``by`` is not an id; nothing is written.
            ConcurrentUpdate: the customer's records kept changing while being
                erased; what was committed is consistent, and calling again finishes.
        """
        check_id("customer_id", customer_id)
        check_id("by", by)
        check_bool("dry_run", dry_run)
        return lifecycle.erase_customer(self.service, customer_id, by=by, dry_run=dry_run)

    def export_customer(self, customer_id: str) -> dict[str, Any]:
        """Everything closeloop holds on the customer, as plain data ("what do you hold on me").

        Their cases, each with its full history and the notices about it, and their
        survey responses (with what they answered), as dicts, lists, strings,
        numbers and ``None`` that :func:`json.dumps` writes as they are (times as
        ISO 8601). A customer closeloop knows nothing about gives empty lists.

        Example::

            Path("c-42.json").write_text(json.dumps(loop.export_customer("c-42"), indent=2))

        Raises:
            InvalidInput: ``customer_id`` is not an id.
        """
        check_id("customer_id", customer_id)
        return lifecycle.export_customer(self.service, customer_id)

    def purge(self, closed_before: datetime, *, by: str, dry_run: bool = False) -> PurgeSummary:
        """The retention rule: erase every customer all of whose data is older than ``closed_before``.

        A customer is erased (as :meth:`erase_customer` does) when every case of
        theirs was closed before ``closed_before`` and every response of theirs
        received before it (see :mod:`closeloop.retention`); one with a case still
        open, or newer, keeps all of their data until that ages out too. Run it
        from a scheduler (``closeloop purge --closed-before …``); a second run with
        the same date erases nothing. Reports are exactly as before.

        Example::

            loop.purge(loop.now() - timedelta(days=730), by="retention-job")

        Raises:
            InvalidInput: ``closed_before`` is not an aware datetime or is later than
                now, or ``by`` is not an id; nothing is written.
        """
        aware_datetime("closed_before", closed_before)
        check_id("by", by)
        check_bool("dry_run", dry_run)
        if closed_before > self.now():
            raise InvalidInput("closed_before", closed_before,
                               "must not be later than now (a retention date is in the past)")
        return lifecycle.purge(self.service, closed_before, by=by, dry_run=dry_run)

    # -- notices ------------------------------------------------------------------

    def run_worker(
        self,
        *,
        deliver_every: timedelta = timedelta(seconds=5),
        escalate_every: timedelta | None = timedelta(minutes=5),
        batch: int = 100,
        stop: threading.Event | None = None,
        handle_signals: bool = True,
    ) -> WorkerStats:
        """Deliver the outbox and escalate due cases on intervals until stopped.

        Run it in a process of its own beside the web app (``closeloop worker
        --app module:function``) or in a thread, and make the loop with
        ``deliver_notices=False`` so requests never wait for a mail server.
        Several workers may run at once. SIGTERM or SIGINT (or setting ``stop``)
        ends it after the current round. See :mod:`closeloop.worker`.

        Example::

            loop = CloseLoop(store=SQLiteStore("closeloop.db"), notifier=smtp,
                             deliver_notices=False)
            loop.run_worker(deliver_every=timedelta(seconds=2))
        """
        check_positive_int("batch", batch)
        return run_worker(
            lambda: self.deliver_pending(batch),
            self.escalate if escalate_every is not None else None,
            deliver_every=deliver_every, escalate_every=escalate_every, stop=stop,
            handle_signals=handle_signals,
        )

    def deliver_pending(self, limit: int = 100) -> DeliveryReport:
        """Deliver notices still waiting in the outbox (failed or left by a crash).

        Safe to run from several processes at once: each delivery is claimed by one.
        Call it from a scheduler (cron, a worker loop) every minute or so. A delivery
        that keeps failing is retried with back-off (see :func:`retry_delay`); one
        whose recipient is unknown is given up and the case's history says so.
        """
        check_positive_int("limit", limit)
        return self.service.outbox.deliver_pending(limit)


_EVERY_CASE = CaseQuery()


def _query(query: object) -> CaseQuery:
    if query is None:
        return _EVERY_CASE
    if not isinstance(query, CaseQuery):
        raise InvalidInput("query", query, "must be a closeloop.query.CaseQuery (or None for every case)")
    return query
