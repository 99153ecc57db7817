"""The delivery worker: deliver the outbox and escalate overdue cases on intervals, until stopped.

``loop.run_worker()`` (or ``closeloop worker --app module:function``) is the
process a host runs beside its web app, so that no request ever waits for a
mail server. Several workers may run at once, on one machine or many, against
SQLite or PostgreSQL: each notice is claimed by one of them, and each case is
escalated by one. SIGTERM and SIGINT stop it cleanly: the notice in flight is
finished and recorded, then :func:`run_worker` returns.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from types import FrameType

from attrs import define

from closeloop.escalation import EscalationRun
from closeloop.outbox import DeliveryReport
from closeloop.validate import check_bool, check_optional_positive_timedelta, check_positive_timedelta

__all__ = ["WorkerStats", "run_worker"]

log = logging.getLogger("closeloop.worker")


@define
class WorkerStats:
    """What a worker did before it stopped."""

    rounds: int = 0
    sent: int = 0
    failed: int = 0
    abandoned: int = 0
    escalated: int = 0
    errors: int = 0


def run_worker(
    deliver: Callable[[], DeliveryReport],
    escalate: Callable[[], EscalationRun] | None,
    *,
    deliver_every: timedelta = timedelta(seconds=5),
    escalate_every: timedelta | None = timedelta(minutes=5),
    stop: threading.Event | None = None,
    handle_signals: bool = True,
) -> WorkerStats:
    """Call ``deliver`` every ``deliver_every`` and ``escalate`` every ``escalate_every`` until stopped.

    A failing round is logged and counted, never fatal: the next round tries again.
    When a round delivered a full batch, the next one starts at once.

    Args:
        deliver: delivers one batch (``loop.deliver_pending``).
        escalate: escalates due cases (``loop.escalate``); ``None`` to never escalate.
        deliver_every: the pause between delivery rounds.
        escalate_every: the pause between escalation rounds; ``None`` never escalates.
        stop: set it to stop the worker (from another thread); default: a new event.
        handle_signals: stop on SIGTERM and SIGINT (only in the main thread).

    Returns:
        What the worker did.
    """
    check_positive_timedelta("deliver_every", deliver_every)
    check_optional_positive_timedelta("escalate_every", escalate_every)
    check_bool("handle_signals", handle_signals)
    stopping = threading.Event() if stop is None else stop
    stats = WorkerStats()
    next_escalation = time.monotonic()
    with _stop_on_signals(stopping, enabled=handle_signals):
        while not stopping.is_set():
            stats.rounds += 1
            busy = _deliver_round(deliver, stats)
            if escalate is not None and escalate_every is not None and (
                time.monotonic() >= next_escalation
            ):
                _escalate_round(escalate, stats)
                next_escalation = time.monotonic() + escalate_every.total_seconds()
            if not busy:
                stopping.wait(deliver_every.total_seconds())
    log.info("worker stopped after %d rounds: %d sent, %d failed, %d abandoned, %d escalated",
             stats.rounds, stats.sent, stats.failed, stats.abandoned, stats.escalated)
    return stats


def _deliver_round(deliver: Callable[[], DeliveryReport], stats: WorkerStats) -> bool:
    """One delivery round; True when it found more work than it could finish."""
    try:
        report = deliver()
    except Exception:
        stats.errors += 1
        log.exception("delivery round failed; retrying next round")
        return False
    stats.sent += report.sent
    stats.failed += report.failed
    stats.abandoned += report.abandoned
    return report.more and report.failed == 0


def _escalate_round(escalate: Callable[[], EscalationRun], stats: WorkerStats) -> None:
    try:
        run = escalate()
    except Exception:
        stats.errors += 1
        log.exception("escalation round failed; retrying next round")
        return
    stats.escalated += len(run.escalated)


@contextmanager
def _stop_on_signals(stopping: threading.Event, *, enabled: bool) -> Iterator[None]:
    """Set ``stopping`` on SIGTERM/SIGINT while the worker runs, then restore the handlers."""
    if not enabled or threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: FrameType | None) -> None:
        log.info("signal %d: stopping after the current round", signum)
        stopping.set()

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
