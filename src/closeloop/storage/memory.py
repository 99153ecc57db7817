"""An in-process store: fast, thread-safe, gone when the process ends.

It keeps the same contract as the SQL stores (the contract suite checks it),
so tests written against it hold against them too. It is a
:class:`~closeloop.storage.BaseStore`: the eight persistence methods over
dictionaries, plus indexed overrides of the defaults that would scan. Case lists
(``find_page``, ``count_cases``) are the defaults: every case filtered and sorted in
Python, the history of each candidate case read for a ``text`` filter.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta

from attrs import evolve

from closeloop.errors import CaseNotFound
from closeloop.model import Case, Event, Notice, ResponseRecord, Status
from closeloop.report_reference import report_from_parts
from closeloop.reporting import Report, ReportQuery
from closeloop.storage.base import Change, ResponseUpdate
from closeloop.storage.base_store import (
    BaseStore,
    check_batch,
    select_escalation_candidates,
)

__all__ = ["MemoryStore"]


class MemoryStore(BaseStore):
    """Keeps everything in dictionaries behind one lock.

    Example::

        loop = CloseLoop(store=MemoryStore())
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._cases: dict[str, Case] = {}  # insertion order is creation order
        self._events: dict[str, list[Event]] = {}
        self._notices: dict[str, Notice] = {}
        self._responses: dict[str, ResponseRecord] = {}  # insertion order is recording order
        self._by_customer: dict[str, list[str]] = {}
        self._used_links: dict[str, str] = {}  # link id -> case id
        self._rotations: dict[str, int] = {}

    # -- the StoredState that check_batch reads (the caller holds the lock) ------------

    def stored_case(self, case_id: str) -> Case | None:
        """The committed case, or ``None`` (for :func:`check_batch`)."""
        return self._cases.get(case_id)

    def customer_cases(self, customer_id: str) -> Iterable[Case]:
        """The customer's committed cases (for :func:`check_batch`)."""
        return [self._cases[case_id] for case_id in self._by_customer.get(customer_id, ())]

    def notice_exists(self, notice_id: str) -> bool:
        """Whether the notice id is taken (for :func:`check_batch`)."""
        return notice_id in self._notices

    def stored_response(self, response_id: str) -> ResponseRecord | None:
        """The recorded response, or ``None`` (for :func:`check_batch`)."""
        return self._responses.get(response_id)

    def link_consumed(self, link_id: str) -> bool:
        """Whether the link is used (for :func:`check_batch`)."""
        return link_id in self._used_links

    # -- the abstract persistence methods ----------------------------------------------

    def commit_many(
        self,
        changes: Sequence[Change],
        ignored: Sequence[ResponseRecord] = (),
        updated: Sequence[ResponseUpdate] = (),
    ) -> None:
        with self._lock:
            check_batch(changes, self, ignored, updated)  # all checked before anything is written
            for change in changes:
                case = change.case
                if change.expected_version is None:
                    self._by_customer.setdefault(case.customer_id, []).append(case.id)
                elif change.redacts:
                    self._move_customer(case)
                if change.redacts:  # an erasure: the whole history, redacted
                    self._events[case.id] = list(change.events)
                else:
                    self._events.setdefault(case.id, []).extend(change.events)
                self._cases[case.id] = case
                self._notices.update((notice.id, notice) for notice in change.notices)
                self._responses.update((r.response_id, r) for r in change.responses)
                if change.consume_link is not None:
                    self._used_links[change.consume_link] = case.id
            self._responses.update((record.response_id, record) for record in ignored)
            for update in updated:  # replacing a key keeps its place: the recording order
                stored = self._responses[update.new.response_id]
                self._responses[stored.response_id] = evolve(
                    stored, outcome=update.new.outcome, case_id=update.new.case_id,
                    score=update.new.score, content=update.new.content,
                    customer_id=update.new.customer_id,
                )

    def _move_customer(self, case: Case) -> None:
        """File ``case`` under its (new) customer, in creation order (the caller holds the lock)."""
        old = self._cases[case.id].customer_id
        if old == case.customer_id:
            return
        self._by_customer[old].remove(case.id)
        if not self._by_customer[old]:
            del self._by_customer[old]
        position = {case_id: n for n, case_id in enumerate(self._cases)}
        ids = [*self._by_customer.get(case.customer_id, ()), case.id]
        self._by_customer[case.customer_id] = sorted(ids, key=position.__getitem__)

    def query_cases(
        self, *, case_ids: Sequence[str] | None = None, customer_ids: Sequence[str] | None = None
    ) -> list[Case]:
        with self._lock:
            if customer_ids is not None:
                wanted = set(customer_ids)
                found = [case for case in self._cases.values() if case.customer_id in wanted]
            else:
                found = list(self._cases.values())
        if case_ids is not None:
            ids = set(case_ids)
            found = [case for case in found if case.id in ids]
        return found

    def history(self, case_id: str) -> list[Event]:
        with self._lock:
            if case_id not in self._cases:
                raise CaseNotFound(case_id)
            return list(self._events[case_id])

    def find_responses(
        self,
        *,
        response_ids: Sequence[str] | None = None,
        customer_ids: Sequence[str] | None = None,
    ) -> list[ResponseRecord]:
        with self._lock:
            if response_ids is not None:
                found = [self._responses[i] for i in dict.fromkeys(response_ids)
                         if i in self._responses]
                # recording order, as the protocol asks
                order = {rid: n for n, rid in enumerate(self._responses)}
                found.sort(key=lambda r: order[r.response_id])
            else:
                found = list(self._responses.values())
        if customer_ids is not None:
            customers = set(customer_ids)
            found = [record for record in found if record.customer_id in customers]
        return found

    def find_notices(
        self, *, case_ids: Sequence[str] | None = None, pending_only: bool = False
    ) -> list[Notice]:
        cases = None if case_ids is None else set(case_ids)
        with self._lock:
            found = [n for n in self._notices.values()
                     if (cases is None or n.case_id in cases) and (n.pending or not pending_only)]
        return sorted(found, key=lambda n: (n.created_at, n.id))

    def swap_notices(self, swaps: Sequence[tuple[Notice, Notice]]) -> list[str]:
        swapped = []
        with self._lock:
            for old, new in swaps:
                if self._notices.get(old.id) == old:
                    self._notices[old.id] = new
                    swapped.append(old.id)
        return swapped

    def link_used(self, link_id: str) -> bool:
        with self._lock:
            return link_id in self._used_links

    def next_in_rotation(self, key: str, size: int) -> int:
        with self._lock:
            position = self._rotations.get(key, 0)
            self._rotations[key] = position + 1
            return position % size

    # -- fast paths (the contract checks them against the defaults) --------------------

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
        ]
        found.sort(key=lambda case: case.opened_at)  # stable: ties keep creation order
        return found if limit is None else found[:limit]

    def latest_cases(self, customer_ids: Sequence[str]) -> dict[str, Case]:
        with self._lock:
            return {
                customer: self._cases[self._by_customer[customer][-1]]
                for customer in customer_ids
                if customer in self._by_customer
            }

    def escalation_candidates(
        self, *, now: datetime, untouched_before: datetime | None, quiet_since: datetime,
        limit: int,
    ) -> list[Case]:
        with self._lock:  # one snapshot; the rule itself is the library's
            return select_escalation_candidates(
                list(self._cases.values()), self._events.__getitem__, now=now,
                untouched_before=untouched_before, quiet_since=quiet_since, limit=limit,
            )

    def responses(self, response_ids: Sequence[str]) -> dict[str, ResponseRecord]:
        with self._lock:
            return {rid: self._responses[rid] for rid in response_ids if rid in self._responses}

    def claim_notices(
        self, *, now: datetime, lease: timedelta, limit: int = 100
    ) -> list[Notice]:
        with self._lock:
            due = sorted(
                (n for n in self._notices.values() if n.pending and n.next_attempt_at <= now),
                key=lambda n: (n.created_at, n.id),
            )[:limit]
            claimed = [evolve(n, next_attempt_at=now + lease) for n in due]
            for notice in claimed:
                self._notices[notice.id] = notice
            return claimed

    def notices_sent(self, notice_ids: Sequence[str], *, at: datetime) -> None:
        with self._lock:
            for notice_id in notice_ids:
                notice = self._notices[notice_id]
                if notice.sent_at is None:
                    self._notices[notice_id] = evolve(notice, sent_at=at)

    def notice_failed(self, notice_id: str, *, error: str, retry_at: datetime) -> None:
        with self._lock:
            notice = self._notices[notice_id]
            self._notices[notice_id] = evolve(
                notice, attempts=notice.attempts + 1, last_error=error, next_attempt_at=retry_at
            )

    def notice_abandoned(self, notice_id: str, *, error: str, at: datetime) -> None:
        with self._lock:
            notice = self._notices[notice_id]
            if notice.sent_at is None:
                self._notices[notice_id] = evolve(
                    notice, attempts=notice.attempts + 1, last_error=error, failed_at=at
                )

    def report(self, query: ReportQuery) -> Report:
        with self._lock:  # one consistent snapshot; the reference reads, it copies nothing
            return report_from_parts(query, self._cases.values(), self._events,
                                     self._responses.values())

    def close(self) -> None:
        """Nothing to release; kept for the protocol."""
