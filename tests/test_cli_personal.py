"""closeloop erase, export and purge, run as a user runs them: a real process on a real file."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from closeloop import CloseLoop, Status, SurveyResponse
from closeloop.storage import SQLiteStore
from closeloop.testing import FixedClock
from closeloop.triggers import Trigger, nps_between
from test_cli import closeloop

SECRET = "the courier threw my parcel"


@pytest.fixture
def db(tmp_path: Path) -> Path:
    """Two customers from 2024: c-42's case closed (with SECRET), c-7's still open."""
    path = tmp_path / "personal.db"
    clock = FixedClock(datetime(2024, 3, 1, 9, tzinfo=UTC))
    loop = CloseLoop(store=SQLiteStore(path), clock=clock, deliver_notices=False,
                     triggers=[Trigger("detractor", nps_between(0, 6), assign_to="alice")])
    case = loop.ingest(SurveyResponse(id="r-1", customer_id="c-42", score=2, comment=SECRET))
    assert case is not None
    clock.advance(hours=2)
    loop.set_status(case.id, Status.CLOSED, by="alice", comment="refunded")
    loop.ingest(SurveyResponse(id="r-2", customer_id="c-7", score=1, comment="slow"))
    loop.store.close()
    return path


def dump(path: Path) -> str:
    """Every row of the database as SQL text."""
    import sqlite3

    with sqlite3.connect(path) as conn:
        text = "\n".join(conn.iterdump())
    conn.close()
    return text


def figures(path: Path) -> dict[str, object]:
    """The report's JSON without the moment it was made."""
    report = json.loads(closeloop("report", "--db", str(path), "--format", "json").stdout)
    return {key: value for key, value in report.items() if key != "query"}


def test_export_prints_everything_held_as_json(db: Path, tmp_path: Path) -> None:
    """export prints the customer's cases, history, notices and responses; --output writes a file."""
    done = closeloop("export", "--db", str(db), "c-42")
    assert done.returncode == 0, done.stderr
    held = json.loads(done.stdout)
    assert [case["customer_id"] for case in held["cases"]] == ["c-42"]
    assert SECRET in done.stdout and len(held["responses"]) == 1
    out = tmp_path / "c-42.json"
    assert closeloop("export", "--db", str(db), "c-42", "--output", str(out)).returncode == 0
    assert json.loads(out.read_text())["cases"] == held["cases"]


def test_dry_runs_write_nothing(db: Path) -> None:
    """erase, export and purge with --dry-run say what they would do; the file is unchanged."""
    before = db.read_bytes()
    erase = closeloop("erase", "--db", str(db), "c-42", "--by", "dpo", "--dry-run")
    assert erase.returncode == 0 and "would erase 1 case(s), 1 response(s)" in erase.stdout
    export = closeloop("export", "--db", str(db), "c-42", "--dry-run", "--format", "json")
    assert json.loads(export.stdout) == {"cases": 1, "events": 3, "notices": 1, "responses": 1}
    assert SECRET not in export.stdout
    purge = closeloop("purge", "--db", str(db), "--closed-before", "2025-01-01", "--by", "job",
                      "--dry-run")
    assert purge.returncode == 0 and "c-42" in purge.stdout and "c-7" not in purge.stdout
    assert db.read_bytes() == before


def test_erase_removes_the_customer_and_keeps_the_report(db: Path) -> None:
    """erase --vacuum leaves no trace of the customer in the file; the report reads as before."""
    report = figures(db)
    done = closeloop("erase", "--db", str(db), "c-42", "--by", "dpo", "--vacuum")
    assert done.returncode == 0, done.stderr
    assert "erased 1 case(s)" in done.stdout and "erased-" in done.stdout
    assert b"c-42" not in db.read_bytes() and SECRET.encode() not in db.read_bytes()
    assert "c-7" in dump(db)
    assert figures(db) == report
    again = closeloop("erase", "--db", str(db), "c-42", "--by", "dpo")
    assert (again.returncode, again.stdout.strip()) == (0, "nothing held on c-42: nothing to erase")


def test_purge_erases_old_customers_and_names_only_pseudonyms(db: Path) -> None:
    """purge erases c-42 (closed in 2024), keeps c-7 (open), and prints no customer id."""
    done = closeloop("purge", "--db", str(db), "--closed-before", "2025-01-01", "--by", "job",
                     "--format", "json")
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert [e["cases"] for e in summary["erasures"]] == [1]
    assert summary["erasures"][0]["pseudonym"].startswith("erased-")
    assert "c-42" not in done.stdout
    text = dump(db)
    assert "c-42" not in text and SECRET not in text and "c-7" in text


@pytest.mark.parametrize(("args", "message"), [
    (["erase", "c-42"], "--by"),
    (["erase", "", "--by", "dpo"], "CUSTOMER: must not be empty"),
    (["erase", "c-42", "--by", "dpo\u2028x" * 40], "--by:"),
    (["purge", "--by", "job"], "--closed-before"),
    (["purge", "--closed-before", "2999-01-01", "--by", "job"], "--closed-before: must not be later"),
    (["purge", "--closed-before", "soon", "--by", "job"], "soon is not an ISO 8601"),
])
def test_bad_usage_exits_2_naming_the_option(db: Path, args: list[str], message: str) -> None:
    """A missing or malformed option exits 2 with a message naming it; nothing is written."""
    before = db.read_bytes()
    done = closeloop(args[0], "--db", str(db), *args[1:])
    assert done.returncode == 2, done
    assert message in done.stderr
    assert db.read_bytes() == before
