"""SQLiteStore's report on two connections and threads: one snapshot, errors surfaced, the seq migration."""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from closeloop import CloseLoop, Status
from closeloop.model import ResponseRecord
from closeloop.report_reference import report_from_facts
from closeloop.reporting import Report, ReportQuery
from closeloop.storage import SQLiteStore, sqlite_report
from closeloop.storage.sqlite import to_micros
from closeloop.storage.sqlite_rows import MIGRATIONS, split_statements
from closeloop.testing import FixedClock

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
LATER = T0 + timedelta(days=10)
CUSTOMERS = 30


def build(path: Path) -> tuple[SQLiteStore, CloseLoop, list[str]]:
    """A store with one open case per customer and, for each, an answer after every close.

    Each close of one of these cases adds one Closed case *and* one recovered customer,
    so a report whose counts and recovery come from different snapshots shows it.
    """
    store = SQLiteStore(path)
    clock = FixedClock(T0)
    loop = CloseLoop(store=store, clock=clock)
    case_ids = [loop.open_case(f"cust-{n:02}", by="agent").id for n in range(CUSTOMERS)]
    store.record_responses([
        ResponseRecord(response_id=f"before-{n:02}", customer_id=f"cust-{n:02}", outcome="ignored",
                       received_at=T0, submitted_at=T0, score=2)
        for n in range(CUSTOMERS)
    ] + [
        ResponseRecord(response_id=f"after-{n:02}", customer_id=f"cust-{n:02}", outcome="ignored",
                       received_at=T0, submitted_at=LATER, score=9)
        for n in range(CUSTOMERS)
    ])
    clock.advance(hours=1)
    return store, loop, case_ids


def close(loop: CloseLoop, case_id: str) -> None:
    """Close a case (a comment is required)."""
    loop.set_status(case_id, Status.CLOSED, by="alice", comment="Sorted")


def consistent(report: Report) -> bool:
    """Counts and recovery agree: every Closed case's customer answered after it."""
    return report.status_counts[Status.CLOSED] == report.recovery.customers


class Interfering(sqlite3.Connection):
    """A connection that runs ``before_begin`` the first ``times`` times it is told BEGIN."""

    before_begin: Callable[[], None] = staticmethod(lambda: None)
    times = 0
    begins = 0

    def execute(self, sql: str, *args: Any) -> sqlite3.Cursor:  # type: ignore[override]
        """Run the statement, after the interference when it is a BEGIN."""
        if sql == "BEGIN":
            type(self).begins += 1
            if type(self).begins <= type(self).times:
                type(self).before_begin()
        return super().execute(sql, *args)


@pytest.fixture
def interfering(tmp_path: Path) -> Iterator[type[Interfering]]:
    """A fresh Interfering subclass (its counters are class attributes)."""
    yield type("InterferingHere", (Interfering,), {"begins": 0, "times": 0})


def spare_of(path: Path, factory: type[sqlite3.Connection]) -> Callable[[], Any]:
    """A ``spare`` argument lending a new connection of ``factory`` to ``path``."""
    @contextmanager
    def spare() -> Iterator[sqlite3.Connection]:
        conn = sqlite3.connect(path, isolation_level=None, factory=factory,
                               check_same_thread=False)
        try:
            yield conn
        finally:
            conn.close()

    return spare


def report_with_closes(
    tmp_path: Path, interfering: type[Interfering], times: int, monkeypatch: pytest.MonkeyPatch
) -> tuple[SQLiteStore, sqlite3.Connection, ReportQuery, Report]:
    """A two-thread report on ``build``'s store whose first ``times`` BEGINs each close a case."""
    monkeypatch.setattr(sqlite_report, "PARALLEL_FROM", 0)
    path = tmp_path / "report.db"
    store, loop, case_ids = build(path)
    pending = iter(case_ids)
    interfering.before_begin = staticmethod(lambda: close(loop, next(pending)))
    interfering.times = times
    conn = sqlite3.connect(path, isolation_level=None)
    query = ReportQuery(now=LATER + timedelta(days=1))
    return store, conn, query, sqlite_report.report_from_sqlite(conn, query, spare_of(path, interfering))


def test_a_commit_between_the_two_starts_makes_them_start_again(
    tmp_path: Path, interfering: type[Interfering], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A close committed after the first connection started reading is seen by neither, or by both."""
    store, conn, query, report = report_with_closes(tmp_path, interfering, 1, monkeypatch)
    assert interfering.begins == 2  # the first pair of starts was thrown away
    assert report.status_counts[Status.CLOSED] == 1
    assert consistent(report)
    assert report == report_from_facts(query, store.report_facts(query))
    assert not conn.in_transaction
    store.close()


def test_commits_at_every_start_fall_back_to_one_connection(
    tmp_path: Path, interfering: type[Interfering], monkeypatch: pytest.MonkeyPatch
) -> None:
    """When the two connections never agree on a snapshot, the report is made on one, still whole."""
    store, _, query, report = report_with_closes(tmp_path, interfering, 1_000, monkeypatch)
    assert interfering.begins == sqlite_report._TOGETHER_ATTEMPTS
    assert report.status_counts[Status.CLOSED] == sqlite_report._TOGETHER_ATTEMPTS
    assert consistent(report)
    assert report == report_from_facts(query, store.report_facts(query))
    store.close()


def test_an_error_on_the_second_connection_reaches_the_caller(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A failing recovery query raises in the caller's thread; both read transactions end."""
    monkeypatch.setattr(sqlite_report, "PARALLEL_FROM", 0)
    path = tmp_path / "report.db"
    store, loop, case_ids = build(path)
    close(loop, case_ids[0])
    lent: list[sqlite3.Connection] = []

    class Failing(sqlite3.Connection):
        """Fails the recovery query (the one reading responses_scores)."""

        def execute(self, sql: str, *args: Any) -> sqlite3.Cursor:  # type: ignore[override]
            """Raise on the recovery query, run anything else."""
            lent.append(self)
            if "responses_scores" in sql:
                raise sqlite3.OperationalError("disk I/O error (injected)")
            return super().execute(sql, *args)

    conn = sqlite3.connect(path, isolation_level=None)
    with pytest.raises(sqlite3.OperationalError, match="injected"):
        sqlite_report.report_from_sqlite(conn, ReportQuery(now=LATER), spare_of(path, Failing))
    assert lent and not conn.in_transaction
    # The connection is usable again, and the store reports normally.
    assert sqlite_report.report_from_sqlite(conn, ReportQuery(now=LATER)).recovery.customers == 1
    store.close()


def test_reports_beside_a_writer_read_one_snapshot(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Reports made while another thread closes cases never mix two states of the file."""
    monkeypatch.setattr(sqlite_report, "PARALLEL_FROM", 0)
    path = tmp_path / "report.db"
    store, _, case_ids = build(path)
    writer = SQLiteStore(path, synchronous="OFF")
    writer_loop = CloseLoop(store=writer, clock=FixedClock(T0 + timedelta(hours=2)))
    done = threading.Event()

    def close_all() -> None:
        for case_id in case_ids:
            close(writer_loop, case_id)
        done.set()

    thread = threading.Thread(target=close_all)
    thread.start()
    reports = []
    while not done.is_set():
        reports.append(store.report(ReportQuery(now=LATER + timedelta(days=1))))
    thread.join()
    reports.append(store.report(ReportQuery(now=LATER + timedelta(days=1))))
    assert all(consistent(report) for report in reports)
    assert reports[-1].recovery.customers == CUSTOMERS
    writer.close()
    store.close()


def test_the_store_keeps_its_spare_connection_and_closes_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two large reports share one spare connection; close() closes it."""
    monkeypatch.setattr(sqlite_report, "PARALLEL_FROM", 0)
    store, loop, case_ids = build(tmp_path / "report.db")
    opened: list[sqlite3.Connection] = []
    real_open = store._open
    monkeypatch.setattr(store, "_open", lambda: opened.append(real_open()) or opened[-1])
    close(loop, case_ids[0])
    first = store.report(ReportQuery(now=LATER))
    second = store.report(ReportQuery(now=LATER))
    assert first == second and first.recovery.customers == 1
    assert len(opened) == 1  # the calling thread's connection existed already
    store.close()
    with pytest.raises(sqlite3.ProgrammingError):
        opened[0].execute("SELECT 1")


def test_a_file_from_before_the_seq_migration_keeps_its_responses_in_order(tmp_path: Path) -> None:
    """Responses written before `seq` keep their ids, content and recorded order, ties included."""
    path = tmp_path / "old.db"
    conn = sqlite3.connect(path, isolation_level=None)
    upto = len(MIGRATIONS) - 1
    for script in MIGRATIONS[:upto]:
        for statement in split_statements(script):
            conn.execute(statement)
    conn.execute(f"PRAGMA user_version = {upto}")
    closed_at = T0 + timedelta(hours=2)
    conn.execute(
        "INSERT INTO cases (id, customer_id, status, assignee, reasons, response_ids, priority, "
        "due_at, opened_at, updated_at, closed_at, opened_by, version) VALUES "
        "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        ("old", "cust", "closed", "alice", '["detractor"]', "[]", "normal", None, to_micros(T0),
         to_micros(closed_at), to_micros(closed_at), "agent", 1),
    )
    conn.execute("INSERT INTO events (case_id, seq, kind, actor, at, comment, via, data) "
                 "VALUES ('old', 1, 'opened', 'agent', ?, NULL, NULL, ?)",
                 (to_micros(T0), json.dumps({"status": "open"})))
    # Two answers at the same instant on each side of the close: recorded order decides.
    rows = [("b-1", 3, T0), ("b-2", 5, T0), ("a-1", 9, LATER), ("a-2", 1, LATER)]
    for response_id, score, at in rows:
        conn.execute(
            "INSERT INTO responses (response_id, customer_id, outcome, case_id, score, "
            "submitted_at, received_at, content) VALUES (?, 'cust', 'ignored', NULL, ?, ?, ?, ?)",
            (response_id, score, to_micros(at), to_micros(at), json.dumps({"score": score})),
        )
    conn.execute("DELETE FROM responses WHERE response_id = 'b-1'")  # a gap in the rowids
    conn.execute(
        "INSERT INTO responses (response_id, customer_id, outcome, case_id, score, "
        "submitted_at, received_at, content) VALUES ('b-3', 'cust', 'ignored', NULL, 0, ?, ?, NULL)",
        (to_micros(T0), to_micros(T0)),
    )
    before = conn.execute("SELECT rowid, response_id, content FROM responses ORDER BY rowid").fetchall()
    conn.close()

    store = SQLiteStore(path)
    try:
        assert store.schema_version == len(MIGRATIONS)
        migrated = sqlite3.connect(path)
        assert migrated.execute(
            "SELECT seq, response_id, content FROM responses ORDER BY seq").fetchall() == before
        migrated.close()
        found = store.find_responses(customer_ids=["cust"])
        assert [record.response_id for record in found] == ["b-2", "a-1", "a-2", "b-3"]
        query = ReportQuery(now=LATER + timedelta(days=1))
        recovery = store.report(query).recovery
        # Before the close: b-3 was recorded after b-2 at the same instant (score 0);
        # after it: a-1 was recorded before a-2 (score 9).
        assert (recovery.mean_score_before, recovery.mean_score_after) == (0.0, 9.0)
        assert store.report(query) == report_from_facts(query, store.report_facts(query))
        store.record_responses([ResponseRecord(
            response_id="new", customer_id="cust", outcome="ignored", received_at=LATER,
            submitted_at=LATER, score=4)])
        assert [r.response_id for r in store.find_responses(customer_ids=["cust"])][-1] == "new"
    finally:
        store.close()
