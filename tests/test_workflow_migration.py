"""Databases written before workflows existed migrate forward without loss, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from closeloop import Case, CloseLoop, Status, StatusChanged
from closeloop.report_reference import report_from_facts
from closeloop.reporting import Durations, ReportQuery
from closeloop.storage import SQLiteStore, Store
from closeloop.storage.sqlite import to_micros
from closeloop.storage.sqlite_rows import MIGRATIONS, split_statements
from closeloop.testing import FixedClock

T0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
HOUR = timedelta(hours=1)
#: The case and its events as the schema before workflows held them: opened, moved to
#: Progress an hour later, closed two hours after that.
EVENTS = [
    (1, "opened", "agent", T0, {"status": "open"}),
    (2, "status_changed", "alice", T0 + HOUR, {"from_status": "open", "to_status": "progress"}),
    (3, "status_changed", "alice", T0 + 3 * HOUR, {"from_status": "progress", "to_status": "closed"}),
]


def first_workflow_migration(migrations: object) -> int:
    """The index of the migration that added workflows (found by content, not by number)."""
    assert isinstance(migrations, tuple | list)
    return next(i for i, script in enumerate(migrations) if "custom_status" in script)


def check_migrated(store: Store) -> None:
    """The old case reads back whole, with its category as custom status, and reports as before."""
    case = store.get("old")
    assert (case.status, case.custom_status, case.close_reason, case.paused_at) == (
        Status.CLOSED, "closed", None, None)
    assert (case.opened_at, case.closed_at, case.version, case.assignee) == (
        T0, T0 + 3 * HOUR, 3, "alice")
    changes = [e for e in store.history("old") if isinstance(e, StatusChanged)]
    assert [(e.from_custom_status, e.to_custom_status) for e in changes] == [
        ("open", "progress"), ("progress", "closed")]
    query = ReportQuery(now=T0 + 5 * HOUR)
    report = store.report(query)
    assert report.custom_status_counts == {"open": 0, "progress": 0, "closed": 1}
    assert report.time_in_status["open"] == Durations(count=1, mean=HOUR, median=HOUR, p90=HOUR)
    assert report.time_in_status["progress"].median == 2 * HOUR
    assert report.time_to_close.median == 3 * HOUR
    assert report == report_from_facts(query, store.report_facts(query))
    # And the migrated store keeps working: reopen the old case through a loop.
    clock = FixedClock(T0 + 6 * HOUR)
    reopened = CloseLoop(store=store, clock=clock).set_status("old", Status.OPEN, by="bob",
                                                              comment="Customer called")
    assert store.get("old") == reopened
    assert store.report(ReportQuery(now=clock())).time_in_status["closed"].median == 3 * HOUR


def test_sqlite_file_from_before_workflows_migrates(tmp_path: Path) -> None:
    """An SQLite file at the schema before workflows gains the columns and its stays in statuses."""
    path = tmp_path / "old.db"
    conn = sqlite3.connect(path, isolation_level=None)
    upto = first_workflow_migration(MIGRATIONS)
    for script in MIGRATIONS[:upto]:
        for statement in split_statements(script):
            conn.execute(statement)
    conn.execute(f"PRAGMA user_version = {upto}")
    conn.execute(
        "INSERT INTO cases (id, customer_id, status, assignee, reasons, response_ids, priority, "
        "due_at, opened_at, updated_at, closed_at, opened_by, version) VALUES "
        "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        ("old", "cust", "closed", "alice", '["detractor"]', "[]", "normal", None, to_micros(T0),
         to_micros(T0 + 3 * HOUR), to_micros(T0 + 3 * HOUR), "agent", 3),
    )
    for seq, kind, actor, at, data in EVENTS:
        conn.execute("INSERT INTO events (case_id, seq, kind, actor, at, comment, via, data) "
                     "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                     ("old", seq, kind, actor, to_micros(at), None, None, json.dumps(data)))
    conn.close()
    store = SQLiteStore(path)
    try:
        assert store.schema_version == len(MIGRATIONS)
        check_migrated(store)
    finally:
        store.close()


@pytest.fixture
def postgres_dsn() -> str:
    """The test server's DSN (conftest starts one unless CLOSELOOP_TEST_POSTGRES_DSN is set)."""
    value = os.environ.get("CLOSELOOP_TEST_POSTGRES_DSN")
    if not value:
        if os.environ.get("CLOSELOOP_REQUIRE_ALL") == "1":
            pytest.fail("CLOSELOOP_TEST_POSTGRES_DSN is required (CLOSELOOP_REQUIRE_ALL=1)")
        pytest.skip("no PostgreSQL server")
    return value


@pytest.fixture
def old_postgres_schema(postgres_dsn: str) -> Iterator[str]:
    """A schema at the version before workflows, holding the old case; dropped afterwards."""
    psycopg = pytest.importorskip("psycopg")
    from closeloop.storage.postgres_schema import MIGRATIONS as PG_MIGRATIONS
    from postgres_workers import drop_schema, scratch_schema

    schema = scratch_schema()
    name = f'"{schema}"'
    upto = first_workflow_migration(PG_MIGRATIONS)
    with psycopg.connect(postgres_dsn, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {name}")
        conn.execute(f"CREATE TABLE {name}.schema_migrations (version integer PRIMARY KEY, "
                     "applied_at timestamptz NOT NULL DEFAULT now())")
        for number, script in enumerate(PG_MIGRATIONS[:upto], start=1):
            conn.execute(script.format(schema=name))
            conn.execute(f"INSERT INTO {name}.schema_migrations (version) VALUES (%s)", (number,))
        conn.execute(
            f"INSERT INTO {name}.cases (id, customer_id, status, assignee, reasons, response_ids, "
            "priority, due_at, opened_at, updated_at, closed_at, opened_by, version) VALUES "
            "(%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
            ("old", "cust", "closed", "alice", ["detractor"], [], "normal", None, T0,
             T0 + 3 * HOUR, T0 + 3 * HOUR, "agent", 3),
        )
        for seq, kind, actor, at, data in EVENTS:
            conn.execute(f"INSERT INTO {name}.events (case_id, seq, kind, actor, at, comment, via, "
                         "data) VALUES (%s, %s, %s, %s, %s, %s, %s, %s::jsonb)",
                         ("old", seq, kind, actor, at, None, None, json.dumps(data)))
    yield schema
    drop_schema(postgres_dsn, schema)


@pytest.mark.postgres
def test_postgres_schema_from_before_workflows_migrates(postgres_dsn: str,
                                                        old_postgres_schema: str) -> None:
    """A PostgreSQL schema at the version before workflows gains the columns, nothing lost."""
    from closeloop.storage import PostgresStore
    from closeloop.storage.postgres_schema import MIGRATIONS as PG_MIGRATIONS

    store = PostgresStore(postgres_dsn, schema=old_postgres_schema)
    try:
        assert store.schema_version == len(PG_MIGRATIONS)
        check_migrated(store)
    finally:
        store.close()


def test_case_rows_of_the_standard_workflow_store_no_custom_name() -> None:
    """A standard case's custom_status column stays NULL, as in rows written before."""
    from closeloop.storage.sqlite_rows import CODEC

    case = Case(id="c", customer_id="x", status=Status.PROGRESS, opened_at=T0, updated_at=T0,
                opened_by="a", version=1)
    assert CODEC.case_row(case)[-3:] == (None, None, None)
    assert CODEC.case_from_row(CODEC.case_row(case)) == case
