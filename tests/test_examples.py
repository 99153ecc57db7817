"""Every example in examples/ runs as it is and prints what it promises."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"


def run_example(name: str, *args: str, cwd: Path, timeout: float = 120) -> str:
    """Run examples/<name> with this interpreter; return its output, failing on error."""
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / name), *args], cwd=cwd, capture_output=True,
        text=True, timeout=timeout, check=False,
        env={**os.environ, "PYTHONPATH": str(ROOT / "src")},
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_every_example_says_how_to_run_it() -> None:
    """Each example's docstring has a "How to run" line."""
    for path in EXAMPLES.glob("*.py"):
        assert "How to run:" in path.read_text()[:600], path.name


def test_quickstart(tmp_path: Path) -> None:
    """The quickstart works a case to Closed on a SQLite file and prints history and outbox."""
    out = run_example("quickstart.py", cwd=tmp_path)
    assert "Closed" in out and "Progress -> Closed: Refund issued" in out
    assert "to alice:" in out
    assert tmp_path.joinpath("closeloop-quickstart.db").exists()
    again = run_example("quickstart.py", cwd=tmp_path)  # the file survives a restart
    assert "all cases in closeloop-quickstart.db: 2" in again


def test_custom_trigger(tmp_path: Path) -> None:
    """The custom-trigger example backtests a generated CSV and prints per-assignee counts."""
    out = run_example("custom_trigger.py", "--rows", "500", cwd=tmp_path)
    assert "would open" in out
    for name in ("cx-team", "ana", "ben", "chloe"):
        assert re.search(rf"^  {name} +\d+$", out, re.M), name
    assert "plan_at_least: minimum must be one of" in out


def test_report(tmp_path: Path) -> None:
    """The report example simulates a month and prints the same report from memory and SQLite."""
    out = run_example("report.py", cwd=tmp_path)
    assert "November 2026, all cases" in out
    assert ("Status counts: Open 50, Progress 255, Closed 4,171 (total 4,476; unassigned 2)"
            in out)
    assert "recovery rate 86.9%" in out
    assert "Detractor cases opened in the last 7 days" in out
    again = run_example("report.py", "--sqlite", str(tmp_path / "month.db"), cwd=tmp_path)
    assert again == out


def test_survey_webhook(tmp_path: Path) -> None:
    """The webhook example serves Delighted over HTTP: opened, updated by the late comment, duplicate."""
    out = run_example("survey_webhook.py", cwd=tmp_path)
    assert re.search(r"created \(score 4\) +-> 200 opened", out)
    assert re.search(r"updated \(comment\) +-> 200 updated", out)
    assert re.search(r"updated again \(a retry\) +-> 200 duplicate", out)
    assert "assigned to cx-team, reasons detractor, churn-risk" in out
    assert re.search(r"response_updated +by 5975 +Billing is a mess", out)


def test_custom_store(tmp_path: Path) -> None:
    """The custom store example works a case to Closed on its journal; a rerun finds the first case."""
    out = run_example("custom_store.py", cwd=tmp_path)
    assert "4. status_changed  by alice: Refund issued" in out
    assert "emails sent: 1 (to alice)" in out
    assert "all cases in closeloop-journal.jsonl: 1; closed: 1" in out
    again = run_example("custom_store.py", cwd=tmp_path)  # the journal survives a restart
    assert "all cases in closeloop-journal.jsonl: 2; closed: 2" in again
