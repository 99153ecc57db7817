"""The CLI behaves like a Unix tool: exit codes, messages as typed, pipes, help, read-only.

Every test runs ``python -m closeloop`` as a real subprocess on a real SQLite file.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import re
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest

from closeloop import CloseLoop, Status
from closeloop.storage import SQLiteStore
from closeloop.testing import FixedClock

ROOT = Path(__file__).resolve().parent.parent
ENV = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
COMMANDS = ["report", "escalate", "cases", "deliver", "worker"]


def run(*args: str, module: str = "closeloop") -> subprocess.CompletedProcess[str]:
    """Run ``python -m MODULE ARGS`` from the repository root and return the finished process."""
    return subprocess.run([sys.executable, "-m", module, *args], capture_output=True, text=True,
                          timeout=60, env=ENV, cwd=ROOT, check=False)


def digest(path: Path) -> str:
    """The SHA-256 of the file's bytes (and of its WAL/SHM side files, if any)."""
    sha = hashlib.sha256()
    for part in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        if part.exists():
            sha.update(part.name.encode() + part.read_bytes())
    return sha.hexdigest()


@pytest.fixture
def db(tmp_path: Path) -> Path:
    """A database with 60 cases (so a table is longer than one line), one of them closed."""
    path = tmp_path / "cli.db"
    clock = FixedClock()
    loop = CloseLoop(store=SQLiteStore(path), clock=clock, deliver_notices=False)
    cases = [loop.open_case(f"cust-{number}", by="agent") for number in range(60)]
    clock.advance(hours=2)
    loop.set_status(cases[0].id, Status.CLOSED, by="alice", comment="called back")
    loop.store.close()
    return path


def test_usage_error_names_the_option_and_value_as_typed(db: Path) -> None:
    """--until before --since exits 2 naming --until and both dates as the user wrote them."""
    result = run("report", "--db", str(db), "--since", "2026-12-03", "--until", "2026-12-01")
    assert result.returncode == 2
    assert "--until" in result.stderr and "2026-12-01" in result.stderr and "2026-12-03" in result.stderr
    assert "datetime.datetime" not in result.stderr and "tzinfo" not in result.stderr


@pytest.mark.parametrize("args", [
    ["cases", "--assignee", ""],
    ["cases", "--status", "nope"],
    ["cases", "--limit", "-3"],
    ["escalate", "--resend-after", "soon"],
])
def test_bad_values_are_usage_errors(db: Path, args: list[str]) -> None:
    """A bad option value exits 2 with the option named, never a traceback."""
    result = run(args[0], "--db", str(db), *args[1:])
    assert result.returncode == 2, result.stderr
    assert args[-2] in result.stderr
    assert "Traceback" not in result.stderr


def test_data_error_exits_1(tmp_path: Path) -> None:
    """A file that is not a SQLite database is a data error: exit 1, a message, no traceback."""
    foreign = tmp_path / "notes.db"
    foreign.write_text("just some text, not a database\n")
    result = run("cases", "--db", str(foreign))
    assert result.returncode == 1
    assert "not a SQLite database" in result.stderr and "Traceback" not in result.stderr


def test_closed_pipe_exits_quietly(db: Path) -> None:
    """`closeloop cases | head -1`: the reader leaves early and the CLI says nothing on stderr."""
    process = subprocess.Popen([sys.executable, "-m", "closeloop", "cases", "--db", str(db)],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=ENV, cwd=ROOT)
    assert process.stdout is not None and process.stderr is not None
    assert process.stdout.readline()
    process.stdout.close()
    errors = process.stderr.read()
    process.stderr.close()
    # 141 (128 + SIGPIPE) is what a shell reports for any Unix tool stopped by `head`.
    assert process.wait(timeout=60) in (0, 141)
    assert errors == b""


def test_version() -> None:
    """--version prints the package's version and exits 0."""
    result = run("--version")
    assert result.returncode == 0
    assert result.stdout.strip() == f"closeloop {metadata.version('closeloop')}"


@pytest.mark.parametrize("command", COMMANDS)
def test_every_option_has_help_with_its_default(command: str) -> None:
    """Each option of each command has help text that states its default."""
    result = run(command, "--help")
    assert result.returncode == 0
    options = result.stdout.split("options:", 1)[1]
    entries = re.split(r"\n  (?=-)", "\n" + options.strip("\n"))
    for entry in entries:
        if not entry.strip() or entry.lstrip().startswith("-h, --help"):
            continue
        assert "default" in entry, f"{command}: option without a stated default: {entry.strip()}"


@pytest.mark.parametrize("typed", ["Closed", "CLOSED", "closed"])
def test_status_names_are_case_insensitive(db: Path, typed: str) -> None:
    """--status accepts the status as output prints it (Closed) and in any case."""
    result = run("cases", "--db", str(db), "--status", typed, "--format", "json")
    assert result.returncode == 0, result.stderr
    assert [case["status"] for case in json.loads(result.stdout)] == ["closed"]


@pytest.mark.parametrize("typed", ["3600", "PT1H", "P1D", "90.5"])
def test_durations_take_iso_8601_or_seconds(db: Path, typed: str) -> None:
    """--resend-after accepts ISO 8601 and a plain number of seconds, as its message offers."""
    result = run("escalate", "--db", str(db), "--resend-after", typed, "--dry-run")
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("args", [
    ["report"], ["report", "--format", "json"], ["report", "--format", "csv"],
    ["cases"], ["cases", "--format", "json"], ["escalate", "--dry-run"],
])
def test_read_only_commands_never_write(db: Path, args: list[str]) -> None:
    """Reports, listings and dry runs leave the database file byte for byte as it was."""
    before = digest(db)
    result = run(args[0], "--db", str(db), *args[1:])
    assert result.returncode == 0, result.stderr
    assert digest(db) == before


def test_an_empty_file_is_refused_and_left_empty(tmp_path: Path) -> None:
    """report on a 0-byte file refuses it clearly and writes no schema into it."""
    empty = tmp_path / "empty.db"
    empty.touch()
    result = run("report", "--db", str(empty))
    assert result.returncode != 0
    assert "empty" in result.stderr and "nothing was written" in result.stderr
    assert empty.stat().st_size == 0


def test_json_durations_carry_their_unit(db: Path) -> None:
    """Every duration in the JSON report is in a key ending in _seconds (no bare floats)."""
    data = json.loads(run("report", "--db", str(db), "--format", "json").stdout)

    def keys(value: object, path: str = "") -> list[tuple[str, object]]:
        if isinstance(value, dict):
            return [pair for key, item in value.items() for pair in keys(item, f"{path}.{key}")]
        return [(path, value)]

    pairs = keys(data)
    durations = [(path, value) for path, value in pairs if path.endswith("_seconds")]
    assert durations, "the report has no duration keys"
    close = [value for path, value in durations if "time_to_close" in path and "median" in path]
    assert close == [7200]
    # No other key holds a duration: the names say what their numbers are.
    assert not any(re.search(r"(time|age|duration)[^.]*$", path) and not path.endswith("_seconds")
                   and isinstance(value, float) for path, value in pairs)


def test_csv_is_one_metric_per_row(db: Path) -> None:
    """report --format csv is metric,dimension,value rows a spreadsheet can pivot."""
    result = run("report", "--db", str(db), "--format", "csv")
    assert result.returncode == 0, result.stderr
    rows = list(csv.reader(io.StringIO(result.stdout)))
    assert rows[0] == ["metric", "dimension", "value"]
    assert all(len(row) == 3 for row in rows)
    by_key = {(metric, dimension): value for metric, dimension, value in rows[1:]}
    assert by_key[("cases", "status=open")] == "59"
    assert by_key[("cases", "status=closed")] == "1"
    assert by_key[("time_to_close_median_seconds", "")] == "7200"
    assert not any(";" in value or " " in value for value in by_key.values())


def test_bench_refuses_an_unknown_benchmark() -> None:
    """python -m bench --only nosuch exits 2 and lists the benchmarks, without a traceback."""
    result = run("--only", "nosuch", module="bench")
    assert result.returncode == 2
    assert "nosuch" in result.stderr and "status_changes" in result.stderr
    assert "Traceback" not in result.stderr
