"""The closeloop command line, run as a real subprocess on a real SQLite file."""

from __future__ import annotations

import csv
import io
import json
import os
import sqlite3
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest

from closeloop import CloseLoop, Status
from closeloop.notify import MemoryNotifier
from closeloop.storage import SQLiteStore
from closeloop.testing import FixedClock

ROOT = Path(__file__).resolve().parent.parent


def closeloop(*args: str) -> subprocess.CompletedProcess[str]:
    """Run ``python -m closeloop ARGS`` and return the finished process."""
    return subprocess.run(
        [sys.executable, "-m", "closeloop", *args], capture_output=True, text=True, timeout=60,
        env={**os.environ, "PYTHONPATH": str(ROOT / "src")}, check=False,
    )


@pytest.fixture
def db(tmp_path: Path) -> Path:
    """A database with three cases: alice's overdue open one, alice's closed one, bob's in progress."""
    path = tmp_path / "cli.db"
    clock = FixedClock()
    loop = CloseLoop(store=SQLiteStore(path), notifier=MemoryNotifier(), clock=clock)
    overdue = loop.open_case("c-1", by="agent", due_at=clock() + timedelta(hours=1),
                             reasons=["detractor"])
    loop.assign(overdue.id, to="alice", by="lead")
    done = loop.open_case("c-2", by="agent", reasons=["detractor"])
    loop.assign(done.id, to="alice", by="lead")
    clock.advance(hours=3)
    loop.set_status(done.id, Status.CLOSED, by="alice", comment="refund")
    busy = loop.open_case("c-3", by="agent", reasons=["contact-request"])
    loop.assign(busy.id, to="bob", by="lead")
    loop.set_status(busy.id, Status.PROGRESS, by="bob")
    loop.store.close()
    return path


class TestReport:
    """closeloop report."""

    def test_table(self, db: Path) -> None:
        """The default table shows each status with its count."""
        result = closeloop("report", "--db", str(db))
        assert result.returncode == 0, result.stderr
        lines = result.stdout.splitlines()
        assert any(line.split()[:3] == ["status", "Open", "1"] for line in lines)
        assert any(line.split()[:3] == ["status", "Closed", "1"] for line in lines)
        assert any(line.split()[:3] == ["status", "Progress", "1"] for line in lines)

    def test_json(self, db: Path) -> None:
        """--format json prints the whole report as JSON with per-status counts."""
        result = closeloop("report", "--db", str(db), "--format", "json")
        assert result.returncode == 0, result.stderr
        data = json.loads(result.stdout)
        assert data["status_counts"] == {"open": 1, "progress": 1, "closed": 1}
        assert data["overdue"] == 1

    def test_csv_filtered_by_assignee(self, db: Path) -> None:
        """--format csv gives one metric per metric,dimension,value row; --assignee narrows it."""
        result = closeloop("report", "--db", str(db), "--format", "csv", "--assignee", "alice")
        assert result.returncode == 0, result.stderr
        rows = list(csv.reader(io.StringIO(result.stdout)))
        assert rows[0] == ["metric", "dimension", "value"]
        counts = {dimension: value for metric, dimension, value in rows[1:]
                  if metric == "cases" and dimension.startswith("status=")}
        assert counts == {"status=open": "1", "status=progress": "0", "status=closed": "1"}
        assert ["cases_unassigned", "", "0"] in rows


class TestCasesAndEscalate:
    """closeloop cases and closeloop escalate."""

    def test_home_page(self, db: Path) -> None:
        """cases --assignee lists that assignee's cases, filterable by status."""
        result = closeloop("cases", "--db", str(db), "--assignee", "alice", "--format", "json")
        assert result.returncode == 0, result.stderr
        assert sorted(c["customer_id"] for c in json.loads(result.stdout)) == ["c-1", "c-2"]
        table = closeloop("cases", "--db", str(db), "--assignee", "alice", "--status", "open")
        assert "c-1" in table.stdout and "c-2" not in table.stdout

    def test_escalate_writes_outbox_once(self, db: Path) -> None:
        """escalate records one event per overdue case and leaves the email in the outbox."""
        dry = closeloop("escalate", "--db", str(db), "--dry-run", "--format", "csv")
        assert dry.returncode == 0, dry.stderr
        assert len(list(csv.reader(io.StringIO(dry.stdout)))) == 2
        with sqlite3.connect(db) as conn:
            assert conn.execute("SELECT count(*) FROM events WHERE kind='escalated'").fetchone() == (0,)
        real = closeloop("escalate", "--db", str(db))
        assert real.returncode == 0, real.stderr
        assert "escalated 1 case(s)" in real.stdout
        with sqlite3.connect(db) as conn:
            assert conn.execute("SELECT count(*) FROM events WHERE kind='escalated'").fetchone() == (1,)
            assert conn.execute(
                "SELECT recipient FROM outbox WHERE kind='escalated' AND sent_at IS NULL"
            ).fetchall() == [("alice",)]
        again = closeloop("escalate", "--db", str(db))
        assert "escalated 0 case(s)" in again.stdout


class TestErrors:
    """Clear errors and conventional exit codes."""

    def test_missing_database(self, tmp_path: Path) -> None:
        """A missing file is a usage error (2), and no file is created."""
        result = closeloop("report", "--db", str(tmp_path / "nope.db"))
        assert result.returncode == 2 and "no database file" in result.stderr
        assert not (tmp_path / "nope.db").exists()

    def test_foreign_database(self, tmp_path: Path) -> None:
        """A SQLite file closeloop did not create fails with 1 and says so, untouched."""
        path = tmp_path / "other.db"
        with sqlite3.connect(path) as conn:
            conn.execute("CREATE TABLE invoices (id INTEGER)")
        before = path.read_bytes()
        result = closeloop("report", "--db", str(path))
        assert result.returncode == 1 and "did not create" in result.stderr
        assert "Traceback" not in result.stderr
        assert path.read_bytes() == before

    @pytest.mark.parametrize(
        "args",
        [["report", "--since", "yesterday"], ["report", "--format", "xml"],
         ["escalate", "--untouched-for", "soon"], ["frobnicate"]],
    )
    def test_bad_usage(self, db: Path, args: list[str]) -> None:
        """Bad options exit with 2 and a message, never a traceback."""
        result = closeloop(*args, "--db", str(db)) if args[0] != "frobnicate" else closeloop(*args)
        assert result.returncode == 2, result.stdout
        assert "Traceback" not in result.stderr and result.stderr.strip()
