"""SQL for :class:`~closeloop.query.CaseQuery`: one page of cases, and their counts.

Shared by the SQL stores, which differ only in the few things a :class:`Dialect`
names. Every value is a bound parameter; the statement text depends only on which
filters are set and on the sort, so the driver's statement cache keeps hitting.

Each order is served by an index (see the stores' migrations): the sort keys below
are written exactly as the indexes are, ``assignee`` first where the query names
one, so a page is an index range scan that stops after ``limit`` rows, never a sort.
Keyset pagination is a row-value comparison, ``(k1, k2, id) > (?, ?, ?)``, which
both databases turn into the start of that range.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from attrs import frozen

from closeloop.errors import StoreError
from closeloop.model import Status
from closeloop.query import UNASSIGNED, URGENCY, CaseQuery, Position, Sort, ascii_lower
from closeloop.storage.rows import CASE_COLUMNS

__all__ = [
    "URGENCY_SQL",
    "Dialect",
    "count_statement",
    "overdue_sql",
    "page_statement",
    "status_of",
]

#: The urgency of a case's priority (:data:`~closeloop.query.URGENCY`) in SQL: the
#: ``sort="priority"`` key. The stores' priority indexes (or SQLite's generated
#: ``urgency`` column) are built on this very expression.
URGENCY_SQL = ("CASE priority WHEN 'urgent' THEN 0 WHEN 'high' THEN 1 WHEN 'normal' THEN 2 "
               "WHEN 'low' THEN 3 END")

_STATUSES = {status.value: status for status in Status}


def overdue_sql(now: str) -> str:
    """The one SQL statement of :func:`closeloop.reporting.is_overdue`, at the time bound to ``now``.

    Never NULL, so ``NOT (…)`` is its exact complement.
    """
    return (f"(status <> 'closed' AND paused_at IS NULL AND due_at IS NOT NULL "
            f"AND due_at <= {now})")


@frozen
class Dialect:
    """What differs between the SQL stores in a case query.

    Attributes:
        cases, events: the tables' names as the statement writes them.
        placeholder: the driver's parameter marker.
        time: a time as a bound parameter.
        id_key: the case id as it sorts (code point order, as Python's ``str``).
        due_key: ``due_at`` as ``sort="due"`` sorts it, NULL (no due date) last.
        due_position: the SQL for a position's due date, bound to ``due_param(value)``
            (``value`` is ``None`` for no due date).
        urgency_key: the priority as ``sort="priority"`` sorts it (:data:`URGENCY_SQL`).
        has_reason: a condition: the case's reasons include the bound reason.
        comment_contains: a condition on ``e.comment``: it contains the bound text
            once ASCII letters are lowered (:func:`~closeloop.query.ascii_lower`).
        not_leading: how a page statement writes a column that its index must not
            lead with (``"{}"`` when the planner can judge for itself).
        sorted_orders: the orders (``Sort.name``) the store has no index for, so the
            matching cases are sorted: there, any index may lead.
    """

    cases: str
    events: str
    placeholder: str
    time: Callable[[datetime], Any]
    id_key: str
    due_key: str
    due_position: str
    due_param: Callable[[datetime | None], Any]
    urgency_key: str
    has_reason: str
    comment_contains: str
    not_leading: str = "{}"
    sorted_orders: frozenset[str] = frozenset()

    def sort_keys(self, sort: Sort) -> list[str]:
        """The SQL expressions of the sort's fields, in order."""
        keys = {"opened_at": "opened_at", "updated_at": "updated_at", "id": self.id_key,
                "due_at": self.due_key, "priority": self.urgency_key}
        return [keys[name] for name in sort.fields]

    def position(self, sort: Sort, position: Position) -> tuple[list[str], list[Any]]:
        """The bound values of a position, with the SQL that stands for each."""
        marks: list[str] = []
        params: list[Any] = []
        for name, value in zip(sort.fields, position, strict=True):
            if name == "due_at":
                marks.append(self.due_position)
                params.append(self.due_param(value))
            elif name == "priority":
                marks.append(self.placeholder)
                params.append(URGENCY[value])
            else:
                marks.append(self.placeholder)
                params.append(self.time(value) if isinstance(value, datetime) else value)
        return marks, params


def _filters(
    query: CaseQuery, now: datetime, d: Dialect, *, paging: bool = False
) -> tuple[list[str], list[Any]]:
    """The query's conditions (all must hold) and their parameters.

    When ``paging``, the status and priority lists are kept from leading the index
    choice (:attr:`Dialect.not_leading`): a page is read in its order's index and
    stops at the limit, where an index on the status would find every active case
    and then sort them all. A count wants the status index, and gets it.
    """
    p = d.placeholder
    where: list[str] = []
    params: list[Any] = []
    if query.assignee is UNASSIGNED:
        where.append("assignee IS NULL")
    elif query.assignee is not None:
        where.append(f"assignee = {p}")
        params.append(query.assignee)
    # Filters on a set of values (enums or plain strings). custom_status is stored as
    # NULL when it is the category's own name, hence the coalesce.
    for column, values in (("status", query.status), ("priority", query.priority),
                           ("coalesce(custom_status, status)", query.custom_status)):
        if values is not None:
            ordered = sorted(str(value) for value in values)
            written = d.not_leading.format(column) if paging else column
            where.append(f"{written} IN ({', '.join([p] * len(ordered))})")
            params.extend(ordered)
    if query.customer_id is not None:
        where.append(f"customer_id = {p}")
        params.append(query.customer_id)
    if query.reason is not None:
        where.append(d.has_reason)
        params.append(query.reason)
    if query.overdue is not None:
        where.append(overdue_sql(p) if query.overdue else f"NOT {overdue_sql(p)}")
        params.append(d.time(now))
    for condition, bound in (("due_at < ", query.due_before), ("opened_at >= ", query.opened_since),
                             ("opened_at < ", query.opened_until)):
        if bound is not None:
            where.append(f"{condition}{p}")
            params.append(d.time(bound))
    if query.text is not None:
        where.append(f"EXISTS (SELECT 1 FROM {d.events} AS e WHERE e.case_id = c.id "
                     f"AND {d.comment_contains})")
        params.append(ascii_lower(query.text))
    return where, params


def page_statement(
    query: CaseQuery, *, now: datetime, after: Position | None, limit: int, dialect: Dialect
) -> tuple[str, list[Any]]:
    """``SELECT`` of up to ``limit`` cases (:data:`CASE_COLUMNS`) of ``query`` after ``after``."""
    where, params = _filters(query, now, dialect,
                             paging=query.sort.name not in dialect.sorted_orders)
    sort = query.sort
    keys = dialect.sort_keys(sort)
    if after is not None:
        marks, values = dialect.position(sort, after)
        where.append(f"({', '.join(keys)}) {'<' if sort.descending else '>'} ({', '.join(marks)})")
        params.extend(values)
    direction = " DESC" if sort.descending else ""
    statement = (
        f"SELECT {CASE_COLUMNS} FROM {dialect.cases} AS c {_where(where)} "
        f"ORDER BY {', '.join(key + direction for key in keys)} LIMIT {dialect.placeholder}"
    )
    params.append(limit)
    return statement, params


def count_statement(
    query: CaseQuery, *, now: datetime, by_assignee: bool, dialect: Dialect
) -> tuple[str, list[Any]]:
    """``SELECT status, assignee, count(*)`` of ``query``'s cases, grouped (see :func:`status_of`)."""
    where, params = _filters(query, now, dialect)
    if by_assignee:
        return (f"SELECT status, assignee, count(*) FROM {dialect.cases} AS c {_where(where)} "
                "GROUP BY status, assignee"), params
    return (f"SELECT status, NULL, count(*) FROM {dialect.cases} AS c {_where(where)} "
            "GROUP BY status"), params


def status_of(rows: Sequence[Sequence[Any]]) -> list[tuple[Status, str | None, int]]:
    """The rows of :func:`count_statement` as groups; a status closeloop does not know is a StoreError."""
    groups = []
    for status, assignee, count in rows:
        if status not in _STATUSES or not (assignee is None or type(assignee) is str):
            raise StoreError(f"a case in the database has a status or assignee closeloop never "
                             f"writes: {status!r}, {assignee!r}")
        groups.append((_STATUSES[status], assignee, count))
    return groups


def _where(conditions: list[str]) -> str:
    return f"WHERE {' AND '.join(conditions)}" if conditions else ""
