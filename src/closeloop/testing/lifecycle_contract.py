"""The personal-data part of the store contract: erase, export and purge on any store.

:class:`LifecycleContract` is mixed into :class:`~closeloop.testing.StoreContract`.
Its tests work through a real :class:`~closeloop.CloseLoop` on the store under
test and read back **everything the store returns** (every case, history, notice,
response record and the report's facts) to check that an erasure leaves none of
the customer's words or id anywhere, writes only what it must, is all or nothing
when something changed meanwhile, and leaves every report figure as it was. The
last test does so on generated histories, erasing random customers and purging
at random dates.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta

import hypothesis.strategies as st
import pytest
from hypothesis import HealthCheck, given, settings

from closeloop import CloseLoop, ConcurrentUpdate, Status, SurveyResponse
from closeloop.convert import unstructure
from closeloop.model import Notice
from closeloop.notify import MemoryNotifier
from closeloop.redaction import CANCELLED, is_pseudonym, redact_case, redact_record
from closeloop.reporting import ReportQuery
from closeloop.retention import select_purge_candidates
from closeloop.storage.base import ResponseUpdate, Store
from closeloop.testing.clock import START as T0
from closeloop.testing.clock import FixedClock
from closeloop.testing.generated_histories import EPOCH_LENGTH, EPOCHS, OPERATIONS, make_loop, replay
from closeloop.testing.report_contract import report_fields
from closeloop.triggers import Trigger, nps_between

__all__ = ["LifecycleContract", "everything"]

H = timedelta(hours=1)
D = timedelta(days=1)

#: The customer the tests erase, and the words of theirs (or about them) the store holds.
GONE = "cust-gone"
SECRETS = (
    "first-comment-of-gone", "answer-of-gone", "late-comment-of-gone", "second-comment-of-gone",
    "assign-note-about-gone", "agent-comment-about-gone", "closing-comment-about-gone",
    "promoter-comment-of-gone", "self-opened-by-gone", "bounce-about-gone",
)
#: Another customer, whose data an erasure of GONE must leave alone.
STAYS = "cust-stays"
STAYING = "comment-of-stays"


def everything(store: Store, now: datetime) -> str:
    """Everything ``store`` returns through the Store protocol, as one JSON text.

    Every case, every case's history, every notice, every response record, each
    customer's latest case, and the report's facts (and figures) over every case.
    """
    cases = store.find()
    customers = sorted({case.customer_id for case in cases})
    query = ReportQuery(now=now)
    facts = store.report_facts(query)
    data = {
        "cases": [unstructure(case) for case in cases],
        "histories": {case.id: [unstructure(e) for e in store.history(case.id)] for case in cases},
        "notices": [unstructure(notice) for notice in store.find_notices()],
        "pending": [unstructure(notice) for notice in store.pending_notices()],
        "responses": [unstructure(record) for record in store.find_responses()],
        "latest": {key: unstructure(case) for key, case in store.latest_cases(customers).items()},
        "facts": [unstructure(facts.cases), {k: [unstructure(e) for e in v]
                                             for k, v in facts.events.items()},
                  unstructure(facts.responses)],
        "report": repr(store.report(query)),
    }
    return json.dumps(data, sort_keys=True, default=str)


def _loop(store: Store, clock: FixedClock) -> CloseLoop:
    numbers = iter(range(1, 1_000_000))
    return CloseLoop(
        store=store, clock=clock, notifier=MemoryNotifier(), deliver_notices=False,
        triggers=[Trigger("detractor", nps_between(0, 6), assign_to="alice")],
        id_factory=lambda: f"k-{next(numbers):04}",
    )


def _history_of_gone(loop: CloseLoop, clock: FixedClock) -> list[str]:
    """Two cases of GONE (with every kind of personal data) and one of STAYS; their ids."""
    first = loop.ingest(SurveyResponse(id="r-1", customer_id=GONE, score=2,
                                       comment=SECRETS[0], answers={"phone": SECRETS[1]}))
    assert first is not None
    clock.advance(minutes=5)
    loop.ingest(SurveyResponse(id="r-1", customer_id=GONE, score=2, comment=SECRETS[2],
                               answers={"phone": SECRETS[1]}))  # the same response, updated
    loop.ingest(SurveyResponse(id="r-2", customer_id=GONE, score=1, comment=SECRETS[3]))
    loop.assign(first.id, to="bob", by="lead", comment=SECRETS[4])
    loop.comment(first.id, SECRETS[5], by="bob")
    clock.advance(hours=3)
    loop.set_status(first.id, Status.CLOSED, by="bob", comment=SECRETS[6])
    clock.advance(days=2)
    loop.ingest(SurveyResponse(id="r-3", customer_id=GONE, score=10, comment=SECRETS[7]))
    second = loop.open_case(GONE, by=GONE, comment=SECRETS[8])  # the customer's own request
    other = loop.ingest(SurveyResponse(id="r-4", customer_id=STAYS, score=3, comment=STAYING))
    assert other is not None
    assert loop.deliver_pending(limit=1).sent == 1  # one notice sent, the others pending
    # A notifier's reason for giving up a notice may quote what it was about.
    loop.service.record_failed_notice(loop.store.find_notices(case_ids=[first.id])[0], SECRETS[9])
    clock.advance(hours=1)
    return [first.id, second.id, other.id]


def _customers(store: Store, prefix: str) -> list[str]:
    """The customers of one generated example (their ids start with ``prefix``)."""
    return sorted({case.customer_id for case in store.find() if case.customer_id.startswith(prefix)}
                  | {r.customer_id for r in store.find_responses()
                     if r.customer_id.startswith(prefix)})


def _come_back(store: Store, data: st.DataObject, prefix: str, end: datetime) -> datetime:
    """Some customers have their cases closed and answer a survey again: recovery to keep.

    Generated histories seldom make a customer come back after a close, and recovery
    is the figure that links a customer's cases to their responses by customer id.
    Returns the time at the end.
    """
    clock = FixedClock(end)
    loop = make_loop(store, clock, prefix=f"{prefix}back-")
    customers = _customers(store, prefix)
    back = data.draw(st.lists(st.sampled_from(customers), unique=True), label="back") if customers else []
    for number, customer in enumerate(back):
        for case in loop.cases(customer_id=customer):
            if case.status is not Status.CLOSED:
                loop.set_status(case.id, Status.CLOSED, by="alice", comment="why")
        clock.advance(H)
        loop.ingest(SurveyResponse(id=f"{prefix}back-r-{number}", customer_id=customer,
                                   score=data.draw(st.none() | st.integers(0, 10), label="score")))
    return clock()


class LifecycleContract:
    """How every store keeps erase, export and purge (see :mod:`closeloop.lifecycle`).

    Mixed into :class:`~closeloop.testing.StoreContract`; on its own it needs the
    same ``store`` fixture (a fresh, empty store).
    """

    def test_erase_leaves_nothing_of_the_customer_in_anything_the_store_returns(
        self, store: Store
    ) -> None:
        """After erase_customer, no comment, answer or id of the customer is in any read."""
        clock = FixedClock(T0)
        loop = _loop(store, clock)
        _history_of_gone(loop, clock)
        before = everything(store, clock())
        assert all(secret in before for secret in (*SECRETS, GONE))  # the check below can fail
        erasure = loop.erase_customer(GONE, by="dpo")
        after = everything(store, clock())
        for secret in (*SECRETS, GONE):
            assert secret not in after, f"{secret!r} is still stored after the erasure"
        assert STAYS in after and STAYING in after
        assert erasure.pseudonym is not None and erasure.pseudonym in after
        assert (erasure.cases, erasure.responses) == (2, 3)

    def test_erase_redacts_and_cancels_and_records_an_erased_event(self, store: Store) -> None:
        """Cases move to one pseudonym, keep their times; pending notices are cancelled."""
        clock = FixedClock(T0)
        loop = _loop(store, clock)
        first, second, other = _history_of_gone(loop, clock)
        old = {case_id: (loop.get(case_id), loop.history(case_id)) for case_id in (first, second)}
        pending = {n.id for n in store.find_notices(case_ids=[first, second], pending_only=True)}
        assert pending
        erasure = loop.erase_customer(GONE, by="dpo")
        assert erasure.cancelled == len(pending)
        pseudonym = erasure.pseudonym
        assert pseudonym is not None and is_pseudonym(pseudonym)
        assert [case.id for case in store.find(customer_id=pseudonym)] == [first, second]
        assert store.find(customer_id=GONE) == [] and store.latest_cases([GONE]) == {}
        assert store.latest_cases([pseudonym])[pseudonym].id == second
        for case_id, (case, history) in old.items():
            now, events = loop.get(case_id), loop.history(case_id)
            assert (now.updated_at, now.status, now.version) == (
                case.updated_at, case.status, case.version + 1)
            assert [(e.kind, e.at, e.seq) for e in events[:-1]] == [
                (e.kind, e.at, e.seq) for e in history]
            assert all(event.comment is None for event in events)
            assert (events[-1].kind, events[-1].actor) == ("erased", "dpo")
        assert loop.get(second).opened_by == pseudonym  # the customer opened it
        assert {r.customer_id for r in store.find_responses(customer_ids=[pseudonym])} == {pseudonym}
        assert all(r.content is None for r in store.find_responses(customer_ids=[pseudonym]))
        assert store.pending_notices() == [n for n in store.pending_notices() if n.case_id == other]
        for notice in store.find_notices(case_ids=[first, second]):
            if notice.id in pending:
                assert (notice.failed_at, notice.last_error) == (clock(), CANCELLED)
            assert notice.subject == notice.text == notice.html == ""
        outbox = loop.notifier
        assert isinstance(outbox, MemoryNotifier)
        sent_before = len(outbox.sent)
        loop.deliver_pending()
        assert {message.case_id for message in outbox.sent[sent_before:]} == {other}

    def test_erase_twice_writes_nothing_the_second_time(self, store: Store) -> None:
        """A second erasure of the same customer finds nothing and leaves the store as it was."""
        clock = FixedClock(T0)
        loop = _loop(store, clock)
        _history_of_gone(loop, clock)
        loop.erase_customer(GONE, by="dpo")
        before = everything(store, clock())
        again = loop.erase_customer(GONE, by="dpo")
        assert (again.found, again.pseudonym) == (False, None)
        assert everything(store, clock()) == before

    def test_erasing_a_pseudonym_again_redacts_only_what_was_added(self, store: Store) -> None:
        """A comment added to an erased case is erased by erasing the pseudonym, which stays."""
        clock = FixedClock(T0)
        loop = _loop(store, clock)
        first, second, _ = _history_of_gone(loop, clock)
        pseudonym = loop.erase_customer(GONE, by="dpo").pseudonym
        assert pseudonym is not None
        loop.comment(second, "added-after-the-erasure", by="bob")
        again = loop.erase_customer(pseudonym, by="dpo")
        assert (again.pseudonym, again.cases, again.responses) == (pseudonym, 1, 0)
        assert "added-after-the-erasure" not in everything(store, clock())
        assert loop.get(first).version == loop.history(first)[-1].seq  # untouched
        assert loop.erase_customer(pseudonym, by="dpo").found is False

    def test_erase_keeps_every_report_figure(self, store: Store) -> None:
        """Counts, durations, SLA, first action and recovery read the same after the erasure."""
        clock = FixedClock(T0)
        loop = _loop(store, clock)
        _history_of_gone(loop, clock)
        queries = [ReportQuery(now=clock()), ReportQuery(now=clock(), assignee="bob"),
                   ReportQuery(now=clock(), reason="detractor"),
                   ReportQuery(now=clock(), until=T0 + D)]
        before = [report_fields(store.report(query)) for query in queries]
        assert before[0]["recovery"].customers == 1  # GONE came back after the close
        loop.erase_customer(GONE, by="dpo")
        assert [report_fields(store.report(query)) for query in queries] == before

    def test_a_stale_erasure_fails_whole_and_writes_nothing(self, store: Store) -> None:
        """A case changed after the erasure read it: ConcurrentUpdate; cases and records untouched."""
        clock = FixedClock(T0)
        loop = _loop(store, clock)
        _, second, _ = _history_of_gone(loop, clock)
        pseudonym = "erased-0123456789abcdef0123456789abcdef"
        changes = []
        for case in store.find(customer_id=GONE):
            redaction = redact_case(case, store.history(case.id),
                                    store.find_notices(case_ids=[case.id]),
                                    pseudonym=pseudonym, by="dpo", at=clock(), why="request")
            assert redaction is not None
            changes.append(redaction.change)
        updates = []
        for record in store.find_responses(customer_ids=[GONE]):
            redacted = redact_record(record, pseudonym)
            assert redacted is not None
            updates.append(ResponseUpdate(record, redacted))
        loop.comment(second, "meanwhile", by="bob")  # a concurrent change to the second case
        before = everything(store, clock())
        with pytest.raises(ConcurrentUpdate):
            store.commit_many(changes, (), updates)
        assert everything(store, clock()) == before

    def test_a_response_update_read_before_an_erasure_is_stale(self, store: Store) -> None:
        """A record whose customer id changed since it was read refuses the update, even with no content."""
        clock = FixedClock(T0)
        loop = _loop(store, clock)
        loop.ingest(SurveyResponse(id="r-9", customer_id=GONE, score=9))
        (record,) = store.find_responses(customer_ids=[GONE])
        loop.erase_customer(GONE, by="dpo")
        redacted = redact_record(record, "erased-0123456789abcdef0123456789abcdef")
        assert redacted is not None
        with pytest.raises(ConcurrentUpdate) as info:
            store.commit_many([], (), [ResponseUpdate(record, redacted)])
        assert info.value.response_id == "r-9"

    def test_export_holds_everything_as_plain_json(self, store: Store) -> None:
        """export_customer: every case with history and notices, every response, json.dumps-able."""
        clock = FixedClock(T0)
        loop = _loop(store, clock)
        first, second, _ = _history_of_gone(loop, clock)
        exported = loop.export_customer(GONE)
        text = json.dumps(exported)
        assert all(secret in text for secret in SECRETS) and STAYING not in text
        assert exported["customer_id"] == GONE
        assert [case["id"] for case in exported["cases"]] == [first, second]
        assert [len(case["history"]) for case in exported["cases"]] == [
            len(loop.history(first)), len(loop.history(second))]
        assert sum(len(case["notices"]) for case in exported["cases"]) == len(
            store.find_notices(case_ids=[first, second]))
        assert [r["response_id"] for r in exported["responses"]] == ["r-1", "r-2", "r-3"]
        assert exported["responses"][0]["content"]["answers"] == {"phone": SECRETS[1]}
        loop.erase_customer(GONE, by="dpo")
        assert loop.export_customer(GONE)["cases"] == []
        assert loop.export_customer(GONE)["responses"] == []

    def test_dry_runs_write_nothing(self, store: Store) -> None:
        """erase_customer and purge with dry_run=True say what they would do and write nothing."""
        clock = FixedClock(T0)
        loop = _loop(store, clock)
        _history_of_gone(loop, clock)
        loop.set_status(loop.cases(customer_id=GONE)[1].id, Status.CLOSED, by="bob",
                        comment="done")
        clock.advance(days=1)
        before = everything(store, clock())
        erasure = loop.erase_customer(GONE, by="dpo", dry_run=True)
        assert (erasure.dry_run, erasure.pseudonym, erasure.cases, erasure.responses) == (
            True, None, 2, 3)
        purged = loop.purge(clock(), by="retention", dry_run=True)
        assert [e.customer_id for e in purged.erasures] == [GONE]
        assert everything(store, clock()) == before

    def test_purge_erases_only_customers_whose_data_is_all_older(self, store: Store) -> None:
        """A customer with an open case keeps everything; one all closed and old is erased."""
        clock = FixedClock(T0)
        loop = _loop(store, clock)
        old = loop.open_case("cust-old", by="agent", comment="old-words")
        loop.set_status(old.id, Status.CLOSED, by="agent", comment="old-close")
        busy = loop.open_case("cust-busy", by="agent", comment="busy-words")
        loop.set_status(busy.id, Status.CLOSED, by="agent", comment="busy-close")
        loop.ingest(SurveyResponse(id="r-quiet", customer_id="cust-quiet", score=9,
                                   comment="quiet-words"))
        clock.advance(days=10)
        loop.open_case("cust-busy", by="agent", comment="busy-again")  # still open
        late = loop.ingest(SurveyResponse(id="r-late", customer_id="cust-late", score=9,
                                          comment="late-words"))
        assert late is None
        cutoff = clock() - D
        assert store.customers_to_purge(closed_before=cutoff) == ["cust-old", "cust-quiet"]
        summary = loop.purge(cutoff, by="retention")
        assert [e.customer_id for e in summary.erasures] == ["cust-old", "cust-quiet"]
        assert (summary.cases, summary.responses) == (1, 1)
        text = everything(store, clock())
        assert "old-words" not in text and "quiet-words" not in text
        assert "busy-words" in text and "late-words" in text
        assert [e.why for e in loop.history(old.id) if e.kind == "erased"] == ["retention"]
        assert store.customers_to_purge(closed_before=cutoff) == []
        assert loop.purge(cutoff, by="retention").erasures == ()

    def test_find_notices_filters_by_case_and_pending(self, store: Store) -> None:
        """find_notices lists sent and pending notices oldest first, by case, or pending only."""
        clock = FixedClock(T0)
        loop = _loop(store, clock)
        first, second, other = _history_of_gone(loop, clock)
        every = store.find_notices()
        assert every == sorted(every, key=lambda n: (n.created_at, n.id)) and len(every) >= 3
        assert any(not notice.pending for notice in every)
        assert store.find_notices(case_ids=[other]) == [n for n in every if n.case_id == other]
        assert store.find_notices(case_ids=[]) == []
        assert store.find_notices(pending_only=True) == store.pending_notices() == [
            n for n in every if n.pending]
        assert store.find_notices(case_ids=[first, second], pending_only=True) == [
            n for n in every if n.pending and n.case_id in (first, second)]
        assert all(isinstance(notice, Notice) for notice in every)

    @settings(
        deadline=None,
        # One store for every example (see ReportContract's generated histories): each
        # example works in a window of time with ids and customers of its own.
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                               HealthCheck.differing_executors],
    )
    @given(data=st.data())
    def test_erasure_and_purge_leave_every_report_figure_on_generated_histories(
        self, store: Store, data: st.DataObject
    ) -> None:
        """For any history, erasing random customers and purging at a random date changes no figure."""
        operations = data.draw(st.lists(OPERATIONS, max_size=40), label="operations")
        epoch = next(EPOCHS)
        base = T0 + epoch * EPOCH_LENGTH
        prefix = f"e{epoch}-"
        end, opened, due = replay(store, base, prefix, operations)
        end = _come_back(store, data, prefix, end)
        later = data.draw(st.sampled_from([timedelta(0), H, D, 14 * D]), label="later")
        queries = [ReportQuery(now=end + later, since=base),
                   ReportQuery(now=end + later, since=base, assignee="alice"),
                   ReportQuery(now=end + later, since=base, reason="detractor"),
                   ReportQuery(now=end + later, since=base, reason="vip")]
        queries += [ReportQuery(now=moment, since=base) for moment in due[:2]]
        if opened:
            cut = data.draw(st.sampled_from(opened), label="cut")
            queries += [ReportQuery(now=end + later, since=cut),
                        ReportQuery(now=end + later, since=base, until=cut)]
        before = [report_fields(store.report(query)) for query in queries]
        mine = _customers(store, prefix)
        erased = data.draw(st.lists(st.sampled_from(mine), unique=True), label="erased") if mine else []
        loop = make_loop(store, FixedClock(end), prefix=f"{prefix}erase-")
        for customer in erased:
            assert loop.erase_customer(customer, by="dpo").found
        if data.draw(st.booleans(), label="purge"):
            moment = data.draw(st.sampled_from([base, *opened, end]), label="closed_before")
            assert store.customers_to_purge(closed_before=moment) == select_purge_candidates(
                store.find(), store.find_responses(), store.history, closed_before=moment)
            summary = loop.purge(moment, by="retention")
            assert summary.skipped == 0
            assert store.customers_to_purge(closed_before=moment) == []
        for customer in erased:
            assert store.find(customer_id=customer) == []
            assert store.find_responses(customer_ids=[customer]) == []
        after = [report_fields(store.report(query)) for query in queries]
        for query, was, now in zip(queries, before, after, strict=True):
            assert now == was, f"an erasure changed the report for {query}"
