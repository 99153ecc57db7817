"""An outbox written by an older closeloop (rendered text, no channels) migrates forward and delivers.

Each test builds a real database at the schema version just before notices became
data, writes a case and a pending notice the way that version did, opens it with
today's store (which migrates it) and delivers the notice through a real SMTP
server (aiosmtpd).
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path

import pytest

from closeloop import CloseLoop, DeliveryReport
from closeloop.notify import SmtpNotifier
from closeloop.storage import SQLiteStore, Store
from closeloop.storage.sqlite_rows import MIGRATIONS as SQLITE_MIGRATIONS
from closeloop.storage.sqlite_rows import split_statements, to_micros
from smtp_server import HOST, SmtpServer

AT = datetime(2026, 1, 7, 9, 0, tzinfo=UTC)
OLD_CASE = ("case-1", "cust-1", "open", "alice", "[]", "[]", "normal", None, "agent", 2)
OLD_NOTICE = ("notice-old-1", "case-1", "assigned", "alice",
              "Case case-1 for customer cust-1 assigned to you",
              "bob assigned you a case for customer cust-1.\n", "<p>bob assigned you a case</p>")


def notices_as_data(migrations: Sequence[str]) -> int:
    """The index of the migration that made notices data (the outbox rebuild), found by content."""
    return next(n for n, script in enumerate(migrations) if "message_id" in script)


@pytest.fixture
def smtp() -> Iterator[SmtpServer]:
    """A real SMTP server on loopback."""
    with SmtpServer() as server:
        yield server


def deliver_old_notice(store: Store, smtp: SmtpServer) -> None:
    """The migrated notice is pending as it was written and goes out with its stored text."""
    (notice,) = store.pending_notices()
    assert (notice.id, notice.message_id, notice.channel, notice.to, notice.content) == (
        "notice-old-1", "notice-old-1", "default", "alice", None)
    assert (notice.subject, notice.text, notice.html) == OLD_NOTICE[4:]
    assert (notice.created_at, notice.next_attempt_at, notice.attempts) == (AT, AT, 1)
    loop = CloseLoop(store=store, notifiers={"email": SmtpNotifier(
        HOST, smtp.port, sender="care@example.test", address_of={"alice": "alice@example.test"})})
    assert loop.deliver_pending() == DeliveryReport(sent=1, failed=0)
    email = smtp.received[0].parsed()
    assert email["Subject"] == OLD_NOTICE[4]
    assert email["Message-ID"] == "<notice-old-1@example.test>"
    assert store.pending_notices() == []
    assert loop.get("case-1").assignee == "alice"


def test_sqlite_file_with_pending_notices_migrates_forward(tmp_path: Path, smtp: SmtpServer) -> None:
    """A SQLite file from before channels keeps its pending notice and delivers it after migrating."""
    path = tmp_path / "old.db"
    index = notices_as_data(SQLITE_MIGRATIONS)
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("BEGIN")
    for script in SQLITE_MIGRATIONS[:index]:
        for statement in split_statements(script):
            conn.execute(statement)
    at = to_micros(AT)
    conn.execute(
        "INSERT INTO cases (id, customer_id, status, assignee, reasons, response_ids, priority, "
        "due_at, opened_at, updated_at, closed_at, opened_by, version) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, NULL, ?, ?)",
        (*OLD_CASE[:8], at, at, *OLD_CASE[8:]),
    )
    conn.execute(
        "INSERT INTO outbox (id, case_id, kind, recipient, subject, text, html, created_at, "
        "next_attempt_at, attempts, last_error, sent_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 1, "
        "'NotifierError(down)', NULL)",
        (*OLD_NOTICE, at, at),
    )
    conn.execute(
        "INSERT INTO outbox (id, case_id, kind, recipient, subject, text, html, created_at, "
        "next_attempt_at, attempts, last_error, sent_at) VALUES ('notice-old-0', ?, ?, ?, ?, ?, ?, "
        "?, ?, 0, NULL, ?)",
        (*OLD_NOTICE[1:], at, at, at),
    )
    conn.execute(f"PRAGMA user_version = {index}")
    conn.execute("COMMIT")
    conn.close()

    store = SQLiteStore(path)
    try:
        assert store.schema_version == len(SQLITE_MIGRATIONS)
        deliver_old_notice(store, smtp)
    finally:
        store.close()


@pytest.mark.postgres
def test_postgres_schema_with_pending_notices_migrates_forward(smtp: SmtpServer) -> None:
    """A PostgreSQL schema from before channels keeps its pending notice and delivers it."""
    dsn = os.environ.get("CLOSELOOP_TEST_POSTGRES_DSN")
    if not dsn:
        pytest.skip("no PostgreSQL server")
    import psycopg

    from closeloop.storage import PostgresStore
    from closeloop.storage.postgres_schema import MIGRATIONS as PG_MIGRATIONS
    from closeloop.storage.postgres_schema import quoted
    from postgres_workers import drop_schema, scratch_schema

    schema = scratch_schema()
    name = quoted(schema)
    index = notices_as_data(PG_MIGRATIONS)
    try:
        with psycopg.connect(dsn) as conn, conn.transaction():
            conn.execute(f"CREATE SCHEMA {name}")
            conn.execute(f"CREATE TABLE {name}.schema_migrations (version integer PRIMARY KEY, "
                         "applied_at timestamptz NOT NULL DEFAULT now())")
            for number, script in enumerate(PG_MIGRATIONS[:index]):
                conn.execute(script.format(schema=name))
                conn.execute(f"INSERT INTO {name}.schema_migrations (version) VALUES (%s)",
                             (number + 1,))
            conn.execute(
                f"INSERT INTO {name}.cases (id, customer_id, status, assignee, reasons, "
                "response_ids, priority, due_at, opened_at, updated_at, closed_at, opened_by, "
                "version) VALUES (%s, %s, %s, %s, '{}', '{}', %s, %s, %s, %s, NULL, %s, %s)",
                (*OLD_CASE[:4], *OLD_CASE[6:8], AT, AT, *OLD_CASE[8:]),
            )
            conn.execute(
                f"INSERT INTO {name}.outbox (id, case_id, kind, recipient, subject, text, html, "
                "created_at, next_attempt_at, attempts, last_error, sent_at) "
                "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, 1, 'NotifierError(down)', NULL)",
                (*OLD_NOTICE, AT, AT),
            )
        store = PostgresStore(dsn, schema=schema, pool_size=2)
        try:
            assert store.schema_version == len(PG_MIGRATIONS)
            deliver_old_notice(store, smtp)
        finally:
            store.close()
    finally:
        drop_schema(dsn, schema)
