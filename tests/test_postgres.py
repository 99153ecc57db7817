"""PostgresStore: the store contract against a real server, and what only PostgreSQL shows.

Tests marked ``postgres`` take the server from CLOSELOOP_TEST_POSTGRES_DSN. Without
it they are skipped, unless CLOSELOOP_REQUIRE_ALL=1 (as in .ci/run, which starts
a throwaway cluster), where they fail. Each test works in a schema of its own,
dropped afterwards.

Multi-process tests use the "spawn" start method and line their processes up
with barriers, never with sleeps.
"""

from __future__ import annotations

import multiprocessing
import os
import queue
import socket
import subprocess
import sys
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import timedelta
from itertools import count
from pathlib import Path
from typing import Any

import psycopg
import pytest
from attrs import evolve
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from psycopg.conninfo import make_conninfo
from psycopg_pool import ConnectionPool

from closeloop import (
    CaseNotFound,
    CloseLoop,
    CloseLoopError,
    ConcurrentUpdate,
    InvalidInput,
    Status,
    StoreError,
    SurveyResponse,
)
from closeloop.model import (
    Assigned,
    Case,
    Commented,
    Escalated,
    Event,
    Opened,
    ResponseAttached,
    StatusChanged,
)
from closeloop.reporting import ReportQuery
from closeloop.storage import MemoryStore, PostgresStore, SQLiteStore, Store
from closeloop.storage.base import Change
from closeloop.storage.postgres_schema import MIGRATIONS
from closeloop.testing import CorruptedRowContract, FixedClock, StoreContract
from closeloop.testing.store_contract import T0, make_case, make_notice, opened_change
from closeloop.triggers import Trigger, contact_requested, nps_between
from postgres_workers import (
    DSN_VARIABLE,
    HANG_GUARD,
    USERS,
    ScratchPostgresStore,
    drop_schema,
    escalate_at_once,
    load_triggers,
    open_sole_cases,
    open_store_at_once,
    run_load_worker,
    scratch_schema,
)

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def dsn() -> str:
    """The test server's DSN; skip without one, or fail when CLOSELOOP_REQUIRE_ALL=1."""
    value = os.environ.get(DSN_VARIABLE)
    if value:
        return value
    if os.environ.get("CLOSELOOP_REQUIRE_ALL") == "1":
        pytest.fail(f"{DSN_VARIABLE} is required (CLOSELOOP_REQUIRE_ALL=1) but not set")
    pytest.skip(f"set {DSN_VARIABLE} to a PostgreSQL database to run this test")


@pytest.fixture
def store(dsn: str) -> Iterator[ScratchPostgresStore]:
    """A fresh PostgresStore in a schema of its own."""
    store = ScratchPostgresStore(dsn)
    yield store
    store.close()


def admin(dsn: str) -> psycopg.Connection[Any]:
    """A plain autocommit connection, as another program would open one."""
    return psycopg.connect(dsn, autocommit=True)


def spawn(target: Any, processes: int, *arguments: Any) -> list[Any]:
    """Run ``target(*arguments, barrier)`` in ``processes`` spawned processes at once.

    The barrier (shared through a manager) lets the children line up; returns
    each child's result, in order.
    """
    context = multiprocessing.get_context("spawn")
    with context.Manager() as manager, context.Pool(processes) as pool:
        barrier = manager.Barrier(processes)
        pending = pool.starmap_async(
            target, [(*arguments, index, barrier) for index in range(processes)], chunksize=1
        )
        return pending.get(HANG_GUARD)


# -- without the extra -------------------------------------------------------------------


BLOCK_PSYCOPG = """
import sys

class NoPsycopg:
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in ("psycopg", "psycopg_pool"):
            raise ModuleNotFoundError(f"No module named {name!r}")
        return None

sys.meta_path.insert(0, NoPsycopg())
"""


def run_python(code: str) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a fresh interpreter with closeloop importable."""
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False,
        env={**os.environ, "PYTHONPATH": str(ROOT / "src")},
    )


class TestWithoutTheExtra:
    """closeloop without psycopg installed (simulated in a subprocess)."""

    def test_closeloop_works_and_postgres_store_says_what_to_install(self) -> None:
        """Without psycopg, closeloop imports and works; PostgresStore() names the extra."""
        result = run_python(BLOCK_PSYCOPG + """
import closeloop
from closeloop import CloseLoop, StoreError
from closeloop.storage import PostgresStore, SQLiteStore
CloseLoop().open_case("c-1", by="agent")
try:
    PostgresStore("postgresql://nobody@127.0.0.1:1/none")
except StoreError as exc:
    print(exc)
    print(type(exc.__cause__).__name__)
""")
        assert result.returncode == 0, result.stderr
        message, cause = result.stdout.splitlines()
        assert 'pip install "closeloop[postgres]"' in message
        assert cause == "ModuleNotFoundError"

    def test_importing_closeloop_does_not_load_psycopg(self) -> None:
        """import closeloop (storage included) leaves psycopg unloaded until PostgresStore is used."""
        result = run_python(
            "import sys, closeloop, closeloop.storage\n"
            "print(sorted(m for m in sys.modules if m.startswith('psycopg')))\n"
            "from closeloop.storage import PostgresStore\n"
            "print('psycopg' in sys.modules)\n"
        )
        assert result.returncode == 0, result.stderr
        assert result.stdout.split() == ["[]", "True"]


# -- the contract ------------------------------------------------------------------------


@pytest.mark.postgres
class TestPostgresStore(StoreContract, CorruptedRowContract):
    """PostgresStore keeps the store contract."""

    @pytest.fixture
    def store(self, dsn: str) -> Iterator[Store]:
        """A fresh PostgresStore in a schema of its own, dropped afterwards."""
        store = ScratchPostgresStore(dsn)
        yield store
        store.close()

    @pytest.fixture
    def corrupt_case(self, dsn: str) -> Callable[[Store, str, str, Any], bool]:
        """Writes a raw value into the table as another program would; typed columns refuse most."""
        def corrupt(store: Store, case_id: str, field: str, value: Any) -> bool:
            assert isinstance(store, PostgresStore)
            try:
                with admin(dsn) as conn:
                    conn.execute(f'UPDATE "{store.schema}".cases SET {field} = %s WHERE id = %s',
                                 (value, case_id))
            except (psycopg.Error, ValueError):  # ValueError: psycopg will not send a NUL
                return False
            return True

        return corrupt


# -- arguments, schema and migrations ----------------------------------------------------


class TestArguments:
    """Bad arguments are refused before anything connects."""

    @pytest.mark.parametrize(("options", "field"), [
        ({"schema": "Closeloop"}, "schema"),
        ({"schema": "1st"}, "schema"),
        ({"schema": "pg_mine"}, "schema"),
        ({"schema": "x" * 64}, "schema"),
        ({"pool_size": 0}, "pool_size"),
        ({"timeout": -1}, "timeout"),
    ])
    def test_bad_options_are_invalid_input(self, options: dict[str, Any], field: str) -> None:
        """A bad schema name, pool size or timeout raises InvalidInput naming the option."""
        with pytest.raises(InvalidInput) as raised:
            PostgresStore("postgresql://nobody@127.0.0.1:1/none", **options)
        assert raised.value.field == field

    def test_neither_dsn_nor_pool_is_invalid_input(self) -> None:
        """Something that is neither a DSN nor a pool raises InvalidInput (dsn_or_pool)."""
        with pytest.raises(InvalidInput) as raised:
            PostgresStore(42)  # type: ignore[arg-type]
        assert raised.value.field == "dsn_or_pool"

    def test_unreachable_server_is_a_store_error(self) -> None:
        """A server that refuses connections gives StoreError at once, psycopg's error chained."""
        with socket.socket() as probe:  # a port nobody listens on
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        with pytest.raises(StoreError) as raised:
            PostgresStore(f"postgresql://nobody@127.0.0.1:{port}/none", timeout=5)
        assert isinstance(raised.value.__cause__, psycopg.OperationalError)


@pytest.mark.postgres
class TestSchema:
    """The schema is created, versioned and migrated under an advisory lock."""

    def test_new_schema_is_created_at_the_current_version(self, store: ScratchPostgresStore,
                                                          dsn: str) -> None:
        """A new store creates its schema, its tables and one schema_migrations row per migration."""
        assert store.schema_version == len(MIGRATIONS)
        with admin(dsn) as conn:
            versions = conn.execute(
                f'SELECT version FROM "{store.schema}".schema_migrations ORDER BY version'
            ).fetchall()
            tables = {row[0] for row in conn.execute(
                "SELECT tablename FROM pg_tables WHERE schemaname = %s", (store.schema,))}
        assert [row[0] for row in versions] == list(range(1, len(MIGRATIONS) + 1))
        assert tables == {"schema_migrations", "cases", "events", "outbox", "responses",
                          "rotations", "used_links"}

    def test_reopening_keeps_the_data(self, store: ScratchPostgresStore, dsn: str) -> None:
        """A second store on the same schema sees the data and migrates nothing."""
        store.commit(opened_change(make_case("kept")))
        again = PostgresStore(dsn, schema=store.schema)
        try:
            assert again.get("kept") == make_case("kept")
            assert again.schema_version == len(MIGRATIONS)
        finally:
            again.close()

    def test_newer_schema_is_refused_untouched(self, store: ScratchPostgresStore,
                                               dsn: str) -> None:
        """A schema from a newer closeloop raises StoreError and is left as it is."""
        with admin(dsn) as conn:
            conn.execute(f'INSERT INTO "{store.schema}".schema_migrations (version) VALUES (99)')
        with pytest.raises(StoreError, match="newer than this closeloop"):
            PostgresStore(dsn, schema=store.schema)
        assert store.schema_version == 99

    def test_foreign_schema_is_refused_untouched(self, dsn: str) -> None:
        """A schema holding someone else's tables raises StoreError; closeloop creates nothing."""
        schema = scratch_schema()
        with admin(dsn) as conn:
            conn.execute(f'CREATE SCHEMA "{schema}"')
            conn.execute(f'CREATE TABLE "{schema}".customers (id int)')
        try:
            with pytest.raises(StoreError, match="did not create"):
                PostgresStore(dsn, schema=schema)
            with admin(dsn) as conn:
                tables = conn.execute(
                    "SELECT tablename FROM pg_tables WHERE schemaname = %s", (schema,)
                ).fetchall()
            assert tables == [("customers",)]
        finally:
            drop_schema(dsn, schema)

    def test_an_empty_existing_schema_is_used(self, dsn: str) -> None:
        """A schema created beforehand (say, by a DBA, with grants) and still empty is filled."""
        schema = scratch_schema()
        with admin(dsn) as conn:
            conn.execute(f'CREATE SCHEMA "{schema}"')
        store = ScratchPostgresStore(dsn, schema=schema)
        try:
            assert store.schema_version == len(MIGRATIONS)
        finally:
            store.close()

    @pytest.mark.slow
    def test_processes_starting_at_once_migrate_once(self, dsn: str) -> None:
        """Four processes creating the same new schema at once all succeed; each migration ran once."""
        schema = scratch_schema()
        try:
            versions = spawn(open_store_at_once, 4, dsn, schema)
            assert versions == [len(MIGRATIONS)] * 4
            with admin(dsn) as conn:
                rows = conn.execute(
                    f'SELECT version FROM "{schema}".schema_migrations ORDER BY version'
                ).fetchall()
            assert [row[0] for row in rows] == list(range(1, len(MIGRATIONS) + 1))
        finally:
            drop_schema(dsn, schema)

    def test_a_borrowed_pool_is_left_open(self, dsn: str) -> None:
        """A store on the caller's pool works, and closing the store leaves the pool open."""
        schema = scratch_schema()
        with ConnectionPool(dsn, min_size=1, max_size=2, open=True) as pool:
            store = PostgresStore(pool, schema=schema)
            store.commit(opened_change(make_case()))
            assert store.get("case-1").version == 1
            store.close()
            with pool.connection() as conn:
                assert conn.execute("SELECT 1").fetchone() == (1,)
        drop_schema(dsn, schema)


# -- failures ----------------------------------------------------------------------------


def install_trigger(dsn: str, schema: str, table: str, body: str) -> None:
    """A row trigger on ``schema.table`` running the PL/pgSQL ``body`` before each insert."""
    with admin(dsn) as conn:
        conn.execute(
            f'CREATE FUNCTION "{schema}".sabotage() RETURNS trigger LANGUAGE plpgsql AS $$ '
            f"BEGIN {body} RETURN NEW; END $$"
        )
        conn.execute(
            f'CREATE TRIGGER sabotage BEFORE INSERT ON "{schema}".{table} '
            f'FOR EACH ROW EXECUTE FUNCTION "{schema}".sabotage()'
        )


def remove_trigger(dsn: str, schema: str, table: str) -> None:
    """Undo :func:`install_trigger`."""
    with admin(dsn) as conn:
        conn.execute(f'DROP TRIGGER sabotage ON "{schema}".{table}')
        conn.execute(f'DROP FUNCTION "{schema}".sabotage()')


#: Kill this session's own server process once ``kill_after`` has counted down.
KILL_ONCE = (
    "IF nextval('{schema}.kill_after') = {at} THEN "
    "PERFORM pg_terminate_backend(pg_backend_pid()); END IF;"
)


def arm_kill(dsn: str, schema: str, table: str, at: int) -> None:
    """Make the ``at``-th row inserted into ``table`` kill its own connection's server process."""
    with admin(dsn) as conn:
        conn.execute(f'CREATE SEQUENCE "{schema}".kill_after')
    install_trigger(dsn, schema, table, KILL_ONCE.format(schema=f'"{schema}"', at=at))


@pytest.mark.postgres
class TestFailures:
    """psycopg's errors come out as closeloop's, and a failed write leaves nothing behind."""

    def test_driver_errors_become_store_errors(self, store: ScratchPostgresStore,
                                               dsn: str) -> None:
        """A failing statement raises StoreError with psycopg's error chained."""
        with admin(dsn) as conn:
            conn.execute(f'DROP TABLE "{store.schema}".used_links')
        with pytest.raises(StoreError) as raised:
            store.link_used("link-1")
        assert isinstance(raised.value.__cause__, psycopg.errors.UndefinedTable)

    def test_connection_killed_mid_write_writes_nothing(self, store: ScratchPostgresStore,
                                                        dsn: str) -> None:
        """The server connection dies inside a commit: StoreError, nothing written, next write fine."""
        store.commit(opened_change(make_case("before")))
        arm_kill(dsn, store.schema, "events", at=1)
        with pytest.raises(StoreError, match="nothing was written") as raised:
            store.commit(opened_change(make_case("during")))
        assert isinstance(raised.value.__cause__, psycopg.OperationalError)
        remove_trigger(dsn, store.schema, "events")
        with pytest.raises(CaseNotFound):
            store.get("during")
        store.commit(opened_change(make_case("after")))  # the pool replaced the connection
        assert [case.id for case in store.find()] == ["before", "after"]

    def test_idle_connection_killed_is_replaced(self, dsn: str) -> None:
        """A pooled connection the server dropped while idle is replaced before it is used."""
        name = f"closeloop-test-{uuid.uuid4().hex[:12]}"
        store = ScratchPostgresStore(make_conninfo(dsn, application_name=name), pool_size=1)
        try:
            store.commit(opened_change(make_case()))
            with admin(dsn) as conn:
                killed = conn.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE application_name = %s", (name,)
                ).fetchall()
            assert killed == [(True,)]
            assert store.get("case-1").version == 1
        finally:
            store.close()

    def test_just_used_connection_killed_is_replaced_for_a_write(self, dsn: str) -> None:
        """A change right after the server dropped the connection is written once, on a new one."""
        name = f"closeloop-test-{uuid.uuid4().hex[:12]}"
        store = ScratchPostgresStore(make_conninfo(dsn, application_name=name), pool_size=1)
        try:
            loop = CloseLoop(store=store)
            case = loop.open_case("c-1", by="agent")
            with admin(dsn) as conn:
                killed = conn.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE application_name = %s", (name,)
                ).fetchall()
            assert killed == [(True,)]
            later = case.opened_at + timedelta(minutes=1)
            store.commit(Change(
                case=evolve(case, version=2, updated_at=later), expected_version=1,
                events=(Commented(case_id=case.id, seq=2, actor="agent", at=later,
                                  comment="still here"),),
            ))
            assert [event.kind for event in store.history(case.id)] == ["opened", "commented"]
            assert store.get(case.id).version == 2
        finally:
            store.close()

    def test_deadlock_is_a_concurrent_update(self, store: ScratchPostgresStore,
                                             dsn: str) -> None:
        """A transaction the server aborts as a deadlock raises ConcurrentUpdate; nothing is written."""
        install_trigger(dsn, store.schema, "cases",
                        "RAISE EXCEPTION 'simulated' USING ERRCODE = 'deadlock_detected';")
        with pytest.raises(ConcurrentUpdate) as raised:
            store.commit(opened_change(make_case()))
        assert isinstance(raised.value.__cause__, StoreError)
        assert isinstance(raised.value.__cause__.__cause__, psycopg.errors.DeadlockDetected)
        remove_trigger(dsn, store.schema, "cases")
        assert store.find() == []

    def test_a_closed_store_raises_store_error(self, dsn: str) -> None:
        """Using a store after close() raises StoreError, not a psycopg error."""
        store = ScratchPostgresStore(dsn)
        store.close()
        with pytest.raises(StoreError):
            store.get("case-1")

    def test_fault_in_the_middle_of_a_batch_ingest(self, store: ScratchPostgresStore,
                                                   dsn: str) -> None:
        """The connection dies mid-batch: acknowledged cases all stay, each opened, none half-written."""
        loop = CloseLoop(store=store, triggers=load_triggers())
        responses = [SurveyResponse(id=f"r-{i:03}", customer_id=f"c-{i:03}", score=i % 7)
                     for i in range(200)]
        batches = [responses[start:start + 25] for start in range(0, len(responses), 25)]
        arm_kill(dsn, store.schema, "cases", at=60)  # the 10th case of the third batch
        acknowledged: dict[str, str | None] = {}
        failures = []
        for batch in batches:
            try:
                summary = loop.ingest_many(batch)
            except StoreError as exc:
                failures.append(exc)
            else:
                acknowledged.update(summary.cases)
        assert len(failures) == 1
        assert "nothing was written" in str(failures[0])
        assert isinstance(failures[0].__cause__, psycopg.OperationalError)
        # After reconnecting (the pool's new connection): every acknowledged case is
        # there, and the failed batch left nothing at all.
        assert len(acknowledged) == 175
        assert store.responses([r.id for r in batches[2]]) == {}
        for response_id, case_id in acknowledged.items():
            assert case_id is not None
            assert store.get(case_id).response_ids == (response_id,)
        for case in store.find():
            history = store.history(case.id)
            assert isinstance(history[0], Opened)
            assert [event.seq for event in history] == list(range(1, case.version + 1))
        # Ingesting the failed batch again now opens its cases, once each.
        summary = loop.ingest_many(batches[2])
        assert summary.opened == 25
        assert len(store.find()) == 200


# -- many processes ----------------------------------------------------------------------


@pytest.mark.postgres
@pytest.mark.slow
class TestProcesses:
    """Several processes, each with its own PostgresStore on one schema."""

    def test_sole_active_case_holds_across_processes(self, store: ScratchPostgresStore,
                                                     dsn: str) -> None:
        """Four processes opening a case for one customer at once: exactly one succeeds, each round."""
        rounds = 20
        outcomes = spawn(open_sole_cases, 4, dsn, store.schema, rounds)
        for number in range(rounds):
            assert sorted(worker[number] for worker in outcomes) == ["lost"] * 3 + ["won"]
            assert len(store.find(customer_id=f"c-{number}")) == 1

    def test_escalating_workers_share_cases_and_never_double_send(
        self, store: ScratchPostgresStore, dsn: str
    ) -> None:
        """Four processes escalating at once: every overdue case escalated and emailed exactly once."""
        clock = FixedClock(T0)
        loop = CloseLoop(store=store, clock=clock)
        case_ids = []
        for index in range(120):
            case = loop.open_case(f"c-{index}", by="agent", due_at=T0 + timedelta(hours=1))
            loop.assign(case.id, to=USERS[index % len(USERS)], by="lead")
            case_ids.append(case.id)
        now = T0 + timedelta(hours=2)
        sent = spawn(escalate_at_once, 4, dsn, store.schema, now.isoformat())
        all_sent = [case_id for worker in sent for case_id in worker]
        assert sorted(all_sent) == sorted(case_ids)
        for case_id in case_ids:
            escalations = [e for e in store.history(case_id) if isinstance(e, Escalated)]
            assert len(escalations) == 1

    def test_load_many_processes_mixed_operations(self, store: ScratchPostgresStore,
                                                  dsn: str) -> None:
        """8 processes × 1 000 mixed calls: histories replay, nothing lost or doubled, races refused."""
        workers, operations = 8, 1000
        seed = CloseLoop(store=store)
        customers = [f"cust-{index:02}" for index in range(64)]
        cases = []
        for index, customer in enumerate(customers):
            case = seed.open_case(customer, by="seed")
            seed.assign(case.id, to=USERS[index % len(USERS)], by="seed")
            cases.append(case.id)
        context = multiprocessing.get_context("spawn")
        start = context.Barrier(workers)
        results = context.Queue()
        children = [
            context.Process(target=run_load_worker, args=(
                dsn, store.schema, f"w{n}", operations, cases, customers, start, results))
            for n in range(workers)
        ]
        try:
            for child in children:
                child.start()
            messages = collect(results, workers)
        finally:
            for child in children:
                child.join(HANG_GUARD)
        assert [child.exitcode for child in children] == [0] * workers

        successes = [s for message in messages for s in message[2]]
        ingested = [i for message in messages for i in message[3]]
        outcomes: Counter[str] = Counter()
        for message in messages:
            outcomes.update(message[4])
        assert sum(outcomes.values()) == workers * operations
        assert outcomes["conflict"] > 0  # the workers really did race
        check_histories(store, successes, ingested)


def collect(results: Any, workers: int) -> list[Any]:
    """The "done" message of each worker; fails the test on a worker's error."""
    done: list[Any] = []
    while len(done) < workers:
        try:
            message = results.get(timeout=HANG_GUARD)
        except queue.Empty:
            pytest.fail(f"load workers stopped reporting; {len(done)} finished")
        if message[0] == "error":
            pytest.fail(f"worker {message[1]} failed: {message[2]}")
        done.append(message)
    return done


def replay(case: Case, history: list[Event]) -> None:
    """The history, applied event by event from nothing, gives the stored case."""
    assert [event.seq for event in history] == list(range(1, case.version + 1))
    assert isinstance(history[0], Opened)
    status, assignee, closed_at = Status.OPEN, None, None
    attached = []
    for event in history:
        if isinstance(event, Assigned):
            assert event.previous == assignee
            assignee = event.assignee
        elif isinstance(event, StatusChanged):
            assert event.from_status is status
            status = event.to_status
            closed_at = event.at if status is Status.CLOSED else None
        elif isinstance(event, ResponseAttached):
            attached.append(event.response_id)
    assert (case.status, case.assignee, case.closed_at) == (status, assignee, closed_at)
    assert case.updated_at == history[-1].at
    opener = case.response_ids[: len(case.response_ids) - len(attached)]
    assert len(opener) == (0 if case.opened_by == "seed" else 1)
    assert case.response_ids[len(opener):] == tuple(attached)


def check_histories(store: Store, successes: list[Any], ingested: list[Any]) -> None:
    """Every case replays; every reported change is in history once; no change is unreported."""
    cases = store.find()
    histories = {case.id: store.history(case.id) for case in cases}
    for case in cases:
        replay(case, histories[case.id])
    # Changes by the workers carry a unique tag as their comment.
    tagged: dict[str, tuple[str, str, int]] = {}
    for case_id, history in histories.items():
        for event in history:
            if isinstance(event, Assigned | StatusChanged | Commented) and event.comment and (
                "-op" in event.comment
            ):
                assert event.comment not in tagged, f"event written twice: {event}"
                tagged[event.comment] = (event.kind, case_id, event.seq)
    reported = {tag: (kind, case_id, version) for kind, case_id, version, tag in successes}
    assert len(reported) == len(successes)
    assert tagged == reported
    # Each matching response is on exactly one case, the one every ingest of it returned.
    holder: dict[str, str] = {}
    for case in cases:
        for response_id in case.response_ids:
            assert response_id not in holder, f"{response_id} on two cases"
            holder[response_id] = case.id
    records = store.responses(sorted({response_id for response_id, _ in ingested}))
    for response_id, case_id in ingested:
        assert holder.get(response_id) == case_id
        assert records[response_id].case_id == case_id


# -- reports agree with the other stores -------------------------------------------------


#: A survey answer from one of three customers, after some time has passed.
INGEST = st.tuples(st.just("ingest"), st.integers(0, 2), st.one_of(st.none(), st.integers(0, 10)),
                   st.booleans(), st.sampled_from([0, 0, 1, 90]), st.sampled_from([0, 1, 600]))
CLOSE = st.tuples(st.just("status"), st.integers(0, 30), st.just(Status.CLOSED),
                  st.sampled_from(USERS))
#: Operations on a few customers, weighted so that cases get closed and customers
#: answer again afterwards (recovery), with time passing in between.
WAIT = st.tuples(st.just("wait"), st.integers(0, 5000))
#: A rescue: the customer answers, their latest case is closed, later they answer again.
RESCUE = st.tuples(st.just("rescue"), st.integers(0, 2), st.one_of(st.none(), st.integers(0, 10)),
                   st.one_of(st.none(), st.integers(0, 10)), st.integers(0, 3000))
OPERATIONS = st.lists(st.one_of(
    INGEST, INGEST, RESCUE, CLOSE, WAIT,
    st.tuples(st.just("open"), st.integers(0, 3), st.sampled_from(USERS),
              st.lists(st.sampled_from(["vip", "call", "vip"]), max_size=3),
              st.one_of(st.none(), st.integers(-3000, 3000))),
    st.tuples(st.just("assign"), st.integers(0, 30), st.sampled_from(USERS),
              st.sampled_from(USERS)),
    st.tuples(st.just("status"), st.integers(0, 30), st.sampled_from(list(Status)),
              st.sampled_from(USERS)),
    st.tuples(st.just("comment"), st.integers(0, 30), st.sampled_from(USERS)),
), min_size=5, max_size=60)


def apply_operation(loop: CloseLoop, clock: FixedClock, operation: tuple[Any, ...],
                    response_ids: Iterator[int]) -> str:
    """Apply one generated operation; return the name of the error it raised, if any."""
    kind, *args = operation
    cases = loop.cases()
    try:
        if kind == "wait":
            clock.advance(minutes=args[0])
        elif kind == "ingest":
            customer, score, contact, minutes_ago, waited = args
            clock.advance(minutes=waited)
            loop.ingest(SurveyResponse(
                id=f"r-{next(response_ids)}", customer_id=f"c-{customer}", score=score,
                contact_requested=contact, submitted_at=clock() - timedelta(minutes=minutes_ago)))
        elif kind == "rescue":
            customer, before, after, minutes = args
            loop.ingest(SurveyResponse(id=f"r-{next(response_ids)}", customer_id=f"c-{customer}",
                                       score=before, contact_requested=True))
            (latest,) = loop.cases(customer_id=f"c-{customer}")[-1:]
            if latest.status is not Status.CLOSED:
                loop.set_status(latest.id, Status.CLOSED, by="ana", comment="rescued")
            clock.advance(minutes=minutes)
            loop.ingest(SurveyResponse(id=f"r-{next(response_ids)}", customer_id=f"c-{customer}",
                                       score=after))
        elif kind == "open":
            customer, by, reasons, due_minutes = args
            due = None if due_minutes is None else clock() + timedelta(minutes=due_minutes)
            loop.open_case(f"c-{customer}", by=by, reasons=reasons, due_at=due)
        elif cases:
            case = cases[args[0] % len(cases)]
            if kind == "assign":
                loop.assign(case.id, to=args[1], by=args[2])
            elif kind == "status":
                loop.set_status(case.id, args[1], by=args[2], comment="generated")
            else:
                loop.comment(case.id, "generated", by=args[1])
    except CloseLoopError as exc:
        return type(exc).__name__
    return ""


def report_queries(clock: FixedClock) -> list[ReportQuery]:
    """A few reports over the generated data: everything, a window, one assignee, one reason."""
    now = clock()
    return [
        ReportQuery(now=now),
        ReportQuery(now=now + timedelta(days=4)),
        ReportQuery(now=now, since=T0 + timedelta(hours=3), until=now),
        ReportQuery(now=now, assignee="ana"),
        ReportQuery(now=now, reason="detractor"),
        ReportQuery(now=now, reason="vip"),
    ]


@pytest.fixture
def report_stores(dsn: str, tmp_path: Path) -> Iterator[tuple[ScratchPostgresStore, Path]]:
    """One PostgresStore for every hypothesis example (emptied each time), and a scratch dir."""
    store = ScratchPostgresStore(dsn)
    yield store, tmp_path
    store.close()


@pytest.mark.postgres
class TestReportsAgree:
    """PostgresStore's report equals MemoryStore's and SQLiteStore's for the same history."""

    @settings(max_examples=60, deadline=None,
              suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(operations=OPERATIONS)
    def test_reports_are_identical(
        self, report_stores: tuple[ScratchPostgresStore, Path], operations: list[Any]
    ) -> None:
        """The same operations on each store give equal reports, field by field."""
        postgres, tmp_path = report_stores
        postgres.truncate()
        sqlite_path = tmp_path / f"{uuid.uuid4().hex}.db"
        stores: list[Store] = [MemoryStore(), SQLiteStore(sqlite_path), postgres]
        triggers = [Trigger("detractor", nps_between(0, 6)),
                    Trigger("contact", contact_requested())]
        clocks = [FixedClock(T0) for _ in stores]
        loops = []
        for store, clock in zip(stores, clocks, strict=True):
            ids = count()
            loops.append(CloseLoop(store=store, clock=clock, triggers=triggers,
                                   id_factory=lambda ids=ids: f"id-{next(ids):04}"))
        response_ids = [count() for _ in stores]
        try:
            for operation in operations:
                errors = {apply_operation(loop, clock, operation, numbers)
                          for loop, clock, numbers in zip(loops, clocks, response_ids, strict=True)}
                assert len(errors) == 1, (operation, errors)
            for query in report_queries(clocks[0]):
                memory, sqlite, pg = (store.report(query) for store in stores)
                assert pg == memory
                assert pg == sqlite
        finally:
            stores[1].close()


@pytest.mark.postgres
class TestPostgresSpecifics:
    """Behaviour the contract does not pin down but PostgreSQL users rely on."""

    def test_times_come_back_in_utc_whatever_the_session_zone(self, dsn: str) -> None:
        """With the server's TimeZone set elsewhere, times still read back as the same UTC instant."""
        store = ScratchPostgresStore(make_conninfo(dsn, options="-c TimeZone=Asia/Kolkata"))
        try:
            case = make_case(opened_at=T0 + timedelta(microseconds=1),
                             updated_at=T0 + timedelta(microseconds=1))
            store.commit(opened_change(case))
            got = store.get(case.id)
            assert got == case
            assert got.opened_at.utcoffset() == timedelta(0)
        finally:
            store.close()

    def test_ids_sort_by_code_point_for_notices(self, store: ScratchPostgresStore) -> None:
        """Notices created at one instant come oldest-first by id in code point order, as in Python."""
        ids = ["b", "B", "a", "é", "Z", "_"]
        case = make_case()
        store.commit(evolve(opened_change(case), notices=[make_notice(case.id, i) for i in ids]))
        assert [notice.id for notice in store.pending_notices()] == sorted(ids)

    def test_a_forked_child_opens_its_own_connections(self, store: ScratchPostgresStore,
                                                      dsn: str) -> None:
        """Parent and forked child writing at once through one store each get their own connections."""
        result = run_python(f"""
import os
from closeloop.storage import PostgresStore
from closeloop.testing.store_contract import make_case, opened_change
store = PostgresStore({dsn!r}, schema={store.schema!r}, pool_size=2, timeout=5)
store.commit(opened_change(make_case("before")))

def write(who):
    for number in range(100):
        store.commit(opened_change(make_case(f"{{who}}-{{number}}")))
        assert store.get(f"{{who}}-{{number}}").id == f"{{who}}-{{number}}"

pid = os.fork()
if pid == 0:
    code = 1
    try:
        write("child")
        code = 0
    finally:
        os._exit(code)
write("parent")  # at the same time as the child
_, status = os.waitpid(pid, 0)
print(os.waitstatus_to_exitcode(status), len(store.find()))
store.close()
""")
        assert result.returncode == 0, result.stderr
        assert result.stdout.split() == ["0", "201"]
