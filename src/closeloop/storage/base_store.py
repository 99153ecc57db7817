"""``BaseStore``: write a store from eight plain persistence methods.

Subclass :class:`BaseStore` and implement its abstract methods; every other
method of the :class:`~closeloop.storage.Store` protocol has a correct default
built on them, using the library's business rules (overdue, first action,
escalation selection, the report). Override a default only to make it faster;
the contract suite (:class:`closeloop.testing.StoreContract`) holds the
overrides to the same behaviour, and a report override to the reference
computation on generated histories.

Example::

    class MyStore(BaseStore):
        def commit_many(self, changes, ignored=(), updated=()): ...
        def query_cases(self, *, case_ids=None, customer_ids=None): ...
        def history(self, case_id): ...
        def find_responses(self, *, response_ids=None, customer_ids=None): ...
        def find_notices(self, *, case_ids=None, pending_only=False): ...
        def swap_notices(self, swaps): ...
        def link_used(self, link_id): ...
        def next_in_rotation(self, key, size): ...

``docs/storage.md`` walks through a complete one; ``examples/custom_store.py``
keeps everything in a JSON Lines journal shared by processes.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime, timedelta
from typing import Protocol

from attrs import evolve

from closeloop.errors import CaseNotFound, ConcurrentUpdate, StoreError, TokenUsed
from closeloop.model import Case, Event, Notice, ResponseRecord, Status
from closeloop.query import CaseCounts, CaseQuery, Position, count_matching, select_page
from closeloop.report_reference import ReportFacts, report_from_facts
from closeloop.reporting import Report, ReportQuery, is_overdue
from closeloop.retention import select_purge_candidates
from closeloop.storage.base import Change, ResponseUpdate, counts_as_active

__all__ = [
    "BaseStore",
    "StoredState",
    "check_batch",
    "check_response_updates",
    "select_escalation_candidates",
]

#: How often a default outbox write retries when another writer changed the notice.
_SWAP_ATTEMPTS = 20


class BaseStore(abc.ABC):
    """An abstract store: implement eight methods, inherit the rest of the Store protocol.

    The abstract methods are plain persistence, with no business rule in them:

    - :meth:`commit_many`: write a batch of :class:`~closeloop.storage.Change`
      atomically, enforcing the checks of :class:`~closeloop.storage.base.CaseLog`
      (:func:`check_batch` does them for a store that can lock its whole state);
    - :meth:`query_cases`, :meth:`history`, :meth:`find_responses`,
      :meth:`find_notices`, :meth:`link_used`: reads;
    - :meth:`swap_notices`: the outbox's one write, a compare-and-swap;
    - :meth:`next_in_rotation`: an atomic counter.

    Defaults (override for speed): :meth:`commit`, :meth:`get`, :meth:`find`,
    :meth:`find_page`, :meth:`count_cases`, :meth:`latest_cases`,
    :meth:`escalation_candidates`, :meth:`record_responses`,
    :meth:`responses`, :meth:`pending_notices`, :meth:`claim_notices`, :meth:`notices_sent`,
    :meth:`notice_failed`, :meth:`notice_abandoned`, :meth:`report_facts`, :meth:`report`,
    :meth:`customers_to_purge`, :meth:`close`.
    The defaults read whole collections through the abstract methods: fine for
    thousands of cases, slow for millions.
    """

    # -- abstract: plain persistence -------------------------------------------------

    @abc.abstractmethod
    def commit_many(
        self,
        changes: Sequence[Change],
        ignored: Sequence[ResponseRecord] = (),
        updated: Sequence[ResponseUpdate] = (),
    ) -> None:
        """Write ``changes``, the ``ignored`` records and the ``updated`` ones atomically.

        Checks, each against the state the earlier changes of the batch leave
        (:func:`check_batch` implements all of them):

        - a new case (``expected_version`` ``None``) whose id exists, or that breaks
          the sole-open-case rule: :class:`~closeloop.errors.ConcurrentUpdate`;
        - an update of a missing case: :class:`~closeloop.errors.CaseNotFound`;
          of a case whose version is not ``expected_version``: ConcurrentUpdate;
        - a notice id that exists: :class:`~closeloop.errors.StoreError`;
        - a consumed link already used: :class:`~closeloop.errors.TokenUsed`;
        - a response id already recorded: ConcurrentUpdate with ``response_id``;
        - an update whose record changed since it was read
          (:meth:`ResponseUpdate.still_current` is false): ConcurrentUpdate with
          ``response_id`` (:func:`check_response_updates`).

        - an ``ignored`` record whose id is already recorded (or appears twice in the
          batch): ConcurrentUpdate with ``response_id`` (``case_id`` ``None``), so the
          caller learns that another process ingested it first.

        Writes: each case (replacing the stored one), its events appended, its
        notices, its response records, its consumed link; then each update's
        ``new`` record in place of the stored one (keeping its recording order and
        its times). A change that ``redacts`` (an erasure) instead replaces the
        case's row whole (its ``customer_id`` too), its **whole** history by the
        change's events, and each stored notice by the change's notice of the same
        id (see :attr:`Change.redacts <closeloop.storage.Change.redacts>`).
        """

    @abc.abstractmethod
    def query_cases(
        self, *, case_ids: Sequence[str] | None = None, customer_ids: Sequence[str] | None = None
    ) -> list[Case]:
        """Stored cases, **in creation order**; ``None`` for a filter means any.

        ``case_ids`` keeps only those ids, ``customer_ids`` only those customers'
        cases; unknown ids are simply absent.
        """

    @abc.abstractmethod
    def history(self, case_id: str) -> list[Event]:
        """The case's events by ``seq``; :class:`~closeloop.errors.CaseNotFound` if unknown."""

    @abc.abstractmethod
    def find_responses(
        self,
        *,
        response_ids: Sequence[str] | None = None,
        customer_ids: Sequence[str] | None = None,
    ) -> list[ResponseRecord]:
        """Recorded responses, **in the order they were recorded**; ``None`` means any."""

    @abc.abstractmethod
    def find_notices(
        self, *, case_ids: Sequence[str] | None = None, pending_only: bool = False
    ) -> list[Notice]:
        """Stored notices by ``created_at``, then ``id``; ``case_ids`` ``None`` means any case.

        ``pending_only`` keeps only the pending ones (``sent_at`` and ``failed_at``
        ``None``).
        """

    @abc.abstractmethod
    def swap_notices(self, swaps: Sequence[tuple[Notice, Notice]]) -> list[str]:
        """Atomically replace each stored notice equal to ``old`` by ``new``, for each pair.

        A pair whose stored notice is no longer equal to ``old`` (someone else
        changed it) is skipped. Returns the ids that were replaced. The outbox
        defaults (claim, sent, failed) are built on this one write.
        """

    @abc.abstractmethod
    def link_used(self, link_id: str) -> bool:
        """Whether a committed change consumed the one-touch link ``link_id``."""

    @abc.abstractmethod
    def next_in_rotation(self, key: str, size: int) -> int:
        """Atomically add one to the counter ``key`` and return its old value modulo ``size``.

        Counters start at 0, survive restarts and are shared by every process.
        """

    # -- defaults: cases ---------------------------------------------------------------

    def commit(self, change: Change) -> None:
        """Write one change atomically: :meth:`commit_many` of one."""
        self.commit_many([change])

    def get(self, case_id: str) -> Case:
        """The case, or :class:`~closeloop.errors.CaseNotFound`."""
        found = self.query_cases(case_ids=[case_id])
        if not found:
            raise CaseNotFound(case_id)
        return found[0]

    def find(
        self,
        *,
        assignee: str | None = None,
        status: Status | None = None,
        customer_id: str | None = None,
        limit: int | None = None,
    ) -> list[Case]:
        """Cases matching every filter, oldest ``opened_at`` first, ties in creation order."""
        cases = self.query_cases(customer_ids=None if customer_id is None else [customer_id])
        found = [
            case for case in cases
            if (assignee is None or case.assignee == assignee)
            and (status is None or case.status is status)
            and (customer_id is None or case.customer_id == customer_id)
        ]
        found.sort(key=lambda case: case.opened_at)  # stable: ties keep creation order
        return found if limit is None else found[:limit]

    def find_page(
        self, query: CaseQuery, *, now: datetime, after: Position | None, limit: int
    ) -> list[Case]:
        """A page of ``query`` by :func:`~closeloop.query.select_page` over every case.

        Reads every case (or the customer's, with ``customer_id``), and the history of
        each candidate case when the query has ``text``.
        """
        return select_page(self._query_candidates(query), query, now=now, after=after,
                           limit=limit, comments=self._comments)

    def count_cases(self, query: CaseQuery, *, now: datetime, by_assignee: bool) -> CaseCounts:
        """The counts of ``query`` by :func:`~closeloop.query.count_matching` over every case."""
        return count_matching(self._query_candidates(query), query, now=now,
                              by_assignee=by_assignee, comments=self._comments)

    def _query_candidates(self, query: CaseQuery) -> list[Case]:
        customers = None if query.customer_id is None else [query.customer_id]
        return self.query_cases(customer_ids=customers)

    def _comments(self, case_id: str) -> list[str | None]:
        return [event.comment for event in self.history(case_id)]

    def latest_cases(self, customer_ids: Sequence[str]) -> dict[str, Case]:
        """Each customer's most recently created case; customers with none are absent."""
        wanted = list(dict.fromkeys(customer_ids))
        if not wanted:
            return {}
        latest: dict[str, Case] = {}
        for case in self.query_cases(customer_ids=wanted):  # creation order: last wins
            latest[case.customer_id] = case
        return latest

    def escalation_candidates(
        self, *, now: datetime, untouched_before: datetime | None, quiet_since: datetime,
        limit: int,
    ) -> list[Case]:
        """Cases due for escalation (see :func:`select_escalation_candidates`)."""
        return select_escalation_candidates(
            self.query_cases(), self.history, now=now, untouched_before=untouched_before,
            quiet_since=quiet_since, limit=limit,
        )

    # -- defaults: responses -----------------------------------------------------------

    def record_responses(self, records: Sequence[ResponseRecord]) -> None:
        """Record responses that opened nothing; ids already recorded are left alone."""
        for _ in range(_SWAP_ATTEMPTS):
            known = self.responses([record.response_id for record in records])
            fresh = list({r.response_id: r for r in reversed(records)
                          if r.response_id not in known}.values())[::-1]
            if not fresh:
                return
            try:
                self.commit_many([], fresh)
                return
            except ConcurrentUpdate:
                continue  # another writer recorded one of them meanwhile: look again
        raise StoreError("responses kept being recorded concurrently while recording them")

    def responses(self, response_ids: Sequence[str]) -> dict[str, ResponseRecord]:
        """The recorded responses among ``response_ids``, by id."""
        ids = list(response_ids)
        if not ids:
            return {}
        return {record.response_id: record for record in self.find_responses(response_ids=ids)}

    # -- defaults: outbox ----------------------------------------------------------------

    def pending_notices(self) -> list[Notice]:
        """Every pending notice, oldest first: :meth:`find_notices` with ``pending_only``."""
        return self.find_notices(pending_only=True)

    def claim_notices(
        self, *, now: datetime, lease: timedelta, limit: int = 100
    ) -> list[Notice]:
        """Claim up to ``limit`` due notices, oldest first, by swapping in ``now + lease``."""
        until = now + lease
        for _ in range(_SWAP_ATTEMPTS):
            due = [n for n in self.pending_notices() if n.next_attempt_at <= now][:limit]
            if not due:
                return []
            claimed = {n.id: evolve(n, next_attempt_at=until) for n in due}
            swapped = set(self.swap_notices([(n, claimed[n.id]) for n in due]))
            if swapped:  # another claimer may have taken the rest: that is fine
                return [claimed[n.id] for n in due if n.id in swapped]
        return []  # every due notice was taken by others each time we looked

    def notices_sent(self, notice_ids: Sequence[str], *, at: datetime) -> None:
        """Mark the notices delivered at ``at``."""
        self._update_notices(set(notice_ids), lambda n: evolve(n, sent_at=at))

    def notice_failed(self, notice_id: str, *, error: str, retry_at: datetime) -> None:
        """One more attempt, the error, and when to retry."""
        self._update_notices(
            {notice_id},
            lambda n: evolve(n, attempts=n.attempts + 1, last_error=error,
                             next_attempt_at=retry_at),
        )

    def notice_abandoned(self, notice_id: str, *, error: str, at: datetime) -> None:
        """One more attempt, the error, and the end: ``failed_at`` is ``at``."""
        self._update_notices(
            {notice_id},
            lambda n: evolve(n, attempts=n.attempts + 1, last_error=error, failed_at=at),
        )

    def _update_notices(self, ids: set[str], update: Callable[[Notice], Notice]) -> None:
        for _ in range(_SWAP_ATTEMPTS):
            current = [n for n in self.pending_notices() if n.id in ids]
            if not current:
                return
            ids -= set(self.swap_notices([(n, update(n)) for n in current]))
            if not ids:
                return
        raise StoreError(f"notices {sorted(ids)} kept changing while being updated")

    # -- defaults: reports and lifecycle ----------------------------------------------------

    def report_facts(self, query: ReportQuery) -> ReportFacts:
        """Every case the query selects, their events, and their customers' responses."""
        cases = [case for case in self.query_cases() if query.selects(case)]
        closed_customers = list(dict.fromkeys(
            case.customer_id for case in cases if case.status is Status.CLOSED
        ))
        return ReportFacts(
            cases=cases,
            events={case.id: self.history(case.id) for case in cases},
            responses=self.find_responses(customer_ids=closed_customers) if closed_customers else (),
        )

    def report(self, query: ReportQuery) -> Report:
        """The reference report over :meth:`report_facts`."""
        return report_from_facts(query, self.report_facts(query))

    def customers_to_purge(self, *, closed_before: datetime) -> list[str]:
        """The retention rule (:func:`~closeloop.retention.select_purge_candidates`) over every
        case and response; histories are read only for customers already pseudonymised."""
        return select_purge_candidates(self.query_cases(), self.find_responses(), self.history,
                                       closed_before=closed_before)

    def close(self) -> None:  # noqa: B027 - deliberately optional: most stores hold nothing
        """Release resources; the default holds none."""


def select_escalation_candidates(
    cases: Iterable[Case],
    history: Callable[[str], Sequence[Event]],
    *,
    now: datetime,
    untouched_before: datetime | None,
    quiet_since: datetime,
    limit: int,
) -> list[Case]:
    """The escalation rule, stated once: which of ``cases`` are due for escalation.

    A case qualifies when it is not Closed, and is overdue
    (:func:`~closeloop.reporting.is_overdue`) or untouched (``untouched_before``
    given and ``updated_at <= untouched_before``), and has no "escalated" event at
    or after ``quiet_since``. Oldest ``opened_at`` first, ties in the order of
    ``cases`` (give them in creation order); at most ``limit``.
    """
    found = [
        case for case in cases
        if case.status is not Status.CLOSED
        and (
            is_overdue(case, now)
            or (untouched_before is not None and case.updated_at <= untouched_before)
        )
        and not any(
            event.kind == "escalated" and event.at >= quiet_since for event in history(case.id)
        )
    ]
    found.sort(key=lambda case: case.opened_at)  # stable: ties keep creation order
    return found[:limit]


class StoredState(Protocol):
    """Protocol: what :func:`check_batch` reads of a store's committed state.

    Every method answers for the state before the batch; :func:`check_batch`
    itself accounts for the earlier changes of the batch.
    """

    def stored_case(self, case_id: str) -> Case | None:
        """The committed case with this id, or ``None``."""
        ...

    def customer_cases(self, customer_id: str) -> Iterable[Case]:
        """The customer's committed cases."""
        ...

    def notice_exists(self, notice_id: str) -> bool:
        """Whether a notice with this id is stored (sent or not)."""
        ...

    def stored_response(self, response_id: str) -> ResponseRecord | None:
        """The recorded response with this id, or ``None``."""
        ...

    def link_consumed(self, link_id: str) -> bool:
        """Whether a committed change consumed this link."""
        ...


def check_batch(
    changes: Sequence[Change],
    state: StoredState,
    ignored: Sequence[ResponseRecord] = (),
    updated: Sequence[ResponseUpdate] = (),
) -> None:
    """Raise what :meth:`BaseStore.commit_many` must raise for the batch, or nothing.

    For a store that holds a lock over its whole state while it commits: call this
    under the lock with the same arguments ``commit_many`` got, then write
    everything. It checks each change against ``state`` as the earlier changes of
    the batch leave it, so a batch may build on a case it creates; then the
    ``ignored`` records (none may be recorded yet) and the ``updated`` ones (each
    must still be as it was read). The notices of a change that ``redacts`` replace
    stored ones, so their ids may exist. It writes nothing.
    """
    pending: dict[str, Case] = {}  # cases as the batch leaves them so far
    taken: set[str] = set()  # notice, response and link ids the batch uses
    for change in changes:
        case = change.case
        current = pending.get(case.id) or state.stored_case(case.id)
        if change.expected_version is None:
            if current is not None:
                raise ConcurrentUpdate(case.id, None, current.version)
            if change.sole_active_case:
                _check_sole_active(case, state, pending)
        elif current is None:
            raise CaseNotFound(case.id)
        elif current.version != change.expected_version:
            raise ConcurrentUpdate(case.id, change.expected_version, current.version)
        for notice in change.notices:
            key = f"notice:{notice.id}"
            if key in taken or (not change.redacts and state.notice_exists(notice.id)):
                raise StoreError(f"notice id {notice.id!r} already exists")
            taken.add(key)
        for record in change.responses:
            key = f"response:{record.response_id}"
            if key in taken or state.stored_response(record.response_id) is not None:
                raise ConcurrentUpdate(case.id, change.expected_version, None,
                                       response_id=record.response_id)
            taken.add(key)
        if change.consume_link is not None:
            key = f"link:{change.consume_link}"
            if key in taken or state.link_consumed(change.consume_link):
                raise TokenUsed()
            taken.add(key)
        pending[case.id] = case
    for record in ignored:
        key = f"response:{record.response_id}"
        if key in taken or state.stored_response(record.response_id) is not None:
            raise ConcurrentUpdate(None, None, None, response_id=record.response_id)
        taken.add(key)
    check_response_updates(updated, state.stored_response)


def check_response_updates(
    updated: Sequence[ResponseUpdate], stored: Callable[[str], ResponseRecord | None]
) -> None:
    """Raise ConcurrentUpdate (``response_id`` set) for the first update that is out of date.

    ``stored(response_id)`` is the committed record, read under the same lock the
    write will hold. Updates are checked in order, each against what the earlier
    ones of the batch leave.
    """
    pending: dict[str, ResponseRecord] = {}
    for update in updated:
        response_id = update.old.response_id
        current = pending[response_id] if response_id in pending else stored(response_id)
        if not update.still_current(current):
            raise ConcurrentUpdate(update.old.case_id, None, None, response_id=response_id)
        pending[response_id] = update.new


def _check_sole_active(case: Case, state: StoredState, pending: dict[str, Case]) -> None:
    others = {other.id: other for other in state.customer_cases(case.customer_id)}
    others.update((i, c) for i, c in pending.items() if c.customer_id == case.customer_id)
    for other in others.values():
        if other.id != case.id and counts_as_active(other):
            raise ConcurrentUpdate(other.id, None, other.version)
