"""Survey responses through the facade: ingest, de-duplication, explain, backtest, batches."""

from __future__ import annotations

import multiprocessing
import sqlite3
from datetime import timedelta
from pathlib import Path
from typing import Any

import hypothesis.strategies as st
import pytest
from hypothesis import HealthCheck, given, settings

from closeloop import (
    Assigned,
    CloseLoop,
    InvalidInput,
    Opened,
    Priority,
    ResponseAttached,
    ResponseUpdated,
    Status,
    SurveyResponse,
)
from closeloop.notify import MemoryNotifier
from closeloop.storage import MemoryStore, SQLiteStore, Store
from closeloop.testing import FixedClock
from closeloop.triggers import (
    Trigger,
    nps_between,
    round_robin,
)
from intake_workers import RULES, ingest_same_response, take_round_robin_turns


def rules() -> list[Trigger]:
    """Detractors go to the account manager (or cx-team) within 48 hours; contact requests too."""
    return RULES()


def response(rid: str = "r-1", customer: str = "c-42", **fields: Any) -> SurveyResponse:
    """A survey response with sensible defaults."""
    return SurveyResponse(id=rid, customer_id=customer, **fields)


@pytest.fixture
def ingesting(store: Store, outbox: MemoryNotifier, clock: FixedClock) -> CloseLoop:
    """A loop with the standard rules over each store kind."""
    return CloseLoop(store=store, notifier=outbox, clock=clock, triggers=rules())


class TestIngest:
    """One response at a time."""

    def test_detractor_opens_routed_case(
        self, ingesting: CloseLoop, outbox: MemoryNotifier, clock: FixedClock
    ) -> None:
        """A detractor opens a case routed, prioritised and timed by the first matching trigger."""
        submitted = clock() - timedelta(hours=2)
        case = ingesting.ingest(response(score=3, contact_requested=True, comment="Slow delivery",
                                         answers={"account_manager": "dana"},
                                         submitted_at=submitted))
        assert case is not None
        assert (case.assignee, case.priority, case.due_at) == ("dana", Priority.HIGH,
                                                               submitted + timedelta(hours=48))
        assert case.reasons == ("detractor", "asked to be contacted")
        assert case.response_ids == ("r-1",) and case.opened_by == "detractor"
        opened, assigned = ingesting.history(case.id)
        assert isinstance(opened, Opened) and isinstance(assigned, Assigned)
        assert (opened.actor, opened.via, opened.comment) == ("detractor", "trigger", "Slow delivery")
        assert (assigned.assignee, assigned.actor) == ("dana", "detractor")
        assert [m.to for m in outbox.sent] == ["dana"]
        assert "Slow delivery" in outbox.sent[0].text

    def test_fallback_and_unassigned(self, ingesting: CloseLoop) -> None:
        """Without an account manager the fallback gets it; a trigger without routing leaves it unassigned."""
        detractor = ingesting.ingest(response("r-1", "c-1", score=0))
        contact = ingesting.ingest(response("r-2", "c-2", score=9, contact_requested=True))
        assert detractor is not None and detractor.assignee == "cx-team"
        assert contact is not None and contact.assignee is None and contact.version == 1

    def test_no_match_opens_nothing_but_is_remembered(self, ingesting: CloseLoop) -> None:
        """A response matching no trigger returns None, opens nothing, and stays None when repeated."""
        assert ingesting.ingest(response(score=9)) is None
        assert ingesting.store.responses(["r-1"])["r-1"].outcome == "ignored"
        assert ingesting.ingest(response(score=9)) is None  # same id, same content: a duplicate
        assert ingesting.cases() == []

    def test_same_response_a_hundred_times_opens_one_case(self, ingesting: CloseLoop) -> None:
        """Re-delivering the same response 100 times leaves one case and one "opened" event."""
        first = ingesting.ingest(response(score=2))
        assert first is not None
        for _ in range(99):
            again = ingesting.ingest(response(score=2))
            assert again is not None and again.id == first.id
        assert len(ingesting.cases()) == 1
        assert [e.kind for e in ingesting.history(first.id)].count("opened") == 1

    def test_bad_response_writes_nothing(self, ingesting: CloseLoop) -> None:
        """A non-response or a trigger that blows up gets InvalidInput, and nothing is written."""
        with pytest.raises(InvalidInput, match="response"):
            ingesting.ingest({"id": "r-1", "customer_id": "c-1", "score": 3})  # type: ignore[arg-type]

        def broken(r: SurveyResponse) -> bool:
            raise KeyError("nps")

        loop = CloseLoop(store=ingesting.store, triggers=[Trigger("broken", broken)])
        with pytest.raises(InvalidInput, match="broken"):
            loop.ingest(response(score=3))
        assert ingesting.cases() == [] and ingesting.store.responses(["r-1"]) == {}

    @pytest.mark.parametrize(
        ("kwargs", "field"),
        [({"triggers": [object()]}, "triggers[0]"), ({"dedupe": "always"}, "dedupe"),
         ({"dedupe": timedelta(0)}, "dedupe")],
    )
    def test_bad_configuration(self, kwargs: dict[str, Any], field: str) -> None:
        """Bad triggers or dedupe settings are refused when the loop is built."""
        with pytest.raises(InvalidInput) as raised:
            CloseLoop(**kwargs)
        assert raised.value.field == field


class TestDedupe:
    """A customer with an open case gets one case, not a storm."""

    def test_second_detractor_attaches_to_open_case(self, ingesting: CloseLoop) -> None:
        """A second matching response from the customer joins the open case with an event."""
        case = ingesting.ingest(response("r-1", score=3))
        joined = ingesting.ingest(response("r-2", score=9, contact_requested=True, comment="Still waiting"))
        assert case is not None and joined is not None and joined.id == case.id
        assert joined.response_ids == ("r-1", "r-2")
        assert joined.reasons == ("detractor", "asked to be contacted")
        event = ingesting.history(case.id)[-1]
        assert isinstance(event, ResponseAttached)
        assert (event.response_id, event.comment, event.actor) == ("r-2", "Still waiting",
                                                                   "contact-request")
        assert len(ingesting.cases()) == 1

    def test_after_close_a_new_case_opens(self, ingesting: CloseLoop) -> None:
        """By default, once the case is Closed the next detractor opens a new case."""
        case = ingesting.ingest(response("r-1", score=3))
        assert case is not None
        ingesting.set_status(case.id, Status.CLOSED, by="dana", comment="Refunded")
        second = ingesting.ingest(response("r-2", score=3))
        assert second is not None and second.id != case.id

    def test_cooldown_attaches_within_window_only(self, store: Store, clock: FixedClock) -> None:
        """With a cool-down, a detractor soon after close joins the closed case; later, a new one opens."""
        loop = CloseLoop(store=store, clock=clock, triggers=rules(), dedupe=timedelta(days=7))
        case = loop.ingest(response("r-1", score=3))
        assert case is not None
        loop.set_status(case.id, Status.CLOSED, by="dana", comment="Refunded")
        clock.advance(days=6, hours=23)
        joined = loop.ingest(response("r-2", score=2))
        assert joined is not None and joined.id == case.id and joined.status is Status.CLOSED
        clock.advance(hours=2)
        fresh = loop.ingest(response("r-3", score=2))
        assert fresh is not None and fresh.id != case.id

    def test_dedupe_none_opens_every_time(self, store: Store) -> None:
        """With dedupe="none", every matching response opens its own case."""
        loop = CloseLoop(store=store, triggers=rules(), dedupe="none")
        ids = {c.id for c in (loop.ingest(response(f"r-{i}", score=1)) for i in range(3)) if c}
        assert len(ids) == 3


class TestRoundRobin:
    """round_robin is fair, and keeps its place in the store."""

    def test_fair_across_restart(self, tmp_path: Path) -> None:
        """Turns continue where they left off after the store is reopened."""
        path = tmp_path / "rr.db"
        triggers = [Trigger("detractor", nps_between(0, 6), assign_to=round_robin(["a", "b", "c"]))]
        first = CloseLoop(store=SQLiteStore(path), triggers=triggers)
        got = [first.ingest(response(f"r-{i}", f"c-{i}", score=1)) for i in range(2)]
        first.store.close()
        second = CloseLoop(store=SQLiteStore(path), triggers=triggers)
        got += [second.ingest(response(f"r-{i}", f"c-{i}", score=1)) for i in range(2, 6)]
        assert [c.assignee for c in got if c] == ["a", "b", "c", "a", "b", "c"]

    @pytest.mark.slow
    def test_fair_across_two_processes(self, tmp_path: Path) -> None:
        """Two processes sharing one file split the turns evenly between the users."""
        path = tmp_path / "rr.db"
        SQLiteStore(path).close()
        ctx = multiprocessing.get_context("spawn")
        with ctx.Pool(2) as pool:
            results = pool.starmap(take_round_robin_turns, [(str(path), "p1", 30), (str(path), "p2", 30)])
        assignees = [a for batch in results for a in batch]
        assert sorted(assignees.count(user) for user in ("a", "b", "c")) == [20, 20, 20]


@pytest.mark.slow
def test_two_processes_ingesting_the_same_response(tmp_path: Path) -> None:
    """Two processes re-ingesting one response 100 times each leave one case and one opened event."""
    path = tmp_path / "same.db"
    SQLiteStore(path).close()
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(2) as pool:
        case_ids = pool.starmap(ingest_same_response, [(str(path), 100), (str(path), 100)])
    assert len({cid for batch in case_ids for cid in batch}) == 1
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT count(*) FROM cases").fetchone() == (1,)
        assert conn.execute("SELECT count(*) FROM events WHERE kind = 'opened'").fetchone() == (1,)


class TestBatches:
    """ingest_many and backtest."""

    def test_ingest_many_summarises(self, ingesting: CloseLoop) -> None:
        """A batch opens, attaches, ignores and spots duplicates, like ingest one by one."""
        batch = [
            response("r-1", "c-1", score=2), response("r-2", "c-1", score=1),
            response("r-3", "c-2", score=9), response("r-1", "c-1", score=2),
            response("r-4", "c-3", score=5),
        ]
        summary = ingesting.ingest_many(batch, batch_size=2)
        assert (summary.opened, summary.attached, summary.ignored, summary.duplicates) == (2, 1, 1, 1)
        assert summary.cases["r-1"] == summary.cases["r-2"] and summary.cases["r-3"] is None
        again = ingesting.ingest_many(batch)
        assert (again.opened, again.attached, again.duplicates) == (0, 0, 5)
        assert len(ingesting.cases()) == 2

    def test_bad_item_writes_nothing(self, ingesting: CloseLoop) -> None:
        """One bad item in a batch is named by index and nothing of the batch is written."""
        batch: list[Any] = [response("r-1", score=2), "r-2"]
        with pytest.raises(InvalidInput) as raised:
            ingesting.ingest_many(batch)
        assert raised.value.field == "responses[1]"
        assert ingesting.cases() == [] and ingesting.store.responses(["r-1"]) == {}

    def test_backtest_writes_nothing_and_counts(self, ingesting: CloseLoop) -> None:
        """backtest predicts per trigger and per assignee without writing anything."""
        existing = ingesting.ingest(response("r-0", "c-9", score=0))
        assert existing is not None
        batch = [
            response("r-1", "c-1", score=2, answers={"account_manager": "dana"}),
            response("r-2", "c-1", score=1), response("r-3", "c-2", score=9),
            response("r-4", "c-9", score=4), response("r-0", "c-9", score=0),
            response("r-5", "c-5", score=10, answers={"plan": "enterprise"}),
        ]
        summary = ingesting.backtest(batch)
        assert (summary.would_open, summary.would_attach, summary.attached_to_existing) == (2, 2, 1)
        assert (summary.ignored, summary.duplicates) == (1, 1)
        assert summary.opened_by_trigger == {"detractor": 1, "enterprise": 1}
        duplicate = next(d for d in summary.decisions if d.outcome == "duplicate")
        assert duplicate.case_id == existing.id
        assert summary.opened_by_assignee == {"dana": 1, "enterprise-desk": 1}
        assert [c.id for c in ingesting.cases()] == [existing.id]
        assert set(ingesting.store.responses([r.id for r in batch])) == {"r-0"}


RESPONSES = st.builds(
    SurveyResponse,
    id=st.sampled_from([f"r-{i}" for i in range(8)]),
    customer_id=st.sampled_from(["c-1", "c-2", "c-3"]),
    score=st.one_of(st.none(), st.integers(0, 10)),
    contact_requested=st.booleans(),
    answers=st.fixed_dictionaries({}, optional={
        "account_manager": st.sampled_from(["dana", "eli"]),
        "plan": st.sampled_from(["enterprise", "free"]),
    }),
)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(RESPONSES, st.booleans()), max_size=12))
def test_explain_agrees_with_ingest(steps: list[tuple[SurveyResponse, bool]]) -> None:
    """For any sequence of responses (and closes), explain predicts exactly what ingest does."""
    loop = CloseLoop(store=MemoryStore(), triggers=RULES(), clock=FixedClock())
    for item, close_after in steps:
        decision = loop.explain(item)
        before = loop.store.responses([item.id]).get(item.id)
        case = loop.ingest(item)
        if decision.outcome == "ignore":
            assert case is None
        elif decision.outcome == "duplicate":
            assert before is not None and (case.id if case else None) == before.case_id
        elif decision.outcome == "attach":
            assert case is not None and case.id == decision.case_id
            assert case.response_ids[-1] == item.id
        elif decision.outcome == "update":
            assert before is not None and (case.id if case else None) == decision.case_id
            if case is not None:
                last = loop.history(case.id)[-1]
                assert isinstance(last, ResponseUpdated) and last.response_id == item.id
                assert set(decision.reasons) <= set(case.reasons)
        else:
            assert case is not None and case.response_ids == (item.id,)
            assert (case.reasons, case.assignee) == (decision.reasons, decision.assignee)
        if decision.outcome in ("open", "attach", "ignore"):
            matched = any(e.matched for e in decision.triggers)
            assert matched == (decision.outcome != "ignore")
        if case is not None and close_after and case.status is not Status.CLOSED:
            loop.set_status(case.id, Status.CLOSED, by="agent", comment="done")


def test_reopen_within_window(store: Store, clock: FixedClock) -> None:
    """With Dedupe.reopen_within, a detractor soon after close reopens the case; later, a new one opens."""
    from closeloop.intake import Dedupe

    loop = CloseLoop(store=store, clock=clock, triggers=rules(),
                     dedupe=Dedupe.reopen_within(timedelta(days=3)))
    case = loop.ingest(response("r-1", score=3))
    assert case is not None
    loop.set_status(case.id, Status.CLOSED, by="dana", comment="Refunded")
    clock.advance(days=2)
    reopened = loop.ingest(response("r-2", score=1))
    assert reopened is not None and reopened.id == case.id
    assert (reopened.status, reopened.closed_at) == (Status.OPEN, None)
    kinds = [(e.kind, e.actor) for e in loop.history(case.id)[-2:]]
    assert kinds == [("response_attached", "detractor"), ("status_changed", "detractor")]
    loop.set_status(case.id, Status.CLOSED, by="dana", comment="Done again")
    clock.advance(days=4)
    fresh = loop.ingest(response("r-3", score=1))
    assert fresh is not None and fresh.id != case.id


def test_backtest_counts_by_trigger_name_not_reason(store: Store) -> None:
    """opened_by_trigger is keyed by the trigger's name even when its reason differs."""
    loop = CloseLoop(store=store, triggers=rules())
    summary = loop.backtest([response("r-1", "c-1", score=9, contact_requested=True),
                             response("r-1", "c-1", score=9, contact_requested=True)])
    assert summary.opened_by_trigger == {"contact-request": 1}
    first, repeat = summary.decisions
    assert first.trigger == "contact-request" and first.reasons == ("asked to be contacted",)
    assert repeat.outcome == "duplicate" and repeat.case_id == "would-open:r-1"
