"""``--app module:function``: cron escalation, ``deliver`` and ``worker`` with the host's own loop.

Every test runs ``python -m closeloop`` as a real subprocess against a real SQLite
file, with ``tests.apps:make_loop`` as the host's factory (one-touch, case_url,
a file-backed email channel).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from apps import BASE_URL, CASE_URL, SECRET  # tests/ is on sys.path
from closeloop import CloseLoop
from closeloop.notify import NoticeContent
from closeloop.onetouch import OneTouch
from closeloop.storage import SQLiteStore
from closeloop.testing import FixedClock
from closeloop.validate import thaw

ROOT = Path(__file__).resolve().parent.parent


def environment(db: Path, sent: Path | None = None) -> dict[str, str]:
    """The subprocess environment: closeloop importable, the host's database (and sent file)."""
    env = {**os.environ, "PYTHONPATH": f"{ROOT / 'src'}{os.pathsep}{ROOT}",
           "CLOSELOOP_TEST_DB": str(db)}
    if sent is not None:
        env["CLOSELOOP_TEST_SENT"] = str(sent)
    return env


def closeloop(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Run ``python -m closeloop ARGS`` from the repository root."""
    return subprocess.run([sys.executable, "-m", "closeloop", *args], capture_output=True,
                          text=True, timeout=60, env=env, cwd=ROOT, check=False)


def host_loop(db: Path, clock: FixedClock) -> CloseLoop:
    """The host's loop as its web app would build it, at the clock's time."""
    return CloseLoop(store=SQLiteStore(db), clock=clock, deliver_notices=False,
                     one_touch=OneTouch(secret_key=SECRET, base_url=BASE_URL),
                     case_url=CASE_URL)


@pytest.fixture
def untouched(tmp_path: Path) -> tuple[Path, str]:
    """A database with one case assigned to alice two hours ago and untouched since."""
    db = tmp_path / "host.db"
    loop = host_loop(db, FixedClock(datetime.now(UTC) - timedelta(hours=2)))
    case = loop.open_case("c-42", by="agent")
    loop.assign(case.id, to="alice", by="bob")
    loop.store.close()
    return db, case.id


def test_cron_escalation_with_app_carries_the_change_link(untouched: tuple[Path, str]) -> None:
    """`closeloop escalate --app tests.apps:make_loop` writes escalation notices with the one-touch
    Change link and the app's case link, and the link works."""
    db, case_id = untouched
    result = closeloop("escalate", "--app", "tests.apps:make_loop", env=environment(db))
    assert result.returncode == 0, result.stderr
    assert case_id in result.stdout and "untouched" in result.stdout
    store = SQLiteStore(db)
    try:
        (escalation,) = [n for n in store.pending_notices() if n.kind == "escalated"]
        assert escalation.to == "alice" and escalation.content is not None
        content = NoticeContent.from_dict(thaw(escalation.content))
        assert content.links.change is not None and content.links.change.startswith(
            f"{BASE_URL}?token=")
        assert content.links.case_page == CASE_URL.format(case_id=case_id)
        loop = host_loop(db, FixedClock(datetime.now(UTC)))
        token = content.links.change.split("token=", 1)[1]
        assert loop.one_touch.open(token).case.id == case_id
    finally:
        store.close()


def test_deliver_with_app_sends_through_the_host_channel(untouched: tuple[Path, str],
                                                         tmp_path: Path) -> None:
    """`closeloop deliver --app …` renders and sends the waiting notices through the host's channel."""
    db, case_id = untouched
    sent = tmp_path / "sent.jsonl"
    result = closeloop("deliver", "--app", "tests.apps:make_loop", env=environment(db, sent))
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("sent 1 notice(s); 0 failed")
    (line,) = [json.loads(text) for text in sent.read_text().splitlines()]
    assert (line["to"], line["kind"]) == ("alice", "assigned")
    assert line["subject"] == "c-42 · Normal priority · assigned to you by bob"
    assert line["change"].startswith(f"{BASE_URL}?token=")
    assert line["case_page"] == CASE_URL.format(case_id=case_id)


@pytest.mark.parametrize("command", ["deliver", "worker"])
def test_delivering_commands_need_the_app(untouched: tuple[Path, str], command: str) -> None:
    """A bare --db loop has no notifier to deliver with: usage error naming --app."""
    db, _ = untouched
    result = closeloop(command, "--db", str(db), env=environment(db))
    assert result.returncode == 2
    assert "--app is required" in result.stderr


def _lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(text) for text in path.read_text().splitlines()] if path.exists() else []


@pytest.mark.slow
def test_worker_delivers_and_escalates_until_sigterm(untouched: tuple[Path, str],
                                                     tmp_path: Path) -> None:
    """`closeloop worker --app …` delivers the assignment, escalates the untouched case and
    delivers that, then exits 0 on SIGTERM with a summary."""
    db, _ = untouched
    sent = tmp_path / "sent.jsonl"
    worker = subprocess.Popen(
        [sys.executable, "-m", "closeloop", "worker", "--app", "tests.apps:make_loop",
         "--deliver-every", "0.05", "--escalate-every", "0.05", "--format", "json"],
        env=environment(db, sent), cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True)
    try:
        deadline = time.monotonic() + 60  # a guard against a hang, not a timing assertion
        while time.monotonic() < deadline and len(_lines(sent)) < 2:
            threading.Event().wait(0.05)
        assert [line["kind"] for line in _lines(sent)] == ["assigned", "escalated"]
        assert all(line["change"].startswith(BASE_URL) for line in _lines(sent))
        worker.send_signal(signal.SIGTERM)
        stdout, stderr = worker.communicate(timeout=30)
        assert worker.returncode == 0, stderr
        stats = json.loads(stdout)
        assert (stats["sent"], stats["escalated"], stats["errors"]) == (2, 1, 0)
        assert "worker stopped" in stderr
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.communicate()
