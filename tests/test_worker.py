"""The delivery worker: delivers and escalates on intervals, stops cleanly on a signal."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from datetime import timedelta
from pathlib import Path

import pytest

from closeloop import CloseLoop, EscalationPolicy, InvalidInput
from closeloop.notify import MemoryNotifier
from closeloop.storage import SQLiteStore
from closeloop.testing import FixedClock

ROOT = Path(__file__).resolve().parent.parent


def test_worker_delivers_and_escalates_until_stopped(tmp_path: Path) -> None:
    """A worker thread delivers queued notices and escalates untouched cases, then stops on request."""
    clock = FixedClock()
    outbox = MemoryNotifier()
    loop = CloseLoop(store=SQLiteStore(tmp_path / "w.db"), notifier=outbox, clock=clock,
                     escalation=EscalationPolicy(untouched_for=timedelta(hours=1)),
                     deliver_notices=False)
    case = loop.open_case("c-1", by="agent")
    loop.assign(case.id, to="alice", by="lead")
    clock.advance(timedelta(hours=2))
    stop = threading.Event()
    result: list[object] = []
    worker = threading.Thread(target=lambda: result.append(loop.run_worker(
        deliver_every=timedelta(milliseconds=10), escalate_every=timedelta(milliseconds=10),
        stop=stop)))
    worker.start()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and len(outbox.sent) < 2:
        stop.wait(0.01)
    stop.set()
    worker.join(timeout=30)
    assert not worker.is_alive()
    assert [message.kind for message in outbox.sent] == ["assigned", "escalated"]
    (stats,) = result
    assert stats.sent == 2 and stats.escalated == 1  # type: ignore[attr-defined]


def test_worker_survives_a_failing_round(tmp_path: Path) -> None:
    """A round that raises is logged and counted; the worker carries on."""
    calls: list[int] = []
    stop = threading.Event()

    def deliver() -> object:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("database restarting")
        stop.set()
        from closeloop.outbox import DeliveryReport

        return DeliveryReport(sent=0, failed=0)

    from closeloop.worker import run_worker

    stats = run_worker(deliver, None, deliver_every=timedelta(milliseconds=1),  # type: ignore[arg-type]
                       stop=stop, handle_signals=False)
    assert stats.errors == 1 and len(calls) == 2


def test_worker_refuses_a_bad_interval() -> None:
    """A zero interval is refused with InvalidInput naming it."""
    with pytest.raises(InvalidInput, match="deliver_every"):
        CloseLoop().run_worker(deliver_every=timedelta(0))


@pytest.mark.slow
def test_worker_process_exits_zero_on_sigterm(tmp_path: Path) -> None:
    """A worker process delivers the outbox, then exits 0 on SIGTERM."""
    db = tmp_path / "host.db"
    env = {**os.environ, "PYTHONPATH": f"{ROOT / 'src'}{os.pathsep}{ROOT}",
           "CLOSELOOP_TEST_DB": str(db)}
    sys.path.insert(0, str(ROOT))
    try:
        os.environ["CLOSELOOP_TEST_DB"] = str(db)
        from tests.apps import make_loop

        loop = make_loop()
        case = loop.open_case("c-1", by="agent")
        loop.assign(case.id, to="alice", by="lead")
        assert len(loop.store.pending_notices()) == 1
    finally:
        sys.path.remove(str(ROOT))
        os.environ.pop("CLOSELOOP_TEST_DB", None)
    code = ("from datetime import timedelta; from tests.apps import make_loop; "
            "make_loop().run_worker(deliver_every=timedelta(milliseconds=20))")
    worker = subprocess.Popen([sys.executable, "-c", code], env=env, cwd=ROOT,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and loop.store.pending_notices():
            threading.Event().wait(0.05)
        assert not loop.store.pending_notices()
        worker.send_signal(signal.SIGTERM)
        _, stderr = worker.communicate(timeout=30)
        assert worker.returncode == 0, stderr
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.communicate()
