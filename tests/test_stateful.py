"""Random sequences of facade calls against every store, checked against a simple model."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import hypothesis.strategies as st
from attrs import define, field
from hypothesis import settings
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from closeloop import (
    Assigned,
    CloseLoop,
    CommentRequired,
    NothingToChange,
    Opened,
    Status,
    StatusChanged,
    TransitionNotAllowed,
)
from closeloop.notify import MemoryNotifier
from closeloop.storage import MemoryStore, SQLiteStore, Store
from closeloop.testing import FixedClock
from closeloop.workflow import TRANSITIONS

USERS = st.sampled_from(["alice", "bob", "carol"])
TEXT = st.text(st.characters(exclude_characters="\x00", exclude_categories=["Cs"]),
               min_size=1, max_size=20)
COMMENTS = st.one_of(TEXT, TEXT, st.none(), st.just("  "))


@define
class ModelCase:
    """What the model believes about one case."""

    status: Status = Status.OPEN
    assignee: str | None = None
    version: int = 1
    notices: int = 0
    kinds: list[str] = field(factory=lambda: ["opened"])


class LoopModel(RuleBasedStateMachine):
    """Drives open/assign/set_status/comment and compares with ModelCase."""

    cases = Bundle("cases")

    def make_store(self) -> Store:
        raise NotImplementedError

    @initialize()
    def start(self) -> None:
        self.clock = FixedClock()
        self.outbox = MemoryNotifier()
        self.store = self.make_store()
        self.loop = CloseLoop(store=self.store, notifier=self.outbox, clock=self.clock)
        self.model: dict[str, ModelCase] = {}

    def teardown(self) -> None:
        store = getattr(self, "store", None)
        if store is not None:
            store.close()

    @rule(target=cases, customer=st.sampled_from(["c-1", "c-2", "c-3"]), comment=COMMENTS)
    def open_case(self, customer: str, comment: str | None) -> str:
        case = self.loop.open_case(customer, by="agent", comment=comment)
        self.model[case.id] = ModelCase()
        return case.id

    @rule(case_id=cases, to=USERS)
    def assign(self, case_id: str, to: str) -> None:
        expected = self.model[case_id]
        if expected.assignee == to:
            try:
                self.loop.assign(case_id, to=to, by="manager")
            except NothingToChange:
                return
            raise AssertionError("assigning to the current assignee was accepted")
        case = self.loop.assign(case_id, to=to, by="manager")
        expected.assignee, expected.version = to, expected.version + 1
        expected.notices += 1
        expected.kinds.append("assigned")
        assert case.version == expected.version

    @rule(case_id=cases, target_status=st.sampled_from(list(Status)), comment=COMMENTS)
    def set_status(self, case_id: str, target_status: Status, comment: str | None) -> None:
        expected = self.model[case_id]
        event = TRANSITIONS.get((expected.status, target_status))
        needs_comment = event in ("close", "reopen") and not (comment and comment.strip())
        try:
            case = self.loop.set_status(case_id, target_status, by="agent", comment=comment)
        except TransitionNotAllowed:
            assert event is None
            return
        except CommentRequired:
            assert needs_comment
            return
        assert event is not None and not needs_comment
        expected.status, expected.version = target_status, expected.version + 1
        expected.kinds.append("status_changed")
        assert case.status is target_status

    @rule(case_id=cases, text=TEXT.filter(str.strip))
    def comment(self, case_id: str, text: str) -> None:
        self.loop.comment(case_id, text, by="agent")
        self.model[case_id].version += 1
        self.model[case_id].kinds.append("commented")

    @rule()
    def time_passes(self) -> None:
        self.clock.advance(minutes=7)

    @invariant()
    @precondition(lambda self: hasattr(self, "model"))
    def store_matches_model(self) -> None:
        for case_id, expected in self.model.items():
            case = self.loop.get(case_id)
            history = self.loop.history(case_id)
            assert (case.status, case.assignee, case.version) == (
                expected.status, expected.assignee, expected.version,
            )
            # No change without its event and no event without its change.
            assert [event.seq for event in history] == list(range(1, case.version + 1))
            assert [event.kind for event in history] == expected.kinds
            assert (case.closed_at is not None) == (case.status is Status.CLOSED)
            # The history replays to the current state.
            assert isinstance(history[0], Opened)
            status, assignee = Status.OPEN, None
            for event in history[1:]:
                if isinstance(event, StatusChanged):
                    assert event.from_status is status
                    status = event.to_status
                elif isinstance(event, Assigned):
                    assert event.previous == assignee
                    assignee = event.assignee
            assert (status, assignee) == (case.status, case.assignee)
            if case.closed_at is not None:
                assert case.closed_at == history_close_time(history)
            assert case.updated_at == history[-1].at
        assert len(self.outbox.sent) == sum(m.notices for m in self.model.values())


def history_close_time(history: list[object]) -> object:
    """When the last close happened, per the history."""
    closes = [e.at for e in history if isinstance(e, StatusChanged) and e.to_status is Status.CLOSED]
    return closes[-1]


class MemoryLoopModel(LoopModel):
    """The model test on MemoryStore."""

    def make_store(self) -> Store:
        return MemoryStore()


class SQLiteLoopModel(LoopModel):
    """The model test on SQLiteStore, a fresh file per example."""

    def make_store(self) -> Store:
        self.directory = tempfile.mkdtemp(prefix="closeloop-stateful-")
        return SQLiteStore(Path(self.directory) / "model.db", synchronous="OFF")

    def teardown(self) -> None:
        super().teardown()
        shutil.rmtree(getattr(self, "directory", ""), ignore_errors=True)


_settings = settings(max_examples=250, stateful_step_count=25, deadline=None)
TestMemoryLoop = MemoryLoopModel.TestCase
TestMemoryLoop.settings = _settings
TestMemoryLoop.__doc__ = "Random call sequences on MemoryStore keep every invariant."
TestSQLiteLoop = SQLiteLoopModel.TestCase
TestSQLiteLoop.settings = _settings
TestSQLiteLoop.__doc__ = "Random call sequences on SQLiteStore keep every invariant."
