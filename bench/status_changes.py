"""Status changes per second: ``CloseLoop.set_status`` over SQLiteStore vs raw sqlite3.

Both sides work on a fresh file with the same pragmas (WAL, the same
``synchronous``, ``busy_timeout``, foreign keys on, autocommit connection) and the
same schema (closeloop's own DDL, so indexes match). ``size`` status changes are
made round-robin over ``size // 4`` cases, each case going Open → Progress → Open …

- closeloop: ``loop.set_status(case_id, target, by=…, comment=…)`` – which starts
  from the case as the loop last wrote it (the loop opened the cases itself,
  untimed, and remembers up to ``closeloop.service.CASES_REMEMBERED``), checks
  the workflow, builds the new case and its event, and commits them in one
  ``BEGIN IMMEDIATE`` transaction whose version check proves that copy current
  (a stale one is read again).
- raw: per change ``BEGIN IMMEDIATE``; ``UPDATE cases SET status, version + 1,
  updated_at WHERE id = ? AND version = ?``; ``INSERT INTO events``; ``COMMIT``.
  The raw side keeps versions in a dict and reads nothing.

Both sides write the same rows: case ids in closeloop's default format (32 random
hex characters, as ``CloseLoop``'s default ``id_factory`` makes them; the key's
length alone moves the raw rate by about 10 %), and the same event data.

The row with ``synchronous=FULL`` (closeloop's default) carries the seed's target
(closeloop ≥ 0.5× raw); the ``NORMAL`` row takes the fsync out of both sides, which
shows closeloop's own per-call cost, and carries issue 10's target (≥ 0.6×).
"""

from __future__ import annotations

import json
import sqlite3
import tempfile
import time
from functools import partial
from pathlib import Path

from bench.common import Row, peak_traced_kib, rate
from closeloop import CloseLoop, Status
from closeloop.loop import new_id
from closeloop.storage import SQLiteStore
from closeloop.storage.sqlite import MIGRATIONS, Synchronous

__all__ = ["run"]

#: Each side is timed this many times, on a fresh file each time; the best rate counts.
REPEATS = 3
TARGET = 0.5
#: Issue 10's target for the row without fsync, where closeloop's own per-call cost shows.
TARGET_NORMAL = 0.6
COMMENT = "benchmark change"
BASELINE = ("raw sqlite3: BEGIN IMMEDIATE; UPDATE … WHERE id = ? AND version = ?; "
            "INSERT event; COMMIT")


def run(size: int) -> list[Row]:
    """Time ``size`` status changes both ways, with synchronous FULL and NORMAL."""
    return [
        compare(size, "FULL", TARGET),
        compare(size, "NORMAL", TARGET_NORMAL),
    ]


def compare(size: int, synchronous: Synchronous, target: float | None) -> Row:
    """One row: best-of-REPEATS rate of each side, plus the closeloop side's peak heap."""
    cases = max(1, size // 4)
    best_closeloop = best_raw = 0.0
    with tempfile.TemporaryDirectory(prefix="closeloop-bench-") as tmp:
        for attempt in range(REPEATS):
            # Interleaved, so a noisy neighbour slows both sides alike.
            closeloop_side = CloseLoopSide(Path(tmp) / f"cl-{attempt}.db", cases, synchronous)
            best_closeloop = max(best_closeloop,
                                 rate(size, partial(closeloop_side.change_statuses, size)))
            closeloop_side.close()
            raw_side = RawSide(Path(tmp) / f"raw-{attempt}.db", cases, synchronous)
            best_raw = max(best_raw, rate(size, partial(raw_side.change_statuses, size)))
            raw_side.close()
        traced = CloseLoopSide(Path(tmp) / "traced.db", cases, synchronous)
        peak = peak_traced_kib(partial(traced.change_statuses, size))
        traced.close()
    return Row(
        operation=f"set_status (synchronous={synchronous})",
        closeloop_rate=best_closeloop,
        baseline_rate=best_raw,
        baseline=BASELINE,
        peak_kib=peak,
        target=target,
    )


def target_for(change: int, cases: int) -> Status:
    """Round-robin over the cases: the first lap goes to Progress, the next back to Open."""
    return Status.PROGRESS if (change // cases) % 2 == 0 else Status.OPEN


class CloseLoopSide:
    """A CloseLoop over a fresh SQLiteStore with ``cases`` cases already open (untimed)."""

    def __init__(self, path: Path, cases: int, synchronous: Synchronous) -> None:
        self.store = SQLiteStore(path, synchronous=synchronous)
        self.loop = CloseLoop(store=self.store)
        self.case_ids = [
            self.loop.open_case(f"customer-{index}", by="bench").id for index in range(cases)
        ]

    def change_statuses(self, changes: int) -> None:
        """Make ``changes`` status changes through the facade."""
        loop, case_ids, cases = self.loop, self.case_ids, len(self.case_ids)
        for change in range(changes):
            loop.set_status(case_ids[change % cases], target_for(change, cases),
                            by="bench", comment=COMMENT)

    def close(self) -> None:
        """Close the store."""
        self.store.close()


class RawSide:
    """The same writes by hand: one sqlite3 connection, closeloop's schema and pragmas."""

    def __init__(self, path: Path, cases: int, synchronous: Synchronous,
                 timeout: float = 30.0) -> None:
        self.conn = sqlite3.connect(path, timeout=timeout, isolation_level=None,
                                    check_same_thread=False)
        self.conn.execute(f"PRAGMA busy_timeout = {int(timeout * 1000)}")
        self.conn.execute("PRAGMA journal_mode = WAL")
        self.conn.execute(f"PRAGMA synchronous = {synchronous}")
        self.conn.execute("PRAGMA foreign_keys = ON")
        # Every migration, as SQLiteStore applies them: the same indexes and the
        # first-action trigger, so both sides maintain the same structures.
        self.conn.executescript("BEGIN IMMEDIATE;\n" + "\n".join(MIGRATIONS)
                                + f"\nPRAGMA user_version = {len(MIGRATIONS)};")
        now = time.time_ns() // 1000
        self.case_ids = [new_id() for _ in range(cases)]  # closeloop's default ids
        self.conn.executemany(
            "INSERT INTO cases (id, customer_id, status, assignee, reasons, response_ids, "
            "priority, due_at, opened_at, updated_at, closed_at, opened_by, version) "
            "VALUES (?, ?, 'open', NULL, '[]', '[]', 'normal', NULL, ?, ?, NULL, 'bench', 1)",
            [(case_id, f"customer-{i}", now, now) for i, case_id in enumerate(self.case_ids)],
        )
        self.conn.executemany(
            "INSERT INTO events (kind, case_id, actor, at, seq, comment, via, data) "
            "VALUES ('opened', ?, 'bench', ?, 1, NULL, NULL, '{\"status\":\"open\"}')",
            [(case_id, now) for case_id in self.case_ids],
        )
        self.conn.execute("COMMIT")
        self.versions = dict.fromkeys(self.case_ids, 1)
        self.data = {
            target: json.dumps({"from_status": source.value, "to_status": target.value},
                               separators=(",", ":"))
            for source, target in ((Status.PROGRESS, Status.OPEN),
                                   (Status.OPEN, Status.PROGRESS))
        }

    def change_statuses(self, changes: int) -> None:
        """Make ``changes`` status changes: UPDATE with version check + INSERT, one
        transaction each."""
        conn, case_ids, versions = self.conn, self.case_ids, self.versions
        cases = len(case_ids)
        for change in range(changes):
            case_id = case_ids[change % cases]
            target = target_for(change, cases)
            version = versions[case_id]
            now = time.time_ns() // 1000
            conn.execute("BEGIN IMMEDIATE")
            updated = conn.execute(
                "UPDATE cases SET status = ?, version = version + 1, updated_at = ? "
                "WHERE id = ? AND version = ?",
                (target.value, now, case_id, version),
            ).rowcount
            if updated != 1:
                conn.execute("ROLLBACK")
                raise RuntimeError(f"raw baseline lost track of {case_id}")
            conn.execute(
                "INSERT INTO events (kind, case_id, actor, at, seq, comment, via, data) "
                "VALUES ('status_changed', ?, 'bench', ?, ?, ?, NULL, ?)",
                (case_id, now, version + 1, COMMENT, self.data[target]),
            )
            conn.execute("COMMIT")
            versions[case_id] = version + 1

    def close(self) -> None:
        """Close the connection."""
        self.conn.close()
