"""The full report over a million cases: ``loop.report()`` vs a raw ``GROUP BY status``.

A SQLite file is created by :class:`~closeloop.storage.SQLiteStore` (so the schema,
indexes and migrations are the real ones) and filled with SQL inside SQLite:
``size × 500`` cases (the default size 2,000 gives the issue's 1,000,000; ``--quick``
gives 100,000) spread over 60 days, with their events and survey responses, shaped
like a real programme:

- 60 % Closed, 20 % Progress, 20 % Open; 5 % unassigned, the rest over 200 agents;
- reasons ``detractor`` (70 %), ``detractor`` + ``contact-request`` (20 %) or
  ``contact-request`` (10 %); 80 % have a due date 48 hours after opening;
- events: opened (by the trigger), assigned (by the trigger), a comment on half the
  Open cases, Open → Progress and Progress → Closed by the agent – about 3.5 per case;
- one response per case, plus, three days after a third of the closes, another
  response from that customer that no trigger matches (the recovery KPI);
  333,333 customers in all.

Then, in the same run:

- closeloop: ``loop.report()`` over ``SQLiteStore`` (every KPI);
- baseline: ``SELECT status, count(*) FROM cases GROUP BY status`` on a raw sqlite3
  connection – the least any status report costs.

Each is timed ``REPEATS`` times, taking turns, each time on a freshly opened store;
the best time counts. Memory is measured two ways: the Python heap (tracemalloc, in
a separate untimed pass) and the peak resident set of a whole fresh Python process
while it makes one report (``VmHWM`` from ``/proc/self/status``, reset just before
the report; Linux only). That resident set includes the interpreter, closeloop and
SQLite's page cache. The targets: a full report in under 1 s (issue 10), peak memory under
200 MB.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bench.common import Row, peak_traced_kib
from closeloop import CloseLoop
from closeloop.storage import SQLiteStore
from closeloop.storage.sqlite import to_micros
from closeloop.storage.sqlite_rows import FILL_STATUS_STINTS
from closeloop.testing import FixedClock

__all__ = ["build", "run"]

REPEATS = 3
CASES_PER_SIZE = 500
TARGET_SECONDS = 1.0  # issue 10: "report over 1M SQLite cases stays < 1 s"
TARGET_MIB = 200.0
START = datetime(2026, 9, 1, tzinfo=UTC)
SPAN = timedelta(days=60)
NOW = START + SPAN + timedelta(hours=1)
BASELINE_SQL = "SELECT status, count(*) FROM cases GROUP BY status"

# Pseudo-random but reproducible draws: multiplicative hashes of the case number.
_CASES = """
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < :cases),
draw AS (
    SELECT i,
        (i * 2654435761) % 4294967296 AS h_status,
        (i * 2246822519) % 4294967296 AS h_assignee,
        (i * 3266489917) % 4294967296 AS h_reason,
        (i * 668265263) % 4294967296 AS h_due,
        (i * 374761393) % 4294967296 AS h_close,
        (i * 2971215073) % 4294967296 AS h_customer,
        :start + i * :step AS opened_at
    FROM n
),
shaped AS (
    SELECT i, opened_at, h_status, h_due,
        CASE WHEN h_status % 10 < 6 THEN 'closed' WHEN h_status % 10 < 8 THEN 'progress'
            ELSE 'open' END AS status,
        CASE WHEN h_assignee % 20 = 0 THEN NULL
            ELSE printf('agent-%03d', h_assignee / 20 % 200) END AS assignee,
        CASE WHEN h_reason % 10 < 7 THEN '["detractor"]'
            WHEN h_reason % 10 < 9 THEN '["detractor", "contact-request"]'
            ELSE '["contact-request"]' END AS reasons,
        CASE WHEN h_reason % 10 < 9 THEN 'detractor' ELSE 'contact-request' END AS opened_by,
        opened_at + (h_close * 101) % 432000000000 AS closed_at,
        printf('cust-%07d', h_customer % :customers) AS customer_id
    FROM draw
)
INSERT INTO cases (rowid, id, customer_id, status, assignee, reasons, response_ids, priority,
    due_at, opened_at, updated_at, closed_at, opened_by, version, first_action_at)
SELECT i, printf('%08x%07d', h_status, i), customer_id, status, assignee, reasons,
    '["r-' || i || '"]', 'normal',
    CASE WHEN h_due % 5 = 0 THEN NULL ELSE opened_at + 172800000000 END,
    opened_at,
    CASE WHEN status = 'closed' THEN closed_at ELSE opened_at + (i * 7919 % 7200) * 1000000 END,
    CASE WHEN status = 'closed' THEN closed_at END,
    opened_by,
    1 + (assignee IS NOT NULL) + (status = 'open' AND i % 2 = 0) + (status != 'open')
        + (status = 'closed'),
    -- what the cases_first_action trigger would record for the events below
    CASE WHEN status != 'open' OR i % 2 = 0 THEN opened_at + (i * 7919 % 7200) * 1000000 END
FROM shaped
"""

# The events each case's version promises, inserted in primary-key order.
_EVENTS = """
INSERT INTO events (case_id, seq, kind, actor, at, comment, via, data)
SELECT * FROM (
    SELECT id, 1, 'opened', opened_by, opened_at, 'Slow delivery', 'trigger',
        '{"status":"open"}' FROM cases
    UNION ALL
    SELECT id, 2, 'assigned', opened_by, opened_at, NULL, 'trigger',
        json_object('assignee', assignee, 'previous', NULL) FROM cases
        WHERE assignee IS NOT NULL
    UNION ALL
    SELECT id, 2 + (assignee IS NOT NULL), 'commented', coalesce(assignee, 'agent-000'),
        opened_at + (rowid * 7919 % 7200) * 1000000, 'Left a voicemail', NULL, '{}'
        FROM cases WHERE status = 'open' AND rowid % 2 = 0
    UNION ALL
    SELECT id, 2 + (assignee IS NOT NULL), 'status_changed', coalesce(assignee, 'agent-000'),
        opened_at + (rowid * 7919 % 7200) * 1000000, 'Called the customer', NULL,
        '{"from_status":"open","to_status":"progress"}' FROM cases WHERE status != 'open'
    UNION ALL
    SELECT id, 3 + (assignee IS NOT NULL), 'status_changed', coalesce(assignee, 'agent-000'),
        closed_at, 'Refund issued', NULL, '{"from_status":"progress","to_status":"closed"}'
        FROM cases WHERE status = 'closed'
) ORDER BY 1, 2
"""

_RESPONSES = """
INSERT INTO responses (response_id, customer_id, outcome, case_id, score, submitted_at,
    received_at)
SELECT 'r-' || rowid, customer_id, 'opened', id,
    CASE WHEN opened_by = 'detractor' THEN rowid * 13 % 7 ELSE rowid * 13 % 11 END,
    opened_at, opened_at FROM cases
UNION ALL
SELECT 'f-' || rowid, customer_id, 'ignored', NULL, rowid * 31 % 11,
    closed_at + 259200000000, closed_at + 259200000000
    FROM cases WHERE status = 'closed' AND rowid % 3 = 0
"""


def build(path: Path, cases: int) -> None:
    """Create ``path`` with SQLiteStore's schema and fill it with ``cases`` cases (untimed)."""
    SQLiteStore(path).close()  # the real schema, all migrations applied
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        # Bulk-load without the journal, with the secondary indexes rebuilt afterwards
        # (sorting once is far faster than a million random index inserts).
        conn.execute("PRAGMA journal_mode = DELETE")
        conn.execute("PRAGMA synchronous = OFF")
        conn.execute("PRAGMA cache_size = -65536")  # 64 MiB, for the build only
        # The triggers that keep first_action_at and status_stints are dropped too: the
        # cases are inserted with the value the first would set, and the stays in each
        # status are filled in after the events (the tests check the triggers themselves).
        schema = conn.execute(
            "SELECT type, name, sql FROM sqlite_master "
            "WHERE type IN ('index', 'trigger') AND sql IS NOT NULL"
        ).fetchall()
        conn.execute("BEGIN")
        for kind, name, _ in schema:
            conn.execute(f'DROP {kind.upper()} "{name}"')
        step = (SPAN // timedelta(microseconds=1)) // cases
        conn.execute(_CASES, {"cases": cases, "start": to_micros(START), "step": step,
                              "customers": max(1, cases // 3)})
        conn.execute(_EVENTS)
        conn.execute(FILL_STATUS_STINTS)  # what the dropped cases_status_stint trigger writes
        conn.execute(_RESPONSES)
        for _, _, sql in schema:
            conn.execute(sql)
        conn.execute("COMMIT")
        conn.execute("PRAGMA journal_mode = WAL")  # as SQLiteStore leaves its files
    finally:
        conn.close()


def time_report(path: Path) -> float:
    """Seconds for one ``loop.report()`` on a freshly opened store."""
    store = SQLiteStore(path)
    try:
        loop = CloseLoop(store=store, clock=FixedClock(NOW))
        started = time.perf_counter()
        loop.report()
        return time.perf_counter() - started
    finally:
        store.close()


def time_baseline(path: Path) -> float:
    """Seconds for the raw ``GROUP BY status`` count on a fresh sqlite3 connection."""
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        started = time.perf_counter()
        conn.execute(BASELINE_SQL).fetchall()
        return time.perf_counter() - started
    finally:
        conn.close()


def traced_report_kib(path: Path) -> float:
    """Peak Python heap of one report, in KiB (tracemalloc; not timed)."""
    store = SQLiteStore(path)
    try:
        loop = CloseLoop(store=store, clock=FixedClock(NOW))
        return peak_traced_kib(loop.report)
    finally:
        store.close()


# Runs in a fresh interpreter. ru_maxrss would not do here: Linux carries it over
# from the parent through fork and exec. VmHWM (the peak resident set of this
# process's memory) starts afresh with exec, and clear_refs resets it to "now".
_RSS_PROBE = """
import sys
from datetime import datetime
from pathlib import Path
from closeloop import CloseLoop
from closeloop.storage import SQLiteStore
from closeloop.testing import FixedClock

def status(field):
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])  # KiB
    raise SystemExit(f"no {field} in /proc/self/status")

loop = CloseLoop(store=SQLiteStore(sys.argv[1]),
                 clock=FixedClock(datetime.fromisoformat(sys.argv[2])))
before = status("VmRSS")
Path("/proc/self/clear_refs").write_text("5")  # VmHWM := VmRSS
loop.report()
print(before, status("VmHWM"))
"""


def report_rss_mib(path: Path) -> tuple[float, float]:
    """(peak RSS of a fresh process while it makes one report, rise over its RSS before), MiB.

    Linux only (reads ``/proc/self/status``).
    """
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    result = subprocess.run(  # noqa: S603 – this interpreter, fixed code, our own file
        [sys.executable, "-c", _RSS_PROBE, str(path), NOW.isoformat()],
        capture_output=True, text=True, check=True, env=env,
    )
    before, peak = (int(value) / 1024 for value in result.stdout.split())
    return peak, peak - before


def run(size: int) -> list[Row]:
    """Build ``size × 500`` cases, then time the report against the raw count."""
    cases = size * CASES_PER_SIZE
    with tempfile.TemporaryDirectory(prefix="closeloop-bench-") as tmp:
        path = Path(tmp) / "report.db"
        started = time.perf_counter()
        build(path, cases)
        built = time.perf_counter() - started
        report_times: list[float] = []
        baseline_times: list[float] = []
        for _ in range(REPEATS):  # taking turns, so a noisy neighbour slows both alike
            report_times.append(time_report(path))
            baseline_times.append(time_baseline(path))
        heap_kib = traced_report_kib(path)
        rss_mib, rss_delta_mib = report_rss_mib(path)
        megabytes = path.stat().st_size / 2**20
    best = min(report_times)
    heap_mib = heap_kib / 1024
    print(f"report over {cases:,} cases ({megabytes:,.0f} MiB file, built in {built:.0f} s):")
    print(f"  loop.report(): best {best:.2f} s of {REPEATS} "
          f"({', '.join(f'{t:.2f}' for t in report_times)}); "
          f"target < {TARGET_SECONDS:.0f} s {'met' if best < TARGET_SECONDS else 'NOT met'}")
    print(f"  raw GROUP BY status: best {min(baseline_times):.3f} s")
    print(f"  peak memory: Python heap {heap_mib:.1f} MiB (tracemalloc); a fresh process "
          f"peaks at {rss_mib:.1f} MiB resident while reporting, {rss_delta_mib:.1f} MiB above "
          f"its size before (VmHWM); target < {TARGET_MIB:.0f} MB "
          f"{'met' if rss_mib * 2**20 < TARGET_MIB * 10**6 else 'NOT met'}")
    print()
    return [
        Row(
            operation=f"report() over {cases:,} cases (SQLite)",
            closeloop_rate=1 / best,
            baseline_rate=1 / min(baseline_times),
            baseline=f"raw sqlite3: {BASELINE_SQL}",
            peak_kib=heap_kib,
        )
    ]
