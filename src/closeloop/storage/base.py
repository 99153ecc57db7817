"""The storage port: what closeloop needs from a database.

A store keeps cases, their history events and the outbox of notices. The
facade never writes a case without its events: everything one call changes
travels to the store as one :class:`Change` and is committed atomically.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from typing import Protocol, runtime_checkable

from attrs import field, frozen

from closeloop.model import Case, Event, Notice, ResponseRecord, Status
from closeloop.reporting import Report, ReportQuery

__all__ = ["Change", "Store"]


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
            that is already recorded makes the whole change fail with
            ConcurrentUpdate (someone else ingested it first).
        consume_link: a one-touch link id to mark used in the same transaction; if
            it is already used the whole change fails with
            :class:`~closeloop.errors.TokenUsed`.
        sole_active_case: for a new case: fail with ConcurrentUpdate if the
            customer already has a case that is not Closed (de-duplication that
            holds across processes).
    """

    case: Case
    expected_version: int | None
    events: tuple[Event, ...] = field(converter=_events)
    notices: tuple[Notice, ...] = field(default=(), converter=_notices)
    responses: tuple[ResponseRecord, ...] = field(default=(), converter=_responses)
    sole_active_case: bool = False
    consume_link: str | None = None


@runtime_checkable
class Store(Protocol):
    """Protocol: where cases, their history and the outbox live.

    Semantics every implementation keeps (the contract suite in
    :mod:`closeloop.testing` checks each of them):

    - :meth:`commit` is atomic: the case row, its events and its notices are all
      written, or none is.
    - Optimistic concurrency: a change whose ``expected_version`` is not the stored
      version raises :class:`~closeloop.errors.ConcurrentUpdate` and writes nothing;
      so does a new case (``expected_version=None``) whose id already exists.
      A change to a case that does not exist raises
      :class:`~closeloop.errors.CaseNotFound`.
    - Reads return what was committed, never a half-written change.
    - Times come back timezone-aware (UTC) and equal to what was stored, to the
      microsecond.
    - Driver exceptions never escape: they are raised as
      :class:`~closeloop.errors.StoreError` (or a more precise closeloop error)
      with the driver's exception chained.
    - A store may be shared by several threads; SQL stores may also be shared by
      several processes.
    """

    def commit(self, change: Change) -> None:
        """Write ``change`` atomically (see the class docstring for the rules)."""
        ...

    def commit_many(
        self, changes: Sequence[Change], ignored: Sequence[ResponseRecord] = ()
    ) -> None:
        """Write several changes in one transaction: all of them, or (on any error) none.

        ``ignored`` are responses that opened nothing, recorded in the same
        transaction as by :meth:`record_responses`.
        """
        ...

    def record_responses(self, records: Sequence[ResponseRecord]) -> None:
        """Record responses that opened nothing; ids already recorded are left as they are."""
        ...

    def responses(self, response_ids: Sequence[str]) -> dict[str, ResponseRecord]:
        """The recorded responses among ``response_ids``, by id (unknown ids are absent)."""
        ...

    def latest_cases(self, customer_ids: Sequence[str]) -> dict[str, Case]:
        """Each customer's most recently created case (any status); customers with none are absent."""
        ...

    def escalation_candidates(
        self, *, now: datetime, untouched_before: datetime | None, quiet_since: datetime,
        limit: int,
    ) -> list[Case]:
        """Cases due for escalation, oldest opened first (ties in creation order).

        A case qualifies when it is not Closed, is overdue (``due_at <= now``) or
        untouched (``untouched_before`` given and ``updated_at <= untouched_before``),
        and has no "escalated" event at or after ``quiet_since``.
        """
        ...

    def report(self, query: ReportQuery) -> Report:
        """Compute the KPIs inside the store, without loading every case into memory."""
        ...

    def link_used(self, link_id: str) -> bool:
        """Whether the one-touch link ``link_id`` has been consumed by a committed change."""
        ...

    def next_in_rotation(self, key: str, size: int) -> int:
        """Atomically take the next position (0 .. size-1) of the named rotation.

        Round-robin routing keeps its place here, so it survives restarts and is
        fair across processes: each call returns the position after the previous
        call's, modulo ``size``.
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

    def history(self, case_id: str) -> list[Event]:
        """The case's events in order (``seq`` 1, 2, …); CaseNotFound for an unknown id."""
        ...

    def claim_notices(
        self, *, now: datetime, lease: timedelta, limit: int = 100
    ) -> list[Notice]:
        """Claim up to ``limit`` unsent notices that are due (``next_attempt_at <= now``).

        Claiming moves ``next_attempt_at`` to ``now + lease`` in the same atomic step,
        so two processes calling this at once never get the same notice. Oldest first.
        """
        ...

    def notices_sent(self, notice_ids: Sequence[str], *, at: datetime) -> None:
        """Record that these notices were delivered (one write); they are never claimed again."""
        ...

    def notice_failed(self, notice_id: str, *, error: str, retry_at: datetime) -> None:
        """Record a failed delivery: one more attempt, the error, and when to retry."""
        ...

    def pending_notices(self) -> list[Notice]:
        """Every notice not yet delivered, oldest first (for inspection and tests)."""
        ...

    def close(self) -> None:
        """Release connections and files. The store is not used afterwards."""
        ...


def check_change(change: Change) -> None:
    """Raise ``ValueError`` if a change breaks the numbering rules (a programming error)."""
    first = 1 if change.expected_version is None else change.expected_version + 1
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

