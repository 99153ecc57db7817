"""Shared fixtures: every store the suite runs against, a settable clock, a loop."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from closeloop import CloseLoop
from closeloop.notify import MemoryNotifier
from closeloop.storage import MemoryStore, SQLiteStore, Store
from closeloop.testing import FixedClock

STORE_KINDS = ["memory", "sqlite"]
if os.environ.get("CLOSELOOP_TEST_POSTGRES_DSN"):
    STORE_KINDS.append("postgres")


def make_store(kind: str, tmp_path: Path) -> Store:
    """A fresh, empty store of the given kind."""
    if kind == "memory":
        return MemoryStore()
    if kind == "sqlite":
        return SQLiteStore(tmp_path / "closeloop.db")
    if kind == "postgres":
        from postgres_workers import ScratchPostgresStore  # tests/ is on sys.path; needs psycopg

        return ScratchPostgresStore(os.environ["CLOSELOOP_TEST_POSTGRES_DSN"])
    raise AssertionError(f"unknown store kind {kind}")


@pytest.fixture(params=STORE_KINDS)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    """Each store kind in turn, empty."""
    store = make_store(request.param, tmp_path)
    yield store
    store.close()


@pytest.fixture
def clock() -> FixedClock:
    """A clock that moves only when a test says so."""
    return FixedClock()


@pytest.fixture
def outbox() -> MemoryNotifier:
    """A notifier that records what it sends."""
    return MemoryNotifier()


@pytest.fixture
def loop(store: Store, outbox: MemoryNotifier, clock: FixedClock) -> CloseLoop:
    """A loop over each store kind, with a recording notifier and a fixed clock."""
    return CloseLoop(store=store, notifier=outbox, clock=clock)
