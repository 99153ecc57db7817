"""Crash safety: a writer killed with SIGKILL at random moments loses nothing it reported."""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
KILLS = 24


def check_database(path: Path, committed_cases: dict[str, int], responses: set[str]) -> None:
    """Integrity ok; every reported change present; every case has its events, and only those."""
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        versions = dict(conn.execute("SELECT id, version FROM cases"))
        for case_id, version in committed_cases.items():
            assert versions[case_id] >= version, f"case {case_id} lost a committed change"
        seen = {row[0] for row in conn.execute("SELECT response_id FROM responses")}
        assert responses <= seen, f"{len(responses - seen)} acknowledged responses lost"
        # No case without its opening event; no event without its change.
        events = conn.execute(
            "SELECT case_id, count(*), min(seq), max(seq), "
            "sum(kind = 'opened' AND seq = 1) FROM events GROUP BY case_id"
        ).fetchall()
        by_case = {case_id: (count, low, high, opened) for case_id, count, low, high, opened in events}
        assert set(by_case) == set(versions)
        for case_id, version in versions.items():
            assert by_case[case_id] == (version, 1, version, 1), case_id
        orphans = conn.execute(
            "SELECT count(*) FROM responses WHERE case_id IS NOT NULL AND case_id NOT IN "
            "(SELECT id FROM cases)"
        ).fetchone()
        assert orphans == (0,)


@pytest.mark.slow
@pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL is POSIX")
def test_sigkill_at_random_moments_loses_nothing(tmp_path: Path) -> None:
    """Killing a writing process 24 times at random points never loses or half-writes a change."""
    path = tmp_path / "crash.db"
    rng = random.Random(20261123)
    committed_cases: dict[str, int] = {}
    responses: set[str] = set()
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    for kill in range(KILLS):
        child = subprocess.Popen(
            [sys.executable, str(ROOT / "tests" / "crash_child.py"), str(path), str(kill)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
        )
        assert child.stdout is not None
        for _ in range(rng.randrange(1, 40)):  # kill after a random number of commits
            line = child.stdout.readline()
            if not line:
                break
            kind, *rest = line.split()
            if kind == "batch":
                responses.update(rest)
            else:
                committed_cases[rest[0]] = max(committed_cases.get(rest[0], 0), int(rest[1]))
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
        assert child.stderr is not None
        errors = child.stderr.read()
        child.stdout.close()
        child.stderr.close()
        assert child.returncode == -signal.SIGKILL, errors
        check_database(path, committed_cases, responses)
    assert len(responses) > 100 and len(committed_cases) > 20
