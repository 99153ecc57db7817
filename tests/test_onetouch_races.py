"""Racing confirmations of one pending change: exactly one applies, the rest get TokenUsed.

Races are lined up with barriers, never sleeps. Threads share one loop; spawned
processes each open their own SQLiteStore on the same file (functions in
tests/onetouch_workers.py).
"""

from __future__ import annotations

import multiprocessing
import queue
import threading
from pathlib import Path
from typing import Any

import pytest

from closeloop import CloseLoop, Status, StatusChanged
from closeloop.onetouch import OneTouch
from closeloop.storage import Store
from closeloop.testing import FixedClock
from onetouch_workers import (
    BASE_URL,
    HANG_GUARD,
    SECRET,
    attempt_confirm,
    confirm_in_process,
    confirm_rounds,
    make_loop,
)

THREADS = 8
PROCESSES = 2
ROUNDS = 4

#: One racer's outcome of one round: (round, racer, "won" | "used").
Outcome = tuple[int, str, str]


def pending_changes(loop: CloseLoop, rounds: int) -> tuple[list[str], list[str]]:
    """One case per round, assigned to alice, with a change to Closed prepared from her link."""
    case_ids, confirmations = [], []
    for number in range(rounds):
        case = loop.assign(loop.open_case(f"c-{number}", by="agent").id, to="alice", by="bob")
        token = loop.one_touch.link(case.id).split("token=", 1)[1]
        pending = loop.one_touch.prepare(token, status=Status.CLOSED, comment=f"round {number}")
        case_ids.append(case.id)
        confirmations.append(pending.token)
    return case_ids, confirmations


def check_exactly_once(loop: CloseLoop, case_ids: list[str], outcomes: list[Outcome],
                       racers: int) -> None:
    """Per round: one "won", every other racer "used"; one status change in the history."""
    for number, case_id in enumerate(case_ids):
        this_round = sorted(kind for n, _, kind in outcomes if n == number)
        assert this_round == ["used"] * (racers - 1) + ["won"], (number, this_round)
        changes = [e for e in loop.history(case_id) if isinstance(e, StatusChanged)]
        assert len(changes) == 1
        assert (changes[0].actor, changes[0].via, changes[0].comment) == (
            "alice", "one-touch", f"round {number}")
        case = loop.get(case_id)
        assert (case.status, case.version, case.assignee) == (Status.CLOSED, 3, "alice")


def race_threads(loop: CloseLoop, confirmations: list[str], barrier: Any,
                 outcomes: list[Outcome]) -> list[threading.Thread]:
    """Start THREADS racers sharing ``loop``; a failure aborts the barrier and is recorded."""

    def work(racer: str) -> None:
        try:
            confirm_rounds(loop, racer, confirmations, barrier, outcomes.append)
        except BaseException as exc:
            outcomes.append((-1, racer, repr(exc)))
            barrier.abort()

    threads = [threading.Thread(target=work, args=(f"thread-{n}",)) for n in range(THREADS)]
    for thread in threads:
        thread.start()
    return threads


def test_threads_confirm_once(store: Store, clock: FixedClock) -> None:
    """Eight threads confirming the same pending change: one applies it, seven get TokenUsed."""
    loop = CloseLoop(store=store, clock=clock, one_touch=OneTouch(SECRET, base_url=BASE_URL))
    case_ids, confirmations = pending_changes(loop, ROUNDS)
    outcomes: list[Outcome] = []
    barrier = threading.Barrier(THREADS, timeout=HANG_GUARD)
    for thread in race_threads(loop, confirmations, barrier, outcomes):
        thread.join()
    check_exactly_once(loop, case_ids, outcomes, THREADS)


@pytest.mark.slow
def test_threads_and_processes_confirm_once(tmp_path: Path, clock: FixedClock) -> None:
    """Eight threads and two processes on one SQLite file: exactly one change per pending change."""
    path = str(tmp_path / "race.db")
    loop = make_loop(path, clock())
    case_ids, confirmations = pending_changes(loop, ROUNDS)
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(THREADS + PROCESSES)
    results = context.Queue()
    children = [
        context.Process(target=confirm_in_process,
                        args=(path, clock(), f"process-{n}", confirmations, barrier, results))
        for n in range(PROCESSES)
    ]
    outcomes: list[Outcome] = []
    try:
        for child in children:
            child.start()
        threads = race_threads(loop, confirmations, barrier, outcomes)
        finished = 0
        while finished < PROCESSES:
            try:
                message = results.get(timeout=HANG_GUARD)
            except queue.Empty:
                pytest.fail(f"child processes stopped reporting; got {outcomes}")
            if message[0] == "error":
                pytest.fail(f"racer {message[1]} failed: {message[2]}")
            if message[0] == "done":
                finished += 1
            else:
                outcomes.append(message)
        for thread in threads:
            thread.join()
    finally:
        for child in children:
            child.join(HANG_GUARD)
    assert [child.exitcode for child in children] == [0] * PROCESSES
    check_exactly_once(loop, case_ids, outcomes, THREADS + PROCESSES)
    loop.store.close()


def test_a_late_confirm_is_refused(store: Store, clock: FixedClock) -> None:
    """The helper's contract: a second confirm, after the race, reports "used"."""
    loop = CloseLoop(store=store, clock=clock, one_touch=OneTouch(SECRET, base_url=BASE_URL))
    _, (confirmation,) = pending_changes(loop, 1)
    assert [attempt_confirm(loop, confirmation) for _ in range(2)] == ["won", "used"]
