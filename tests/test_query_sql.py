"""Case lists in the SQL stores: each order walks an index, and older databases migrate forward.

The plans are read from the databases themselves (``EXPLAIN QUERY PLAN`` on SQLite,
``EXPLAIN (FORMAT JSON)`` on PostgreSQL) for the statements the stores really run,
captured as they run.
"""

from __future__ import annotations

import json
import re
import sqlite3
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from closeloop import UNASSIGNED, CaseQuery, CloseLoop, Priority, Status
from closeloop.query import SORTS, URGENCY
from closeloop.storage import SQLiteStore
from closeloop.storage.sql_query import URGENCY_SQL
from closeloop.storage.sqlite import MIGRATIONS, to_micros
from closeloop.testing import FixedClock

T0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
#: The index each order reads, with the assignee in front (home page) or without.
INDEXES = {"opened": "opened", "updated": "updated", "due": "due", "priority": "priority"}


def fill(loop: CloseLoop, clock: FixedClock, count: int) -> None:
    """``count`` cases over three assignees and no one, with due dates and priorities."""
    for number in range(count):
        clock.advance(minutes=1)
        case = loop.open_case(f"cust-{number}", by="agent", priority=list(Priority)[number % 4],
                              due_at=None if number % 3 == 0 else clock() + timedelta(hours=number))
        if number % 4:
            loop.assign(case.id, to=["alice", "bob", "carol"][number % 3], by="boss")


def test_urgency_sql_is_the_urgency_order() -> None:
    """The SQL urgency expression ranks each priority as closeloop.query.URGENCY does."""
    conn = sqlite3.connect(":memory:")
    for priority, rank in URGENCY.items():
        assert conn.execute(f"SELECT {URGENCY_SQL.replace('priority', '?')}",
                            (priority.value,)).fetchone() == (rank,)
    conn.close()


class TestSQLitePlans:
    """Every page of every order is a range scan of that order's index: no table scan, no sort."""

    @pytest.fixture
    def traced(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> Iterator[tuple[CloseLoop, list[str]]]:
        """A loop over a SQLite file with 60 cases, and the SQL its connections run from now on."""
        clock = FixedClock(T0)
        store = SQLiteStore(tmp_path / "plans.db")
        fill(CloseLoop(store=store, clock=clock), clock, 60)
        store.close()
        statements: list[str] = []
        connect: Callable[..., sqlite3.Connection] = sqlite3.connect

        def tracing(*args: Any, **kwargs: Any) -> sqlite3.Connection:
            conn = connect(*args, **kwargs)
            conn.set_trace_callback(statements.append)
            return conn

        monkeypatch.setattr(sqlite3, "connect", tracing)
        store = SQLiteStore(tmp_path / "plans.db")
        yield CloseLoop(store=store, clock=clock), statements
        store.close()

    def plans(self, tmp_path: Path, loop: CloseLoop, statements: list[str],
              query: CaseQuery) -> list[str]:
        """The plans of the first two pages of ``query``, as SQLite reports them."""
        statements.clear()
        first = loop.page(query, size=5)
        loop.page(query, after=first.next_cursor, size=5)
        pages = [s for s in statements if s.startswith("SELECT") and "FROM cases AS c" in s]
        assert len(pages) == 2
        conn = sqlite3.connect(tmp_path / "plans.db")
        try:
            return [" | ".join(row[3] for row in conn.execute(f"EXPLAIN QUERY PLAN {sql}"))
                    for sql in pages]
        finally:
            conn.close()

    def test_the_home_page_walks_the_assignee_index(
        self, tmp_path: Path, traced: tuple[CloseLoop, list[str]]
    ) -> None:
        """An assignee's open cases, oldest first: an index search, no scan, no temp b-tree."""
        loop, statements = traced
        query = CaseQuery(assignee="alice", status=["open", "progress"])
        first, second = self.plans(tmp_path, loop, statements, query)
        assert first == "SEARCH c USING INDEX cases_by_assignee_opened (assignee=?)"
        assert second == ("SEARCH c USING INDEX cases_by_assignee_opened "
                          "(assignee=? AND (opened_at,id)>(?,?))")

    @pytest.mark.parametrize("sort", [sort for sort in SORTS if "updated" not in sort])
    @pytest.mark.parametrize("assignee", ["bob", UNASSIGNED, None])
    def test_every_order_walks_its_index(
        self, tmp_path: Path, traced: tuple[CloseLoop, list[str]], sort: str, assignee: Any
    ) -> None:
        """Each order (either way), with or without an assignee: its index, started at the cursor."""
        loop, statements = traced
        query = CaseQuery(assignee=assignee, sort=sort, status="open")
        index = f"cases_by_{'assignee_' if assignee else ''}{INDEXES[query.sort.name]}"
        for number, plan in enumerate(self.plans(tmp_path, loop, statements, query)):
            assert f"USING INDEX {index} " in f"{plan} ", plan
            assert "TEMP B-TREE" not in plan
            if assignee is not None:
                assert plan.startswith("SEARCH")
            if number:  # a later page starts its range at the cursor
                assert (">(" if sort[0] != "-" else "<(") in plan


    @pytest.mark.parametrize("sort", ["updated", "-updated"])
    def test_the_updated_order_is_sorted_on_purpose(
        self, tmp_path: Path, traced: tuple[CloseLoop, list[str]], sort: str
    ) -> None:
        """No index on updated_at (each would cost every change): an assignee's cases are sorted."""
        loop, statements = traced
        query = CaseQuery(assignee="bob", sort=sort)
        for plan in self.plans(tmp_path, loop, statements, query):
            assert plan == ("SEARCH c USING INDEX cases_by_assignee (assignee=?) | "
                            "USE TEMP B-TREE FOR ORDER BY")


class TestSQLiteMigration:
    """A file made before the case-list migration moves forward without loss."""

    def test_an_older_file_gets_the_orders_and_keeps_its_cases(self, tmp_path: Path) -> None:
        """Cases written before the migration list in every order afterwards, unchanged."""
        before = next(n for n, script in enumerate(MIGRATIONS) if "cases_by_assignee_opened" in script)
        path = tmp_path / "old.db"
        conn = sqlite3.connect(path)
        conn.executescript("\n".join(MIGRATIONS[:before]) + f"\nPRAGMA user_version = {before};")
        rows = [("a", "urgent", None, 3), ("b", "low", T0 + timedelta(hours=1), 1),
                ("c", "high", T0 + timedelta(hours=2), 2)]
        conn.executemany(
            "INSERT INTO cases (id, customer_id, status, assignee, reasons, response_ids, "
            "priority, due_at, opened_at, updated_at, closed_at, opened_by, version) "
            "VALUES (?, 'cust', 'open', 'alice', '[\"detractor\"]', '[]', ?, ?, ?, ?, NULL, "
            "'agent', 1)",
            [(case_id, priority, None if due is None else to_micros(due),
              to_micros(T0 + timedelta(minutes=minute)), to_micros(T0 + timedelta(minutes=minute)))
             for case_id, priority, due, minute in rows],
        )
        conn.commit()
        conn.close()
        store = SQLiteStore(path)
        try:
            assert store.schema_version == len(MIGRATIONS)
            loop = CloseLoop(store=store, clock=FixedClock(T0))
            order = {sort: "".join(c.id for c in loop.page(CaseQuery(assignee="alice", sort=sort)).cases)
                     for sort in ("opened", "due", "priority", "-priority")}
            assert order == {"opened": "bca", "due": "bca", "priority": "acb", "-priority": "bca"}
            case = store.get("a")
            assert (case.priority, case.due_at, case.reasons, case.status) == (
                Priority.URGENT, None, ("detractor",), Status.OPEN)
        finally:
            store.close()


@pytest.mark.postgres
class TestPostgres:
    """The same on PostgreSQL: the orders' indexes, and migrating an older schema."""

    def test_the_home_page_uses_an_index_and_no_sort(self, dsn: str) -> None:
        """With 3,000 cases and statistics, every order of a home page is an index scan, unsorted."""
        import psycopg
        from psycopg_pool import ConnectionPool

        from postgres_workers import drop_schema, scratch_schema

        statements: list[tuple[Any, Any]] = []

        class Recording(psycopg.Connection[Any]):
            def execute(self, query: Any, params: Any = None, **options: Any) -> Any:
                statements.append((query, params))
                return super().execute(query, params, **options)

        schema = scratch_schema()
        from closeloop.storage import PostgresStore

        with ConnectionPool(dsn, min_size=1, max_size=2, connection_class=Recording,
                            kwargs={"autocommit": True}) as pool:
            store = PostgresStore(pool, schema=schema)
            try:
                with psycopg.connect(dsn, autocommit=True) as conn:
                    conn.execute(
                        f'INSERT INTO "{schema}".cases (id, customer_id, status, assignee, reasons, '
                        "response_ids, priority, due_at, opened_at, updated_at, opened_by, version) "
                        "SELECT 'case-' || i, 'cust-' || i, 'open', 'agent-' || mod(i, 5), '{}', '{}', "
                        "(ARRAY['low', 'normal', 'high', 'urgent'])[1 + mod(i, 4)], "
                        "CASE WHEN mod(i, 3) = 0 THEN NULL ELSE %s + i * interval '1 minute' END, "
                        "%s + i * interval '1 minute', %s + mod(i * 7919, 3000) * interval '1 second', "
                        "'agent', 1 FROM generate_series(1, 3000) AS i", (T0, T0, T0))
                    conn.execute(f'ANALYZE "{schema}".cases')
                    loop = CloseLoop(store=store, clock=FixedClock(T0))
                    for sort in SORTS:
                        query = CaseQuery(assignee="agent-1", sort=sort)
                        first = loop.page(query, size=20)
                        statements.clear()
                        loop.page(query, after=first.next_cursor, size=20)
                        (sql, params), = [s for s in statements if "ORDER BY" in str(s[0])]
                        plan = json.dumps(conn.execute(f"EXPLAIN (FORMAT JSON) {sql}",
                                                       params).fetchone())
                        # The planner may walk the order's index with or without the assignee
                        # in front; either way the rows come out in order, unsorted.
                        index = f"cases_by_(assignee_)?{INDEXES[query.sort.name]}"
                        assert re.search(f'"Index Name": "{index}"', plan), plan
                        assert '"Sort"' not in plan and '"Seq Scan"' not in plan, plan
            finally:
                store.close()
                drop_schema(dsn, schema)

    def test_an_older_schema_gets_the_order_indexes(self, dsn: str) -> None:
        """A schema from before the case-list migration is migrated; its cases list as before."""
        import psycopg

        from closeloop.storage import PostgresStore
        from closeloop.storage.postgres_schema import MIGRATIONS as PG_MIGRATIONS
        from postgres_workers import drop_schema, scratch_schema

        schema = scratch_schema()
        before = next(n for n, script in enumerate(PG_MIGRATIONS) if "cases_by_assignee_opened" in script)
        try:
            with psycopg.connect(dsn, autocommit=True) as conn:
                conn.execute(f'CREATE SCHEMA "{schema}"')
                conn.execute(f'CREATE TABLE "{schema}".schema_migrations (version integer PRIMARY '
                             "KEY, applied_at timestamptz NOT NULL DEFAULT now())")
                for number in range(before):
                    conn.execute(PG_MIGRATIONS[number].format(schema=f'"{schema}"'))
                    conn.execute(f'INSERT INTO "{schema}".schema_migrations (version) VALUES (%s)',
                                 (number + 1,))
                conn.execute(
                    f'INSERT INTO "{schema}".cases (id, customer_id, status, assignee, reasons, '
                    "response_ids, priority, due_at, opened_at, updated_at, opened_by, version) "
                    "VALUES ('a', 'c', 'open', 'alice', '{}', '{}', 'urgent', NULL, %s, %s, 'x', 1), "
                    "('b', 'c', 'open', 'alice', '{}', '{}', 'low', %s, %s, %s, 'x', 1)",
                    (T0, T0, T0, T0 - timedelta(minutes=1), T0))
            store = PostgresStore(dsn, schema=schema)
            try:
                assert store.schema_version == len(PG_MIGRATIONS)
                loop = CloseLoop(store=store, clock=FixedClock(T0))
                assert [c.id for c in loop.page(CaseQuery(sort="priority")).cases] == ["a", "b"]
                assert [c.id for c in loop.page(CaseQuery(sort="due")).cases] == ["b", "a"]
                assert [c.id for c in loop.page(CaseQuery()).cases] == ["b", "a"]
            finally:
                store.close()
        finally:
            drop_schema(dsn, schema)


@pytest.fixture
def dsn() -> str:
    """The test server's DSN (conftest starts one when none is set)."""
    import os

    from postgres_workers import DSN_VARIABLE

    value = os.environ.get(DSN_VARIABLE)
    if not value:
        if os.environ.get("CLOSELOOP_REQUIRE_ALL") == "1":
            pytest.fail(f"{DSN_VARIABLE} is required (CLOSELOOP_REQUIRE_ALL=1) but not set")
        pytest.skip(f"set {DSN_VARIABLE} to run PostgreSQL tests")
    return value
