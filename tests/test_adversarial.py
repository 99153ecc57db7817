"""Hostile input through every public entry point: only closeloop errors, and nothing written."""

from __future__ import annotations

import email
import email.policy
import math
import sqlite3
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import hypothesis.strategies as st
import pytest
from hypothesis import HealthCheck, given, settings

from closeloop import CloseLoop, CloseLoopError, InvalidInput, Status, SurveyResponse
from closeloop.convert import structure
from closeloop.notify import MemoryNotifier, SmtpNotifier
from closeloop.rules import load_triggers
from closeloop.storage import SQLiteStore
from closeloop.testing import FixedClock
from closeloop.triggers import Trigger, contact_requested, nps_between
from closeloop.validate import MAX_INSTANT, MIN_INSTANT

NASTY_TEXT = st.one_of(
    st.text(max_size=40),
    st.sampled_from([
        "'; DROP TABLE cases; --", "\" OR 1=1 --", "<script>alert(1)</script>",
        "\r\nBcc: evil@example.test", "\u2028Subject: hi", "\x00", "\ud800", "\x85",
        "a" * 20_000, "ﷺ" * 300, "../../etc/passwd", "%s%s%s%n", "{case_id}", "", "   ",
    ]),
)
SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(-(10**30), 10**30),
    st.floats(allow_nan=True, allow_infinity=True), NASTY_TEXT,
)
JUNK = st.recursive(SCALARS, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(NASTY_TEXT, inner, max_size=4)), max_leaves=12)

RESPONSE_DATA = st.fixed_dictionaries(
    {"id": st.one_of(NASTY_TEXT, JUNK), "customer_id": st.one_of(NASTY_TEXT, JUNK)},
    optional={
        "score": st.one_of(SCALARS, st.integers(0, 10)),
        "contact_requested": st.one_of(st.booleans(), SCALARS),
        "comment": st.one_of(NASTY_TEXT, SCALARS),
        "answers": st.one_of(st.dictionaries(NASTY_TEXT, JUNK, max_size=8), JUNK),
        "submitted_at": st.one_of(
            st.datetimes(timezones=st.just(UTC)).map(datetime.isoformat),
            st.datetimes().map(datetime.isoformat), NASTY_TEXT),
        "bogus": JUNK,
    },
)


def dump(path: Path) -> str:
    """The whole database as SQL text."""
    with sqlite3.connect(path) as conn:
        return "\n".join(conn.iterdump())


@pytest.fixture(scope="module")
def hostile_loop(tmp_path_factory: pytest.TempPathFactory) -> tuple[CloseLoop, Path, str]:
    """A loop on a SQLite file with triggers and one case; reused across examples."""
    path = tmp_path_factory.mktemp("adversarial") / "adv.db"
    loop = CloseLoop(store=SQLiteStore(path), notifier=MemoryNotifier(), clock=FixedClock(),
                     triggers=[Trigger("detractor", nps_between(0, 6), assign_to="alice"),
                               Trigger("contact", contact_requested())])
    case = loop.open_case("c-1", by="agent")
    return loop, path, case.id


SETTINGS = settings(max_examples=150, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture,
                                           HealthCheck.large_base_example, HealthCheck.data_too_large])


@SETTINGS
@given(data=RESPONSE_DATA)
def test_hostile_response_data(hostile_loop: tuple[CloseLoop, Path, str], data: dict[str, Any]) -> None:
    """Plain-data responses are either valid and ingested, or refused with InvalidInput writing nothing."""
    loop, path, _ = hostile_loop
    before = dump(path)
    try:
        response = structure(data, SurveyResponse)
    except InvalidInput:
        assert dump(path) == before
        return
    loop.ingest(response)  # a valid response may write; it must not raise


ENTRY_POINTS: list[tuple[str, Callable[[CloseLoop, str, Any], object]]] = [
    ("open_case customer", lambda loop, cid, x: loop.open_case(x, by="agent")),
    ("open_case by", lambda loop, cid, x: loop.open_case("c-2", by=x)),
    ("open_case priority", lambda loop, cid, x: loop.open_case("c-2", by="a", priority=x)),
    ("open_case due_at", lambda loop, cid, x: loop.open_case("c-2", by="a", due_at=x)),
    ("open_case reasons", lambda loop, cid, x: loop.open_case("c-2", by="a", reasons=x)),
    ("assign to", lambda loop, cid, x: loop.assign(cid, to=x, by="lead")),
    ("assign case id", lambda loop, cid, x: loop.assign(x, to="bob", by="lead")),
    ("set_status status", lambda loop, cid, x: loop.set_status(cid, x, by="a", comment="c")),
    ("set_status comment", lambda loop, cid, x: loop.set_status(cid, Status.CLOSED, by="a", comment=x)),
    ("comment text", lambda loop, cid, x: loop.comment(cid, x, by="a")),
    ("comment version", lambda loop, cid, x: loop.comment(cid, "hi", by="a", expected_version=x)),
    ("cases filters", lambda loop, cid, x: loop.cases(assignee=x, status=x, customer_id=x)),
    ("cases limit", lambda loop, cid, x: loop.cases(limit=x)),
    ("get", lambda loop, cid, x: loop.get(x)),
    ("history", lambda loop, cid, x: loop.history(x)),
    ("ingest", lambda loop, cid, x: loop.ingest(x)),
    ("ingest_many", lambda loop, cid, x: loop.ingest_many(x)),
    ("explain", lambda loop, cid, x: loop.explain(x)),
    ("backtest", lambda loop, cid, x: loop.backtest(x)),
    ("report since", lambda loop, cid, x: loop.report(since=x)),
    ("report assignee", lambda loop, cid, x: loop.report(assignee=x, reason=x)),
    ("escalate", lambda loop, cid, x: loop.escalate(limit=x, dry_run=x)),
    ("deliver_pending", lambda loop, cid, x: loop.deliver_pending(limit=x)),
]


@SETTINGS
@given(entry=st.sampled_from(ENTRY_POINTS), value=JUNK)
def test_entry_points_raise_only_closeloop_errors(
    hostile_loop: tuple[CloseLoop, Path, str],
    entry: tuple[str, Callable[[CloseLoop, str, Any], object]],
    value: Any,
) -> None:
    """Junk through any entry point either works or raises a CloseLoopError; a refusal writes nothing."""
    loop, path, case_id = hostile_loop
    before = dump(path)
    try:
        entry[1](loop, case_id, value)
    except CloseLoopError:
        assert dump(path) == before, f"{entry[0]} wrote something before refusing"


CONFIG_JUNK = st.recursive(
    st.one_of(SCALARS, st.sampled_from(["nps_between", "any_of", "all_of", "not", "contact_requested"])),
    lambda inner: st.one_of(st.lists(inner, max_size=3),
                            st.dictionaries(st.sampled_from(
                                ["name", "when", "assign_to", "due_in", "priority", "nps_between",
                                 "any_of", "all_of", "not", "from_answer", "round_robin", "x"]),
                                inner, max_size=4)),
    max_leaves=20,
)


@SETTINGS
@given(config=st.one_of(CONFIG_JUNK, st.lists(CONFIG_JUNK, max_size=3)))
def test_trigger_config_junk_gives_invalid_input(config: Any) -> None:
    """Any malformed trigger configuration yields triggers or an InvalidInput, nothing else."""
    error: InvalidInput | None = None
    try:
        load_triggers(config)
    except InvalidInput as raised:
        error = raised
    assert error is None or error.field.startswith("triggers")


def test_deeply_nested_config_is_refused() -> None:
    """A config nested 10 000 deep is an InvalidInput, not a RecursionError."""
    when: Any = {"nps_between": [0, 6]}
    for _ in range(10_000):
        when = {"not": when}
    with pytest.raises(InvalidInput):
        load_triggers([{"name": "deep", "when": when}])


@SETTINGS
@given(name=NASTY_TEXT, comment=NASTY_TEXT)
def test_hostile_names_never_inject_mail_headers(name: str, comment: str) -> None:
    """Whatever a customer id or comment holds, the email has one recipient and escaped HTML."""
    outbox = MemoryNotifier()
    loop = CloseLoop(notifier=outbox)
    try:
        case = loop.open_case(name, by="agent")
        loop.assign(case.id, to="alice", by="lead", comment=comment)
    except InvalidInput:
        return
    (message,) = outbox.sent
    notifier = SmtpNotifier("127.0.0.1", 2525, sender="cx@example.test",
                            address_of={"alice": "alice@example.test"})
    raw = notifier.build_email(message).as_bytes()
    parsed = email.message_from_bytes(raw, policy=email.policy.default)
    assert parsed.get_all("To") == ["alice@example.test"]
    assert parsed.get("Bcc") is None and parsed.get_all("Subject") is not None
    assert len(parsed.get_all("Subject") or []) == 1
    # Every case field is escaped: no tag from user data survives into the HTML.
    assert "<script>" not in message.html


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf, 10**100, True, "7", 7.0])
def test_numeric_edge_scores(value: object) -> None:
    """Scores that are NaN, infinite, huge, bool, text or float are refused naming the score."""
    with pytest.raises(InvalidInput, match="score"):
        SurveyResponse(id="r", customer_id="c", score=value)  # type: ignore[arg-type]


def test_huge_answer_map_is_refused() -> None:
    """More answers than the documented limit are refused, naming the field."""
    with pytest.raises(InvalidInput, match="answers"):
        SurveyResponse(id="r", customer_id="c", answers={f"q{i}": i for i in range(10_000)})


def test_far_future_and_past_datetimes_round_trip(tmp_path: Path) -> None:
    """The earliest and latest accepted datetimes are stored and read back unchanged."""
    loop = CloseLoop(store=SQLiteStore(tmp_path / "t.db"))
    for due in (MIN_INSTANT, MAX_INSTANT, MAX_INSTANT.astimezone(timezone(timedelta(hours=-11))),
                datetime(2026, 1, 1, tzinfo=timezone(timedelta(hours=-11)))):
        case = loop.open_case("c", by="a", due_at=due)
        assert loop.get(case.id).due_at == due
