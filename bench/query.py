"""Case lists on SQLite: a page, a count per status, and paging through every case.

One file holds ``min(10,000, size × 5)`` cases (10,000 at the default size), made
with ``SQLiteStore`` so the schema and indexes are the real ones: five assignees and
unassigned cases, a quarter of them Closed, most with a due date. Then, taking turns
with a raw sqlite3 connection on the same file, best of three:

- **page**: one page of 50 of an assignee's open cases, oldest first.
  closeloop: ``loop.page(CaseQuery(assignee=…, status=["open", "progress"]), size=50)``,
  50 ``Case`` objects and a cursor. raw: the same ``SELECT`` by hand, rows as tuples.
- **count**: cases per status. closeloop: ``loop.count()``. raw: ``SELECT status,
  count(*) … GROUP BY status``.
- **page through**: every case, pages of 50, each page continuing after the last
  (keyset). closeloop: ``loop.page(CaseQuery(sort="-due"), after=cursor)`` to the
  end. raw: the same statements by hand, ``(due, opened_at, id) < (?, ?, ?)``.

The raw side builds no objects: the gap is what turning rows into checked ``Case``
objects, the cursor and the argument checks cost.
"""

from __future__ import annotations

import random
import sqlite3
import tempfile
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path

from bench.common import Row, peak_traced_kib, rate
from closeloop import CaseQuery, CloseLoop, Status
from closeloop.model import Case, Opened, Priority
from closeloop.storage import Change, SQLiteStore
from closeloop.storage.rows import CASE_COLUMNS

__all__ = ["run"]

REPEATS = 3
T0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
ASSIGNEES = ("agent-0", "agent-1", "agent-2", "agent-3", "agent-4", None)
PAGE = 50
LISTED = "agent-1"


def run(size: int) -> list[Row]:
    """Three rows: a page, a count, paging through every case."""
    cases = min(10_000, size * 5)
    with tempfile.TemporaryDirectory(prefix="closeloop-query-") as tmp:
        path = Path(tmp) / "cases.db"
        build(path, cases)
        closeloop_side, raw_side = CloseLoopSide(path), RawSide(path)
        work = {
            "page": (size, closeloop_side.pages, raw_side.pages),
            "count": (size, closeloop_side.counts, raw_side.counts),
            "through": (max(1, size // 200), closeloop_side.page_through, raw_side.page_through),
        }
        best = {name: [0.0, 0.0] for name in work}
        for _ in range(REPEATS):
            for name, (times, mine, theirs) in work.items():
                best[name][0] = max(best[name][0], rate(times, partial(mine, times)))
                best[name][1] = max(best[name][1], rate(times, partial(theirs, times)))
        peaks = {name: peak_traced_kib(partial(mine, 1)) for name, (_, mine, _) in work.items()}
        closeloop_side.close()
        raw_side.close()
    return [
        Row(f"page of {PAGE}: one assignee's open cases ({cases:,} cases)", *best["page"],
            "raw sqlite3: the same SELECT, rows as tuples", peaks["page"]),
        Row(f"count cases per status ({cases:,} cases)", *best["count"],
            "raw sqlite3: SELECT status, count(*) GROUP BY status", peaks["count"]),
        Row(f"page through {cases:,} cases, {PAGE} a page, by -due (whole walks)",
            *best["through"], "raw sqlite3: the same keyset SELECTs, rows as tuples",
            peaks["through"]),
    ]


def build(path: Path, count: int) -> None:
    """The cases, through SQLiteStore (so the schema is the store's own)."""
    rng = random.Random(16)
    store = SQLiteStore(path, synchronous="OFF")
    changes = []
    for number in range(count):
        status = Status.CLOSED if number % 4 == 0 else rng.choice([Status.OPEN, Status.PROGRESS])
        opened = T0 + number * timedelta(minutes=3)
        case = Case(
            id=f"case-{rng.getrandbits(40):010x}", customer_id=f"customer-{number}",
            status=status, opened_at=opened, updated_at=opened, opened_by="detractor",
            version=1, assignee=ASSIGNEES[number % len(ASSIGNEES)], reasons=("detractor",),
            response_ids=(f"response-{number}",), priority=rng.choice(list(Priority)),
            due_at=None if number % 5 == 0 else opened + timedelta(hours=rng.randrange(96)),
            closed_at=opened if status is Status.CLOSED else None,
        )
        changes.append(Change(case=case, expected_version=None, events=[
            Opened(case_id=case.id, actor=case.opened_by, at=opened, seq=1)]))
    for start in range(0, len(changes), 2000):
        store.commit_many(changes[start:start + 2000])
    store.close()


class CloseLoopSide:
    """The public API over SQLiteStore."""

    def __init__(self, path: Path) -> None:
        self.store = SQLiteStore(path, synchronous="NORMAL")
        self.loop = CloseLoop(store=self.store)
        self.home = CaseQuery(assignee=LISTED, status=["open", "progress"])
        self.by_due = CaseQuery(sort="-due")

    def pages(self, times: int) -> None:
        for _ in range(times):
            self.loop.page(self.home, size=PAGE)

    def counts(self, times: int) -> None:
        for _ in range(times):
            self.loop.count()

    def page_through(self, times: int) -> None:
        for _ in range(times):
            after = None
            while True:
                page = self.loop.page(self.by_due, after=after, size=PAGE)
                if page.next_cursor is None:
                    break
                after = page.next_cursor

    def close(self) -> None:
        self.store.close()


class RawSide:
    """The same statements on a plain sqlite3 connection."""

    # The plan closeloop's statement gets: `+status` keeps the status index out of it.
    HOME = (f"SELECT {CASE_COLUMNS} FROM cases WHERE assignee = ? AND +status IN ('open', "
            "'progress') ORDER BY opened_at, id LIMIT ?")
    BY_DUE = (f"SELECT {CASE_COLUMNS}, due_order FROM cases {{}} "
              "ORDER BY due_order DESC, opened_at DESC, id DESC LIMIT ?")

    def __init__(self, path: Path) -> None:
        self.conn = sqlite3.connect(path, isolation_level=None)
        self.conn.execute("PRAGMA synchronous = NORMAL")

    def pages(self, times: int) -> None:
        for _ in range(times):
            self.conn.execute(self.HOME, (LISTED, PAGE + 1)).fetchall()

    def counts(self, times: int) -> None:
        for _ in range(times):
            dict(self.conn.execute("SELECT status, count(*) FROM cases GROUP BY status").fetchall())

    def page_through(self, times: int) -> None:
        first = self.BY_DUE.format("")
        later = self.BY_DUE.format("WHERE (due_order, opened_at, id) < (?, ?, ?)")
        for _ in range(times):
            rows = self.conn.execute(first, (PAGE + 1,)).fetchall()
            while len(rows) > PAGE:
                last = rows[PAGE - 1]
                rows = self.conn.execute(later, (last[13], last[8], last[0], PAGE + 1)).fetchall()

    def close(self) -> None:
        self.conn.close()
