"""The CloseLoop facade over every store: opening, assigning, working and reading cases."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from closeloop import (
    Assigned,
    CaseNotFound,
    CloseLoop,
    Commented,
    CommentPolicy,
    CommentRequired,
    ConcurrentUpdate,
    InvalidInput,
    NothingToChange,
    NotifierError,
    Opened,
    Status,
    StatusChanged,
    TransitionNotAllowed,
)
from closeloop.notify import MemoryNotifier, Message
from closeloop.storage import Store
from closeloop.testing import FixedClock


class TestOpenCase:
    """Opening a case by hand."""

    def test_opens_an_open_case_with_its_event(self, loop: CloseLoop, clock: FixedClock) -> None:
        """A manual case is Open, version 1, opened by the agent, with an "opened" event."""
        case = loop.open_case("c-7", by="agent-1", comment="Called in upset")
        assert (case.status, case.version, case.opened_by, case.customer_id) == (
            Status.OPEN, 1, "agent-1", "c-7",
        )
        assert case.opened_at == case.updated_at == clock()
        assert case.closed_at is None and case.assignee is None
        assert loop.get(case.id) == case
        assert loop.history(case.id) == [
            Opened(case_id=case.id, actor="agent-1", at=clock(), seq=1, comment="Called in upset")
        ]

    def test_each_case_gets_its_own_id(self, loop: CloseLoop) -> None:
        """Two cases for one customer are two cases with different ids."""
        first = loop.open_case("c-1", by="a")
        second = loop.open_case("c-1", by="a")
        assert first.id != second.id
        assert [c.id for c in loop.cases(customer_id="c-1")] == [first.id, second.id]


class TestAssign:
    """Assigning a case and the assignee's email."""

    def test_assign_records_event_and_notifies(
        self, loop: CloseLoop, outbox: MemoryNotifier, clock: FixedClock
    ) -> None:
        """The assignee is set, an "assigned" event names both people, and alice is told."""
        case = loop.open_case("c-42", by="agent-1", reasons=["detractor"])
        clock.advance(minutes=3)
        assigned = loop.assign(case.id, to="alice", by="bob", comment="yours")
        assert (assigned.assignee, assigned.version, assigned.updated_at) == ("alice", 2, clock())
        event = loop.history(case.id)[-1]
        assert isinstance(event, Assigned)
        assert (event.assigner, event.actor, event.assignee, event.previous, event.comment) == (
            "bob", "bob", "alice", None, "yours",
        )
        (message,) = outbox.sent
        assert (message.to, message.case_id, message.kind) == ("alice", case.id, "assigned")
        assert message.subject == "c-42 · Normal priority · assigned to you by bob"
        for text in (message.text, message.html):
            assert case.id in text and "c-42" in text
        assert "bob" in message.text and "detractor" in message.text
        assert loop.store.pending_notices() == []

    def test_assigners_comment_is_in_the_email(
        self, loop: CloseLoop, outbox: MemoryNotifier
    ) -> None:
        """The comment given to assign travels as the assigner's note, in text and (escaped) HTML."""
        case = loop.open_case("c-1", by="a")
        loop.assign(case.id, to="alice", by="bob", comment="Call <before> noon")
        assert ("Note from bob, who assigned the case (not from the customer):\n"
                "> Call <before> noon\n") in outbox.sent[0].text
        assert "Call &lt;before&gt; noon" in outbox.sent[0].html

    def test_reassign_keeps_previous(self, loop: CloseLoop, outbox: MemoryNotifier) -> None:
        """Reassigning records who held the case before, and emails the new assignee."""
        case = loop.open_case("c-1", by="a")
        loop.assign(case.id, to="alice", by="bob")
        loop.assign(case.id, to="carol", by="bob")
        event = loop.history(case.id)[-1]
        assert isinstance(event, Assigned) and event.previous == "alice"
        assert [m.to for m in outbox.sent] == ["alice", "carol"]
        assert loop.cases(assignee="alice") == []

    def test_assign_to_current_assignee_is_refused(
        self, loop: CloseLoop, outbox: MemoryNotifier
    ) -> None:
        """Assigning to whoever already holds the case raises and records nothing."""
        case = loop.open_case("c-1", by="a")
        loop.assign(case.id, to="alice", by="bob")
        with pytest.raises(NothingToChange, match="already assigned"):
            loop.assign(case.id, to="alice", by="bob")
        assert len(loop.history(case.id)) == 2 and len(outbox.sent) == 1

    def test_html_of_notice_is_escaped(self, loop: CloseLoop, outbox: MemoryNotifier) -> None:
        """Markup in case fields reaches the email's HTML as text, never as tags."""
        case = loop.open_case("<script>alert(1)</script>", by="a")
        loop.assign(case.id, to="alice", by="<b>bob</b>")
        html = outbox.sent[0].html
        assert "<script>" not in html and "&lt;script&gt;" in html
        assert "<b>bob" not in html

    def test_case_url_is_the_link_without_one_touch(self, store: Store) -> None:
        """With case_url set, the assignment email links to the app's case page."""
        outbox = MemoryNotifier()
        loop = CloseLoop(store=store, notifier=outbox, case_url="https://crm.test/cases/{case_id}")
        case = loop.open_case("c-1", by="a")
        loop.assign(case.id, to="alice", by="bob")
        assert f"https://crm.test/cases/{case.id}" in outbox.sent[0].text
        assert "Comment" not in outbox.sent[0].text
        assert f'href="https://crm.test/cases/{case.id}"' in outbox.sent[0].html
        assert "Open the case" in outbox.sent[0].html and ">Change<" not in outbox.sent[0].html


class TestNotifierFailure:
    """A failing notifier never loses the case change."""

    def test_failed_delivery_keeps_change_and_notice(
        self, loop: CloseLoop, outbox: MemoryNotifier
    ) -> None:
        """The assignment stands, the notice waits, and deliver_pending sends it later."""
        case = loop.open_case("c-1", by="a")
        outbox.fail = True
        loop.assign(case.id, to="alice", by="bob")
        assert loop.get(case.id).assignee == "alice"
        (pending,) = loop.store.pending_notices()
        assert pending.attempts == 1 and "fail" in (pending.last_error or "")
        outbox.fail = False
        report = loop.deliver_pending()
        assert (report.sent, report.failed) == (1, 0)
        assert [m.to for m in outbox.sent] == ["alice"]
        assert loop.store.pending_notices() == []
        assert loop.deliver_pending().sent == 0

    def test_deliver_pending_counts_failures(
        self, loop: CloseLoop, outbox: MemoryNotifier
    ) -> None:
        """While the notifier keeps failing, deliver_pending reports failures and keeps notices."""
        case = loop.open_case("c-1", by="a")
        outbox.fail = True
        loop.assign(case.id, to="alice", by="bob")
        report = loop.deliver_pending()
        assert (report.sent, report.failed) == (0, 1)
        assert loop.store.pending_notices()[0].attempts == 2

    def test_repeated_failures_back_off(
        self, loop: CloseLoop, outbox: MemoryNotifier, clock: FixedClock
    ) -> None:
        """After the first retry a failing notice waits 1, 2, 4 … minutes before the next try."""
        case = loop.open_case("c-1", by="a")
        outbox.fail = True
        loop.assign(case.id, to="alice", by="bob")  # attempt 1 fails
        assert loop.deliver_pending().failed == 1  # retried at once: attempt 2 fails
        assert loop.deliver_pending().failed == 0  # not due for a minute
        clock.advance(minutes=1)
        assert loop.deliver_pending().failed == 1  # attempt 3 fails: next in 2 minutes
        clock.advance(minutes=1)
        assert loop.deliver_pending().failed == 0
        outbox.fail = False
        clock.advance(minutes=1)
        assert loop.deliver_pending().sent == 1

    def test_undeliverable_notices_do_not_starve_new_ones(
        self, store: Store, clock: FixedClock
    ) -> None:
        """Old notices that always fail back off, so a new notice still gets delivered."""

        class NoAddressFor(MemoryNotifier):
            def send(self, message: Message) -> None:
                if message.to == "ghost":
                    raise NotifierError("no address for ghost")
                super().send(message)

        outbox = NoAddressFor()
        loop = CloseLoop(store=store, notifier=outbox, clock=clock)
        for index in range(12):
            loop.assign(loop.open_case(f"c-{index}", by="a").id, to="ghost", by="bob")
        loop.deliver_pending(limit=12)  # each ghost notice fails a second time: backs off
        outbox.fail = True
        fresh = loop.open_case("c-new", by="a")
        loop.assign(fresh.id, to="alice", by="bob")  # fails once while the mail is down
        outbox.fail = False
        assert loop.deliver_pending(limit=5).sent == 1
        assert [m.to for m in outbox.sent] == ["alice"]

    def test_notice_of_a_crashed_process_is_retried_after_its_lease(
        self, store: Store, clock: FixedClock
    ) -> None:
        """A notice whose deliverer died is picked up once the delivery lease runs out."""
        outbox = MemoryNotifier()

        class Dies(MemoryNotifier):
            def send(self, message: object) -> None:
                raise KeyboardInterrupt  # stands in for the process dying mid-send

        dying = CloseLoop(store=store, notifier=Dies(), clock=clock)
        case = dying.open_case("c-1", by="a")
        with pytest.raises(KeyboardInterrupt):
            dying.assign(case.id, to="alice", by="bob")
        survivor = CloseLoop(store=store, notifier=outbox, clock=clock)
        assert survivor.deliver_pending().sent == 0  # still leased to the dead process
        clock.advance(survivor.delivery_lease)
        assert survivor.deliver_pending().sent == 1
        assert [m.to for m in outbox.sent] == ["alice"]


class TestSetStatus:
    """Working a case through the workflow."""

    def test_full_loop_open_progress_closed(self, loop: CloseLoop, clock: FixedClock) -> None:
        """Open → Progress → Closed records each change with from/to, actor and comment."""
        case = loop.open_case("c-1", by="a")
        clock.advance(hours=1)
        loop.set_status(case.id, Status.PROGRESS, by="alice", comment="Called the customer")
        clock.advance(hours=1)
        closed = loop.set_status(case.id, "closed", by="alice", comment="Refund issued")
        assert closed.status is Status.CLOSED and closed.closed_at == clock()
        changes = [e for e in loop.history(case.id) if isinstance(e, StatusChanged)]
        assert [(e.from_status, e.to_status, e.actor, e.comment) for e in changes] == [
            (Status.OPEN, Status.PROGRESS, "alice", "Called the customer"),
            (Status.PROGRESS, Status.CLOSED, "alice", "Refund issued"),
        ]

    def test_reopen_clears_closed_at(self, loop: CloseLoop) -> None:
        """closed_at is set on close and cleared when the case is reopened."""
        case = loop.open_case("c-1", by="a")
        loop.set_status(case.id, Status.CLOSED, by="a", comment="done")
        reopened = loop.set_status(case.id, Status.OPEN, by="a", comment="not done")
        assert reopened.closed_at is None and loop.get(case.id).closed_at is None

    def test_forbidden_transition_writes_nothing(self, loop: CloseLoop) -> None:
        """Closed → Progress is refused with from, to and case id, and nothing is written."""
        case = loop.open_case("c-1", by="a")
        closed = loop.set_status(case.id, Status.CLOSED, by="a", comment="done")
        with pytest.raises(TransitionNotAllowed) as raised:
            loop.set_status(case.id, Status.PROGRESS, by="a", comment="x")
        assert (raised.value.from_status, raised.value.to_status) == (Status.CLOSED, Status.PROGRESS)
        assert loop.get(case.id) == closed and len(loop.history(case.id)) == 2

    def test_close_without_comment_is_refused(self, loop: CloseLoop) -> None:
        """Closing without a comment raises CommentRequired and the case stays as it was."""
        case = loop.open_case("c-1", by="a")
        with pytest.raises(CommentRequired):
            loop.set_status(case.id, Status.CLOSED, by="a")
        assert loop.get(case.id) == case

    def test_comment_policy_is_configurable(self, store: Store) -> None:
        """With CommentPolicy.none(), closing needs no comment."""
        loop = CloseLoop(store=store, comment_policy=CommentPolicy.none())
        case = loop.open_case("c-1", by="a")
        assert loop.set_status(case.id, Status.CLOSED, by="a").status is Status.CLOSED

    def test_stale_expected_version_is_a_concurrent_update(self, loop: CloseLoop) -> None:
        """A change based on a version someone else has moved past raises ConcurrentUpdate."""
        case = loop.open_case("c-1", by="a")
        loop.comment(case.id, "first", by="b")
        with pytest.raises(ConcurrentUpdate) as raised:
            loop.set_status(case.id, Status.PROGRESS, by="a", expected_version=1)
        assert (raised.value.expected, raised.value.actual) == (1, 2)
        assert loop.get(case.id).status is Status.OPEN


class TestCommentAndReading:
    """Comments, home pages and history."""

    def test_comment_is_recorded_and_not_emailed(
        self, loop: CloseLoop, outbox: MemoryNotifier
    ) -> None:
        """A comment adds a "commented" event, bumps the version and sends nothing."""
        case = loop.open_case("c-1", by="a")
        loop.assign(case.id, to="alice", by="b")
        updated = loop.comment(case.id, "Answered their question", by="alice")
        assert updated.version == 3
        event = loop.history(case.id)[-1]
        assert isinstance(event, Commented) and event.comment == "Answered their question"
        assert len(outbox.sent) == 1

    def test_home_page_lists_the_assignees_cases(self, loop: CloseLoop) -> None:
        """cases(assignee=…) is the assignee's home page, filterable by status."""
        mine = [loop.open_case(f"c-{i}", by="a") for i in range(3)]
        loop.open_case("c-other", by="a")
        for case in mine:
            loop.assign(case.id, to="alice", by="bob")
        loop.set_status(mine[1].id, Status.PROGRESS, by="alice")
        assert [c.id for c in loop.cases(assignee="alice")] == [c.id for c in mine]
        assert [c.id for c in loop.cases(assignee="alice", status="progress")] == [mine[1].id]
        assert [c.id for c in loop.cases(assignee="alice", status=Status.OPEN, limit=1)] == [
            mine[0].id
        ]

    def test_unknown_case_is_case_not_found(self, loop: CloseLoop) -> None:
        """Every call on an unknown case id raises CaseNotFound naming it."""
        for call in (
            lambda: loop.get("missing"),
            lambda: loop.history("missing"),
            lambda: loop.assign("missing", to="a", by="b"),
            lambda: loop.set_status("missing", Status.CLOSED, by="a", comment="x"),
            lambda: loop.comment("missing", "x", by="a"),
        ):
            with pytest.raises(CaseNotFound, match="missing"):
                call()


class TestConfiguration:
    """Wiring mistakes are caught when the loop is built or first used."""

    def test_naive_clock_is_refused(self) -> None:
        """A clock returning naive datetimes gets InvalidInput naming the clock."""
        loop = CloseLoop(clock=lambda: datetime(2026, 1, 1))
        with pytest.raises(InvalidInput, match="clock"):
            loop.open_case("c-1", by="a")

    @pytest.mark.parametrize(
        ("kwargs", "field"),
        [
            ({"store": object()}, "store"),
            ({"notifier": object()}, "notifier"),
            ({"clock": "now"}, "clock"),
            ({"case_url": "https://crm.test/cases/"}, "case_url"),
            ({"case_url": "https://crm.test/cases/{case_id}?tab={tab}"}, "case_url"),
            ({"case_url": 42}, "case_url"),
            ({"delivery_lease": timedelta(0)}, "delivery_lease"),
            ({"comment_policy": {"close"}}, "comment_policy"),
            ({"id_factory": "uuid"}, "id_factory"),
        ],
    )
    def test_bad_wiring_is_invalid_input(self, kwargs: dict[str, object], field: str) -> None:
        """Each wrong constructor argument is refused, naming the argument."""
        with pytest.raises(InvalidInput) as raised:
            CloseLoop(**kwargs)  # type: ignore[arg-type]
        assert raised.value.field == field

    def test_default_store_and_clock_work(self) -> None:
        """CloseLoop() alone works: memory store, log notifier, real UTC clock."""
        loop = CloseLoop()
        before = datetime.now(UTC)
        case = loop.open_case("c-1", by="a")
        assert before <= case.opened_at <= before + timedelta(minutes=1)
