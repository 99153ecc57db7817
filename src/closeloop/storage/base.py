"""The storage ports: what closeloop needs from a database, one small Protocol per concern.

A store keeps cases, their history events, the log of survey responses, the
outbox of notices, the one-touch link ledger and the round-robin rotations.
The service never writes a case without its events: everything one call changes
travels to the store as one :class:`Change` and is committed atomically.

The ports, each a :class:`typing.Protocol`:

- :class:`CaseLog`: cases and their history (commit, get, find, history, …);
- :class:`ResponseLog`: the survey responses seen, for de-duplication and recovery;
- :class:`Outbox`: notices waiting to be delivered;
- :class:`LinkLedger`: which one-touch links have been used;
- :class:`Rotations`: round-robin positions;
- :class:`ReportSource`: the facts a report is computed from, and the report;
- :class:`Retention`: which customers the retention rule erases.

:class:`Store` is all of them together. A third-party store subclasses
:class:`~closeloop.storage.BaseStore`, which builds most of these methods from a
few abstract ones.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from typing import Protocol, runtime_checkable

from attrs import field, frozen

from closeloop.model import Case, Event, Notice, ResponseRecord, Status
from closeloop.query import CaseCounts, CaseQuery, Position
from closeloop.report_reference import ReportFacts
from closeloop.reporting import Report, ReportQuery

__all__ = [
    "CaseLog",
    "Change",
    "LinkLedger",
    "Outbox",
    "ReportSource",
    "ResponseLog",
    "ResponseUpdate",
    "Retention",
    "Rotations",
    "Store",
    "check_change",
    "counts_as_active",
]


def _events(value: Iterable[Event]) -> tuple[Event, ...]:
    return tuple(value)


def _notices(value: Iterable[Notice]) -> tuple[Notice, ...]:
    return tuple(value)


def _responses(value: Iterable[ResponseRecord]) -> tuple[ResponseRecord, ...]:
    return tuple(value)


@frozen(kw_only=True)
class Change:
    """Everything one facade call writes, committed by :meth:`Store.commit` as one unit.

    Attributes:
        case: the case as it is after the change (its ``version`` already raised).
            Its ``customer_id``, ``opened_at`` and ``opened_by`` are those it was
            opened with: stores may assume they never change.
        expected_version: the version the change was computed from; ``None`` when
            ``case`` is new.
        events: the events the change adds, ``seq`` numbered consecutively from
            ``expected_version + 1`` (or 1) up to ``case.version``.
        notices: outbox entries to write with the change.
        responses: survey responses this change records as seen; a response id
            that is already recorded (or recorded earlier in the same batch) makes
            the whole change fail with ConcurrentUpdate, whose ``response_id``
            names it (someone else ingested it first).
        consume_link: a one-touch link id to mark used in the same transaction; if
            it is already used the whole change fails with
            :class:`~closeloop.errors.TokenUsed`.
        sole_active_case: for a new case: the **sole-open-case rule**. The whole
            change fails with ConcurrentUpdate if, when it commits, the customer
            already has another case that :func:`counts_as_active` (any status but
            Closed), counting cases created earlier in the same batch. This is
            de-duplication that holds across processes, so the check and the write
            must happen in one atomic step.
        fields: for an existing case, the names of the case fields this change may
            have set besides ``updated_at`` and ``version`` (which always change), or
            ``None`` when any may have. A hint: a store may write only those columns
            (fewer index updates) or ignore it and write the whole row.
        redacts: an erasure of personal data (:mod:`closeloop.lifecycle`), the only
            change to its case in its batch. ``case`` replaces the stored row whole,
            ``customer_id``, ``opened_at`` and ``opened_by`` included;
            ``events`` are the case's **whole** history (``seq`` 1 to
            ``case.version``) and replace the stored one; each of ``notices``
            replaces the stored notice with the same id (or is written, if there is
            none). The version check is as for any update; ``responses``,
            ``consume_link`` and ``sole_active_case`` are unset.
    """

    case: Case
    expected_version: int | None
    events: tuple[Event, ...] = field(converter=_events)
    notices: tuple[Notice, ...] = field(default=(), converter=_notices)
    responses: tuple[ResponseRecord, ...] = field(default=(), converter=_responses)
    sole_active_case: bool = False
    consume_link: str | None = None
    fields: frozenset[str] | None = None
    redacts: bool = False


def _same_response(instance: ResponseUpdate, attribute: object, new: ResponseRecord) -> None:
    if new.response_id != instance.old.response_id:
        raise ValueError(f"a ResponseUpdate keeps the response id ({instance.old.response_id!r}), "
                         f"got {new.response_id!r}")


@frozen
class ResponseUpdate:
    """A compare-and-swap of one recorded response: ``old`` as it was read becomes ``new``.

    It commits only if the stored record still has ``old``'s ``content``,
    ``outcome``, ``case_id`` and ``customer_id``; otherwise the whole
    :meth:`CaseLog.commit_many` fails with ConcurrentUpdate (``response_id`` set):
    another process updated the response first. ``new`` has the same
    ``response_id``; a store writes its ``outcome``, ``case_id``, ``score``,
    ``content`` and ``customer_id`` (an erasure replaces the customer id by a
    pseudonym); ``submitted_at`` and ``received_at`` stay as first recorded.
    """

    old: ResponseRecord
    new: ResponseRecord = field(validator=_same_response)

    def still_current(self, stored: ResponseRecord | None) -> bool:
        """Whether ``stored`` is still the record this update was computed from."""
        old = self.old
        return stored is not None and (
            stored.content, stored.outcome, stored.case_id, stored.customer_id
        ) == (old.content, old.outcome, old.case_id, old.customer_id)


def counts_as_active(case: Case) -> bool:
    """Whether ``case`` blocks a new case under the sole-open-case rule: it is not Closed.

    The rule, stated once: a :class:`Change` with ``sole_active_case=True`` commits
    only if no other case of the same customer counts as active at that moment.
    """
    return case.status is not Status.CLOSED


@runtime_checkable
class CaseLog(Protocol):
    """Protocol: cases and their ordered history, written one atomic change at a time.

    - :meth:`commit` and :meth:`commit_many` are atomic: every case row, event,
      notice, response record and consumed link of the batch is written, or none is.
      Within a batch each change is checked against the state the earlier changes
      of the batch leave.
    - Optimistic concurrency: a change whose ``expected_version`` is not the stored
      version raises :class:`~closeloop.errors.ConcurrentUpdate` and writes nothing;
      so does a new case (``expected_version=None``) whose id already exists, and a
      new case that breaks the sole-open-case rule (see :attr:`Change.sole_active_case`).
      A change to a case that does not exist raises
      :class:`~closeloop.errors.CaseNotFound`. A notice id that already exists
      raises :class:`~closeloop.errors.StoreError`; a consumed link that is already
      used raises :class:`~closeloop.errors.TokenUsed`; a response id already
      recorded raises ConcurrentUpdate with ``response_id`` set, and so does a
      :class:`ResponseUpdate` whose record changed since it was read.
    - A change that ``redacts`` (an erasure of personal data) replaces the case's
      row, history and notices instead of adding to them: see :attr:`Change.redacts`.
    - Stores do not validate event numbering: the service calls
      :func:`check_change` before a change reaches the store.
    - Reads return what was committed, never a half-written change. Times come
      back timezone-aware and equal to what was stored, to the microsecond.
    - Order: :meth:`find` lists oldest ``opened_at`` first, ties in creation order;
      :meth:`history` lists events by ``seq``.
    """

    def commit(self, change: Change) -> None:
        """Write ``change`` atomically (see the class docstring for the rules)."""
        ...

    def commit_many(
        self,
        changes: Sequence[Change],
        ignored: Sequence[ResponseRecord] = (),
        updated: Sequence[ResponseUpdate] = (),
    ) -> None:
        """Write several changes in one transaction: all of them, or (on any error) none.

        ``ignored`` are responses that opened nothing, recorded in the same
        transaction. Unlike :meth:`ResponseLog.record_responses`, an id among them
        that is already recorded (or given twice) fails the whole batch with
        ConcurrentUpdate naming it in ``response_id``: the caller learns that
        another process ingested it first, so an ingest summary never counts
        another process's response as its own. ``updated`` are
        compare-and-swaps of recorded responses (see :class:`ResponseUpdate`),
        applied after the changes in the same transaction.
        """
        ...

    def get(self, case_id: str) -> Case:
        """Return the case, or raise :class:`~closeloop.errors.CaseNotFound`."""
        ...

    def find(
        self,
        *,
        assignee: str | None = None,
        status: Status | None = None,
        customer_id: str | None = None,
        limit: int | None = None,
    ) -> list[Case]:
        """Cases matching every filter given, oldest ``opened_at`` first, ties in creation order."""
        ...

    def find_page(
        self, query: CaseQuery, *, now: datetime, after: Position | None, limit: int
    ) -> list[Case]:
        """Up to ``limit`` cases matching ``query``, in its order, after position ``after``.

        The answer equals :func:`closeloop.query.select_page` over every stored case
        (the contract checks it): ``now`` is the time ``overdue`` is judged at,
        ``after`` the position of the last case already listed (``None`` for the
        first page). One consistent read: a case appears at most once.
        """
        ...

    def count_cases(self, query: CaseQuery, *, now: datetime, by_assignee: bool) -> CaseCounts:
        """How many cases match ``query`` per status (and per assignee if ``by_assignee``).

        Equal to :func:`closeloop.query.count_matching` over every stored case; the
        query's sort is ignored.
        """
        ...

    def history(self, case_id: str) -> list[Event]:
        """The case's events in order (``seq`` 1, 2, …); CaseNotFound for an unknown id."""
        ...

    def latest_cases(self, customer_ids: Sequence[str]) -> dict[str, Case]:
        """Each customer's most recently created case (any status); customers with none are absent."""
        ...

    def escalation_candidates(
        self, *, now: datetime, untouched_before: datetime | None, quiet_since: datetime,
        limit: int,
    ) -> list[Case]:
        """Cases due for escalation, oldest opened first (ties in creation order).

        A case qualifies when it is not Closed, is overdue
        (:func:`closeloop.reporting.is_overdue`: ``due_at <= now`` and its SLA not
        paused, ``paused_at`` unset) or untouched
        (``untouched_before`` given and ``updated_at <= untouched_before``), and has
        no "escalated" event at or after ``quiet_since``. At most ``limit`` cases.
        """
        ...

    def close(self) -> None:
        """Release connections and files. The store is not used afterwards."""
        ...


@runtime_checkable
class ResponseLog(Protocol):
    """Protocol: every survey response closeloop has seen, matched by a trigger or not.

    A response id is recorded at most once: :meth:`record_responses` keeps the first
    record of an id, and a :class:`Change` recording an id already present fails as a
    whole. A record changes only through a :class:`ResponseUpdate` given to
    :meth:`CaseLog.commit_many` (a response that arrived again with new content);
    it keeps its place in the recording order. Records are kept in the order they
    were recorded (recovery uses it to order responses submitted at the same
    microsecond).
    """

    def record_responses(self, records: Sequence[ResponseRecord]) -> None:
        """Record responses that opened nothing; ids already recorded are left as they are."""
        ...

    def responses(self, response_ids: Sequence[str]) -> dict[str, ResponseRecord]:
        """The recorded responses among ``response_ids``, by id (unknown ids are absent)."""
        ...

    def find_responses(
        self,
        *,
        response_ids: Sequence[str] | None = None,
        customer_ids: Sequence[str] | None = None,
    ) -> list[ResponseRecord]:
        """Recorded responses, in the order they were recorded; ``None`` for a filter means any.

        ``customer_ids`` keeps only those customers' responses (what an export or an
        erasure of a customer reads).
        """
        ...


@runtime_checkable
class Outbox(Protocol):
    """Protocol: deliveries of notices, written with their change, delivered later, at least once.

    Each :class:`~closeloop.model.Notice` is one delivery (a notice through one
    channel). It is pending until :meth:`notices_sent` records it delivered or
    :meth:`notice_abandoned` gives it up; pending notices are listed and claimed
    oldest first (``created_at``, then ``id``). Claiming is the only step that must
    be atomic across processes: two callers never claim the same notice within its
    lease. Every field of a notice comes back as written (``content`` equal as data).
    """

    def claim_notices(
        self, *, now: datetime, lease: timedelta, limit: int = 100
    ) -> list[Notice]:
        """Claim up to ``limit`` pending notices that are due (``next_attempt_at <= now``).

        Claiming moves ``next_attempt_at`` to ``now + lease`` in the same atomic step,
        so two processes calling this at once never get the same notice. Oldest first.
        """
        ...

    def notices_sent(self, notice_ids: Sequence[str], *, at: datetime) -> None:
        """Record that these notices were delivered; they are never claimed again."""
        ...

    def notice_failed(self, notice_id: str, *, error: str, retry_at: datetime) -> None:
        """Record a failed delivery: one more attempt, the error, and when to retry."""
        ...

    def notice_abandoned(self, notice_id: str, *, error: str, at: datetime) -> None:
        """Record a delivery that can never succeed: one more attempt, the error, ``failed_at``.

        It is no longer pending (never claimed again); a delivered notice is left as it is.
        """
        ...

    def pending_notices(self) -> list[Notice]:
        """Every notice neither delivered nor abandoned, oldest first (for inspection and tests)."""
        ...

    def find_notices(
        self, *, case_ids: Sequence[str] | None = None, pending_only: bool = False
    ) -> list[Notice]:
        """Stored notices, delivered, pending or given up, oldest first (``created_at``, ``id``).

        ``case_ids`` keeps only the notices about those cases (what an export or an
        erasure of a customer reads); ``pending_only`` only those neither delivered
        nor given up.
        """
        ...


@runtime_checkable
class LinkLedger(Protocol):
    """Protocol: the one-touch links that have been used.

    A link is consumed only by a committed :class:`Change` naming it in
    ``consume_link``; consuming a used link fails the whole change with TokenUsed.
    """

    def link_used(self, link_id: str) -> bool:
        """Whether the one-touch link ``link_id`` has been consumed by a committed change."""
        ...


@runtime_checkable
class Rotations(Protocol):
    """Protocol: named round-robin counters that survive restarts and are shared by processes."""

    def next_in_rotation(self, key: str, size: int) -> int:
        """Atomically take the next position (0 .. size-1) of the named rotation.

        Round-robin routing keeps its place here, so it survives restarts and is
        fair across processes: each call returns the position after the previous
        call's, modulo ``size``.
        """
        ...


@runtime_checkable
class ReportSource(Protocol):
    """Protocol: what a report is computed from.

    :meth:`report_facts` returns the raw facts (cases, their events, responses);
    :func:`closeloop.report_reference.report_from_facts` turns them into the
    :class:`~closeloop.reporting.Report`, the one reference computation. A store
    may compute :meth:`report` its own way for speed; the contract suite then
    checks it against the reference, field by field, on generated histories.
    """

    def report_facts(self, query: ReportQuery) -> ReportFacts:
        """The facts for ``query``: at least every case it selects (see ReportFacts)."""
        ...

    def report(self, query: ReportQuery) -> Report:
        """The KPIs for ``query``, equal to the reference computed from :meth:`report_facts`."""
        ...


@runtime_checkable
class Retention(Protocol):
    """Protocol: which customers the retention rule erases (:meth:`CloseLoop.purge
    <closeloop.CloseLoop.purge>`).

    The rule is :func:`closeloop.retention.select_purge_candidates`; a store may
    compute it its own way (in SQL), and the contract suite checks it against the
    rule on the store's own data.
    """

    def customers_to_purge(self, *, closed_before: datetime) -> list[str]:
        """The customers due for erasure at ``closed_before``, in code point order.

        A customer is due when every case they have is Closed with ``closed_at``
        before ``closed_before``, every response of theirs was received before it,
        and something of theirs is not yet erased (see
        :func:`~closeloop.retention.select_purge_candidates`).
        """
        ...


@runtime_checkable
class Store(
    CaseLog, ResponseLog, Outbox, LinkLedger, Rotations, ReportSource, Retention, Protocol
):
    """Protocol: where cases, their history and the outbox live: every port together.

    Semantics every implementation keeps (the contract suite in
    :mod:`closeloop.testing` checks each of them) are stated on each port:
    :class:`CaseLog`, :class:`ResponseLog`, :class:`Outbox`, :class:`LinkLedger`,
    :class:`Rotations`, :class:`ReportSource`, :class:`Retention`. In addition:

    - Driver exceptions never escape: they are raised as
      :class:`~closeloop.errors.StoreError` (or a more precise closeloop error)
      with the driver's exception chained.
    - A store may be shared by several threads; SQL stores may also be shared by
      several processes.

    Subclass :class:`~closeloop.storage.BaseStore` to write one from a few
    plain persistence methods.
    """


def check_change(change: Change) -> None:
    """Raise ``ValueError`` if a change breaks the numbering rules (a programming error).

    The service calls this for every change before a store sees it; stores do not.
    The rules: events are numbered consecutively from ``expected_version + 1`` (or 1
    for a new case) up to ``case.version``; every event and notice belongs to the
    changed case; ``sole_active_case`` is set only on a new case. A change that
    ``redacts`` updates an existing case, carries its whole history (events
    numbered from 1), and records no response and consumes no link.

    Example::

        >>> from datetime import datetime, timezone
        >>> from closeloop.model import Case, Opened, Status
        >>> at = datetime(2026, 1, 5, tzinfo=timezone.utc)
        >>> case = Case(id="c-1", customer_id="cust", status=Status.OPEN, opened_at=at,
        ...             updated_at=at, opened_by="agent", version=1)
        >>> check_change(Change(case=case, expected_version=None,
        ...                     events=[Opened(case_id="c-1", actor="agent", at=at, seq=1)]))
    """
    if change.redacts and (change.expected_version is None or change.responses
                           or change.consume_link is not None or change.sole_active_case):
        raise ValueError("a redacting change updates an existing case and does nothing else")
    first = 1 if change.expected_version is None or change.redacts else change.expected_version + 1
    seqs = [event.seq for event in change.events]
    if seqs != list(range(first, change.case.version + 1)):
        raise ValueError(
            f"events of a change must be numbered {first}..{change.case.version}, got {seqs}"
        )
    for event in change.events:
        if event.case_id != change.case.id:
            raise ValueError(f"event for case {event.case_id!r} in a change to {change.case.id!r}")
    for notice in change.notices:
        if notice.case_id != change.case.id:
            raise ValueError(f"notice for case {notice.case_id!r} in a change to {change.case.id!r}")
    if change.sole_active_case and change.expected_version is not None:
        raise ValueError("sole_active_case applies only to a new case")

