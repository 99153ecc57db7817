"""Response updates: a response id seen before, with new content, updates it and runs the triggers again."""

from __future__ import annotations

import json
import multiprocessing
import os
import sqlite3
import threading
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

import postgres_server
from closeloop import CloseLoop, ResponseUpdated, SurveyResponse
from closeloop.response_content import changed_fields, response_content
from closeloop.storage import MemoryStore, SQLiteStore, Store
from closeloop.storage.sqlite import MIGRATIONS
from closeloop.testing import FixedClock
from closeloop.triggers import Trigger, comment_contains, contact_requested, nps_between
from closeloop.validate import thaw
from update_workers import deliver_update


def rules() -> list[Trigger]:
    """Detractors, contact requests, and comments that mention cancelling."""
    return [
        Trigger("detractor", nps_between(0, 6)),
        Trigger("contact-request", contact_requested()),
        Trigger("churn-risk", comment_contains("cancel")),
    ]


@pytest.fixture
def ingesting(store: Store) -> CloseLoop:
    """A loop with the update rules over each store kind."""
    return CloseLoop(store=store, triggers=rules(), clock=FixedClock())


def test_late_comment_updates_the_case(ingesting: CloseLoop) -> None:
    """A late comment is "updated": one case, a response_updated event holding it, its trigger's reason."""
    first = ingesting.ingest_outcome(SurveyResponse(id="r-1", customer_id="c-1", score=3))
    late = SurveyResponse(id="r-1", customer_id="c-1", score=3, comment="I will cancel")
    second = ingesting.ingest_outcome(late)
    assert (first.kind, second.kind) == ("opened", "updated")
    assert first.case is not None and second.case is not None and second.case.id == first.case.id
    event = ingesting.history(first.case.id)[-1]
    assert isinstance(event, ResponseUpdated)
    assert (event.comment, event.changed, event.response_id) == ("I will cancel", ("comment",), "r-1")
    assert event.reasons == ("detractor", "churn-risk") and event.actor == "c-1"
    assert second.case.reasons == ("detractor", "churn-risk")
    assert len(ingesting.cases()) == 1
    assert ingesting.ingest_outcome(late).kind == "duplicate"  # the same content again


def test_late_contact_request_opens_once(ingesting: CloseLoop) -> None:
    """A promoter who ticks "contact me" on a later page opens a case, once; the record says so."""
    assert ingesting.ingest_outcome(SurveyResponse(id="r-1", customer_id="c-1", score=9)).kind == "ignored"
    ticked = SurveyResponse(id="r-1", customer_id="c-1", score=9, contact_requested=True)
    outcome = ingesting.ingest_outcome(ticked)
    assert outcome.kind == "opened" and outcome.case is not None
    assert outcome.case.reasons == ("contact-request",) and outcome.case.response_ids == ("r-1",)
    assert ingesting.ingest_outcome(ticked).kind == "duplicate"
    record = ingesting.store.responses(["r-1"])["r-1"]
    assert (record.outcome, record.case_id) == ("opened", outcome.case.id)
    assert len(ingesting.cases()) == 1


def test_update_that_still_matches_nothing(ingesting: CloseLoop) -> None:
    """An ignored response updated to other harmless content is "updated" with no case; score recorded."""
    ingesting.ingest_outcome(SurveyResponse(id="r-1", customer_id="c-1", score=9))
    outcome = ingesting.ingest_outcome(SurveyResponse(id="r-1", customer_id="c-1", score=10))
    assert (outcome.kind, outcome.case) == ("updated", None)
    assert ingesting.store.responses(["r-1"])["r-1"].score == 10
    assert ingesting.cases() == []


def test_late_match_joins_the_customers_case(ingesting: CloseLoop) -> None:
    """An ignored response that matches after an update joins the customer's open case."""
    case = ingesting.ingest(SurveyResponse(id="r-1", customer_id="c-1", score=2))
    ingesting.ingest(SurveyResponse(id="r-2", customer_id="c-1", score=8))
    outcome = ingesting.ingest_outcome(SurveyResponse(id="r-2", customer_id="c-1", score=8,
                                                      contact_requested=True))
    assert case is not None and outcome.kind == "joined" and outcome.case is not None
    assert outcome.case.id == case.id and outcome.case.response_ids == ("r-1", "r-2")


def test_answers_changes_are_named(ingesting: CloseLoop) -> None:
    """A changed nested answer is named answers.<name> in the event."""
    ingesting.ingest(SurveyResponse(id="r-1", customer_id="c-1", score=1, answers={"plan": {"id": 1}}))
    outcome = ingesting.ingest_outcome(SurveyResponse(id="r-1", customer_id="c-1", score=4,
                                                      answers={"plan": {"id": 2}, "page": 2}))
    assert outcome.case is not None
    event = ingesting.history(outcome.case.id)[-1]
    assert isinstance(event, ResponseUpdated)
    assert (event.changed, event.score, event.comment) == (("score", "answers.page", "answers.plan"), 4, None)


def test_ingest_many_applies_updates(ingesting: CloseLoop) -> None:
    """In a batch, a repeat with new content is an update; with the same content a duplicate."""
    summary = ingesting.ingest_many([
        SurveyResponse(id="r-1", customer_id="c-1", score=9),
        SurveyResponse(id="r-2", customer_id="c-2", score=1),
        SurveyResponse(id="r-1", customer_id="c-1", score=9, contact_requested=True),
        SurveyResponse(id="r-2", customer_id="c-2", score=1, comment="cancel it"),
        SurveyResponse(id="r-2", customer_id="c-2", score=1, comment="cancel it"),
    ])
    assert (summary.opened, summary.ignored, summary.duplicates, summary.updated) == (2, 1, 1, 1)
    assert set(summary.cases) == {"r-1", "r-2"} and None not in summary.cases.values()
    assert len(ingesting.cases()) == 2


def test_explain_and_backtest_preview_updates(ingesting: CloseLoop) -> None:
    """explain() and backtest() call a repeat with new content an update, and write nothing."""
    case = ingesting.ingest(SurveyResponse(id="r-1", customer_id="c-1", score=3))
    late = SurveyResponse(id="r-1", customer_id="c-1", score=3, comment="cancel")
    decision = ingesting.explain(late)
    assert (decision.outcome, decision.case_id, decision.reasons) == (
        "update", case.id if case else None, ("detractor", "churn-risk"))
    summary = ingesting.backtest([late, late])
    assert [d.outcome for d in summary.decisions] == ["update", "duplicate"]
    assert summary.updated == 1 and ingesting.history(decision.case_id or "")[-1].kind == "opened"


def test_concurrent_deliveries_of_one_update(ingesting: CloseLoop) -> None:
    """Eight threads deliver one update at once: one "updated", seven "duplicate", one event."""
    case = ingesting.ingest(SurveyResponse(id="r-1", customer_id="c-1", score=3))
    late = SurveyResponse(id="r-1", customer_id="c-1", score=3, comment="slow")
    kinds: list[str] = []
    start = threading.Barrier(8)

    def deliver() -> None:
        start.wait()
        kinds.append(ingesting.ingest_outcome(late).kind)

    threads = [threading.Thread(target=deliver) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert Counter(kinds) == {"updated": 1, "duplicate": 7}
    assert case is not None and [e.kind for e in ingesting.history(case.id)] == ["opened", "response_updated"]


@pytest.mark.slow
def test_concurrent_updates_across_processes(tmp_path: Path) -> None:
    """Four processes deliver one late comment to one SQLite file: exactly one says "updated"."""
    path = str(tmp_path / "closeloop.db")
    loop = CloseLoop(store=SQLiteStore(path), triggers=rules())
    case = loop.ingest(SurveyResponse(id="r-1", customer_id="c-1", score=3))
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(4) as pool:
        kinds = pool.map(deliver_update, [path] * 4)
    assert Counter(kinds) == {"updated": 1, "duplicate": 3}
    assert case is not None and [e.kind for e in loop.history(case.id)] == ["opened", "response_updated"]
    loop.store.close()


def test_records_from_before_updates_migrate_and_stay_duplicates(tmp_path: Path) -> None:
    """A database of the schema before content was kept migrates; its responses repeat as duplicates."""
    path = tmp_path / "old.db"
    conn = sqlite3.connect(path, isolation_level=None)
    for script in MIGRATIONS[:-1]:
        conn.executescript(script)
    conn.execute(f"PRAGMA user_version = {len(MIGRATIONS) - 1}")
    conn.execute("INSERT INTO responses (response_id, customer_id, outcome, case_id, score, "
                 "submitted_at, received_at) VALUES ('r-old', 'c-1', 'ignored', NULL, 9, 0, 0)")
    conn.close()
    loop = CloseLoop(store=SQLiteStore(path), triggers=rules())
    record = loop.store.responses(["r-old"])["r-old"]
    assert (record.score, record.outcome, record.content) == (9, "ignored", None)
    repeat = SurveyResponse(id="r-old", customer_id="c-1", score=1)
    assert loop.ingest_outcome(repeat).kind == "duplicate"
    assert loop.cases() == []
    loop.store.close()


def test_content_ignores_identity_and_answer_order() -> None:
    """Content is the same for another submitted_at, customer or answer order; it names changes."""
    first = SurveyResponse(id="r", customer_id="a", score=5, answers={"x": 1, "y": [1, 2]})
    again = SurveyResponse(id="r", customer_id="b", score=5, answers={"y": [1, 2], "x": 1})
    assert response_content(first) == response_content(again)
    later = SurveyResponse(id="r", customer_id="a", score=5, contact_requested=True, answers={"x": 1})
    assert changed_fields(response_content(first), response_content(later)) == (
        "contact_requested", "answers.y")


def test_content_text_is_the_one_recorded_by_earlier_versions() -> None:
    """The content text is byte for byte what earlier releases recorded: a re-delivery stays a duplicate."""
    response = SurveyResponse(id="r", customer_id="a", score=5, comment="Très lent",
                              answers={"z": {"b": [1, {"y": None, "x": "é"}], "a": True}, "m": 2.5})
    assert response_content(response) == (
        '{"answers":{"m":2.5,"z":{"a":true,"b":[1,{"x":"é","y":null}]}},'
        '"comment":"Très lent","contact_requested":false,"score":5}')


KEYS = st.text("abcé_", min_size=1, max_size=4)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-10**6, 10**6)
    | st.text(st.characters(categories=["L", "N", "P", "Zs"]), max_size=5)
    | st.floats(allow_nan=False, allow_infinity=False),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(KEYS, inner, max_size=3),
    max_leaves=10,
)


@given(answers=st.dictionaries(KEYS, json_values, max_size=4))
def test_content_equals_canonical_json_of_the_plain_answers(answers: dict[str, object]) -> None:
    """Content written from frozen answers equals sorted, compact JSON of the plain ones."""
    response = SurveyResponse(id="r", customer_id="a", score=3, answers=answers)
    expected = json.dumps({"score": 3, "contact_requested": False, "comment": None,
                           "answers": thaw(response.answers)},
                          sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    assert response_content(response) == expected


def test_memory_store_keeps_record_order_on_update() -> None:
    """An updated record keeps its place in the memory store's recording order."""
    loop = CloseLoop(store=MemoryStore(), triggers=rules())
    loop.ingest(SurveyResponse(id="r-1", customer_id="c-1", score=9))
    loop.ingest(SurveyResponse(id="r-2", customer_id="c-2", score=9))
    loop.ingest(SurveyResponse(id="r-1", customer_id="c-1", score=10))
    assert [r.response_id for r in loop.store.find_responses()] == ["r-1", "r-2"]


@pytest.mark.postgres
def test_postgres_schema_from_before_updates_migrates_without_loss() -> None:
    """A PostgreSQL schema one migration old keeps its responses; a repeat of one is a duplicate."""
    if not postgres_server.available():
        pytest.skip("no PostgreSQL server")
    import psycopg

    from closeloop.storage.postgres_schema import MIGRATIONS as PG_MIGRATIONS
    from postgres_workers import DSN_VARIABLE, ScratchPostgresStore, scratch_schema

    dsn, schema = os.environ[DSN_VARIABLE], scratch_schema()
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
        conn.execute(f'CREATE TABLE "{schema}".schema_migrations (version integer PRIMARY KEY, '
                     "applied_at timestamptz NOT NULL DEFAULT now())")
        for number, script in enumerate(PG_MIGRATIONS[:-1], start=1):
            conn.execute(script.format(schema=f'"{schema}"'))
            conn.execute(f'INSERT INTO "{schema}".schema_migrations (version) VALUES (%s)', (number,))
        conn.execute(f'INSERT INTO "{schema}".responses (response_id, customer_id, outcome, score, '
                     "submitted_at, received_at) VALUES ('r-old', 'c-1', 'ignored', 9, now(), now())")
    store = ScratchPostgresStore(dsn, schema=schema)
    try:
        assert store.schema_version == len(PG_MIGRATIONS)
        record = store.responses(["r-old"])["r-old"]
        assert (record.score, record.outcome, record.content) == (9, "ignored", None)
        loop = CloseLoop(store=store, triggers=rules())
        assert loop.ingest_outcome(SurveyResponse(id="r-old", customer_id="c-1", score=1)).kind == "duplicate"
    finally:
        store.close()
