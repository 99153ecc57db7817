"""Reports for :class:`~closeloop.storage.MemoryStore`: grouped aggregation over its dicts.

One pass over the cases counts and groups them, keeping only the integers a
KPI needs (durations in microseconds, and the Closed cases recovery looks at);
two passes over the responses settle recovery. Nothing is copied wholesale.
The SQLite store computes the same figures in SQL (``sqlite_report.py``); both
finish through the helpers in :mod:`closeloop.reporting`, so they agree to the
microsecond.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Collection, Iterable, Mapping, Sequence
from datetime import datetime, timedelta

from closeloop.model import Case, Event, ResponseRecord, Status
from closeloop.reporting import (
    AGE_BUCKETS,
    DETRACTOR_SCORES,
    FIRST_ACTION_KINDS,
    RECOVERED_SCORE,
    AssigneeStats,
    Recovery,
    Report,
    ReportQuery,
    age_bucket,
    durations,
    full_counts,
    median,
    share,
)

__all__ = ["report_from_memory"]

_MICROSECOND = timedelta(microseconds=1)


def _micros(later: datetime, earlier: datetime) -> int:
    return (later - earlier) // _MICROSECOND


def report_from_memory(
    query: ReportQuery,
    cases: Iterable[Case],
    events: Mapping[str, Sequence[Event]],
    responses: Collection[ResponseRecord],
) -> Report:
    """Compute the report from a memory store's contents (the caller holds its lock).

    Args:
        query: what to report on.
        cases: every case in the store.
        events: each case's events, in ``seq`` order, by case id.
        responses: every recorded response.
    """
    status_counts: Counter[Status] = Counter()
    unassigned = overdue = closed_with_due = closed_in_time = 0
    by_assignee: defaultdict[str, Counter[Status]] = defaultdict(Counter)
    close_by_assignee: defaultdict[str, list[int]] = defaultdict(list)
    by_reason: defaultdict[str, Counter[Status]] = defaultdict(Counter)
    aging: Counter[str] = Counter()
    close_us: list[int] = []
    first_action_us: list[int] = []
    closed: dict[str, Case] = {}
    for case in cases:
        if not query.selects(case):
            continue
        status_counts[case.status] += 1
        if case.assignee is None:
            unassigned += 1
        else:
            by_assignee[case.assignee][case.status] += 1
        for reason in dict.fromkeys(case.reasons):  # a repeated reason counts once
            by_reason[reason][case.status] += 1
        first = _first_action(case, events.get(case.id, ()))
        if first is not None:
            first_action_us.append(_micros(first, case.opened_at))
        if case.closed_at is not None:
            closed[case.id] = case
            took = _micros(case.closed_at, case.opened_at)
            close_us.append(took)
            if case.assignee is not None:
                close_by_assignee[case.assignee].append(took)
            if case.due_at is not None:
                closed_with_due += 1
                closed_in_time += case.closed_at <= case.due_at
        else:
            overdue += case.due_at is not None and case.due_at < query.now
            aging[age_bucket(query.now - case.opened_at)] += 1
    return Report(
        query=query,
        status_counts=full_counts(status_counts),
        unassigned=unassigned,
        by_assignee={
            name: AssigneeStats(
                status_counts=full_counts(by_assignee[name]),
                median_time_to_close=median(close_by_assignee.get(name, ())),
            )
            for name in sorted(by_assignee)
        },
        by_reason={reason: full_counts(by_reason[reason]) for reason in sorted(by_reason)},
        time_to_first_action=durations(first_action_us),
        time_to_close=durations(close_us),
        overdue=overdue,
        closed_within_sla=share(closed_in_time, closed_with_due),
        aging={name: aging[name] for name, _, _ in AGE_BUCKETS},
        recovery=_recovery(closed, responses),
    )


def _first_action(case: Case, history: Sequence[Event]) -> datetime | None:
    for event in history:
        if event.seq > 1 and event.kind in FIRST_ACTION_KINDS and event.actor != case.opened_by:
            return event.at
    return None


def _recovery(closed: Mapping[str, Case], responses: Collection[ResponseRecord]) -> Recovery:
    # Each Closed case's last response submitted by its close: (submitted_at, id, score).
    last_before: dict[str, tuple[datetime, str, int | None]] = {}
    for record in responses:
        case = closed.get(record.case_id or "")
        if case is None or case.closed_at is None or record.submitted_at > case.closed_at:
            continue
        key = (record.submitted_at, record.response_id, record.score)
        held = last_before.get(case.id)
        if held is None or key[:2] > held[:2]:
            last_before[case.id] = key
    # Each customer's most recently closed of those cases (ties: the larger id).
    looked_at: dict[str, Case] = {}
    for case_id in last_before:
        case = closed[case_id]
        held_case = looked_at.get(case.customer_id)
        if held_case is None or (case.closed_at, case.id) > (held_case.closed_at, held_case.id):
            looked_at[case.customer_id] = case
    # Each of those customers' first response after the close (ties: the smaller id).
    first_after: dict[str, tuple[datetime, str, int | None]] = {}
    for record in responses:
        case = looked_at.get(record.customer_id)
        if case is None or case.closed_at is None or record.submitted_at <= case.closed_at:
            continue
        key = (record.submitted_at, record.response_id, record.score)
        held = first_after.get(record.customer_id)
        if held is None or key[:2] < held[:2]:
            first_after[record.customer_id] = key
    detractors = recovered = before_sum = before_count = after_sum = after_count = 0
    for customer, (_, _, after) in first_after.items():
        before = last_before[looked_at[customer].id][2]
        if before is not None:
            before_sum += before
            before_count += 1
        if after is not None:
            after_sum += after
            after_count += 1
        if before in DETRACTOR_SCORES:
            detractors += 1
            recovered += after is not None and after >= RECOVERED_SCORE
    return Recovery.from_totals(
        customers=len(first_after),
        detractors=detractors,
        recovered=recovered,
        before_sum=before_sum,
        before_count=before_count,
        after_sum=after_sum,
        after_count=after_count,
    )
