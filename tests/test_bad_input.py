"""Bad input gets an InvalidInput (or the documented error) naming field and value, and writes nothing."""

from __future__ import annotations

import math
import sqlite3
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from closeloop import (
    CaseNotFound,
    CloseLoop,
    CloseLoopError,
    InvalidInput,
    Status,
    SurveyResponse,
)
from closeloop.convert import structure
from closeloop.notify import MemoryNotifier
from closeloop.storage import MemoryStore, SQLiteStore, Store
from closeloop.testing import FixedClock


def dump(store: Store, path: Path | None) -> Any:
    """Everything a store holds: the SQL dump of the file, or every case, event and notice."""
    if path is not None:
        with sqlite3.connect(path) as conn:
            return "\n".join(conn.iterdump())
    cases = store.find()
    return (cases, [store.history(c.id) for c in cases], store.pending_notices())


@pytest.fixture(params=["memory", "sqlite"])
def seeded(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[CloseLoop, Path | None, str]:
    """A loop with one assigned case in progress, its store's file (if any) and the case id."""
    path = tmp_path / "bad.db" if request.param == "sqlite" else None
    store: Store = SQLiteStore(path) if path else MemoryStore()
    loop = CloseLoop(store=store, notifier=MemoryNotifier(), clock=FixedClock())
    case = loop.open_case("c-1", by="agent")
    loop.assign(case.id, to="alice", by="bob")
    loop.set_status(case.id, Status.PROGRESS, by="alice")
    return loop, path, case.id


NAIVE = datetime(2026, 1, 1, 12, 0)

# (description, call(loop, case_id), expected field, expected value)
BAD_CALLS: list[tuple[str, Callable[[CloseLoop, str], object], str, object]] = [
    ("empty customer id", lambda loop, _: loop.open_case("", by="a"), "customer_id", ""),
    ("blank customer id", lambda loop, _: loop.open_case("   ", by="a"), "customer_id", "   "),
    ("non-string customer id", lambda loop, _: loop.open_case(42, by="a"), "customer_id", 42),  # type: ignore[arg-type]
    ("control char in id", lambda loop, _: loop.open_case("c\r\nBcc: x", by="a"),
     "customer_id", "c\r\nBcc: x"),
    ("lone surrogate", lambda loop, _: loop.open_case("c-\ud800", by="a"), "customer_id", "c-\ud800"),
    ("empty agent", lambda loop, _: loop.open_case("c-9", by=""), "by", ""),
    ("naive due date", lambda loop, _: loop.open_case("c-9", by="a", due_at=NAIVE), "due_at", NAIVE),
    ("unknown priority", lambda loop, _: loop.open_case("c-9", by="a", priority="asap"),
     "priority", "asap"),
    ("unknown status", lambda loop, cid: loop.set_status(cid, "reopened", by="a", comment="x"),
     "status", "reopened"),
    ("status as int", lambda loop, cid: loop.set_status(cid, 2, by="a"), "status", 2),  # type: ignore[arg-type]
    ("empty assignee", lambda loop, cid: loop.assign(cid, to="", by="b"), "to", ""),
    ("empty assigner", lambda loop, cid: loop.assign(cid, to="carol", by=""), "by", ""),
    ("blank comment", lambda loop, cid: loop.comment(cid, "  \n", by="a"), "text", "  \n"),
    ("comment not text", lambda loop, cid: loop.comment(cid, b"hi", by="a"), "text", b"hi"),  # type: ignore[arg-type]
    ("huge comment", lambda loop, cid: loop.comment(cid, "x" * 10_001, by="a"), "text", "x" * 10_001),
    ("empty case id", lambda loop, _: loop.set_status("", Status.CLOSED, by="a", comment="x"),
     "case_id", ""),
    ("version as string", lambda loop, cid: loop.comment(cid, "x", by="a", expected_version="3"),  # type: ignore[arg-type]
     "expected_version", "3"),
    ("reasons as one string", lambda loop, _: loop.open_case("c-9", by="a", reasons="detractor"),  # type: ignore[arg-type]
     "reasons", "detractor"),
    ("version on unknown case", lambda loop, _: loop.comment("nope", "x", by="a", expected_version="3"),  # type: ignore[arg-type]
     "expected_version", "3"),
    ("deliver limit zero", lambda loop, _: loop.deliver_pending(limit=0), "limit", 0),
    ("unknown status filter", lambda loop, _: loop.cases(status="bogus"), "status", "bogus"),
    ("negative limit", lambda loop, _: loop.cases(limit=-1), "limit", -1),
]


@pytest.mark.parametrize(("what", "call", "field", "value"), BAD_CALLS, ids=[c[0] for c in BAD_CALLS])
def test_bad_call_names_field_and_writes_nothing(
    seeded: tuple[CloseLoop, Path | None, str],
    what: str,
    call: Callable[[CloseLoop, str], object],
    field: str,
    value: object,
) -> None:
    """Each bad argument raises InvalidInput naming it, and the store is byte-for-byte unchanged."""
    loop, path, case_id = seeded
    before = dump(loop.store, path)
    with pytest.raises(InvalidInput) as raised:
        call(loop, case_id)
    assert raised.value.field == field
    assert raised.value.value == value
    assert field in str(raised.value) and repr(value)[:40] in str(raised.value)
    assert dump(loop.store, path) == before


@pytest.mark.parametrize(
    "call",
    [
        lambda loop: loop.set_status("no-such-case", Status.CLOSED, by="a", comment="x"),
        lambda loop: loop.assign("no-such-case", to="a", by="b"),
        lambda loop: loop.comment("no-such-case", "x", by="a"),
    ],
)
def test_unknown_case_writes_nothing(
    seeded: tuple[CloseLoop, Path | None, str], call: Callable[[CloseLoop], object]
) -> None:
    """A change to an unknown case id raises CaseNotFound naming it and writes nothing."""
    loop, path, _ = seeded
    before = dump(loop.store, path)
    with pytest.raises(CaseNotFound, match="no-such-case"):
        call(loop)
    assert dump(loop.store, path) == before


@pytest.mark.parametrize(
    ("score", "why"),
    [(11, "0 to 10"), (-1, "0 to 10"), ("seven", "integer"), ("7", "integer"),
     (math.nan, "NaN"), (True, "integer"), (7.0, "integer")],
)
def test_bad_scores_are_refused(score: object, why: str) -> None:
    """A score outside 0..10, a string, NaN, a float or a bool is refused naming 'score'."""
    with pytest.raises(InvalidInput) as raised:
        SurveyResponse(id="r-1", customer_id="c-1", score=score)  # type: ignore[arg-type]
    assert raised.value.field == "score" and why in str(raised.value)


@pytest.mark.parametrize(
    ("data", "words"),
    [
        ({"id": "r-1", "customer_id": "c-1", "score": "7"}, ["score", "'7'"]),
        ({"id": "", "customer_id": "c-1"}, ["id", "empty"]),
        ({"id": "r-1", "customer_id": "c-1", "submitted_at": "2026-01-01T10:00:00"},
         ["timezone-aware"]),
        ({"id": "r-1", "customer_id": "c-1", "contact_requested": "yes"}, ["contact_requested"]),
        ({"id": "r-1", "customer_id": "c-1", "scroe": 3}, ["scroe"]),
        ({"id": "r-1", "customer_id": "c-1", "answers": {"q": float("inf")}}, ["answers", "finite"]),
    ],
)
def test_plain_data_errors_name_the_field(data: dict[str, object], words: list[str]) -> None:
    """Structuring a response from plain data names each bad field, with the validator's words."""
    with pytest.raises(InvalidInput) as raised:
        structure(data, SurveyResponse)
    for word in words:
        assert word in str(raised.value)


def test_errors_share_one_base() -> None:
    """Every closeloop error is a CloseLoopError, so one except clause catches them all."""
    assert issubclass(InvalidInput, CloseLoopError) and issubclass(CaseNotFound, CloseLoopError)
