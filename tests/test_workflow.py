"""The Case workflow: the statemachine class, the table derived from it, the comment policy."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from statemachine.exceptions import TransitionNotAllowed as MachineRefused

from closeloop import CommentPolicy, CommentRequired, InvalidInput, Status, TransitionNotAllowed
from closeloop.workflow import TRANSITIONS, CaseWorkflow, allowed_targets, check_transition


class _Holder:
    """A plain object for the state machine to keep its state on."""

    def __init__(self, status: Status) -> None:
        self.status = status.value


def _run_machine(source: Status, event: str) -> Status | None:
    holder = _Holder(source)
    machine = CaseWorkflow(model=holder, state_field="status")
    try:
        machine.send(event)
    except MachineRefused:
        return None
    return Status(holder.status)


class TestTransitions:
    """The derived table agrees with the state machine it comes from."""

    def test_table_is_the_documented_workflow(self) -> None:
        """Exactly Open→Progress, Open→Closed, Progress→Closed, Progress→Open, Closed→Open."""
        assert set(TRANSITIONS) == {
            (Status.OPEN, Status.PROGRESS),
            (Status.OPEN, Status.CLOSED),
            (Status.PROGRESS, Status.CLOSED),
            (Status.PROGRESS, Status.OPEN),
            (Status.CLOSED, Status.OPEN),
        }

    @pytest.mark.parametrize("source", list(Status))
    @pytest.mark.parametrize("event", sorted(set(TRANSITIONS.values())))
    def test_table_matches_running_the_machine(self, source: Status, event: str) -> None:
        """Sending each event from each state lands where the table says (or is refused)."""
        expected = [to for (frm, to), name in TRANSITIONS.items() if frm is source and name == event]
        assert _run_machine(source, event) == (expected[0] if expected else None)

    def test_allowed_targets(self) -> None:
        """allowed_targets lists where each status may go."""
        assert set(allowed_targets(Status.OPEN)) == {Status.PROGRESS, Status.CLOSED}
        assert allowed_targets(Status.CLOSED) == (Status.OPEN,)

    @pytest.mark.parametrize("status", list(Status))
    def test_same_status_is_refused(self, status: Status) -> None:
        """Moving a case to the status it already has is refused, not recorded."""
        with pytest.raises(TransitionNotAllowed, match="already"):
            check_transition("c-1", status, status, "why", CommentPolicy.none())

    def test_refusal_names_case_and_statuses(self) -> None:
        """A forbidden move names the case id and both statuses."""
        with pytest.raises(TransitionNotAllowed) as raised:
            check_transition("c-9", Status.CLOSED, Status.PROGRESS, "x", CommentPolicy())
        error = raised.value
        assert (error.case_id, error.from_status, error.to_status) == (
            "c-9", Status.CLOSED, Status.PROGRESS,
        )
        assert "c-9" in str(error) and "Closed" in str(error) and "Progress" in str(error)


class TestCommentPolicy:
    """Which changes need a comment."""

    @pytest.mark.parametrize(
        ("source", "target"),
        [(Status.PROGRESS, Status.CLOSED), (Status.OPEN, Status.CLOSED), (Status.CLOSED, Status.OPEN)],
    )
    @pytest.mark.parametrize("comment", [None, "", "   \n"])
    def test_default_needs_comment_to_close_and_reopen(
        self, source: Status, target: Status, comment: str | None
    ) -> None:
        """By default closing and reopening without a real comment raise CommentRequired."""
        with pytest.raises(CommentRequired):
            check_transition("c-1", source, target, comment, CommentPolicy())

    def test_default_lets_work_start_without_comment(self) -> None:
        """Starting or pausing work needs no comment by default."""
        assert check_transition("c", Status.OPEN, Status.PROGRESS, None, CommentPolicy()) == "start"
        assert check_transition("c", Status.PROGRESS, Status.OPEN, None, CommentPolicy()) == "pause"

    def test_custom_policy(self) -> None:
        """A policy can ask for a comment on any workflow event, or on none."""
        policy = CommentPolicy.for_events({"start"})
        with pytest.raises(CommentRequired):
            check_transition("c", Status.OPEN, Status.PROGRESS, None, policy)
        assert check_transition("c", Status.OPEN, Status.CLOSED, None, CommentPolicy.none())

    def test_policy_accepts_a_single_event_name(self) -> None:
        """for_events("close") means the close event, not the letters c, l, o, s, e."""
        assert CommentPolicy.for_events("close").required_for == frozenset({"close"})

    def test_unknown_event_in_policy_is_invalid_input(self) -> None:
        """A typo in a policy's event names is refused, naming the field and value."""
        with pytest.raises(InvalidInput, match=r"comment_policy\.required_for.*'clsoe'"):
            CommentPolicy.for_events({"clsoe"})


@given(
    source=st.sampled_from(list(Status)),
    target=st.sampled_from(list(Status)),
    comment=st.one_of(st.none(), st.text(max_size=5)),
)
def test_check_transition_agrees_with_table(
    source: Status, target: Status, comment: str | None
) -> None:
    """check_transition allows exactly the table's moves, asking comments per policy."""
    policy = CommentPolicy()
    name = TRANSITIONS.get((source, target))
    needs = name in policy.required_for and not (comment and comment.strip())
    if name is None:
        with pytest.raises(TransitionNotAllowed):
            check_transition("c", source, target, comment, policy)
    elif needs:
        with pytest.raises(CommentRequired):
            check_transition("c", source, target, comment, policy)
    else:
        assert check_transition("c", source, target, comment, policy) == name
