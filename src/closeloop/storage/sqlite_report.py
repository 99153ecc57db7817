"""Reports for :class:`~closeloop.storage.SQLiteStore`, computed in SQL.

Every figure is aggregated by SQLite; Python receives grouped rows only (one per
assignee, reason set and status), the values at two ranks, one median per
assignee and one row of recovery totals, and finishes them through the helpers
in :mod:`closeloop.reporting`, exactly as the memory store does. All queries run
in one read transaction, so the report is one consistent snapshot even while
other processes write.

A report over a million cases must not sort a million rows (SQLite's sorter is
what makes a naive report take tens of seconds), so each query follows an index
that the reporting migration creates:

- **Counts, overdue, SLA, aging, sums**: two ``GROUP BY`` scans (Closed cases, the
  others) that stream through the covering index ``cases_report`` (status first)
  in its own order.
- **Percentiles** (nearest rank): ``ORDER BY duration LIMIT 1 OFFSET rank - 1``
  walks the expression index ``cases_time_to_close`` (or
  ``cases_time_to_first_action``) to the rank, from the nearer end (the p90
  from the top); per assignee, one such walk in
  ``cases_time_to_close_by_assignee``, and per close reason two in
  ``cases_time_to_close_by_reason``.
- **Time in each status** comes from ``status_stints``, one row per status
  change (how long the case had been in the status it left), which a trigger
  writes with the event: counts, sums and two walks per status in
  ``status_stints_by_status``.
- **Time to first action** reads ``cases.first_action_at``, which a trigger sets
  when the first qualifying event is written.
- **Means** are exact: durations are summed in integer microseconds per group;
  should a group's sum overflow SQLite's 64 bits, the query runs again with
  whole seconds and leftover microseconds summed apart.
- **Recovery**: each customer's latest close streams out of ``cases_last_close``;
  their responses just before and after it are two index seeks.

On a large store the recovery query (about half the work) runs on a second
connection in a second thread, on the same snapshot, while the first connection
computes the rest (:func:`report_from_sqlite`).
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from typing import Any

from closeloop.model import Status
from closeloop.reporting import (
    AGE_BUCKETS,
    DETRACTOR_SCORES,
    MICROSECOND,
    RECOVERED_SCORE,
    Durations,
    Recovery,
    Report,
    ReportQuery,
    assemble_report,
    durations,
    nearest_rank,
    summarise,
)
from closeloop.storage.sqlite_rows import to_micros

__all__ = ["report_from_sqlite"]

_MICROS_PER_SECOND = 1_000_000


def report_from_sqlite(
    conn: sqlite3.Connection,
    query: ReportQuery,
    spare: Callable[[], AbstractContextManager[sqlite3.Connection]] | None = None,
) -> Report:
    """Compute the report in one read snapshot on ``conn`` (an autocommit connection).

    With ``spare`` (lending a second connection to the same file) and a store of at
    least :data:`PARALLEL_FROM` cases, the recovery figures are computed on the spare
    connection in a second thread while ``conn`` computes the rest: SQLite releases
    the GIL while it steps, so a report uses two cores. Both connections read the
    same snapshot (see :func:`_begin_together`). sqlite3 errors propagate; the store
    translates them.
    """
    where, params = _selection(query)
    if spare is not None:
        (size,) = conn.execute("SELECT coalesce(max(rowid), 0) FROM cases").fetchone()
        if size >= PARALLEL_FROM:
            with spare() as helper:
                if _begin_together(conn, helper):
                    return _in_parallel(conn, helper, query, where, params)
    conn.execute("BEGIN")  # deferred: the first SELECT fixes the snapshot for all of them
    try:
        figures = _figures(conn, query, where, params)
        recovery = _recovery(conn, where, params)
    except BaseException:
        _end(conn, commit=False)
        raise
    _end(conn, commit=True)
    return figures(recovery)


#: The number of cases (by rowid) from which a report uses a second connection and
#: thread; below it the thread costs more than it saves.
PARALLEL_FROM = 20_000

#: How many times two connections try to start reading the same snapshot before
#: the report gives up on the second one (only commits landing in between stop them).
_TOGETHER_ATTEMPTS = 3


def _end(conn: sqlite3.Connection, *, commit: bool) -> None:
    """End ``conn``'s read transaction, if it still has one (never masking an error)."""
    if conn.in_transaction:
        conn.execute("COMMIT" if commit else "ROLLBACK")


def _begin_together(conn: sqlite3.Connection, helper: sqlite3.Connection) -> bool:
    """Start read transactions on both connections on one snapshot; False if that failed.

    A WAL read transaction reads the snapshot of its first SELECT. ``PRAGMA
    data_version`` on ``helper`` changes whenever another connection commits, so if
    it is the same before ``conn`` starts reading and once ``helper`` has started,
    nothing was committed in between and both read the same snapshot.
    """
    for _ in range(_TOGETHER_ATTEMPTS):
        try:
            (before,) = helper.execute("PRAGMA data_version").fetchone()
            for each in (conn, helper):
                each.execute("BEGIN")
                each.execute("SELECT 1 FROM cases LIMIT 1").fetchall()
            (after,) = helper.execute("PRAGMA data_version").fetchone()
        except BaseException:
            _end(conn, commit=False)
            _end(helper, commit=False)
            raise
        if before == after:
            return True
        _end(conn, commit=False)
        _end(helper, commit=False)
    return False


def _in_parallel(
    conn: sqlite3.Connection, helper: sqlite3.Connection, query: ReportQuery, where: str,
    params: dict[str, Any],
) -> Report:
    """The report with recovery on ``helper`` in a second thread (both already reading)."""
    outcome: list[Recovery | BaseException] = []

    def recover() -> None:
        try:
            outcome.append(_recovery(helper, where, params))
        except BaseException as exc:  # handed to the caller's thread below
            outcome.append(exc)

    thread = threading.Thread(target=recover, name="closeloop-report", daemon=True)
    thread.start()
    try:
        figures = _figures(conn, query, where, params)
    except BaseException:
        helper.interrupt()  # stop the other half rather than wait for it
        raise
    finally:
        thread.join()
        _end(helper, commit=False)
        _end(conn, commit=False)
    (recovery,) = outcome
    if isinstance(recovery, BaseException):
        raise recovery
    return figures(recovery)


def _figures(
    conn: sqlite3.Connection, query: ReportQuery, where: str, params: dict[str, Any]
) -> Callable[[Recovery], Report]:
    """Every figure but recovery, read on ``conn``; the report once recovery is known."""
    groups = _groups(conn, where, params)
    time_to_close = _durations(conn, _TIME_TO_CLOSE, where, params, groups.close)
    time_to_first_action = _durations(
        conn, _TIME_TO_FIRST_ACTION, where, params, groups.first_action
    )
    medians = _close_medians(conn, where, params, groups.closed_by_assignee)
    by_close_reason = {
        reason: _durations(conn, _TIME_TO_CLOSE_BY_REASON, where,
                           {**params, "close_reason": reason}, totals)
        for reason, totals in groups.by_close_reason.items()
    }
    time_in_status = _time_in_status(conn, where, params)
    business = _business_times(conn, where, params, query)

    def with_recovery(recovery: Recovery) -> Report:
        return assemble_report(
            query,
            status_counts=groups.status_counts,
            unassigned=groups.unassigned,
            by_assignee=groups.by_assignee,
            close_medians={name: us * MICROSECOND for name, us in medians.items()},
            by_reason=groups.by_reason,
            time_to_first_action=time_to_first_action,
            time_to_close=time_to_close,
            overdue=groups.overdue,
            closed_in_time=groups.closed_in_time,
            closed_with_due=groups.closed_with_due,
            aging=groups.aging,
            recovery=recovery,
            custom_status_counts=groups.custom_status_counts,
            by_close_reason=by_close_reason,
            time_in_status=time_in_status,
            business_time_to_first_action=business[0],
            business_time_to_close=business[1],
        )

    return with_recovery


def _selection(query: ReportQuery) -> tuple[str, dict[str, Any]]:
    """The condition (on ``cases AS c``) selecting the query's cases, and all parameters."""
    clauses = ["1"]
    params: dict[str, Any] = {"now": to_micros(query.now)}
    if query.since is not None:
        clauses.append("c.opened_at >= :since")
        params["since"] = to_micros(query.since)
    if query.until is not None:
        clauses.append("c.opened_at < :until")
        params["until"] = to_micros(query.until)
    if query.assignee is not None:
        clauses.append("c.assignee = :assignee")
        params["assignee"] = query.assignee
    if query.reason is not None:
        # instr() first, as a cheap necessary condition: SQLiteStore writes reasons with
        # json.dumps, so a case with the reason holds its JSON string verbatim.
        clauses.append("instr(c.reasons, :reason_json) > 0 AND EXISTS "
                       "(SELECT 1 FROM json_each(c.reasons) WHERE value = :reason)")
        params["reason"] = query.reason
        params["reason_json"] = json.dumps(query.reason)
    for index, (_, _, upper) in enumerate(AGE_BUCKETS):
        if upper is not None:  # age < upper  <=>  opened after now - upper
            params[f"younger_{index}"] = params["now"] - upper // MICROSECOND
    return " AND ".join(clauses), params


def _sum(duration: str, split: bool) -> str:
    if not split:
        return f"0, sum({duration})"  # as (seconds, µs)
    # Whole seconds and leftover µs: SQL's / and % both truncate, so the parts add up exactly.
    return f"sum(({duration}) / {_MICROS_PER_SECOND}), sum(({duration}) % {_MICROS_PER_SECOND})"


# Closed cases and the others are summed by two range scans of ``cases_report``
# (status first), each adding up only the figures that mean something for it: time
# to close and the SLA for Closed cases, overdue and aging for the others. Both
# yield rows of the same shape, a 0 standing for a figure the scan does not sum.
_CLOSED_GROUPS = """
    SELECT c.assignee, c.reasons, c.status, c.custom_status, c.close_reason, count(*),
        0, count(c.due_at), count(*) FILTER (WHERE c.closed_at <= c.due_at), {close_sum},
        count(c.first_action_at), {first_action_sum}, {no_ages}
    FROM cases AS c INDEXED BY cases_report
    WHERE c.status = 'closed' AND {where}
    GROUP BY c.assignee, c.reasons, c.custom_status, c.close_reason
"""
_OTHER_GROUPS = """
    SELECT c.assignee, c.reasons, c.status, c.custom_status, c.close_reason, count(*),
        count(*) FILTER (WHERE c.due_at <= :now AND c.paused_at IS NULL), 0, 0, 0, 0,
        count(c.first_action_at), {first_action_sum}, {younger}
    FROM cases AS c INDEXED BY cases_report
    WHERE c.status IN ({statuses}) AND {where}
    GROUP BY c.status, c.assignee, c.reasons, c.custom_status, c.close_reason
"""
_NOT_CLOSED = ", ".join(f"'{status.value}'" for status in Status if status is not Status.CLOSED)


def _groups(conn: sqlite3.Connection, where: str, params: dict[str, Any]) -> _Groups:
    """Sum durations per group in µs; if one group's sum overflows 64 bits, split it."""
    ages = len(AGE_BUCKETS) - 1
    younger = ", ".join(f"count(*) FILTER (WHERE c.opened_at > :younger_{index})"
                        for index in range(ages))
    rows: list[Any] = []
    for template in (_CLOSED_GROUPS, _OTHER_GROUPS):
        for split in (False, True):
            sql = template.format(
                close_sum=_sum("c.closed_at - c.opened_at", split),
                first_action_sum=_sum("c.first_action_at - c.opened_at", split),
                younger=younger, no_ages=", ".join("0" * ages), statuses=_NOT_CLOSED,
                where=where,
            )
            try:
                rows.extend(conn.execute(sql, params).fetchall())
                break
            except sqlite3.OperationalError as exc:
                if split or "integer overflow" not in str(exc):
                    raise
    return _Groups(rows)


def _micros(seconds: int | None, micros: int | None) -> int:
    return (seconds or 0) * _MICROS_PER_SECOND + (micros or 0)


class _Groups:
    """The (assignee, reasons, status) groups, added up into the report's counts."""

    def __init__(self, rows: Sequence[Sequence[Any]]) -> None:
        self.status_counts: Counter[Status] = Counter()
        self.by_assignee: defaultdict[str, Counter[Status]] = defaultdict(Counter)
        self.closed_by_assignee: Counter[str] = Counter()
        self.by_reason: defaultdict[str, Counter[Status]] = defaultdict(Counter)
        self.unassigned = self.overdue = self.closed_with_due = self.closed_in_time = 0
        self.close = [0, 0]  # count, total µs
        self.first_action = [0, 0]
        self.aging = [0] * len(AGE_BUCKETS)
        self.custom_status_counts: Counter[str] = Counter()
        self.by_close_reason: defaultdict[str, list[int]] = defaultdict(lambda: [0, 0])
        for assignee, reasons, status_value, custom, close_reason, count, *rest in rows:
            late, with_due, in_time, close_s, close_us, acted, act_s, act_us, *younger = rest
            status = Status(status_value)
            self.status_counts[status] += count
            self.custom_status_counts[custom or status_value] += count
            if close_reason is not None and status is Status.CLOSED:
                totals = self.by_close_reason[close_reason]
                totals[0] += count
                totals[1] += _micros(close_s, close_us)
            if assignee is None:
                self.unassigned += count
            else:
                self.by_assignee[assignee][status] += count
                if status is Status.CLOSED:
                    self.closed_by_assignee[assignee] += count
            for reason in dict.fromkeys(json.loads(reasons)):  # a repeated reason counts once
                self.by_reason[reason][status] += count
            self.first_action[0] += acted
            self.first_action[1] += _micros(act_s, act_us)
            if status is Status.CLOSED:
                self.closed_with_due += with_due
                self.closed_in_time += in_time
                self.close[0] += count
                self.close[1] += _micros(close_s, close_us)
            else:
                self.overdue += late
                # younger[i]: opened less than bucket i's upper bound ago (cumulative).
                bounds = [0, *younger, count]
                for index in range(len(AGE_BUCKETS)):
                    self.aging[index] += bounds[index + 1] - bounds[index]


# (duration expression, the condition that it exists, the index ordered by it)
_TIME_TO_CLOSE = ("c.closed_at - c.opened_at", "c.closed_at IS NOT NULL", "cases_time_to_close")
_TIME_TO_CLOSE_BY_REASON = (
    "c.closed_at - c.opened_at",
    "c.close_reason = :close_reason AND c.closed_at IS NOT NULL",
    "cases_time_to_close_by_reason",
)
_TIME_TO_FIRST_ACTION = (
    "c.first_action_at - c.opened_at",
    "c.first_action_at IS NOT NULL",
    "cases_time_to_first_action",
)


def _walk(rank: int, count: int) -> tuple[str, int]:
    """The direction and OFFSET that reach ``rank`` (1-based, ascending) of ``count`` values.

    An index walk costs one step per row skipped, so a rank in the upper half (the
    p90) is reached from the top: the value at rank ``r`` ascending is the one at
    rank ``count - r + 1`` descending, ties included.
    """
    if rank > count // 2:
        return "DESC", count - rank
    return "", rank - 1


def _at_rank(
    conn: sqlite3.Connection, source: tuple[str, str, str], where: str, params: dict[str, Any],
    rank: int, count: int,
) -> int:
    duration, exists, index = source
    direction, offset = _walk(rank, count)
    (value,) = conn.execute(
        f"SELECT {duration} FROM cases AS c INDEXED BY {index} WHERE {exists} AND {where} "
        f"ORDER BY {duration} {direction} LIMIT 1 OFFSET :offset",
        {**params, "offset": offset},
    ).fetchone()
    return int(value)


def _durations(
    conn: sqlite3.Connection, source: tuple[str, str, str], where: str, params: dict[str, Any],
    totals: list[int],
) -> Durations:
    count, total_us = totals
    if count == 0:
        return Durations(count=0)
    median, p90 = (
        _at_rank(conn, source, where, params, nearest_rank(count, percent), count)
        for percent in (50, 90)
    )
    return summarise(count, total_us, median, p90)


def _close_medians(
    conn: sqlite3.Connection, where: str, params: dict[str, Any], closed: Counter[str]
) -> dict[str, int]:
    """Each assignee's median time to close (nearest rank), in µs: one index walk each."""
    medians: dict[str, int] = {}
    for name, count in closed.items():
        if count:
            (medians[name],) = conn.execute(
                "SELECT c.closed_at - c.opened_at FROM cases AS c "
                "INDEXED BY cases_time_to_close_by_assignee "
                f"WHERE c.assignee = :median_of AND c.closed_at IS NOT NULL AND {where} "
                "ORDER BY c.closed_at - c.opened_at LIMIT 1 OFFSET :offset",
                {**params, "median_of": name, "offset": nearest_rank(count, 50) - 1},
            ).fetchone()
    return medians


def _time_in_status(
    conn: sqlite3.Connection, where: str, params: dict[str, Any]
) -> dict[str, Durations]:
    """Per status, the ended stays in it (``status_stints``, written by a trigger).

    Without a filter, counts, sums and ranks all come from the covering index
    ``status_stints_by_status``; with one, each stay is joined to its case.
    """
    join = "" if where == "1" else " JOIN cases AS c ON c.id = s.case_id"
    filtered = "" if where == "1" else f" AND {where}"
    found: dict[str, Durations] = {}
    for split in (False, True):
        try:
            rows = conn.execute(
                f"SELECT s.status, count(*), {_sum('s.took', split)} FROM status_stints AS s "
                f"INDEXED BY status_stints_by_status{join} WHERE 1{filtered} GROUP BY s.status",
                params,
            ).fetchall()
            break
        except sqlite3.OperationalError as exc:
            if split or "integer overflow" not in str(exc):
                raise
    for status, count, seconds, micros in rows:
        walks = (_walk(nearest_rank(count, percent), count) for percent in (50, 90))
        median, p90 = (
            conn.execute(
                f"SELECT s.took FROM status_stints AS s INDEXED BY status_stints_by_status{join} "
                f"WHERE s.status = :stint_status{filtered} ORDER BY s.took {direction} "
                "LIMIT 1 OFFSET :offset",
                {**params, "stint_status": status, "offset": offset},
            ).fetchone()[0]
            for direction, offset in walks
        )
        found[status] = summarise(count, _micros(seconds, micros), median, p90)
    return found


def _business_times(
    conn: sqlite3.Connection, where: str, params: dict[str, Any], query: ReportQuery
) -> tuple[Durations | None, Durations | None]:
    """Time to first action and to close in the query's business hours (None without them).

    Business time depends on the calendar's zone and holidays, which SQL does not
    know, so the three times of each case that has either come out in one pass
    and the calendar measures them.
    """
    calendar = query.calendar
    if calendar is None:
        return None, None
    first: list[int] = []
    close: list[int] = []
    for opened, acted, closed in conn.execute(
        "SELECT c.opened_at, c.first_action_at, c.closed_at FROM cases AS c "
        f"WHERE (c.first_action_at IS NOT NULL OR c.closed_at IS NOT NULL) AND {where}",
        params,
    ):
        if acted is not None:
            first.append(calendar.between_us(opened, acted))
        if closed is not None:
            close.append(calendar.between_us(opened, closed))
    return durations(first), durations(close)


# Each customer's latest close, then their first response after it; only for those
# who sent one, their last response at or before it. Scores come from the covering
# index, whose order (submitted_at, seq) is the tie-break, so no seek sorts; NULL
# scores travel as -1 so that "no response" (NULL) stays distinguishable. The
# "LIMIT -1 OFFSET 0" keeps SQLite from flattening a subquery into the aggregate
# (which would run its seek once per column reading it) without materialising it.
_RECOVERY = """
    WITH last_close AS (
        SELECT c.customer_id, max(c.closed_at) AS closed_at
        FROM cases AS c INDEXED BY cases_last_close
        WHERE c.closed_at IS NOT NULL AND {where}
        GROUP BY c.customer_id
    ), after AS (
        SELECT l.customer_id, l.closed_at, (
            SELECT coalesce(r.score, -1) FROM responses AS r INDEXED BY responses_scores
            WHERE r.customer_id = l.customer_id AND r.submitted_at > l.closed_at
            ORDER BY r.submitted_at, r.seq LIMIT 1
        ) AS score
        FROM last_close AS l LIMIT -1 OFFSET 0
    ), pairs AS (
        SELECT (
            SELECT coalesce(r.score, -1) FROM responses AS r INDEXED BY responses_scores
            WHERE r.customer_id = a.customer_id AND r.submitted_at <= a.closed_at
            ORDER BY r.submitted_at DESC, r.seq DESC LIMIT 1
        ) AS before, a.score AS after
        FROM after AS a WHERE a.score IS NOT NULL LIMIT -1 OFFSET 0
    )
    SELECT count(*),
        count(*) FILTER (WHERE before BETWEEN :detractor_low AND :detractor_high),
        count(*) FILTER (WHERE before BETWEEN :detractor_low AND :detractor_high
            AND after >= :recovered),
        coalesce(sum(before) FILTER (WHERE before >= 0), 0), count(*) FILTER (WHERE before >= 0),
        coalesce(sum(after) FILTER (WHERE after >= 0), 0), count(*) FILTER (WHERE after >= 0)
    FROM pairs
"""


def _recovery(conn: sqlite3.Connection, where: str, params: dict[str, Any]) -> Recovery:
    thresholds = {
        "detractor_low": DETRACTOR_SCORES.start,
        "detractor_high": DETRACTOR_SCORES.stop - 1,
        "recovered": RECOVERED_SCORE,
    }
    row = conn.execute(_RECOVERY.format(where=where), {**params, **thresholds}).fetchone()
    customers, detractors, recovered, before_sum, before_count, after_sum, after_count = row
    return Recovery.from_totals(
        customers=customers,
        detractors=detractors,
        recovered=recovered,
        before_sum=before_sum,
        before_count=before_count,
        after_sum=after_sum,
        after_count=after_count,
    )
