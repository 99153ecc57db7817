"""Writers racing on one case: exactly one wins each round, nothing is lost or doubled.

Races are lined up with barriers, never with sleeps: each round both workers read
the case, meet at a barrier, then both try to change the version they read.

The process tests use the "spawn" start method (forking a threaded pytest is
unsafe); the functions the children run live at module level so that a spawned
child can import them (pytest puts this directory on ``sys.path``, and spawn hands
the parent's ``sys.path`` to the child).
"""

from __future__ import annotations

import multiprocessing
import queue
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from closeloop import (
    CloseLoop,
    ConcurrentUpdate,
    Status,
    StatusChanged,
    TransitionNotAllowed,
)
from closeloop.storage import SQLiteStore, Store

ROUNDS = 24
WORKERS = ("w-1", "w-2")
#: Only there so a broken worker fails the test instead of hanging it; never reached
#: in a passing run, and nothing is asserted about how long anything takes.
HANG_GUARD = 120.0

#: One worker's outcome of one round: (round, worker, "won" | "lost", version after win).
Outcome = tuple[int, str, str, int | None]


def race_rounds(
    loop: CloseLoop,
    case_id: str,
    worker: str,
    rounds: int,
    wait: Callable[[], Any],
    report: Callable[[Outcome], None],
) -> None:
    """Each round: read the case, wait for the other worker, change the version read."""
    for number in range(rounds):
        case = loop.get(case_id)
        target = Status.PROGRESS if case.status is Status.OPEN else Status.OPEN
        wait()  # both have read the same version; now both write
        try:
            updated = loop.set_status(
                case_id, target, by=worker, comment=f"round {number} by {worker}",
                expected_version=case.version,
            )
        except ConcurrentUpdate:
            report((number, worker, "lost", None))
        else:
            report((number, worker, "won", updated.version))
        wait()  # nobody reads the next round before both have written this one


def race_in_process(path: str, case_id: str, worker: str, rounds: int,
                    barrier: Any, results: Any) -> None:
    """Child process: open its own SQLiteStore on the file and race ``rounds`` rounds."""
    store = SQLiteStore(path)
    try:
        race_rounds(CloseLoop(store=store), case_id, worker, rounds,
                    lambda: barrier.wait(HANG_GUARD), results.put)
    except BaseException as exc:
        barrier.abort()  # release the other process instead of leaving it waiting
        results.put(("error", worker, repr(exc)))
        raise
    finally:
        store.close()
    results.put(("done", worker))


def hammer_in_process(path: str, case_id: str, worker: str, operations: int,
                      start: Any, results: Any) -> None:
    """Child process: set_status/comment without expected_version, ``operations`` times.

    Reports the version each successful call produced, and how many calls were
    refused as ConcurrentUpdate or TransitionNotAllowed; anything else is an error.
    """
    store = SQLiteStore(path)
    won: list[int] = []
    refused = 0
    try:
        loop = CloseLoop(store=store)
        start.wait(HANG_GUARD)
        for number in range(operations):
            try:
                if number % 3 == 2:
                    case = loop.comment(case_id, f"note {number} by {worker}", by=worker)
                else:
                    target = Status.PROGRESS if number % 3 == 0 else Status.OPEN
                    case = loop.set_status(case_id, target, by=worker,
                                           comment=f"op {number} by {worker}")
            except (ConcurrentUpdate, TransitionNotAllowed):
                refused += 1
            else:
                won.append(case.version)
    except BaseException as exc:
        start.abort()
        results.put(("error", worker, repr(exc)))
        raise
    finally:
        store.close()
    results.put(("done", worker, won, refused))


def replay(events: list[Any]) -> Status:
    """The status the history's status changes lead to from Open (each must chain)."""
    status = Status.OPEN
    for event in events:
        if isinstance(event, StatusChanged):
            assert event.from_status is status, event
            status = event.to_status
    return status


def check_race(loop: CloseLoop, case_id: str, outcomes: list[Outcome], rounds: int) -> None:
    """Exactly one winner per round; the case and its history account for every win."""
    for number in range(rounds):
        this_round = sorted(kind for n, _, kind, _ in outcomes if n == number)
        assert this_round == ["lost", "won"], (number, outcomes)
    wins = [(worker, version) for _, worker, kind, version in outcomes if kind == "won"]
    case = loop.get(case_id)
    history = loop.history(case_id)
    assert case.version == 1 + len(wins) == 1 + rounds
    assert len(history) == case.version
    assert [event.seq for event in history] == list(range(1, case.version + 1))
    assert replay(history) is case.status
    for worker, version in wins:
        assert version is not None
        event = history[version - 1]
        assert isinstance(event, StatusChanged)
        assert (event.seq, event.actor) == (version, worker)
    statuses = [e.to_status for e in history if isinstance(e, StatusChanged)]
    assert statuses == [Status.PROGRESS, Status.OPEN] * (rounds // 2)


def run_workers(target: Any, path: str, case_id: str, count: int) -> list[Any]:
    """Run ``target(path, case_id, worker, count, barrier, results)`` in one spawned
    process per worker, lined up on a shared barrier; return every message they sent."""
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(len(WORKERS))
    results = context.Queue()
    children = [
        context.Process(target=target, args=(path, case_id, worker, count, barrier, results))
        for worker in WORKERS
    ]
    try:
        for child in children:
            child.start()
        messages = collect(results, len(WORKERS))
    finally:
        for child in children:
            child.join(HANG_GUARD)
    assert [child.exitcode for child in children] == [0] * len(WORKERS)
    return messages


def collect(results: Any, workers: int) -> list[Any]:
    """Every message from the children, until each worker said "done" (or failed)."""
    messages: list[Any] = []
    finished = 0
    while finished < workers:
        try:
            message = results.get(timeout=HANG_GUARD)
        except queue.Empty:
            pytest.fail(f"child processes stopped reporting; got {messages}")
        if message[0] == "error":
            pytest.fail(f"worker {message[1]} failed: {message[2]}")
        finished += message[0] == "done"
        messages.append(message)
    return messages


class TestThreadsRacing:
    """Two threads of one process, one loop, one store (each store kind)."""

    def test_one_winner_per_round(self, store: Store) -> None:
        """Two threads writing one version: one wins, one gets ConcurrentUpdate, every round."""
        loop = CloseLoop(store=store)
        case = loop.open_case("c-1", by="agent")
        barrier = threading.Barrier(len(WORKERS), timeout=HANG_GUARD)
        outcomes: list[Outcome] = []
        failures: list[BaseException] = []

        def work(worker: str) -> None:
            try:
                race_rounds(loop, case.id, worker, ROUNDS, barrier.wait, outcomes.append)
            except BaseException as exc:
                failures.append(exc)
                barrier.abort()

        threads = [threading.Thread(target=work, args=(worker,)) for worker in WORKERS]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert failures == []
        check_race(loop, case.id, outcomes, ROUNDS)


@pytest.mark.slow
class TestProcessesRacing:
    """Two processes, each with its own SQLiteStore on the same file."""

    def test_one_winner_per_round(self, tmp_path: Path) -> None:
        """Two processes writing one version: one wins, one gets ConcurrentUpdate, each round."""
        path = tmp_path / "race.db"
        store = SQLiteStore(path)
        loop = CloseLoop(store=store)
        case = loop.open_case("c-1", by="agent")
        messages = run_workers(race_in_process, str(path), case.id, ROUNDS)
        outcomes = [message for message in messages if message[0] != "done"]
        check_race(loop, case.id, outcomes, ROUNDS)
        store.close()

    def test_hammering_without_expected_version_loses_nothing(self, tmp_path: Path) -> None:
        """Two processes hammering one case: history holds every success once, nothing more."""
        operations = 300
        path = tmp_path / "hammer.db"
        store = SQLiteStore(path, synchronous="NORMAL")
        loop = CloseLoop(store=store)
        case = loop.open_case("c-1", by="agent")
        messages = run_workers(hammer_in_process, str(path), case.id, operations)

        won = {worker: versions for _, worker, versions, _ in messages}
        refused = sum(count for *_, count in messages)
        successes = sum(len(versions) for versions in won.values())
        assert successes + refused == operations * len(WORKERS)
        case_now = loop.get(case.id)
        history = loop.history(case.id)
        assert len(history) == case_now.version == 1 + successes
        assert sorted(v for versions in won.values() for v in versions) == list(
            range(2, case_now.version + 1))
        for worker, versions in won.items():
            assert all(history[version - 1].actor == worker for version in versions)
        assert replay(history) is case_now.status
        store.close()
