"""Reports for :class:`~closeloop.storage.SQLiteStore`, computed in SQL.

Every figure is aggregated by SQLite; Python receives a few dozen rows at most
(one per assignee and status, one per reason and status, and the rows that hold
the percentiles) and finishes them through the helpers in
:mod:`closeloop.reporting`, exactly as the memory store does. All queries run
in one read transaction, so the report is one consistent snapshot even while
other processes write.

How the harder parts are done:

- **Percentiles** (nearest rank): ``row_number()`` over the durations in order,
  with the count and sum over the same window; only the rows at the two ranks
  come back. Per assignee, the same partitioned by assignee.
- **Means** are exact: durations are summed as whole seconds and leftover
  microseconds separately, because a plain sum of microseconds over a million
  long-open cases can overflow SQLite's 64-bit integers.
- **Time to first action**: for each case, an index walk over its events in
  ``seq`` order stops at the first qualifying one.
- **Reasons** are a JSON array per case, unnested with ``json_each``.
"""

from __future__ import annotations

import sqlite3
from datetime import timedelta
from typing import Any

from closeloop.model import Status
from closeloop.reporting import (
    AGE_BUCKETS,
    DETRACTOR_SCORES,
    FIRST_ACTION_KINDS,
    RECOVERED_SCORE,
    AssigneeStats,
    Durations,
    Recovery,
    Report,
    ReportQuery,
    full_counts,
    nearest_rank,
    share,
    summarise,
)
from closeloop.storage.sqlite import to_micros

__all__ = ["report_from_sqlite"]

_MICROS_PER_SECOND = 1_000_000
_MICROSECOND = timedelta(microseconds=1)

# Fixed constants, written into the SQL as literals (not parameters) so that the
# planner can match them against the partial index on events.
_ACTION_KINDS = ", ".join(f"'{kind}'" for kind in FIRST_ACTION_KINDS)


def report_from_sqlite(conn: sqlite3.Connection, query: ReportQuery) -> Report:
    """Compute the report in one read transaction on ``conn`` (an autocommit connection).

    sqlite3 errors propagate; the store translates them.
    """
    where, params = _selection(query)
    conn.execute("BEGIN")  # deferred: the first SELECT fixes the snapshot for all of them
    try:
        groups = _groups(conn, where, params)
        by_reason = _by_reason(conn, where, params)
        close_medians = _close_medians(conn, where, params)
        time_to_close = _durations(
            conn,
            f"SELECT c.closed_at - c.opened_at AS d FROM cases AS c "
            f"WHERE {where} AND c.status = 'closed'",
            params,
        )
        time_to_first_action = _durations(conn, _FIRST_ACTIONS.format(where=where), params)
        recovery = _recovery(conn, where, params)
    except BaseException:
        if conn.in_transaction:  # never mask the real error with a failing COMMIT
            conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
    return _assemble(query, groups, by_reason, close_medians, time_to_close,
                     time_to_first_action, recovery)


def _selection(query: ReportQuery) -> tuple[str, dict[str, Any]]:
    """The WHERE condition (on ``cases AS c``) selecting the query's cases, and its parameters."""
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
        clauses.append("EXISTS (SELECT 1 FROM json_each(c.reasons) WHERE value = :reason)")
        params["reason"] = query.reason
    for index, (_, lower, upper) in enumerate(AGE_BUCKETS):
        params[f"age_lower_{index}"] = lower // _MICROSECOND
        params[f"age_upper_{index}"] = None if upper is None else upper // _MICROSECOND
    return " AND ".join(clauses), params


def _age_filter(index: int) -> str:
    # The first bucket also takes negative ages (a case opened after `now`).
    lower = "" if index == 0 else f"AND :now - c.opened_at >= :age_lower_{index} "
    upper = "" if AGE_BUCKETS[index][2] is None else f"AND :now - c.opened_at < :age_upper_{index}"
    return f"count(*) FILTER (WHERE c.status != 'closed' {lower}{upper})"


_GROUPS = """
    SELECT c.assignee, c.status, count(*),
        count(*) FILTER (WHERE c.status != 'closed' AND c.due_at < :now),
        count(*) FILTER (WHERE c.status = 'closed' AND c.due_at IS NOT NULL),
        count(*) FILTER (WHERE c.status = 'closed' AND c.closed_at <= c.due_at),
        {aging}
    FROM cases AS c WHERE {where}
    GROUP BY c.assignee, c.status
"""


def _groups(conn: sqlite3.Connection, where: str, params: dict[str, Any]) -> list[tuple[Any, ...]]:
    """Per (assignee, status): cases, overdue, closed with a due date, closed in time, aging."""
    aging = ", ".join(_age_filter(index) for index in range(len(AGE_BUCKETS)))
    return conn.execute(_GROUPS.format(aging=aging, where=where), params).fetchall()


def _by_reason(
    conn: sqlite3.Connection, where: str, params: dict[str, Any]
) -> dict[str, dict[Status, int]]:
    # A reason repeated within one case counts once: only its first position is kept.
    rows = conn.execute(
        f"""
        SELECT j.value, c.status, count(*) FROM cases AS c, json_each(c.reasons) AS j
        WHERE {where} AND (j.key = 0 OR NOT EXISTS (
            SELECT 1 FROM json_each(c.reasons) AS k WHERE k.key < j.key AND k.value = j.value))
        GROUP BY j.value, c.status
        """,
        params,
    ).fetchall()
    counts: dict[str, dict[Status, int]] = {}
    for reason, status, count in rows:
        counts.setdefault(reason, {})[Status(status)] = count
    return counts


def _close_medians(
    conn: sqlite3.Connection, where: str, params: dict[str, Any]
) -> dict[str, int]:
    """Each assignee's median time to close (nearest rank), in microseconds."""
    rows = conn.execute(
        f"""
        SELECT assignee, d FROM (
            SELECT c.assignee, c.closed_at - c.opened_at AS d,
                row_number() OVER sorted AS rn, count(*) OVER whole AS n
            FROM cases AS c
            WHERE {where} AND c.status = 'closed' AND c.assignee IS NOT NULL
            WINDOW sorted AS (PARTITION BY c.assignee ORDER BY c.closed_at - c.opened_at),
                whole AS (sorted ROWS BETWEEN UNBOUNDED PRECEDING AND UNBOUNDED FOLLOWING)
        ) WHERE rn = (n * 50 + 99) / 100
        """,
        params,
    ).fetchall()
    return {assignee: duration for assignee, duration in rows}


def _durations(conn: sqlite3.Connection, values_sql: str, params: dict[str, Any]) -> Durations:
    """Count, exact mean and nearest-rank median and p90 of the column ``d`` of ``values_sql``."""
    rows = conn.execute(
        f"""
        SELECT rn, n, seconds, micros, d FROM (
            SELECT d, row_number() OVER sorted AS rn, count(*) OVER whole AS n,
                sum(d / {_MICROS_PER_SECOND}) OVER whole AS seconds,
                sum(d % {_MICROS_PER_SECOND}) OVER whole AS micros
            FROM ({values_sql}) WHERE d IS NOT NULL
            WINDOW sorted AS (ORDER BY d),
                whole AS (sorted ROWS BETWEEN UNBOUNDED PRECEDING AND UNBOUNDED FOLLOWING)
        ) WHERE rn = (n * 50 + 99) / 100 OR rn = (n * 90 + 99) / 100
        """,
        params,
    ).fetchall()
    if not rows:
        return Durations(count=0)
    _, count, seconds, micros, _ = rows[0]
    at_rank = {rank: value for rank, _, _, _, value in rows}
    return summarise(
        count,
        seconds * _MICROS_PER_SECOND + micros,  # SQL's / and % truncate alike: exact
        at_rank[nearest_rank(count, 50)],
        at_rank[nearest_rank(count, 90)],
    )


_FIRST_ACTIONS = f"""
    SELECT (
        SELECT e.at FROM events AS e
        WHERE e.case_id = c.id AND e.seq > 1 AND e.kind IN ({_ACTION_KINDS})
            AND e.actor != c.opened_by
        ORDER BY e.seq LIMIT 1
    ) - c.opened_at AS d
    FROM cases AS c WHERE {{where}}
"""

_RECOVERY = """
    WITH looked_at AS (
        SELECT id, customer_id, closed_at FROM (
            SELECT c.id, c.customer_id, c.closed_at, row_number() OVER (
                PARTITION BY c.customer_id ORDER BY c.closed_at DESC, c.id DESC) AS rn
            FROM cases AS c
            WHERE {where} AND c.status = 'closed' AND EXISTS (
                SELECT 1 FROM responses AS r
                WHERE r.case_id = c.id AND r.submitted_at <= c.closed_at)
        ) WHERE rn = 1
    ), pairs AS (
        SELECT (
            SELECT r.score FROM responses AS r
            WHERE r.case_id = l.id AND r.submitted_at <= l.closed_at
            ORDER BY r.submitted_at DESC, r.response_id DESC LIMIT 1
        ) AS before, (
            SELECT r.rowid FROM responses AS r
            WHERE r.customer_id = l.customer_id AND r.submitted_at > l.closed_at
            ORDER BY r.submitted_at, r.response_id LIMIT 1
        ) AS after_row
        FROM looked_at AS l
    )
    SELECT count(*),
        count(*) FILTER (WHERE p.before BETWEEN :detractor_low AND :detractor_high),
        count(*) FILTER (WHERE p.before BETWEEN :detractor_low AND :detractor_high
            AND a.score >= :recovered),
        coalesce(sum(p.before), 0), count(p.before), coalesce(sum(a.score), 0), count(a.score)
    FROM pairs AS p JOIN responses AS a ON a.rowid = p.after_row
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


def _assemble(
    query: ReportQuery,
    groups: list[tuple[Any, ...]],
    by_reason: dict[str, dict[Status, int]],
    close_medians: dict[str, int],
    time_to_close: Durations,
    time_to_first_action: Durations,
    recovery: Recovery,
) -> Report:
    """Add up the (assignee, status) groups into the report."""
    status_counts: dict[Status, int] = dict.fromkeys(Status, 0)
    by_assignee: dict[str, dict[Status, int]] = {}
    unassigned = overdue = closed_with_due = closed_in_time = 0
    aging = [0] * len(AGE_BUCKETS)
    for assignee, status_value, count, late, with_due, in_time, *ages in groups:
        status = Status(status_value)
        status_counts[status] += count
        if assignee is None:
            unassigned += count
        else:
            by_assignee.setdefault(assignee, {})[status] = count
        overdue += late
        closed_with_due += with_due
        closed_in_time += in_time
        aging = [held + more for held, more in zip(aging, ages, strict=True)]
    return Report(
        query=query,
        status_counts=status_counts,
        unassigned=unassigned,
        by_assignee={
            name: AssigneeStats(
                status_counts=full_counts(by_assignee[name]),
                median_time_to_close=(
                    None if name not in close_medians else close_medians[name] * _MICROSECOND
                ),
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
