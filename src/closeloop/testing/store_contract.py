"""The store contract as a pytest class: subclass it and provide a ``store`` fixture."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from attrs import evolve

from closeloop.errors import CaseNotFound, CloseLoopError, ConcurrentUpdate, TokenUsed
from closeloop.model import (
    Assigned,
    Case,
    Commented,
    Escalated,
    Event,
    Notice,
    Opened,
    Priority,
    ResponseAttached,
    ResponseRecord,
    Status,
    StatusChanged,
)
from closeloop.protocol_check import protocol_problems
from closeloop.reporting import Durations, Recovery, ReportQuery
from closeloop.storage.base import Change, Store
from closeloop.testing.lifecycle_contract import LifecycleContract
from closeloop.testing.outbox_contract import OutboxContract
from closeloop.testing.query_contract import QueryContract
from closeloop.testing.report_contract import ReportContract
from closeloop.testing.response_update_contract import ResponseUpdateContract
from closeloop.testing.workflow_contract import WorkflowStoreContract

__all__ = ["StoreContract", "make_case", "make_notice", "make_record", "opened_change"]

T0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)


def make_case(case_id: str = "case-1", **changes: Any) -> Case:
    """A valid new case (version 1, Open) with any fields overridden."""
    fields: dict[str, Any] = {
        "id": case_id,
        "customer_id": "cust-1",
        "status": Status.OPEN,
        "opened_at": T0,
        "updated_at": T0,
        "opened_by": "agent-1",
        "version": 1,
    }
    fields.update(changes)
    return Case(**fields)


def make_notice(case_id: str, notice_id: str, at: datetime = T0, **changes: Any) -> Notice:
    """A valid notice for ``case_id``, due at ``at``."""
    fields: dict[str, Any] = {
        "id": notice_id,
        "case_id": case_id,
        "kind": "assigned",
        "to": "alice",
        "subject": "Case assigned to you",
        "text": "text body",
        "html": "<p>html body</p>",
        "created_at": at,
        "next_attempt_at": at,
    }
    fields.update(changes)
    return Notice(**fields)


def opened_change(case: Case, *notices: Notice) -> Change:
    """The change that creates ``case`` with its "opened" event."""
    event = Opened(case_id=case.id, actor=case.opened_by, at=case.opened_at, seq=1)
    return Change(case=case, expected_version=None, events=(event,), notices=notices)


def make_record(response_id: str, case_id: str | None = None, **changes: Any) -> ResponseRecord:
    """A response record; "opened" when it names a case, else "ignored"."""
    fields: dict[str, Any] = {
        "response_id": response_id,
        "customer_id": "cust-1",
        "outcome": "opened" if case_id else "ignored",
        "received_at": T0,
        "submitted_at": T0,
        "score": 3,
        "case_id": case_id,
    }
    fields.update(changes)
    return ResponseRecord(**fields)


def _next(case: Case, at: datetime, **changes: Any) -> Case:
    return evolve(case, updated_at=at, version=case.version + 1, **changes)


class StoreContract(
    ResponseUpdateContract, OutboxContract, ReportContract, QueryContract, WorkflowStoreContract,
    LifecycleContract,
):
    """Behaviour every :class:`~closeloop.storage.Store` must have.

    Subclass and provide a ``store`` fixture returning a fresh, empty store.
    """

    @pytest.fixture
    def store(self) -> Iterator[Store]:
        """Override: a fresh, empty store."""
        raise NotImplementedError("provide a `store` fixture returning your store")

    def test_satisfies_protocol(self, store: Store) -> None:
        """The store has every method of the Store protocol, each callable as closeloop calls it."""
        assert protocol_problems(store, Store) == []

    def test_new_case_reads_back_equal(self, store: Store) -> None:
        """A committed new case and its opening event read back equal to what was written."""
        case = make_case(reasons=("detractor", "contact"), response_ids=("r-1",),
                         priority=Priority.HIGH, due_at=T0 + timedelta(days=2))
        store.commit(opened_change(case))
        assert store.get(case.id) == case
        assert [event.kind for event in store.history(case.id)] == ["opened"]

    def test_unknown_case_raises_case_not_found(self, store: Store) -> None:
        """get and history of an unknown id raise CaseNotFound naming the id."""
        with pytest.raises(CaseNotFound) as raised:
            store.get("nope")
        assert raised.value.case_id == "nope"
        with pytest.raises(CaseNotFound):
            store.history("nope")

    def test_update_to_missing_case_raises_case_not_found(self, store: Store) -> None:
        """A change based on a version of a case that does not exist raises CaseNotFound."""
        case = make_case(version=2)
        event = Commented(case_id=case.id, actor="a", at=T0, seq=2, comment="x")
        with pytest.raises(CaseNotFound):
            store.commit(Change(case=case, expected_version=1, events=(event,)))

    def test_duplicate_new_case_is_a_concurrent_update(self, store: Store) -> None:
        """Creating a case whose id exists raises ConcurrentUpdate and changes nothing."""
        case = make_case()
        store.commit(opened_change(case))
        with pytest.raises(ConcurrentUpdate):
            store.commit(opened_change(evolve(case, customer_id="someone-else")))
        assert store.get(case.id) == case
        assert len(store.history(case.id)) == 1

    def test_stale_version_raises_and_writes_nothing(self, store: Store) -> None:
        """A change from an old version raises ConcurrentUpdate; case, events, outbox unchanged."""
        case = make_case()
        store.commit(opened_change(case))
        first = _next(case, T0, status=Status.PROGRESS)
        store.commit(Change(case=first, expected_version=1, events=(
            StatusChanged(case_id=case.id, actor="a", at=T0, seq=2,
                          from_status=Status.OPEN, to_status=Status.PROGRESS),)))
        stale = _next(case, T0, assignee="bob")
        with pytest.raises(ConcurrentUpdate) as raised:
            store.commit(Change(
                case=stale, expected_version=1,
                events=(Assigned(case_id=case.id, actor="a", at=T0, seq=2, assignee="bob"),),
                notices=(make_notice(case.id, "n-stale"),),
            ))
        assert (raised.value.expected, raised.value.actual) == (1, 2)
        assert store.get(case.id) == first
        assert [event.seq for event in store.history(case.id)] == [1, 2]
        assert store.pending_notices() == []

    def test_failed_change_writes_nothing(self, store: Store) -> None:
        """A change that fails part-way (a duplicate notice id) leaves no trace of itself."""
        case = make_case()
        store.commit(opened_change(case, make_notice(case.id, "n-1")))
        updated = _next(case, T0, assignee="bob")
        with pytest.raises((CloseLoopError, ValueError)):
            store.commit(Change(
                case=updated, expected_version=1,
                events=(Assigned(case_id=case.id, actor="a", at=T0, seq=2, assignee="bob"),),
                notices=(make_notice(case.id, "n-1"),),
            ))
        assert store.get(case.id) == case
        assert len(store.history(case.id)) == 1
        assert [notice.id for notice in store.pending_notices()] == ["n-1"]

    def test_every_event_kind_round_trips(self, store: Store) -> None:
        """Each kind of event, with comments, via and unicode, reads back equal."""
        case = make_case()
        store.commit(opened_change(case))
        later = T0 + timedelta(minutes=5, microseconds=7)
        events: list[Event] = [
            Assigned(case_id=case.id, actor="bob", at=later, seq=2, assignee="ålice",
                     comment="yours ✓"),
            StatusChanged(case_id=case.id, actor="ålice", at=later, seq=3, via="one-touch",
                          from_status=Status.OPEN, to_status=Status.CLOSED, comment="done"),
            Commented(case_id=case.id, actor="ålice", at=later, seq=4, comment="<b>'\"x"),
            ResponseAttached(case_id=case.id, actor="detractor", at=later, seq=5,
                             response_id="r-2", reasons=("detractor",)),
            Escalated(case_id=case.id, actor="closeloop", at=later, seq=6, notified="mgr",
                      why="overdue"),
        ]
        final = evolve(case, version=6, updated_at=later, status=Status.CLOSED,
                       closed_at=later, assignee="ålice")
        store.commit(Change(case=final, expected_version=1, events=events))
        assert store.history(case.id)[1:] == events
        assert store.get(case.id) == final

    def test_times_keep_microseconds_and_instant(self, store: Store) -> None:
        """A time in another timezone reads back as the same instant, to the microsecond."""
        plus_two = timezone(timedelta(hours=2))
        opened = datetime(2026, 3, 1, 12, 30, 15, 123456, tzinfo=plus_two)
        case = make_case(opened_at=opened, updated_at=opened)
        store.commit(opened_change(case))
        got = store.get(case.id)
        assert got.opened_at == opened
        assert got.opened_at.utcoffset() is not None

    def test_find_filters_and_orders_oldest_first(self, store: Store) -> None:
        """find applies every filter given and returns oldest opened first, with a limit."""
        specs = [
            ("a", "alice", Status.OPEN, "c1", 3),
            ("b", "alice", Status.CLOSED, "c2", 1),
            ("c", "bob", Status.OPEN, "c1", 2),
            ("d", None, Status.PROGRESS, "c3", 0),
        ]
        for case_id, assignee, status, customer, minutes in specs:
            at = T0 + timedelta(minutes=minutes)
            store.commit(opened_change(make_case(
                case_id, assignee=assignee, status=status, customer_id=customer,
                opened_at=at, updated_at=at,
                closed_at=at if status is Status.CLOSED else None,
            )))
        def ids(cases: list[Case]) -> list[str]:
            return [case.id for case in cases]

        assert ids(store.find()) == ["d", "b", "c", "a"]
        assert ids(store.find(assignee="alice")) == ["b", "a"]
        assert ids(store.find(status=Status.OPEN)) == ["c", "a"]
        assert ids(store.find(customer_id="c1", assignee="bob")) == ["c"]
        assert ids(store.find(assignee="nobody")) == []
        assert ids(store.find(limit=2)) == ["d", "b"]

    def test_find_breaks_ties_in_creation_order(self, store: Store) -> None:
        """Cases opened at the same instant are listed in the order they were created."""
        names = ["m", "z", "a", "q"]
        for name in names:
            store.commit(opened_change(make_case(name)))
        store.commit(Change(
            case=_next(make_case("z"), T0, assignee="x"), expected_version=1,
            events=(Assigned(case_id="z", actor="a", at=T0, seq=2, assignee="x"),),
        ))
        assert [case.id for case in store.find()] == names

    def test_claim_notices_leases_and_releases(self, store: Store) -> None:
        """A claimed notice is not claimed again within its lease, but is after it."""
        case = make_case()
        store.commit(opened_change(case, make_notice(case.id, "n-1"),
                                   make_notice(case.id, "n-2", at=T0 + timedelta(hours=1))))
        lease = timedelta(minutes=5)
        assert [n.id for n in store.claim_notices(now=T0, lease=lease)] == ["n-1"]
        assert store.claim_notices(now=T0 + timedelta(minutes=4), lease=lease) == []
        again = store.claim_notices(now=T0 + timedelta(minutes=6), lease=lease)
        assert [n.id for n in again] == ["n-1"]
        assert again[0].next_attempt_at == T0 + timedelta(minutes=11)

    def test_sent_and_failed_notices(self, store: Store) -> None:
        """notice_failed counts attempts and keeps the error; notices_sent ends the notice."""
        case = make_case()
        store.commit(opened_change(case, make_notice(case.id, "n-1")))
        store.notice_failed("n-1", error="SMTP down", retry_at=T0 + timedelta(minutes=1))
        (pending,) = store.pending_notices()
        assert (pending.attempts, pending.last_error) == (1, "SMTP down")
        assert store.claim_notices(now=T0, lease=timedelta(minutes=5)) == []
        assert len(store.claim_notices(now=T0 + timedelta(minutes=1), lease=timedelta(0))) == 1
        store.notices_sent(["n-1"], at=T0 + timedelta(minutes=2))
        assert store.pending_notices() == []
        assert store.claim_notices(now=T0 + timedelta(days=1), lease=timedelta(0)) == []

    def test_claims_from_many_threads_never_overlap(self, store: Store) -> None:
        """Threads claiming at once each get different notices, and all get claimed."""
        case = make_case()
        notices = [make_notice(case.id, f"n-{i:03}") for i in range(60)]
        store.commit(opened_change(case, *notices))
        claimed: list[str] = []
        lock = threading.Lock()

        def claim() -> None:
            while batch := store.claim_notices(now=T0, lease=timedelta(hours=1), limit=7):
                with lock:
                    claimed.extend(notice.id for notice in batch)

        threads = [threading.Thread(target=claim) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert sorted(claimed) == [notice.id for notice in notices]

    def test_concurrent_writers_in_threads_lose_nothing(self, store: Store) -> None:
        """Threads committing different cases at once all land, each with its event."""
        def write(worker: int) -> None:
            for index in range(20):
                store.commit(opened_change(make_case(f"w{worker}-{index}")))

        threads = [threading.Thread(target=write, args=(worker,)) for worker in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        cases = store.find()
        assert len(cases) == 80
        assert all(len(store.history(case.id)) == 1 for case in cases)

    def test_commit_many_is_all_or_nothing(self, store: Store) -> None:
        """A batch with one failing change writes none of its changes."""
        store.commit(opened_change(make_case("old")))
        good = opened_change(make_case("new"))
        stale = Change(
            case=make_case("old", version=6, assignee="x"), expected_version=5,
            events=(Assigned(case_id="old", actor="a", at=T0, seq=6, assignee="x"),),
        )
        with pytest.raises(ConcurrentUpdate):
            store.commit_many([good, stale], [make_record("r-ignored")])
        assert store.responses(["r-ignored"]) == {}
        assert [case.id for case in store.find()] == ["old"]
        store.commit_many([good], [make_record("r-ignored")])
        assert [case.id for case in store.find()] == ["old", "new"]
        assert set(store.responses(["r-ignored"])) == {"r-ignored"}

    def test_batch_sees_its_own_earlier_changes(self, store: Store) -> None:
        """A later change in a batch may build on a case an earlier change created."""
        case = make_case("c")
        second = Change(
            case=_next(case, T0, assignee="x"), expected_version=1,
            events=(Assigned(case_id="c", actor="a", at=T0, seq=2, assignee="x"),),
        )
        store.commit_many([opened_change(case), second])
        assert store.get("c").version == 2

    def test_responses_are_recorded_with_their_change(self, store: Store) -> None:
        """A response recorded by a change reads back; recording it again fails the change."""
        record = make_record("r-1", "c")
        store.commit(evolve(opened_change(make_case("c")), responses=(record,)))
        assert store.responses(["r-1", "r-unknown"]) == {"r-1": record}
        with pytest.raises(ConcurrentUpdate):
            store.commit(evolve(opened_change(make_case("d")), responses=(make_record("r-1", "d"),)))
        assert [case.id for case in store.find()] == ["c"]

    def test_record_responses_keeps_the_first(self, store: Store) -> None:
        """Recording responses that opened nothing is idempotent: the first record stays."""
        first = make_record("r-1", score=2)
        store.record_responses([first, make_record("r-2")])
        store.record_responses([make_record("r-1", score=9)])
        assert store.responses(["r-1"]) == {"r-1": first}
        assert set(store.responses(["r-1", "r-2"])) == {"r-1", "r-2"}

    def test_commit_refuses_an_ignored_response_already_recorded(self, store: Store) -> None:
        """commit_many's ignored records are strict: a known (or repeated) id fails the whole batch."""
        first = make_record("r-1", score=2)
        store.commit_many([], [first])
        with pytest.raises(ConcurrentUpdate) as known:
            store.commit_many([opened_change(make_case("c"))], [make_record("r-2"),
                                                               make_record("r-1", score=9)])
        assert known.value.response_id == "r-1"
        with pytest.raises(ConcurrentUpdate) as repeated:
            store.commit_many([], [make_record("r-3"), make_record("r-3", score=1)])
        assert repeated.value.response_id == "r-3"
        assert store.responses(["r-1", "r-2", "r-3"]) == {"r-1": first}
        assert store.find() == []

    def test_sole_active_case_guards_against_a_second_active_case(self, store: Store) -> None:
        """A new case marked sole_active_case fails while the customer has a case not Closed."""
        store.commit(opened_change(make_case("first")))
        second = evolve(opened_change(make_case("second")), sole_active_case=True)
        with pytest.raises(ConcurrentUpdate):
            store.commit(second)
        closed = _next(make_case("first"), T0, status=Status.CLOSED, closed_at=T0)
        store.commit(Change(case=closed, expected_version=1, events=(
            StatusChanged(case_id="first", actor="a", at=T0, seq=2,
                          from_status=Status.OPEN, to_status=Status.CLOSED),)))
        store.commit(second)
        other = evolve(opened_change(make_case("third", customer_id="cust-2")), sole_active_case=True)
        store.commit(other)
        assert len(store.find()) == 3

    def test_rotation_counts_round_per_key(self, store: Store) -> None:
        """next_in_rotation cycles 0..size-1 and each key keeps its own place."""
        assert [store.next_in_rotation("a", 3) for _ in range(7)] == [0, 1, 2, 0, 1, 2, 0]
        assert [store.next_in_rotation("b", 2) for _ in range(3)] == [0, 1, 0]

    def test_rotation_is_fair_across_threads(self, store: Store) -> None:
        """Threads taking turns at once get every position equally often."""
        taken: list[int] = []
        lock = threading.Lock()

        def take() -> None:
            for _ in range(30):
                position = store.next_in_rotation("team", 4)
                with lock:
                    taken.append(position)

        threads = [threading.Thread(target=take) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert sorted(taken.count(p) for p in range(4)) == [30, 30, 30, 30]

    def test_consuming_a_link_commits_once(self, store: Store) -> None:
        """A link consumed by a change is used; a second change consuming it writes nothing."""
        case = make_case()
        store.commit(opened_change(case))
        assert not store.link_used("link-1")

        def closing(version: int) -> Change:
            later = _next(make_case(version=version), T0, status=Status.CLOSED, closed_at=T0)
            return Change(
                case=later, expected_version=version, consume_link="link-1",
                events=(StatusChanged(case_id=case.id, actor="alice", at=T0, seq=version + 1,
                                      via="one-touch", from_status=Status.OPEN,
                                      to_status=Status.CLOSED),),
            )

        store.commit(closing(1))
        assert store.link_used("link-1")
        with pytest.raises(TokenUsed):
            store.commit(closing(2))
        assert store.get(case.id).version == 2

    def test_latest_cases_per_customer(self, store: Store) -> None:
        """latest_cases gives each customer's most recently created case, whatever its status."""
        for case_id, customer in [("a1", "A"), ("b1", "B"), ("a2", "A")]:
            store.commit(opened_change(make_case(case_id, customer_id=customer)))
        latest = store.latest_cases(["A", "B", "C", "A"])
        assert {customer: case.id for customer, case in latest.items()} == {"A": "a2", "B": "b1"}
        assert store.latest_cases([]) == {}

    def test_escalation_candidates(self, store: Store) -> None:
        """Overdue or untouched cases that are not Closed and not escalated lately qualify."""
        day = timedelta(days=1)
        specs: list[tuple[str, dict[str, Any]]] = [
            ("overdue", {"due_at": T0 + day}),
            ("not-due-yet", {"due_at": T0 + 5 * day, "updated_at": T0 + 2 * day}),
            ("untouched", {}),
            ("closed-overdue", {"due_at": T0, "status": Status.CLOSED, "closed_at": T0}),
            ("escalated-lately", {"due_at": T0}),
            ("escalated-long-ago", {"due_at": T0}),
        ]
        for case_id, fields in specs:
            store.commit(opened_change(make_case(case_id, **fields)))
        for case_id, at in [("escalated-lately", T0 + 2 * day), ("escalated-long-ago", T0)]:
            store.commit(Change(
                case=_next(store.get(case_id), at), expected_version=1,
                events=(Escalated(case_id=case_id, actor="closeloop", at=at, seq=2),),
            ))
        now = T0 + 3 * day
        found = store.escalation_candidates(
            now=now, untouched_before=None, quiet_since=now - day, limit=10
        )
        assert [case.id for case in found] == ["overdue", "escalated-long-ago"]
        found = store.escalation_candidates(
            now=now, untouched_before=T0, quiet_since=now - day, limit=10
        )
        assert [case.id for case in found] == ["overdue", "untouched", "escalated-long-ago"]
        assert len(store.escalation_candidates(
            now=now, untouched_before=T0, quiet_since=now - day, limit=1)) == 1

    def test_report_counts_and_durations(self, store: Store) -> None:
        """report() counts per status and times first action and close from the events."""
        hour = timedelta(hours=1)
        store.commit(opened_change(make_case("waiting", assignee="alice", due_at=T0 + hour)))
        done = make_case("done", customer_id="cust-2", reasons=("detractor",))
        store.commit(opened_change(done))
        store.commit(Change(
            case=_next(done, T0 + 2 * hour, status=Status.CLOSED, closed_at=T0 + 2 * hour),
            expected_version=1,
            events=(StatusChanged(case_id="done", actor="alice", at=T0 + 2 * hour, seq=2,
                                  comment="Sorted", from_status=Status.OPEN,
                                  to_status=Status.CLOSED),),
        ))
        report = store.report(ReportQuery(now=T0 + 3 * hour))
        assert report.status_counts == {Status.OPEN: 1, Status.PROGRESS: 0, Status.CLOSED: 1}
        assert (report.unassigned, report.overdue, report.closed_within_sla) == (1, 1, None)
        assert report.by_reason == {
            "detractor": {Status.OPEN: 0, Status.PROGRESS: 0, Status.CLOSED: 1}
        }
        took = Durations(count=1, mean=2 * hour, median=2 * hour, p90=2 * hour)
        assert report.time_to_close == report.time_to_first_action == took
        assert store.report(ReportQuery(now=T0, assignee="alice")).total == 1

    def test_report_recovery_from_recorded_responses(self, store: Store) -> None:
        """A detractor whose case closed and who answered 9 afterwards has recovered."""
        hour = timedelta(hours=1)
        case = make_case(response_ids=("r-1",))
        store.commit(Change(case=case, expected_version=None,
                            events=opened_change(case).events,
                            responses=(make_record("r-1", case.id, score=3),)))
        store.commit(Change(
            case=_next(case, T0 + hour, status=Status.CLOSED, closed_at=T0 + hour),
            expected_version=1,
            events=(StatusChanged(case_id=case.id, actor="alice", at=T0 + hour, seq=2,
                                  comment="Sorted", from_status=Status.OPEN,
                                  to_status=Status.CLOSED),),
        ))
        later = T0 + 2 * hour
        store.record_responses([make_record("r-2", score=9, submitted_at=later,
                                            received_at=later)])
        assert store.report(ReportQuery(now=later)).recovery == Recovery(
            customers=1, detractors=1, recovered=1, rate=1.0,
            mean_score_before=3.0, mean_score_after=9.0,
        )
