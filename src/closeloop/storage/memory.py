"""An in-process store: fast, thread-safe, gone when the process ends.

It keeps the same contract as the SQL stores (the contract suite checks it),
so tests written against it hold against them too.
"""

from __future__ import annotations

import threading
from datetime import datetime, timedelta

from attrs import evolve

from closeloop.errors import CaseNotFound, ConcurrentUpdate, StoreError
from closeloop.model import Case, Event, Notice, Status
from closeloop.storage.base import Change, check_change

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

    def commit(self, change: Change) -> None:
        check_change(change)
        case = change.case
        with self._lock:
            current = self._cases.get(case.id)
            if change.expected_version is None:
                if current is not None:
                    raise ConcurrentUpdate(case.id, None, current.version)
            elif current is None:
                raise CaseNotFound(case.id)
            elif current.version != change.expected_version:
                raise ConcurrentUpdate(case.id, change.expected_version, current.version)
            for notice in change.notices:
                if notice.id in self._notices:
                    raise StoreError(f"notice id {notice.id!r} already exists")
            self._cases[case.id] = case
            self._events.setdefault(case.id, []).extend(change.events)
            for notice in change.notices:
                self._notices[notice.id] = notice

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

    def notice_sent(self, notice_id: str, *, at: datetime) -> None:
        with self._lock:
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
