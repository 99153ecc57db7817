"""Functions run by tests/test_onetouch_races.py, in threads and in spawned child processes.

They live in their own module so that a child started with the "spawn" method can
import them (pytest puts tests/ on ``sys.path``, and spawn hands it to the child).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from closeloop import CloseLoop, TokenUsed
from closeloop.onetouch import OneTouch
from closeloop.storage import SQLiteStore
from closeloop.testing import FixedClock

SECRET = "race test secret for one-touch links, 32+ bytes"
BASE_URL = "https://crm.example/one-touch"
#: Only there so a broken racer fails the test instead of hanging it; never reached in
#: a passing run, and nothing is asserted about how long anything takes.
HANG_GUARD = 120.0


def make_loop(path: str, now: datetime) -> CloseLoop:
    """A loop on the shared SQLite file, with the shared secret and a clock fixed at ``now``."""
    return CloseLoop(store=SQLiteStore(path), clock=FixedClock(now),
                     one_touch=OneTouch(SECRET, base_url=BASE_URL))


def attempt_confirm(loop: CloseLoop, confirmation: str) -> str:
    """Confirm once: "won" if this call changed the case, "used" if another got there first."""
    try:
        loop.one_touch.confirm(confirmation)
    except TokenUsed:
        return "used"
    return "won"


def confirm_rounds(loop: CloseLoop, racer: str, confirmations: Sequence[str], barrier: Any,
                   report: Any) -> None:
    """Each round: wait for every racer, then all confirm the round's pending change."""
    for number, confirmation in enumerate(confirmations):
        barrier.wait(HANG_GUARD)
        report((number, racer, attempt_confirm(loop, confirmation)))


def confirm_in_process(path: str, now: datetime, racer: str, confirmations: Sequence[str],
                       barrier: Any, results: Any) -> None:
    """Child process: its own loop and store on the file; race every round, then say "done"."""
    loop = make_loop(path, now)
    try:
        confirm_rounds(loop, racer, confirmations, barrier, results.put)
    except BaseException as exc:
        barrier.abort()  # release the others instead of leaving them waiting
        results.put(("error", racer, repr(exc)))
        raise
    finally:
        loop.store.close()
    results.put(("done", racer, None))
