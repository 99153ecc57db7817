"""The unit of work under the facade: read a case, advance it, commit, queue notices.

:class:`CaseService` is what every part that changes cases works on: the facade
(:class:`~closeloop.CloseLoop`), intake, escalation and one-touch. It owns the
rules every change follows, so they are written once:

- a change is computed from the case as read, and is based on its ``version``
  (optimistic concurrency: a concurrent writer makes the commit fail with
  :class:`~closeloop.errors.ConcurrentUpdate`);
- the service remembers the cases it last read or committed
  (:data:`CASES_REMEMBERED`): a status change by id starts from the remembered
  case, whose version the commit checks, and reads the case only when that check
  or the workflow refuses (saving a store round trip per change; a stale copy
  can cost a read, never a wrong write);
- :meth:`CaseService.advance` raises the version by one per event and numbers
  the events ``version + 1 …``, so history positions and versions never drift;
- every change is checked (:func:`~closeloop.storage.base.check_change`) before
  any store sees it, so a third-party store cannot skip the numbering rules;
- notices are written with the change, as data: the person notices a caller
  adds, and the case events the loop's channels subscribe to (one delivery
  per channel, :mod:`closeloop.notices`); they are delivered right after the
  commit unless the loop leaves delivery to a worker.

Nothing here imports the facade; the facade builds one service and delegates.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from attrs import evolve, field, frozen

from closeloop.calendar import BusinessHours
from closeloop.errors import CaseNotFound, CloseLoopError, ConcurrentUpdate, InvalidInput, StoreError
from closeloop.links import Links
from closeloop.model import (
    Case,
    Event,
    Notice,
    NoticeFailed,
    Opened,
    ResponseAttached,
    ResponseRecord,
    Status,
    StatusChanged,
    evolve_trusted,
    trusted,
)
from closeloop.notices import NoticeWriter, response_facts
from closeloop.notify.content import CaseFacts, Note, NoticeContent, ResponseFacts
from closeloop.notify.directory import CustomerDirectory, NoCustomers
from closeloop.outbox import Outbox
from closeloop.reporting import resumed_due
from closeloop.storage.base import Change, ResponseUpdate, Store, check_change
from closeloop.validate import aware_datetime, check_id, check_optional_version
from closeloop.workflow import CommentPolicy, Workflow, WorkflowStatus

__all__ = ["SYSTEM_ACTOR", "CaseService", "EventDraft", "draft"]

#: The actor recorded on events closeloop writes by itself (escalations, failed notices).
SYSTEM_ACTOR = "closeloop"
#: How often recording a failed notice re-reads a case that changed meanwhile.
_RECORD_ATTEMPTS = 5
#: How many cases a service remembers (the ones it last read or committed), so that a
#: status change by id need not read the case first. About half a KiB each.
CASES_REMEMBERED = 4096


def _fields(value: Mapping[str, Any]) -> Mapping[str, Any]:
    return dict(value)


@frozen
class EventDraft:
    """An event not yet placed in a history: its class and fields, without ``case_id``,
    ``at`` and ``seq`` (which :meth:`CaseService.advance` fills in)."""

    kind: type[Event]
    fields: Mapping[str, Any] = field(converter=_fields)


def draft(kind: type[Event], **fields: Any) -> EventDraft:
    """An :class:`EventDraft` of ``kind``: ``draft(Commented, actor="alice", comment="…")``."""
    return EventDraft(kind, fields)


class CaseService:
    """Reads, advances and commits cases for one loop, and queues their notices.

    Args:
        store: where cases live.
        outbox: delivers notices after their change commits.
        clock: returns the current time as an aware datetime (checked on every call).
        new_id: makes case and notice ids.
        links: which links notices carry.
        workflow: the statuses and the rules for moving between them (its comment
            policy decides which changes need a comment).
        calendar: the business hours SLAs count in; ``None`` counts every hour.
        deliver_notices: deliver a change's notices right after it commits; with
            ``False`` they wait in the outbox for a worker.
        customers: the host's customer directory (the one-touch page shows names).
    """

    def __init__(
        self,
        *,
        store: Store,
        outbox: Outbox,
        clock: Callable[[], datetime],
        new_id: Callable[[], str],
        links: Links,
        workflow: Workflow,
        calendar: BusinessHours | None,
        deliver_notices: bool,
        customers: CustomerDirectory | None = None,
    ) -> None:
        self.store = store
        self.outbox = outbox
        self.links = links
        self.workflow = workflow
        self.comment_policy: CommentPolicy = workflow.comment_policy
        self.calendar = calendar
        self.deliver_notices = deliver_notices
        self.customers: CustomerDirectory = NoCustomers() if customers is None else customers
        self._clock = clock
        self._new_id = new_id
        self._remembered: dict[str, Case] = {}
        self._remembered_lock = threading.Lock()
        self.notices = NoticeWriter(
            outbox.channels, self.new_id, outbox.lease if deliver_notices else timedelta(0),
            links.case_page, self.case_facts, self.status_label,
        )
        outbox.on_abandoned = self.record_failed_notice

    # -- time and ids -------------------------------------------------------------

    def now(self) -> datetime:
        """The loop's clock, checked to be timezone-aware."""
        return aware_datetime("clock", self._clock())

    def new_id(self) -> str:
        """A new case or notice id from the loop's id factory, checked."""
        return check_id("id_factory()", self._new_id())

    # -- reading ------------------------------------------------------------------

    def read(self, case_id: str, expected_version: int | None = None) -> Case:
        """The case, checked against ``expected_version`` when one is given.

        Raises:
            CaseNotFound: no such case.
            ConcurrentUpdate: the case's version is not ``expected_version``.
        """
        check_id("case_id", case_id)
        check_optional_version("expected_version", expected_version)
        case = self.store.get(case_id)
        self._remember(case)
        if expected_version is not None and case.version != expected_version:
            raise ConcurrentUpdate(case.id, expected_version, case.version)
        return case

    def _remember(self, case: Case) -> None:
        """Keep ``case`` as the latest this service saw (the oldest one goes when full)."""
        with self._remembered_lock:
            remembered = self._remembered
            remembered.pop(case.id, None)
            if len(remembered) >= CASES_REMEMBERED:
                del remembered[next(iter(remembered))]
            remembered[case.id] = case

    def _forget(self, case_id: str) -> None:
        with self._remembered_lock:
            self._remembered.pop(case_id, None)

    def history(self, case_id: str) -> list[Event]:
        """The case's events, oldest first. Raises CaseNotFound."""
        return self.store.history(check_id("case_id", case_id))

    # -- changing -----------------------------------------------------------------

    def advance(self, case: Case, *drafts: EventDraft, now: datetime, **fields: Any) -> Change:
        """The change that adds ``drafts`` to ``case``'s history and sets ``fields``.

        The version rises by one per event; the events are numbered from the old
        version + 1 and stamped with ``now``; ``updated_at`` becomes ``now``. The
        change is based on ``case.version``.

        ``fields`` and the drafts' fields must be valid already (the facade checks
        every argument first): the case and its events are built without running
        every field's validator again, which keeps a status change cheap.
        """
        if not drafts:
            raise ValueError("a change adds at least one event")
        updated = evolve_trusted(
            case, updated_at=now, version=case.version + len(drafts), **fields
        )
        return Change(
            case=updated, expected_version=case.version,
            events=self._events(case.id, case.version, drafts, now), fields=frozenset(fields),
        )

    def opening(self, case: Case, *drafts: EventDraft) -> Change:
        """The change that creates ``case`` with ``drafts`` as its first events.

        ``case.version`` is set to the number of events; they are stamped with
        ``case.opened_at``.
        """
        if not drafts:
            raise ValueError("a new case has at least its opened event")
        created = evolve_trusted(case, version=len(drafts))
        return Change(
            case=created, expected_version=None,
            events=self._events(case.id, 0, drafts, case.opened_at),
        )

    @staticmethod
    def _events(
        case_id: str, version: int, drafts: Sequence[EventDraft], now: datetime
    ) -> tuple[Event, ...]:
        return tuple(
            trusted(item.kind, {**item.fields, "case_id": case_id, "at": now,
                                "seq": version + position})
            for position, item in enumerate(drafts, start=1)
        )

    def set_status_of(
        self,
        case_id: str,
        target: WorkflowStatus,
        *,
        by: str,
        comment: str | None,
        close_reason: str | None,
        via: str | None,
        expected_version: int | None = None,
    ) -> Case:
        """:meth:`set_status` on the case with id ``case_id``, read only when needed.

        The change starts from the case as this service last read or committed it,
        when it remembers one (of ``expected_version``, if given); the commit's
        version check proves that copy current. Should the check fail, or the
        workflow refuse the change from that copy, nothing was written: the case is
        read and the change made from it as usual, so every error is the one a
        fresh read gives. Arguments are assumed validated, except the two ids.

        Raises:
            CaseNotFound, ConcurrentUpdate: as :meth:`read`.
            and whatever :meth:`set_status` raises.
        """
        check_id("case_id", case_id)
        check_optional_version("expected_version", expected_version)
        known = self._remembered.get(case_id)
        if known is not None and expected_version in (None, known.version):
            try:
                change = self._status_stored(known, target, by=by, comment=comment,
                                             close_reason=close_reason, via=via)
            except StoreError:
                raise  # the store may have written it: never made twice
            except CloseLoopError:
                self._forget(case_id)  # stale, or refused: a fresh read decides
            else:
                self._delivered(change)
                return change.case
        case = self.read(case_id, expected_version)
        return self.set_status(case, target, by=by, comment=comment, close_reason=close_reason,
                               via=via)

    def set_status(
        self,
        case: Case,
        target: Status | str | WorkflowStatus,
        *,
        by: str,
        comment: str | None,
        close_reason: str | None = None,
        via: str | None = None,
        consume_link: str | None = None,
        comment_policy: CommentPolicy | None = None,
    ) -> Case:
        """Move ``case`` (as read) to ``target`` through the workflow and commit it.

        ``target`` is a configured status (or its name), or a category meaning its
        first status. ``consume_link`` marks a one-touch link used in the same
        transaction (TokenUsed if it already was); ``comment_policy`` overrides the
        workflow's. Other arguments are assumed validated.

        Raises:
            InvalidInput: an unknown status, or a missing, unknown or misplaced close reason.
            TransitionNotAllowed, CommentRequired: the workflow refuses the change.
            ConcurrentUpdate: the case changed since it was read.
        """
        change = self._status_stored(
            case, target, by=by, comment=comment, close_reason=close_reason, via=via,
            consume_link=consume_link, comment_policy=comment_policy,
        )
        self._delivered(change)
        return change.case

    def _status_stored(
        self,
        case: Case,
        target: Status | str | WorkflowStatus,
        *,
        by: str,
        comment: str | None,
        close_reason: str | None,
        via: str | None,
        consume_link: str | None = None,
        comment_policy: CommentPolicy | None = None,
    ) -> Change:
        """:meth:`set_status`'s change, committed but its notices not yet delivered."""
        now = self.now()
        event, fields = self.status_change(
            case, target, by=by, comment=comment, close_reason=close_reason, via=via, now=now,
            comment_policy=comment_policy,
        )
        change = self.advance(case, event, now=now, **fields)
        if consume_link is not None:
            change = evolve(change, consume_link=consume_link)
        return self._stored(change)

    def case_facts(self, case: Case) -> CaseFacts:
        """``case`` as notices show it: its workflow status's name (when its own) and label."""
        custom = None if case.custom_status == case.status.value else case.custom_status
        return CaseFacts.from_case(case, custom_status=custom,
                                   status_label=self.current_status(case).label)

    def status_label(self, name: str) -> str:
        """How to show the workflow status ``name`` (as it is, if the workflow lost it)."""
        try:
            return self.workflow.status(name).label
        except InvalidInput:
            return name.capitalize()

    def current_status(self, case: Case) -> WorkflowStatus:
        """The workflow status ``case`` is in.

        A case whose status is no longer in the workflow (the configuration
        changed) counts as being in its category's first status.
        """
        try:
            return self.workflow.status(case.custom_status)
        except InvalidInput:
            return self.workflow.default_status(case.status)

    def status_change(
        self,
        case: Case,
        target: Status | str | WorkflowStatus,
        *,
        by: str,
        comment: str | None,
        close_reason: str | None,
        via: str | None,
        now: datetime,
        comment_policy: CommentPolicy | None = None,
    ) -> tuple[EventDraft, dict[str, Any]]:
        """Check a status change and return its event and the case fields it sets.

        The one place where a status change's effects are decided: ``closed_at``
        and ``close_reason`` (kept on a move between two Closed statuses unless a
        new one is given), and the SLA pause: entering a status that pauses the
        SLA sets ``paused_at``; leaving it clears ``paused_at`` and moves ``due_at``
        on by the (business) time spent paused (:func:`~closeloop.reporting.resumed_due`).
        """
        workflow = self.workflow
        wanted = target if isinstance(target, WorkflowStatus) else workflow.resolve(target)
        source = self.current_status(case)
        workflow.check(case.id, source.name, wanted, comment=comment, close_reason=close_reason,
                       comment_policy=comment_policy)
        closing = wanted.category is Status.CLOSED
        fields: dict[str, Any] = {
            "status": wanted.category,
            "custom_status": wanted.name,
            # A move between two Closed statuses keeps when (and why) the case closed.
            "closed_at": (now if case.closed_at is None else case.closed_at) if closing else None,
            "close_reason": (case.close_reason if close_reason is None else close_reason)
            if closing else None,
        }
        if case.paused_at is not None and not wanted.pauses_sla:
            fields["paused_at"] = None
            if case.due_at is not None:
                fields["due_at"] = resumed_due(case.due_at, case.paused_at, now, self.calendar)
        elif case.paused_at is None and wanted.pauses_sla:
            fields["paused_at"] = now
        event = draft(
            StatusChanged, actor=by, comment=comment, from_status=case.status,
            to_status=wanted.category, from_custom_status=case.custom_status,
            to_custom_status=wanted.name, close_reason=close_reason if closing else None, via=via,
        )
        return event, fields

    # -- notices ------------------------------------------------------------------

    def person_notice(
        self,
        case: Case,
        kind: str,
        to: str,
        *,
        actor: str,
        now: datetime,
        via: str | None = None,
        note: str | None = None,
        response: ResponseFacts | None = None,
        why: str | None = None,
    ) -> tuple[Notice, ...]:
        """The deliveries of a ``kind`` notice about ``case`` (as changed) to user ``to``.

        ``note`` is the comment of the one who acted (``actor``); ``response`` the
        customer's. The links are those :meth:`Links.for_notice` gives ``to``.
        """
        content = NoticeContent(
            kind=kind, case=self.case_facts(case), actor=actor, created_at=now, via=via,
            note=Note(text=note, by=actor) if note else None, response=response,
            links=self.links.for_notice(case, to), why=why,
        )
        return self.notices.to_person(content, to, now)

    def latest_response(self, case: Case) -> ResponseFacts | None:
        """The case's latest survey response as notices show it (score and comment), if any."""
        if not case.response_ids:
            return None
        latest = case.response_ids[-1]
        record = self.store.responses([latest]).get(latest)
        comment = None
        for event in self.store.history(case.id):
            attached = isinstance(event, ResponseAttached) and event.response_id == latest
            opened = (isinstance(event, Opened) and event.via == "trigger"
                      and latest == case.response_ids[0])
            if attached or opened:
                comment = event.comment
        return response_facts(record, latest, comment)

    def record_failed_notice(self, notice: Notice, reason: str) -> None:
        """Add a ``notice_failed`` event to the notice's case: the history says it was given up.

        Retried while other changes win the race for the case's version.
        """
        for _ in range(_RECORD_ATTEMPTS):
            try:
                case = self.store.get(notice.case_id)
            except CaseNotFound:
                return  # the case was erased meanwhile: nothing left to tell
            change = self.advance(
                case,
                draft(NoticeFailed, actor=SYSTEM_ACTOR, comment=reason[:1000],
                      notice_kind=notice.kind, channel=notice.channel, recipient=notice.to),
                now=self.now(),
            )
            try:
                self.commit(change)
                return
            except ConcurrentUpdate:
                continue
        raise ConcurrentUpdate(notice.case_id, None, None)

    def _with_event_notices(self, change: Change) -> Change:
        if not self.notices.subscribed:
            return change
        events = self.notices.for_events(change, self.now())
        return evolve(change, notices=(*change.notices, *events)) if events else change

    def commit(self, change: Change) -> None:
        """Check and commit one change with its notices, then deliver them (when the loop does)."""
        self._delivered(self._stored(change))

    def _stored(self, change: Change) -> Change:
        """Check and commit ``change`` with its notices; the change as committed."""
        change = self._with_event_notices(change)
        check_change(change)
        self.store.commit(change)
        self._remember(change.case)
        return change

    def _delivered(self, change: Change) -> None:
        if self.deliver_notices and change.notices:
            self.outbox.deliver(change.notices)

    def commit_many(
        self,
        changes: Sequence[Change],
        ignored: Sequence[ResponseRecord] = (),
        updated: Sequence[ResponseUpdate] = (),
    ) -> None:
        """Check and commit several changes in one transaction, then deliver their notices.

        ``updated`` response records are swapped in the same transaction (see
        :class:`~closeloop.storage.base.ResponseUpdate`).
        """
        changes = [self._with_event_notices(change) for change in changes]
        for change in changes:
            check_change(change)
        if updated:
            self.store.commit_many(changes, ignored, updated)
        else:  # the two-argument call every store has always taken
            self.store.commit_many(changes, ignored)
        if self.deliver_notices:
            notices = [notice for change in changes for notice in change.notices]
            if notices:
                self.outbox.deliver(notices)
