"""An in-process store: fast, thread-safe, gone when the process ends.

It keeps the same contract as the SQL stores (the contract suite checks it),
so tests written against it hold against them too.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from datetime import datetime, timedelta

from attrs import evolve

from closeloop.errors import CaseNotFound, ConcurrentUpdate, StoreError, TokenUsed
from closeloop.model import Case, Event, Notice, ResponseRecord, Status
from closeloop.reporting import Report, ReportQuery
from closeloop.storage.base import Change, check_change
from closeloop.storage.memory_report import report_from_memory

__all__ = ["MemoryStore"]


class MemoryStore:
    """Keeps everything in dictionaries behind one lock.

    Example::

        loop = CloseLoop(store=MemoryStore())
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._cases: dict[str, Case] = {}
        self._events: dict[str, list[Event]] = {}
        self._notices: dict[str, Notice] = {}
        self._responses: dict[str, ResponseRecord] = {}
        self._by_customer: dict[str, list[str]] = {}
        self._used_links: dict[str, str] = {}  # link id -> case id
        self._rotations: dict[str, int] = {}

    def commit(self, change: Change) -> None:
        self.commit_many([change])

    def commit_many(
        self, changes: Sequence[Change], ignored: Sequence[ResponseRecord] = ()
    ) -> None:
        for change in changes:
            check_change(change)
        with self._lock:
            # Check every change against the state as the earlier changes of the
            # batch leave it (kept in `pending`), then apply all: all or nothing.
            pending: dict[str, Case] = {}
            new_ids: set[str] = set()
            for change in changes:
                self._check(change, pending, new_ids)
                pending[change.case.id] = change.case
                if change.expected_version is None:
                    new_ids.add(change.case.id)
            for change in changes:
                case = change.case
                if change.expected_version is None:
                    self._by_customer.setdefault(case.customer_id, []).append(case.id)
                self._cases[case.id] = case
                self._events.setdefault(case.id, []).extend(change.events)
                self._notices.update((notice.id, notice) for notice in change.notices)
                self._responses.update((r.response_id, r) for r in change.responses)
                if change.consume_link is not None:
                    self._used_links[change.consume_link] = case.id
            for record in ignored:
                self._responses.setdefault(record.response_id, record)

    def _check(self, change: Change, pending: dict[str, Case], new_ids: set[str]) -> None:
        case = change.case
        current = pending.get(case.id) or self._cases.get(case.id)
        if change.expected_version is None:
            if current is not None:
                raise ConcurrentUpdate(case.id, None, current.version)
            if change.sole_active_case:
                for other in self._customer_cases(case.customer_id, pending):
                    if other.status is not Status.CLOSED:
                        raise ConcurrentUpdate(other.id, None, other.version)
        elif current is None:
            raise CaseNotFound(case.id)
        elif current.version != change.expected_version:
            raise ConcurrentUpdate(case.id, change.expected_version, current.version)
        for notice in change.notices:
            if notice.id in self._notices or notice.id in new_ids:
                raise StoreError(f"notice id {notice.id!r} already exists")
            new_ids.add(notice.id)
        if change.consume_link is not None:
            if change.consume_link in self._used_links or change.consume_link in new_ids:
                raise TokenUsed()
            new_ids.add(change.consume_link)
        for record in change.responses:
            if record.response_id in self._responses or record.response_id in new_ids:
                raise ConcurrentUpdate(case.id, change.expected_version, None)
            new_ids.add(record.response_id)

    def _customer_cases(self, customer_id: str, pending: dict[str, Case]) -> list[Case]:
        stored = [
            pending.get(case_id) or self._cases[case_id]
            for case_id in self._by_customer.get(customer_id, ())
        ]
        if len(pending) < 2:  # the usual single change: nothing else is pending
            return stored
        return stored + [
            case for case in pending.values()
            if case.customer_id == customer_id and case.id not in self._cases
        ]

    def record_responses(self, records: Sequence[ResponseRecord]) -> None:
        with self._lock:
            for record in records:
                self._responses.setdefault(record.response_id, record)

    def responses(self, response_ids: Sequence[str]) -> dict[str, ResponseRecord]:
        with self._lock:
            return {rid: self._responses[rid] for rid in response_ids if rid in self._responses}

    def escalation_candidates(
        self, *, now: datetime, untouched_before: datetime | None, quiet_since: datetime,
        limit: int,
    ) -> list[Case]:
        with self._lock:
            found = [
                case for case in self._cases.values()
                if case.status is not Status.CLOSED
                and (
                    (case.due_at is not None and case.due_at <= now)
                    or (untouched_before is not None and case.updated_at <= untouched_before)
                )
                and not any(
                    event.kind == "escalated" and event.at >= quiet_since
                    for event in self._events[case.id]
                )
            ]
        found.sort(key=lambda case: case.opened_at)  # stable: ties keep creation order
        return found[:limit]

    def latest_cases(self, customer_ids: Sequence[str]) -> dict[str, Case]:
        with self._lock:
            return {
                customer: self._cases[self._by_customer[customer][-1]]
                for customer in customer_ids
                if customer in self._by_customer
            }

    def report(self, query: ReportQuery) -> Report:
        with self._lock:  # one consistent snapshot; the aggregation reads, it copies nothing
            return report_from_memory(query, self._cases.values(), self._events,
                                      self._responses.values())

    def link_used(self, link_id: str) -> bool:
        with self._lock:
            return link_id in self._used_links

    def next_in_rotation(self, key: str, size: int) -> int:
        with self._lock:
            position = self._rotations.get(key, 0)
            self._rotations[key] = position + 1
            return position % size

    def get(self, case_id: str) -> Case:
        try:
            return self._cases[case_id]
        except KeyError:
            raise CaseNotFound(case_id) from None

    def find(
        self,
        *,
        assignee: str | None = None,
        status: Status | None = None,
        customer_id: str | None = None,
        limit: int | None = None,
    ) -> list[Case]:
        with self._lock:
            if customer_id is not None:
                cases = [self._cases[i] for i in self._by_customer.get(customer_id, ())]
            else:
                cases = list(self._cases.values())
        found = [
            case
            for case in cases
            if (assignee is None or case.assignee == assignee)
            and (status is None or case.status is status)
            and (customer_id is None or case.customer_id == customer_id)
        ]
        found.sort(key=lambda case: case.opened_at)  # stable: ties keep creation order
        return found if limit is None else found[:limit]

    def history(self, case_id: str) -> list[Event]:
        with self._lock:
            if case_id not in self._cases:
                raise CaseNotFound(case_id)
            return list(self._events[case_id])

    def claim_notices(
        self, *, now: datetime, lease: timedelta, limit: int = 100
    ) -> list[Notice]:
        with self._lock:
            due = sorted(
                (n for n in self._notices.values() if n.sent_at is None and n.next_attempt_at <= now),
                key=lambda n: (n.created_at, n.id),
            )[:limit]
            claimed = [evolve(n, next_attempt_at=now + lease) for n in due]
            for notice in claimed:
                self._notices[notice.id] = notice
            return claimed

    def notices_sent(self, notice_ids: Sequence[str], *, at: datetime) -> None:
        with self._lock:
            for notice_id in notice_ids:
                self._notices[notice_id] = evolve(self._notices[notice_id], sent_at=at)

    def notice_failed(self, notice_id: str, *, error: str, retry_at: datetime) -> None:
        with self._lock:
            notice = self._notices[notice_id]
            self._notices[notice_id] = evolve(
                notice, attempts=notice.attempts + 1, last_error=error, next_attempt_at=retry_at
            )

    def pending_notices(self) -> list[Notice]:
        with self._lock:
            pending = [n for n in self._notices.values() if n.sent_at is None]
        return sorted(pending, key=lambda n: (n.created_at, n.id))

    def close(self) -> None:
        """Nothing to release; kept for the protocol."""
