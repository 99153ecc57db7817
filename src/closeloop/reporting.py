"""The KPIs of a closed-loop programme, as one frozen :class:`Report`.

The library computes a report once, in :mod:`closeloop.report_reference`, from
the facts a store returns for a :class:`ReportQuery`; a store may compute the
same report its own way for speed (SQLite and PostgreSQL do, in SQL) and the
contract suite holds it to the reference. The full definitions are in
``docs/reporting.md``; the short version is on each field below.

The helpers at the end of this module (:func:`durations`, :func:`summarise`,
:func:`median`, :func:`nearest_rank`, :func:`age_bucket`, :func:`share`,
:func:`full_counts`) turn the integers a store has aggregated into report
values. Every store goes through them, so rounding and percentile rules cannot
drift apart.

A report becomes plain data with :func:`closeloop.convert.unstructure`: statuses
become their values (``"open"``), durations become seconds (a float, exact to
the microsecond) and datetimes ISO 8601 strings::

    >>> from closeloop import CloseLoop
    >>> from closeloop.convert import unstructure
    >>> unstructure(CloseLoop().report())["status_counts"]
    {'open': 0, 'progress': 0, 'closed': 0}
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import TypeVar

from attrs import Factory, field, frozen

from closeloop.calendar import BusinessHours
from closeloop.model import Case, Event, Status
from closeloop.validate import attrs_validator, aware_datetime, check_optional_id, optional_aware_datetime

__all__ = [
    "AGE_BUCKETS",
    "DETRACTOR_SCORES",
    "FIRST_ACTION_KINDS",
    "RECOVERED_SCORE",
    "AssigneeStats",
    "Durations",
    "Recovery",
    "Report",
    "ReportQuery",
    "StatusCounts",
    "age_bucket",
    "by_name",
    "durations",
    "first_action_at",
    "full_counts",
    "is_overdue",
    "median",
    "nearest_rank",
    "resumed_due",
    "share",
    "summarise",
]

_V = TypeVar("_V")

#: Status -> number of cases; all three statuses are always present.
StatusCounts = Mapping[Status, int]

#: Age buckets of open cases, by age since opening: ``[lower, upper)``.
AGE_BUCKETS: tuple[tuple[str, timedelta, timedelta | None], ...] = (
    ("< 1 day", timedelta(0), timedelta(days=1)),
    ("1-3 days", timedelta(days=1), timedelta(days=3)),
    ("3-7 days", timedelta(days=3), timedelta(days=7)),
    ("> 7 days", timedelta(days=7), None),
)

#: Event kinds that count as a first action on a case (when not by whoever opened it).
FIRST_ACTION_KINDS: tuple[str, ...] = ("status_changed", "assigned", "commented")

#: Scores of a detractor (NPS 0–6).
DETRACTOR_SCORES = range(0, 7)
#: The lowest score that counts as recovered (a passive or a promoter).
RECOVERED_SCORE = 7

#: One microsecond: stores tally durations as integer microseconds.
MICROSECOND = timedelta(microseconds=1)


def _names(value: Iterable[str]) -> tuple[str, ...]:
    return tuple(value)


@frozen(kw_only=True)
class ReportQuery:
    """What to report on.

    Attributes:
        now: the time the report is made at (ages, overdue).
        since, until: only cases opened in ``[since, until)``; ``None`` = unbounded.
        assignee: only cases currently assigned to this user.
        reason: only cases with this reason (trigger) among their reasons.
        statuses: the workflow's status names, in order (default the standard
            three): the report lists each of them (with 0 when no case is in it)
            before any other status found.
        close_reasons: the workflow's close reasons, listed the same way.
        calendar: business hours; when given, the report adds time to first action
            and time to close in business time.
    """

    now: datetime = field(validator=attrs_validator(aware_datetime))
    since: datetime | None = field(default=None, validator=attrs_validator(optional_aware_datetime))
    until: datetime | None = field(default=None, validator=attrs_validator(optional_aware_datetime))
    assignee: str | None = field(default=None, validator=attrs_validator(check_optional_id))
    reason: str | None = field(default=None, validator=attrs_validator(check_optional_id))
    statuses: tuple[str, ...] = field(default=("open", "progress", "closed"), converter=_names)
    close_reasons: tuple[str, ...] = field(default=(), converter=_names)
    calendar: BusinessHours | None = field(default=None)

    def selects(self, case: Case) -> bool:
        """Whether ``case`` is one this query reports on."""
        return (
            (self.since is None or case.opened_at >= self.since)
            and (self.until is None or case.opened_at < self.until)
            and (self.assignee is None or case.assignee == self.assignee)
            and (self.reason is None or self.reason in case.reasons)
        )


@frozen(kw_only=True)
class Durations:
    """Summary of a set of durations.

    ``median`` and ``p90`` are nearest-rank percentiles (the smallest value with at
    least 50 % / 90 % of values at or below it, see :func:`nearest_rank`); ``mean``
    is rounded down to the microsecond. All are ``None`` when ``count`` is 0.
    """

    count: int
    mean: timedelta | None = None
    median: timedelta | None = None
    p90: timedelta | None = None


@frozen(kw_only=True)
class AssigneeStats:
    """One assignee's cases: how many per status, and their median time to close.

    ``median_time_to_close`` is over the assignee's cases that are Closed now
    (nearest rank), ``None`` when they have none.
    """

    status_counts: StatusCounts
    median_time_to_close: timedelta | None


@frozen(kw_only=True)
class Recovery:
    """Whether rescued customers come back happier.

    Looked at per customer: a customer counts when one of the reported cases is
    theirs and Closed now, and they sent a survey response after the latest such
    close. "Before" is their last response submitted at or before that close,
    "after" their first response submitted after it (of any outcome, matched by
    a trigger or not). Responses submitted at the same microsecond are taken in
    the order closeloop recorded them.

    Attributes:
        customers: customers with a reported Closed case and a response after it.
        detractors: of those, customers whose "before" score was a detractor (0–6).
        recovered: of the detractors, those whose "after" score was 7 or more.
        rate: ``recovered / detractors``, or ``None`` when there are no detractors.
        mean_score_before: mean "before" score of ``customers`` (scored ones only).
        mean_score_after: mean "after" score of ``customers`` (scored ones only).
    """

    customers: int
    detractors: int
    recovered: int
    rate: float | None
    mean_score_before: float | None
    mean_score_after: float | None

    @classmethod
    def from_totals(
        cls,
        *,
        customers: int,
        detractors: int,
        recovered: int,
        before_sum: int,
        before_count: int,
        after_sum: int,
        after_count: int,
    ) -> Recovery:
        """Build from integer totals; the one place where the shares are divided."""
        return cls(
            customers=customers,
            detractors=detractors,
            recovered=recovered,
            rate=share(recovered, detractors),
            mean_score_before=None if before_count == 0 else before_sum / before_count,
            mean_score_after=None if after_count == 0 else after_sum / after_count,
        )


@frozen(kw_only=True)
class Report:
    """The KPIs. Durations are timedeltas; shares are floats in 0..1 or ``None``.

    Every figure is over the cases the query selects (opened in
    ``[since, until)``, currently assigned to ``assignee``, carrying ``reason``).
    Mappings are ordered by key (``aging`` in :data:`AGE_BUCKETS` order).
    :func:`closeloop.convert.unstructure` turns a report into JSON-able data
    (durations as float seconds) and :func:`closeloop.convert.structure` back.

    Attributes:
        query: what was asked for.
        status_counts: cases per status (Open, Progress, Closed always present).
        unassigned: cases with no assignee.
        by_assignee: per current assignee, counts per status and median time to close.
        by_reason: per reason, counts per status; a case with two reasons counts
            under both.
        time_to_first_action: opened → the case's first action
            (:func:`first_action_at`); cases without one are left out.
        time_to_close: opened → last close, over cases that are Closed now (a case
            reopened and not closed again is not counted).
        overdue: cases not Closed whose ``due_at`` is at or before ``query.now``
            (:func:`is_overdue`, the same rule escalation uses).
        closed_within_sla: share of Closed cases with a due date closed at or before it.
        aging: cases not Closed, by age since opening (keys of :data:`AGE_BUCKETS`).
        recovery: see :class:`Recovery`.
        custom_status_counts: cases per workflow status (``case.custom_status``): the
            query's ``statuses`` first, in order, then any other name found, sorted.
        by_close_reason: per close reason, the time to close of the cases Closed now
            with that reason (its ``count`` is how many); the query's
            ``close_reasons`` first, then any other reason found, sorted.
        time_in_status: per workflow status, how long cases stayed in it, one value
            per stay that has ended (from entering the status to the change that
            left it); a stay still going on is not counted. Keys as for
            ``custom_status_counts``.
        business_time_to_first_action, business_time_to_close: the same as
            ``time_to_first_action`` and ``time_to_close``, in the business time of
            ``query.calendar``; ``None`` without a calendar.
    """

    query: ReportQuery
    status_counts: StatusCounts
    unassigned: int
    by_assignee: Mapping[str, AssigneeStats]
    by_reason: Mapping[str, StatusCounts]
    time_to_first_action: Durations
    time_to_close: Durations
    overdue: int
    closed_within_sla: float | None
    aging: Mapping[str, int]
    recovery: Recovery
    custom_status_counts: Mapping[str, int] = field(
        default=Factory(lambda self: dict.fromkeys(self.query.statuses, 0), takes_self=True))
    by_close_reason: Mapping[str, Durations] = field(
        default=Factory(lambda self: dict.fromkeys(self.query.close_reasons, Durations(count=0)),
                        takes_self=True))
    time_in_status: Mapping[str, Durations] = field(
        default=Factory(lambda self: dict.fromkeys(self.query.statuses, Durations(count=0)),
                        takes_self=True))
    business_time_to_first_action: Durations | None = None
    business_time_to_close: Durations | None = None

    @property
    def total(self) -> int:
        """Number of cases reported on."""
        return sum(self.status_counts.values())


# -- the business rules, stated once ---------------------------------------------------


def is_overdue(case: Case, now: datetime) -> bool:
    """Whether ``case`` is overdue at ``now``: not Closed, not paused, with ``due_at <= now``.

    The one definition of overdue: escalation selects overdue cases with it and the
    report counts them with it. A case due exactly now is overdue. A case whose SLA
    clock is paused (``paused_at`` set: it is in a status that pauses the SLA) is not
    overdue while paused. Every input is a column of the case's row, so a SQL store
    evaluates it as ``status <> 'closed' AND paused_at IS NULL AND due_at <= :now``.
    """
    return (case.status is not Status.CLOSED and case.paused_at is None
            and case.due_at is not None and case.due_at <= now)


def resumed_due(
    due_at: datetime, paused_at: datetime, now: datetime, calendar: BusinessHours | None
) -> datetime:
    """A paused case's due time once its SLA clock runs again at ``now``.

    The SLA pause rule, stated once: the time spent paused does not count, so the
    due time moves on by the span from ``paused_at`` to ``now``, measured in
    business time when there is a calendar. A case paused with two business hours
    left has two business hours left when it resumes.
    """
    if calendar is None:
        return due_at + (now - paused_at)
    return calendar.add(due_at, calendar.between(paused_at, now))


def first_action_at(case: Case, history: Iterable[Event]) -> datetime | None:
    """When the case's first action happened, or ``None`` if it has had none.

    The first action is the earliest event (in ``seq`` order, after the opening
    event) whose kind is in :data:`FIRST_ACTION_KINDS` (a status change, an
    assignment or a comment) and whose actor is not whoever opened the case.
    Attached responses and escalations are not actions.
    """
    for event in history:
        if event.seq > 1 and event.kind in FIRST_ACTION_KINDS and event.actor != case.opened_by:
            return event.at
    return None


# -- shared arithmetic ---------------------------------------------------------------


def nearest_rank(count: int, percent: int) -> int:
    """The 1-based rank of the nearest-rank ``percent`` percentile of ``count`` values.

    ``ceil(percent * count / 100)``, in integers so that SQL computes the same:
    the median of 4 values is the 2nd, their p90 the 4th.
    """
    return (percent * count + 99) // 100


def summarise(count: int, total_us: int, median_us: int | None, p90_us: int | None) -> Durations:
    """A :class:`Durations` from a count, the exact sum and the two percentiles, in µs."""
    if count == 0:
        return Durations(count=0)
    if median_us is None or p90_us is None:
        raise ValueError("percentiles are required when count > 0")
    return Durations(
        count=count,
        mean=(total_us // count) * MICROSECOND,  # floor, also for negative sums
        median=median_us * MICROSECOND,
        p90=p90_us * MICROSECOND,
    )


def durations(values_us: Iterable[int]) -> Durations:
    """Summarise durations given in integer microseconds (any order)."""
    ordered = sorted(values_us)
    count = len(ordered)
    if count == 0:
        return Durations(count=0)
    return summarise(
        count,
        sum(ordered),
        ordered[nearest_rank(count, 50) - 1],
        ordered[nearest_rank(count, 90) - 1],
    )


def median(values_us: Iterable[int]) -> timedelta | None:
    """The nearest-rank median of durations in microseconds, or ``None`` for none."""
    return durations(values_us).median


def age_bucket(age: timedelta) -> str:
    """The :data:`AGE_BUCKETS` key for an open case of this age.

    A negative age (opened after ``now``: a clock set back) counts as the first bucket.
    """
    for name, _, upper in AGE_BUCKETS:
        if upper is None or age < upper:
            return name
    raise AssertionError("the last bucket is unbounded")  # pragma: no cover


def share(part: int, whole: int) -> float | None:
    """``part / whole``, or ``None`` when ``whole`` is 0."""
    return None if whole == 0 else part / whole


def full_counts(counts: Mapping[Status, int]) -> dict[Status, int]:
    """Counts per status with every status present (missing ones as 0), in workflow order."""
    return {status: counts.get(status, 0) for status in Status}


def by_name(
    first: Sequence[str], values: Mapping[str, _V], empty: _V
) -> dict[str, _V]:
    """``values`` keyed by ``first`` (missing ones as ``empty``), in order, then the rest sorted."""
    ordered = {name: values.get(name, empty) for name in first}
    ordered.update((name, values[name]) for name in sorted(values) if name not in ordered)
    return ordered


def assemble_report(
    query: ReportQuery,
    *,
    status_counts: Mapping[Status, int],
    unassigned: int,
    by_assignee: Mapping[str, Mapping[Status, int]],
    close_medians: Mapping[str, timedelta],
    by_reason: Mapping[str, Mapping[Status, int]],
    time_to_first_action: Durations,
    time_to_close: Durations,
    overdue: int,
    closed_in_time: int,
    closed_with_due: int,
    aging: Sequence[int],
    recovery: Recovery,
    custom_status_counts: Mapping[str, int] | None = None,
    by_close_reason: Mapping[str, Durations] | None = None,
    time_in_status: Mapping[str, Durations] | None = None,
    business_time_to_first_action: Durations | None = None,
    business_time_to_close: Durations | None = None,
) -> Report:
    """Build the report from a store's tallies, the same way for every store.

    ``close_medians`` holds each assignee's median time to close (assignees with
    no closed case are absent); ``aging`` counts per :data:`AGE_BUCKETS` entry, in
    order. ``custom_status_counts``, ``by_close_reason`` and ``time_in_status`` may
    leave out names without cases; ``None`` means the store found none at all.
    """
    none = Durations(count=0)
    return Report(
        custom_status_counts=by_name(query.statuses, custom_status_counts or {}, 0),
        by_close_reason=by_name(query.close_reasons, by_close_reason or {}, none),
        time_in_status=by_name(query.statuses, time_in_status or {}, none),
        business_time_to_first_action=business_time_to_first_action,
        business_time_to_close=business_time_to_close,
        query=query,
        status_counts=full_counts(status_counts),
        unassigned=unassigned,
        by_assignee={
            name: AssigneeStats(
                status_counts=full_counts(by_assignee[name]),
                median_time_to_close=close_medians.get(name),
            )
            for name in sorted(by_assignee)
        },
        by_reason={reason: full_counts(by_reason[reason]) for reason in sorted(by_reason)},
        time_to_first_action=time_to_first_action,
        time_to_close=time_to_close,
        overdue=overdue,
        closed_within_sla=share(closed_in_time, closed_with_due),
        aging={name: count for (name, _, _), count in zip(AGE_BUCKETS, aging, strict=True)},
        recovery=recovery,
    )
