"""Helpers for the PostgreSQL tests, and the functions their spawned child processes run.

They live in their own module so that a child started with the "spawn" method
can import them (pytest puts tests/ on ``sys.path``, and spawn hands it to the
child). Importing this module needs psycopg (``closeloop[postgres]``).

Every test store gets a schema of its own (:class:`ScratchPostgresStore`), dropped
when the store is closed, so tests never see each other's rows.
"""

from __future__ import annotations

import random
import uuid
from collections import Counter
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import psycopg

from closeloop import (
    CloseLoop,
    ConcurrentUpdate,
    Priority,
    SurveyResponse,
    TokenInvalid,
    TransitionNotAllowed,
)
from closeloop.notify import MemoryNotifier
from closeloop.onetouch import OneTouch
from closeloop.storage import PostgresStore
from closeloop.storage.base import Change
from closeloop.testing import FixedClock
from closeloop.testing.store_contract import make_case, opened_change
from closeloop.triggers import Trigger, nps_between, round_robin
from closeloop.workflow import allowed_targets

DSN_VARIABLE = "CLOSELOOP_TEST_POSTGRES_DSN"
#: Only there so a broken child fails the test instead of hanging it; never reached
#: in a passing run, and nothing is asserted about how long anything takes.
HANG_GUARD = 120.0
SECRET = "load test secret for one-touch links, 32+ bytes"
BASE_URL = "https://crm.example/one-touch"
USERS = ("ana", "ben", "chen", "dara", "eli")


def scratch_schema() -> str:
    """A new schema name no other test uses."""
    return f"test_{uuid.uuid4().hex[:24]}"


def drop_schema(dsn: str, schema: str) -> None:
    """Drop ``schema`` and everything in it."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


class ScratchPostgresStore(PostgresStore):
    """A PostgresStore in a fresh schema of its own, dropped when the store is closed."""

    def __init__(self, dsn: str, *, schema: str | None = None, **options: Any) -> None:
        self.dsn = dsn
        super().__init__(dsn, schema=schema or scratch_schema(), **options)

    def close(self) -> None:
        """Close the pool, then drop the schema."""
        super().close()
        drop_schema(self.dsn, self.schema)

    def truncate(self) -> None:
        """Empty every table (between hypothesis examples, which share one store)."""
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            conn.execute(
                f'TRUNCATE "{self.schema}".cases, "{self.schema}".events, "{self.schema}".outbox, '
                f'"{self.schema}".responses, "{self.schema}".rotations, '
                f'"{self.schema}".used_links RESTART IDENTITY'
            )


def load_triggers() -> list[Trigger]:
    """Detractors open a case, assigned round-robin (so rotations are exercised too)."""
    return [Trigger("detractor", nps_between(0, 6), priority=Priority.HIGH,
                    assign_to=round_robin(list(USERS)), due_in=timedelta(hours=48))]


# -- children ---------------------------------------------------------------------------


def open_store_at_once(dsn: str, schema: str, index: int, barrier: Any) -> int:
    """Wait for the others, then create the store (and so migrate); return the schema version."""
    barrier.wait(HANG_GUARD)
    store = PostgresStore(dsn, schema=schema, pool_size=1)
    try:
        return store.schema_version
    finally:
        store.close()


def open_sole_cases(dsn: str, schema: str, rounds: int, index: int, barrier: Any) -> list[str]:
    """Each round, with the others: open a sole-active case for the round's customer.

    Returns, per round, "won" or "lost" (ConcurrentUpdate).
    """
    worker = f"w{index}"
    store = PostgresStore(dsn, schema=schema, pool_size=1)
    outcomes = []
    try:
        for number in range(rounds):
            change = opened_change(make_case(f"{worker}-{number}", customer_id=f"c-{number}"))
            barrier.wait(HANG_GUARD)
            try:
                store.commit(Change(case=change.case, expected_version=None,
                                    events=change.events, sole_active_case=True))
            except ConcurrentUpdate:
                outcomes.append("lost")
            else:
                outcomes.append("won")
    except BaseException:
        barrier.abort()  # release the others instead of leaving them waiting
        raise
    finally:
        store.close()
    return outcomes


def escalate_at_once(dsn: str, schema: str, now_iso: str, index: int, barrier: Any) -> list[str]:
    """Wait for the others, escalate in small batches until nothing is due; return case ids sent."""
    outbox = MemoryNotifier()
    store = PostgresStore(dsn, schema=schema, pool_size=1)
    loop = CloseLoop(store=store, notifier=outbox, clock=FixedClock(datetime.fromisoformat(now_iso)))
    try:
        barrier.wait(HANG_GUARD)
        # Skipped cases were escalated by another worker meanwhile: keep going until
        # nothing is due any more.
        while (run := loop.escalate(limit=3)).escalated or run.skipped:
            pass
    finally:
        store.close()
    return [message.case_id for message in outbox.sent]


#: One successful change a load worker made: (kind, case id, version it produced, tag).
Success = tuple[str, str, int, str]


class LoadWorker:
    """One process of the load test: ``operations`` mixed calls through one CloseLoop."""

    def __init__(self, dsn: str, schema: str, worker: str, cases: Sequence[str],
                 customers: Sequence[str]) -> None:
        self.store = PostgresStore(dsn, schema=schema, pool_size=2)
        self.loop = CloseLoop(store=self.store, notifier=MemoryNotifier(),
                              triggers=load_triggers(),
                              one_touch=OneTouch(SECRET, base_url=BASE_URL))
        self.worker = worker
        self.cases = list(cases)
        self.customers = list(customers)
        self.rng = random.Random(worker)
        self.successes: list[Success] = []
        self.ingested: list[tuple[str, str | None]] = []  # (response id, case id)
        self.outcomes: Counter[str] = Counter()

    def run(self, operations: int) -> None:
        """Make ``operations`` calls; count ConcurrentUpdate and stale links, raise anything else."""
        kinds = ["ingest"] * 30 + ["assign"] * 20 + ["status"] * 25 + ["comment"] * 15 + [
            "confirm"] * 10
        for number in range(operations):
            kind = self.rng.choice(kinds)
            tag = f"{self.worker}-op{number}"
            try:
                getattr(self, kind)(number, tag)
            except ConcurrentUpdate:
                self.outcomes["conflict"] += 1
            except (TokenInvalid, TransitionNotAllowed):
                # Only one-touch meets these: the case was reassigned or changed status
                # between opening the link and preparing or confirming the change.
                assert kind == "confirm", kind
                self.outcomes["stale link"] += 1
            else:
                self.outcomes[kind] += 1

    def ingest(self, number: int, tag: str) -> None:
        """A response: mostly this worker's own, sometimes one every worker sends."""
        if self.rng.random() < 0.2:
            shared = self.rng.randrange(40)  # the same response, sent by several workers
            response = SurveyResponse(id=f"shared-{shared}", customer_id=self.customers[
                shared % len(self.customers)], score=shared % 7, comment=f"shared {shared}")
        else:
            response = SurveyResponse(id=f"{tag}-response", customer_id=self.rng.choice(
                self.customers), score=self.rng.randrange(11), comment=tag)
        case = self.loop.ingest(response)
        self.ingested.append((response.id, None if case is None else case.id))
        if case is not None and case.id not in self.cases:
            self.cases.append(case.id)

    def assign(self, number: int, tag: str) -> None:
        """Reassign a case to someone else, based on the version just read."""
        case = self.loop.get(self.rng.choice(self.cases))
        to = self.rng.choice([user for user in USERS if user != case.assignee])
        updated = self.loop.assign(case.id, to=to, by=self.worker, comment=tag,
                                   expected_version=case.version)
        self.successes.append(("assigned", case.id, updated.version, tag))

    def status(self, number: int, tag: str) -> None:
        """Move a case to a status the workflow allows from the one just read."""
        case = self.loop.get(self.rng.choice(self.cases))
        target = self.rng.choice(allowed_targets(case.status))
        updated = self.loop.set_status(case.id, target, by=self.worker, comment=tag,
                                       expected_version=case.version)
        self.successes.append(("status_changed", case.id, updated.version, tag))

    def comment(self, number: int, tag: str) -> None:
        """Comment on a case, based on the version just read."""
        case = self.loop.get(self.rng.choice(self.cases))
        updated = self.loop.comment(case.id, tag, by=self.worker, expected_version=case.version)
        self.successes.append(("commented", case.id, updated.version, tag))

    def confirm(self, number: int, tag: str) -> None:
        """One-touch: issue a link, open it, prepare a change, confirm it."""
        case = self.loop.get(self.rng.choice(self.cases))
        assert case.assignee is not None  # seeded and triggered cases are all assigned
        one_touch = self.loop.one_touch
        token = parse_qs(urlsplit(one_touch.link(case.id)).query)["token"][0]
        view = one_touch.open(token)
        pending = one_touch.prepare(token, status=self.rng.choice(view.allowed), comment=tag)
        updated = one_touch.confirm(pending.token)
        self.successes.append(("status_changed", case.id, updated.version, tag))


def run_load_worker(dsn: str, schema: str, worker: str, operations: int, cases: Sequence[str],
                    customers: Sequence[str], start: Any, results: Any) -> None:
    """Child process: wait for every worker, run the load, report what happened."""
    load = LoadWorker(dsn, schema, worker, cases, customers)
    try:
        start.wait(HANG_GUARD)
        load.run(operations)
    except BaseException as exc:
        start.abort()
        results.put(("error", worker, repr(exc)))
        raise
    finally:
        load.store.close()
    results.put(("done", worker, load.successes, load.ingested, dict(load.outcomes)))
