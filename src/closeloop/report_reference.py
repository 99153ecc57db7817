"""The reference report: the KPIs computed from a store's facts, once, in Python.

Every store answers :meth:`~closeloop.storage.Store.report_facts` with a
:class:`ReportFacts` (the cases, their events and the responses a report needs);
:func:`report_from_facts` turns those into the :class:`~closeloop.reporting.Report`
with the rules of :mod:`closeloop.reporting` (:func:`~closeloop.reporting.is_overdue`,
:func:`~closeloop.reporting.first_action_at`, :func:`~closeloop.reporting.age_bucket`,
the nearest-rank percentiles). A store that computes its report another way (SQL)
is checked against this function by the contract suite.

One pass over the cases counts and groups them, keeping only what a KPI needs
(durations in microseconds, each customer's latest close); one pass over the
responses settles recovery.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime

from attrs import field, frozen

from closeloop.model import Case, Event, ResponseRecord, Status, StatusChanged
from closeloop.reporting import (
    AGE_BUCKETS,
    DETRACTOR_SCORES,
    MICROSECOND,
    RECOVERED_SCORE,
    Recovery,
    Report,
    ReportQuery,
    age_bucket,
    assemble_report,
    durations,
    first_action_at,
    is_overdue,
    median,
)

__all__ = ["ReportFacts", "report_from_facts"]


def _cases(value: Iterable[Case]) -> tuple[Case, ...]:
    return tuple(value)


def _responses(value: Iterable[ResponseRecord]) -> tuple[ResponseRecord, ...]:
    return tuple(value)


def _events(value: Mapping[str, Iterable[Event]]) -> dict[str, tuple[Event, ...]]:
    return {case_id: tuple(events) for case_id, events in value.items()}


@frozen(kw_only=True)
class ReportFacts:
    """The raw facts a report is computed from.

    A store may return more than the query needs: :func:`report_from_facts` keeps
    only the cases ``query.selects`` and the responses of their customers.

    Attributes:
        cases: at least every case the query selects (opened in ``[since, until)``,
            currently assigned to ``assignee``, carrying ``reason``).
        events: each of those cases' events in ``seq`` order, by case id (a case
            missing here has no first action).
        responses: at least every recorded response of the customers of those
            cases that are Closed, **in the order they were recorded**.
    """

    cases: tuple[Case, ...] = field(converter=_cases)
    events: Mapping[str, Sequence[Event]] = field(converter=_events)
    responses: tuple[ResponseRecord, ...] = field(converter=_responses)


def _micros(later: datetime, earlier: datetime) -> int:
    return (later - earlier) // MICROSECOND


def report_from_facts(query: ReportQuery, facts: ReportFacts) -> Report:
    """Compute the report for ``query`` from ``facts``: the reference every store agrees with."""
    return report_from_parts(query, facts.cases, facts.events, facts.responses)


def report_from_parts(
    query: ReportQuery,
    cases: Iterable[Case],
    events: Mapping[str, Sequence[Event]],
    responses: Iterable[ResponseRecord],
) -> Report:
    """:func:`report_from_facts` without building a :class:`ReportFacts` (no copies).

    Args:
        query: what to report on.
        cases: a superset of the cases ``query`` selects.
        events: each case's events, in ``seq`` order, by case id.
        responses: a superset of the responses of those cases' customers, in
            recording order.
    """
    status_counts: Counter[Status] = Counter()
    unassigned = overdue = closed_with_due = closed_in_time = 0
    by_assignee: defaultdict[str, Counter[Status]] = defaultdict(Counter)
    close_by_assignee: defaultdict[str, list[int]] = defaultdict(list)
    by_reason: defaultdict[str, Counter[Status]] = defaultdict(Counter)
    aging: Counter[str] = Counter()
    close_us: list[int] = []
    first_action_us: list[int] = []
    last_close: dict[str, datetime] = {}  # customer -> latest closed_at among the cases
    custom_counts: Counter[str] = Counter()
    reason_close_us: defaultdict[str, list[int]] = defaultdict(list)
    stints: defaultdict[str, list[int]] = defaultdict(list)
    business_first_us: list[int] = []
    business_close_us: list[int] = []
    calendar = query.calendar
    for case in cases:
        if not query.selects(case):
            continue
        status_counts[case.status] += 1
        custom_counts[case.custom_status] += 1
        history = events.get(case.id, ())
        _add_stints(case, history, stints)
        if case.assignee is None:
            unassigned += 1
        else:
            by_assignee[case.assignee][case.status] += 1
        for reason in dict.fromkeys(case.reasons):  # a repeated reason counts once
            by_reason[reason][case.status] += 1
        first = first_action_at(case, history)
        if first is not None:
            first_action_us.append(_micros(first, case.opened_at))
            if calendar is not None:
                business_first_us.append(calendar.between(case.opened_at, first) // MICROSECOND)
        overdue += is_overdue(case, query.now)
        if case.closed_at is not None:  # set exactly when the case is Closed
            if case.customer_id not in last_close or case.closed_at > last_close[case.customer_id]:
                last_close[case.customer_id] = case.closed_at
            took = _micros(case.closed_at, case.opened_at)
            close_us.append(took)
            if case.close_reason is not None:
                reason_close_us[case.close_reason].append(took)
            if calendar is not None:
                business_close_us.append(
                    calendar.between(case.opened_at, case.closed_at) // MICROSECOND)
            if case.assignee is not None:
                close_by_assignee[case.assignee].append(took)
            if case.due_at is not None:
                closed_with_due += 1
                closed_in_time += case.closed_at <= case.due_at
        else:
            aging[age_bucket(query.now - case.opened_at)] += 1
    medians = {name: median(values) for name, values in close_by_assignee.items()}
    return assemble_report(
        query,
        status_counts=status_counts,
        unassigned=unassigned,
        by_assignee=by_assignee,
        close_medians={name: value for name, value in medians.items() if value is not None},
        by_reason=by_reason,
        time_to_first_action=durations(first_action_us),
        time_to_close=durations(close_us),
        overdue=overdue,
        closed_in_time=closed_in_time,
        closed_with_due=closed_with_due,
        aging=[aging[name] for name, _, _ in AGE_BUCKETS],
        recovery=_recovery(last_close, responses),
        custom_status_counts=custom_counts,
        by_close_reason={reason: durations(us) for reason, us in reason_close_us.items()},
        time_in_status={status: durations(us) for status, us in stints.items()},
        business_time_to_first_action=None if calendar is None else durations(business_first_us),
        business_time_to_close=None if calendar is None else durations(business_close_us),
    )


def _add_stints(case: Case, history: Iterable[Event], stints: defaultdict[str, list[int]]) -> None:
    """Each ended stay of ``case`` in a status, in µs, under the status it left.

    A stay begins when the case opens or enters the status, and ends with the next
    status change (in ``seq`` order), whose ``from_custom_status`` names it.
    """
    entered = case.opened_at
    for event in history:
        if isinstance(event, StatusChanged):
            stints[event.from_custom_status].append(_micros(event.at, entered))
            entered = event.at


def _recovery(last_close: Mapping[str, datetime], responses: Iterable[ResponseRecord]) -> Recovery:
    # Per customer, (submitted_at, recorded position, score) of the last response at or
    # before their latest close and of the first one after it.
    before: dict[str, tuple[datetime, int, int | None]] = {}
    after: dict[str, tuple[datetime, int, int | None]] = {}
    for position, record in enumerate(responses):
        closed_at = last_close.get(record.customer_id)
        if closed_at is None:
            continue
        key = (record.submitted_at, position, record.score)
        if record.submitted_at <= closed_at:
            held = before.get(record.customer_id)
            if held is None or key[:2] > held[:2]:
                before[record.customer_id] = key
        else:
            held = after.get(record.customer_id)
            if held is None or key[:2] < held[:2]:
                after[record.customer_id] = key
    detractors = recovered = before_sum = before_count = after_sum = after_count = 0
    for customer, (_, _, after_score) in after.items():
        before_score = before[customer][2] if customer in before else None
        if before_score is not None:
            before_sum += before_score
            before_count += 1
        if after_score is not None:
            after_sum += after_score
            after_count += 1
        if before_score in DETRACTOR_SCORES:
            detractors += 1
            recovered += after_score is not None and after_score >= RECOVERED_SCORE
    return Recovery.from_totals(
        customers=len(after),
        detractors=detractors,
        recovered=recovered,
        before_sum=before_sum,
        before_count=before_count,
        after_sum=after_sum,
        after_count=after_count,
    )
