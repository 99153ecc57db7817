"""Reports for :class:`~closeloop.storage.PostgresStore`, computed in SQL.

The same figures, by the same definitions, as the memory and SQLite stores
(``memory_report.py``, ``sqlite_report.py``): PostgreSQL aggregates, Python
receives a few dozen rows and finishes them through the helpers in
:mod:`closeloop.reporting`. The queries run in one ``REPEATABLE READ, READ ONLY``
transaction, so the report is one snapshot even while other processes write.

- **Durations** are whole microseconds: ``extract(epoch FROM later - earlier)``
  is an exact ``numeric`` (PostgreSQL 14 and later), times 10⁶. Sums are
  ``numeric`` too, so a mean never overflows or rounds before
  :func:`~closeloop.reporting.summarise` floors it.
- **Percentiles** (nearest rank): ``row_number()`` over the durations in order,
  with the count and sum over the same window; only the rows at the two ranks
  come back. Per assignee, the same partitioned by assignee.
- **Recovery** looks at each customer's latest close among the reported cases
  and their responses just before and just after it; responses submitted at
  the same microsecond are taken in the order they were recorded
  (``responses.recorded_seq``), as the other stores do.
- **Reasons** are a ``text[]`` per case; a reason repeated in one case counts
  once (``SELECT DISTINCT unnest(…)``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from attrs import frozen

from closeloop.model import Status
from closeloop.reporting import (
    AGE_BUCKETS,
    DETRACTOR_SCORES,
    FIRST_ACTION_KINDS,
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

if TYPE_CHECKING:
    from psycopg import Connection

__all__ = ["report_from_postgres"]


# Fixed constants, written into the SQL as literals so the planner sees them.
_ACTION_KINDS = ", ".join(f"'{kind}'" for kind in FIRST_ACTION_KINDS)


def _micros(later: str, earlier: str) -> str:
    """SQL for ``later - earlier`` in whole microseconds (a bigint)."""
    return f"(extract(epoch FROM {later} - {earlier}) * 1000000)::bigint"


def report_from_postgres(conn: Connection[Any], schema: str, query: ReportQuery) -> Report:
    """Compute the report on ``conn``, which must have just begun a transaction.

    ``schema`` is the quoted schema name. psycopg errors propagate; the store
    translates them.
    """
    conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
    where, params = _selection(query)
    groups = _groups(conn, schema, where, params)
    by_reason = _by_reason(conn, schema, where, params)
    close_medians = _close_medians(conn, schema, where, params)
    time_to_close = _durations(
        conn,
        f"SELECT {_micros('c.closed_at', 'c.opened_at')} AS d FROM {schema}.cases AS c "
        f"WHERE {where} AND c.status = 'closed'",
        params,
    )
    time_to_first_action = _durations(
        conn, _FIRST_ACTIONS.format(schema=schema, where=where), params
    )
    recovery = _recovery(conn, schema, where, params)
    workflow = WorkflowFigures(
        by_close_reason=_partitioned_durations(
            conn,
            f"SELECT c.close_reason AS k, {_micros('c.closed_at', 'c.opened_at')} AS d "
            f"FROM {schema}.cases AS c WHERE {where} AND c.status = 'closed' "
            "AND c.close_reason IS NOT NULL",
            params,
        ),
        time_in_status=_partitioned_durations(conn, _STINTS.format(schema=schema, where=where),
                                              params),
        business=_business_times(conn, schema, where, params, query),
    )
    return _assemble(query, groups, by_reason, close_medians, time_to_close,
                     time_to_first_action, recovery, workflow)


def _selection(query: ReportQuery) -> tuple[str, dict[str, Any]]:
    """The WHERE condition (on ``cases AS c``) selecting the query's cases, and its parameters."""
    clauses = ["true"]
    params: dict[str, Any] = {"now": query.now}
    if query.since is not None:
        clauses.append("c.opened_at >= %(since)s")
        params["since"] = query.since
    if query.until is not None:
        clauses.append("c.opened_at < %(until)s")
        params["until"] = query.until
    if query.assignee is not None:
        clauses.append("c.assignee = %(assignee)s")
        params["assignee"] = query.assignee
    if query.reason is not None:
        clauses.append("%(reason)s = ANY(c.reasons)")
        params["reason"] = query.reason
    for index, (_, lower, upper) in enumerate(AGE_BUCKETS):
        params[f"age_lower_{index}"] = lower
        params[f"age_upper_{index}"] = upper
    return " AND ".join(clauses), params


def _age_filter(index: int) -> str:
    # The first bucket also takes negative ages (a case opened after `now`).
    lower = "" if index == 0 else f"AND %(now)s - c.opened_at >= %(age_lower_{index})s "
    upper = (
        "" if AGE_BUCKETS[index][2] is None
        else f"AND %(now)s - c.opened_at < %(age_upper_{index})s"
    )
    return f"count(*) FILTER (WHERE c.status <> 'closed' {lower}{upper})"


_GROUPS = """
    SELECT c.assignee, c.status, coalesce(c.custom_status, c.status), count(*),
        count(*) FILTER (WHERE c.status <> 'closed' AND c.paused_at IS NULL
            AND c.due_at <= %(now)s),
        count(*) FILTER (WHERE c.status = 'closed' AND c.due_at IS NOT NULL),
        count(*) FILTER (WHERE c.status = 'closed' AND c.closed_at <= c.due_at),
        {aging}
    FROM {schema}.cases AS c WHERE {where}
    GROUP BY c.assignee, c.status, coalesce(c.custom_status, c.status)
"""


def _groups(
    conn: Connection[Any], schema: str, where: str, params: dict[str, Any]
) -> list[tuple[Any, ...]]:
    """Per (assignee, status): cases, overdue, closed with a due date, closed in time, aging."""
    aging = ", ".join(_age_filter(index) for index in range(len(AGE_BUCKETS)))
    return conn.execute(_GROUPS.format(aging=aging, schema=schema, where=where), params).fetchall()


def _by_reason(
    conn: Connection[Any], schema: str, where: str, params: dict[str, Any]
) -> dict[str, dict[Status, int]]:
    rows = conn.execute(
        f"""
        SELECT r.reason, c.status, count(*)
        FROM {schema}.cases AS c CROSS JOIN LATERAL (SELECT DISTINCT unnest(c.reasons) AS reason) AS r
        WHERE {where}
        GROUP BY r.reason, c.status
        """,
        params,
    ).fetchall()
    counts: dict[str, dict[Status, int]] = {}
    for reason, status, count in rows:
        counts.setdefault(reason, {})[Status(status)] = count
    return counts


def _close_medians(
    conn: Connection[Any], schema: str, where: str, params: dict[str, Any]
) -> dict[str, int]:
    """Each assignee's median time to close (nearest rank), in microseconds."""
    rows = conn.execute(
        f"""
        SELECT assignee, d FROM (
            SELECT c.assignee, {_micros('c.closed_at', 'c.opened_at')} AS d,
                row_number() OVER (PARTITION BY c.assignee ORDER BY c.closed_at - c.opened_at)
                    AS rn,
                count(*) OVER (PARTITION BY c.assignee) AS n
            FROM {schema}.cases AS c
            WHERE {where} AND c.status = 'closed' AND c.assignee IS NOT NULL
        ) AS ranked WHERE rn = (n * 50 + 99) / 100
        """,
        params,
    ).fetchall()
    return {assignee: int(duration) for assignee, duration in rows}


def _durations(conn: Connection[Any], values_sql: str, params: dict[str, Any]) -> Durations:
    """Count, exact mean and nearest-rank median and p90 of the column ``d`` of ``values_sql``."""
    rows = conn.execute(
        f"""
        SELECT rn, n, total, d FROM (
            SELECT d, row_number() OVER (ORDER BY d) AS rn, count(*) OVER () AS n,
                sum(d) OVER () AS total
            FROM ({values_sql}) AS v WHERE d IS NOT NULL
        ) AS ranked WHERE rn = (n * 50 + 99) / 100 OR rn = (n * 90 + 99) / 100
        """,
        params,
    ).fetchall()
    if not rows:
        return Durations(count=0)
    _, count, total, _ = rows[0]
    at_rank = {rank: int(value) for rank, _, _, value in rows}
    return summarise(
        count, int(total), at_rank[nearest_rank(count, 50)], at_rank[nearest_rank(count, 90)]
    )


def _partitioned_durations(
    conn: Connection[Any], values_sql: str, params: dict[str, Any]
) -> dict[str, Durations]:
    """:func:`_durations` per key ``k`` of ``values_sql`` (a query giving ``k`` and ``d``)."""
    rows = conn.execute(
        f"""
        SELECT k, rn, n, total, d FROM (
            SELECT k, d, row_number() OVER (PARTITION BY k ORDER BY d) AS rn,
                count(*) OVER (PARTITION BY k) AS n, sum(d) OVER (PARTITION BY k) AS total
            FROM ({values_sql}) AS v
        ) AS ranked WHERE rn = (n * 50 + 99) / 100 OR rn = (n * 90 + 99) / 100
        """,
        params,
    ).fetchall()
    at_rank: dict[str, dict[int, int]] = {}
    totals: dict[str, tuple[int, int]] = {}
    for key, rank, count, total, value in rows:
        at_rank.setdefault(key, {})[rank] = int(value)
        totals[key] = (count, int(total))
    return {
        key: summarise(count, total, at_rank[key][nearest_rank(count, 50)],
                       at_rank[key][nearest_rank(count, 90)])
        for key, (count, total) in totals.items()
    }


# Each ended stay in a status: from the previous status change (or the opening) to the
# change that left it, named by that change's from_custom_status (older events: from_status).
_STINTS = f"""
    SELECT coalesce(e.data->>'from_custom_status', e.data->>'from_status') AS k,
        {_micros('e.at', "coalesce(lag(e.at) OVER (PARTITION BY e.case_id ORDER BY e.seq), c.opened_at)")}
            AS d
    FROM {{schema}}.cases AS c JOIN {{schema}}.events AS e ON e.case_id = c.id
    WHERE {{where}} AND e.kind = 'status_changed'
"""


def _business_times(
    conn: Connection[Any], schema: str, where: str, params: dict[str, Any], query: ReportQuery
) -> tuple[Durations | None, Durations | None]:
    """Time to first action and to close in the query's business hours (None without them)."""
    calendar = query.calendar
    if calendar is None:
        return None, None
    first: list[int] = []
    close: list[int] = []
    for opened, acted, closed in conn.execute(
        f"SELECT c.opened_at, ({_FIRST_ACTION_AT}), c.closed_at "
        f"FROM {schema}.cases AS c WHERE {where}".format(schema=schema),
        params,
    ):
        if acted is not None:
            first.append(calendar.between(opened, acted) // MICROSECOND)
        if closed is not None:
            close.append(calendar.between(opened, closed) // MICROSECOND)
    return durations(first), durations(close)


@frozen(kw_only=True)
class WorkflowFigures:
    """The report's figures about custom statuses, close reasons and business time."""

    by_close_reason: dict[str, Durations]
    time_in_status: dict[str, Durations]
    business: tuple[Durations | None, Durations | None]


# When the case's first action happened (see closeloop.reporting.first_action_at).
_FIRST_ACTION_AT = f"""
    SELECT e.at FROM {{schema}}.events AS e
    WHERE e.case_id = c.id AND e.seq > 1 AND e.kind IN ({_ACTION_KINDS})
        AND e.actor <> c.opened_by
    ORDER BY e.seq LIMIT 1
"""

_FIRST_ACTIONS = f"""
    SELECT (
        SELECT {_micros('e.at', 'c.opened_at')} FROM {{schema}}.events AS e
        WHERE e.case_id = c.id AND e.seq > 1 AND e.kind IN ({_ACTION_KINDS})
            AND e.actor <> c.opened_by
        ORDER BY e.seq LIMIT 1
    ) AS d
    FROM {{schema}}.cases AS c WHERE {{where}}
"""

_RECOVERY = """
    WITH last_close AS (
        SELECT c.customer_id, max(c.closed_at) AS closed_at
        FROM {schema}.cases AS c WHERE {where} AND c.status = 'closed'
        GROUP BY c.customer_id
    ), pairs AS (
        SELECT (
            SELECT r.score FROM {schema}.responses AS r
            WHERE r.customer_id = l.customer_id AND r.submitted_at <= l.closed_at
            ORDER BY r.submitted_at DESC, r.recorded_seq DESC LIMIT 1
        ) AS before, a.score AS after
        FROM last_close AS l CROSS JOIN LATERAL (
            SELECT r.score FROM {schema}.responses AS r
            WHERE r.customer_id = l.customer_id AND r.submitted_at > l.closed_at
            ORDER BY r.submitted_at, r.recorded_seq LIMIT 1
        ) AS a
    )
    SELECT count(*),
        count(*) FILTER (WHERE before BETWEEN %(detractor_low)s AND %(detractor_high)s),
        count(*) FILTER (WHERE before BETWEEN %(detractor_low)s AND %(detractor_high)s
            AND after >= %(recovered)s),
        coalesce(sum(before), 0), count(before), coalesce(sum(after), 0), count(after)
    FROM pairs
"""


def _recovery(
    conn: Connection[Any], schema: str, where: str, params: dict[str, Any]
) -> Recovery:
    thresholds = {
        "detractor_low": DETRACTOR_SCORES.start,
        "detractor_high": DETRACTOR_SCORES.stop - 1,
        "recovered": RECOVERED_SCORE,
    }
    row = conn.execute(
        _RECOVERY.format(schema=schema, where=where), {**params, **thresholds}
    ).fetchone()
    assert row is not None  # an aggregate without GROUP BY returns one row
    customers, detractors, recovered, before_sum, before_count, after_sum, after_count = row
    return Recovery.from_totals(
        customers=customers,
        detractors=detractors,
        recovered=recovered,
        before_sum=int(before_sum),
        before_count=before_count,
        after_sum=int(after_sum),
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
    workflow: WorkflowFigures,
) -> Report:
    """Add up the (assignee, status, custom status) groups, then assemble the report."""
    status_counts: dict[Status, int] = dict.fromkeys(Status, 0)
    custom_counts: dict[str, int] = {}
    by_assignee: dict[str, dict[Status, int]] = {}
    unassigned = overdue = closed_with_due = closed_in_time = 0
    aging = [0] * len(AGE_BUCKETS)
    for assignee, status_value, custom, count, late, with_due, in_time, *ages in groups:
        status = Status(status_value)
        status_counts[status] += count
        custom_counts[custom] = custom_counts.get(custom, 0) + count
        if assignee is None:
            unassigned += count
        else:
            counts = by_assignee.setdefault(assignee, {})
            counts[status] = counts.get(status, 0) + count
        overdue += late
        closed_with_due += with_due
        closed_in_time += in_time
        aging = [held + more for held, more in zip(aging, ages, strict=True)]
    return assemble_report(
        query,
        status_counts=status_counts,
        unassigned=unassigned,
        by_assignee=by_assignee,
        close_medians={name: us * MICROSECOND for name, us in close_medians.items()},
        by_reason=by_reason,
        time_to_first_action=time_to_first_action,
        time_to_close=time_to_close,
        overdue=overdue,
        closed_in_time=closed_in_time,
        closed_with_due=closed_with_due,
        aging=aging,
        recovery=recovery,
        custom_status_counts=custom_counts,
        by_close_reason=workflow.by_close_reason,
        time_in_status=workflow.time_in_status,
        business_time_to_first_action=workflow.business[0],
        business_time_to_close=workflow.business[1],
    )
