"""Run in child processes by tests/test_query_paging.py (importable by spawn): writers that
insert and change cases while the test pages through them."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any

from closeloop import CloseLoop, ConcurrentUpdate, NothingToChange, Status, TransitionNotAllowed
from closeloop.model import Case, Opened, Priority
from closeloop.notify import MemoryNotifier
from closeloop.storage import Change, SQLiteStore, Store
from closeloop.testing import FixedClock

T0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
#: The initial cases are opened over this span; inserted ones land anywhere in it.
SPAN = timedelta(hours=2)
ASSIGNEES = ("alice", "bob", "carol", "dave", None)


def open_store(kind: str, where: Any) -> Store:
    """The store the test made: a SQLite file path, or (dsn, schema) for PostgreSQL."""
    if kind == "sqlite":
        return SQLiteStore(where)
    from closeloop.storage import PostgresStore

    dsn, schema = where
    return PostgresStore(dsn, schema=schema, pool_size=2)


def initial_cases(count: int) -> list[Case]:
    """``count`` Open cases; opened_at ties in threes, ids in no particular order."""
    rng = random.Random(16)
    return [
        Case(id=f"{rng.getrandbits(48):012x}-{n}", customer_id=f"cust-{n}", status=Status.OPEN,
             opened_at=T0 + (n // 3) * SPAN / count * 3, updated_at=T0, opened_by="seed",
             version=1, assignee=ASSIGNEES[n % len(ASSIGNEES)], priority=list(Priority)[n % 4],
             due_at=None if n % 4 == 0 else T0 + timedelta(minutes=rng.randrange(600)))
        for n in range(count)
    ]


def seed(store: Store, cases: list[Case]) -> None:
    """Commit the cases, a thousand to a transaction."""
    for start in range(0, len(cases), 1000):
        store.commit_many([
            Change(case=case, expected_version=None, events=[
                Opened(case_id=case.id, actor=case.opened_by, at=case.opened_at, seq=1)])
            for case in cases[start:start + 1000]
        ])


def churn(kind: str, where: Any, number: int, case_ids: list[str], stop: Any, written: Any,
          changed: Any) -> int:
    """Insert cases and change existing ones (status Open ↔ Progress, assignee) until ``stop``.

    After each write it adds one to ``written`` and notifies ``changed``, so the test
    can wait for a write between two pages. Cases are never closed, so every case
    keeps matching a query for Open or Progress. Returns how many writes it made.
    """
    store = open_store(kind, where)
    clock = FixedClock(T0)
    loop = CloseLoop(store=store, notifier=MemoryNotifier(), clock=clock, deliver_notices=False)
    rng = random.Random(number)
    made = 0
    try:
        while not stop.is_set():
            clock.set(T0 + rng.random() * SPAN)
            action = rng.randrange(3)
            try:
                if action == 0:
                    loop.open_case(f"new-{number}-{made}", by=f"writer-{number}",
                                   priority=rng.choice(list(Priority)))
                else:
                    case = loop.get(rng.choice(case_ids))
                    if action == 1:
                        target = Status.PROGRESS if case.status is Status.OPEN else Status.OPEN
                        loop.set_status(case.id, target, by=f"writer-{number}",
                                        expected_version=case.version)
                    else:
                        loop.assign(case.id, to=rng.choice(ASSIGNEES[:-1]), by=f"writer-{number}",
                                    expected_version=case.version)
            except (ConcurrentUpdate, NothingToChange, TransitionNotAllowed):
                continue  # the other writer got there first: no write of ours
            made += 1
            with changed:
                written.value += 1
                changed.notify_all()
    finally:
        store.close()
    return made
