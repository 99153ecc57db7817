"""A team's workflow: its configuration, the state machine generated from it, its checks."""

from __future__ import annotations

import tomllib
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from statemachine.exceptions import TransitionNotAllowed as MachineRefused

from closeloop import CommentPolicy, CommentRequired, InvalidInput, Status, TransitionNotAllowed
from closeloop.workflow import DEFAULT_WORKFLOW, KINDS, TRANSITIONS, Workflow, WorkflowStatus
from workflow_apps import EXAMPLE  # tests/ is on sys.path


class _Holder:
    """A plain object for a generated machine to keep its state on."""

    def __init__(self, status: str) -> None:
        self.status = status


def run_machine(workflow: Workflow, source: str, event: str) -> str | None:
    """Where sending ``event`` to the workflow's machine in ``source`` lands, or None if refused."""
    holder = _Holder(source)
    machine = workflow.machine(model=holder, state_field="status")
    try:
        machine.send(event)
    except MachineRefused:
        return None
    return holder.status


class TestExample:
    """The issue's example workflow."""

    def test_loads_as_written(self) -> None:
        """The example loads; its statuses, labels, pauses and reasons are as configured."""
        workflow = Workflow.from_dict(EXAMPLE)
        assert [s.name for s in workflow.statuses] == ["open", "progress", "waiting", "closed"]
        assert workflow.status("waiting").label == "Waiting on customer"
        assert workflow.status("progress").label == "Progress"
        assert workflow.pausing == {"waiting"}
        assert workflow.close_reasons == ("solved", "no-response")
        assert workflow.initial == "open"
        assert workflow.comment_policy == CommentPolicy()

    def test_derived_table_and_kinds(self) -> None:
        """The table read from the machine is the configured moves; kinds follow the categories."""
        workflow = Workflow.from_dict(EXAMPLE)
        assert set(workflow.transitions_table) == {
            (source, target) for source, targets in EXAMPLE["transitions"].items() for target in targets
        }
        assert workflow.kind("open", "waiting") == "start"
        assert workflow.kind("progress", "waiting") == "move"
        assert workflow.kind("waiting", "closed") == "close"
        assert workflow.kind("closed", "open") == "reopen"
        assert workflow.kind("waiting", "open") is None
        assert [s.name for s in workflow.allowed("progress")] == ["open", "waiting", "closed"]

    def test_a_category_means_its_first_status(self) -> None:
        """A category (Status.PROGRESS, "Progress") means its first status; a name means itself."""
        workflow = Workflow.from_dict(EXAMPLE)
        assert workflow.resolve(Status.PROGRESS).name == "progress"
        assert workflow.resolve("Progress").name == "progress"
        assert workflow.resolve("waiting").name == "waiting"
        with pytest.raises(InvalidInput, match="unknown status") as raised:
            workflow.resolve("wating")
        assert raised.value.field == "status"

    def test_from_toml(self) -> None:
        """A [workflow] TOML table loads with the same result as the dict."""
        text = """
        [workflow]
        close_reasons = ["solved", "no-response"]
        statuses = [
            { name = "open", category = "open" },
            { name = "progress", category = "progress" },
            { name = "waiting", label = "Waiting on customer", category = "progress", pauses_sla = true },
            { name = "closed", category = "closed" },
        ]
        [workflow.transitions]
        open = ["progress", "waiting", "closed"]
        progress = ["open", "waiting", "closed"]
        waiting = ["progress", "closed"]
        closed = ["open"]
        """
        assert Workflow.from_dict(tomllib.loads(text)) == Workflow.from_dict(EXAMPLE)


class TestStandardWorkflow:
    """The default workflow is exactly the standard one."""

    def test_same_moves_and_kinds_as_case_workflow(self) -> None:
        """Its moves are TRANSITIONS' and each kind is the CaseWorkflow event's name."""
        assert {
            (Status(source), Status(target)): DEFAULT_WORKFLOW.kind(source, target)
            for source, target in DEFAULT_WORKFLOW.transitions_table
        } == dict(TRANSITIONS)
        assert Workflow.standard() is DEFAULT_WORKFLOW

    def test_the_comment_policy_knows_every_kind(self) -> None:
        """A CommentPolicy accepts every kind, including "move" for changes within a category."""
        assert CommentPolicy.for_events(KINDS).required_for == frozenset(KINDS)


class TestChecks:
    """Workflow.check: transitions, close reasons, comments."""

    workflow = Workflow.from_dict(EXAMPLE)

    def check(self, source: str, target: str, comment: str | None = "why",
              close_reason: str | None = None) -> str:
        """Run the check for case c-1."""
        return self.workflow.check("c-1", source, self.workflow.status(target), comment=comment,
                                   close_reason=close_reason)

    def test_closing_needs_a_configured_reason(self) -> None:
        """Into Closed without a reason, or with an unknown one, is InvalidInput naming close_reason."""
        with pytest.raises(InvalidInput, match="needs a close reason") as raised:
            self.check("waiting", "closed")
        assert raised.value.field == "close_reason"
        with pytest.raises(InvalidInput, match="unknown close reason") as raised:
            self.check("waiting", "closed", close_reason="fixed")
        assert raised.value.field == "close_reason"
        assert self.check("waiting", "closed", close_reason="no-response") == "close"

    def test_a_reason_only_when_closing(self) -> None:
        """A close reason on a change that does not close is refused."""
        with pytest.raises(InvalidInput, match="only a change into a Closed status") as raised:
            self.check("open", "waiting", close_reason="solved")
        assert raised.value.field == "close_reason"

    def test_no_reasons_configured_refuses_one(self) -> None:
        """The standard workflow has no close reasons: giving one is InvalidInput."""
        with pytest.raises(InvalidInput, match="has no close reasons"):
            DEFAULT_WORKFLOW.check("c", "open", DEFAULT_WORKFLOW.status("closed"), comment="x",
                                   close_reason="solved")

    def test_refusals_name_labels(self) -> None:
        """A forbidden move names both statuses by label; from/to are their names."""
        with pytest.raises(TransitionNotAllowed, match="from Waiting on customer to Open") as raised:
            self.check("waiting", "open")
        assert (raised.value.from_status, raised.value.to_status) == ("waiting", Status.OPEN)
        with pytest.raises(TransitionNotAllowed, match="already Waiting on customer"):
            self.check("waiting", "waiting")

    def test_default_comment_policy_and_comment_required_status(self) -> None:
        """Closing needs a comment by default; a comment_required status needs one to enter."""
        with pytest.raises(CommentRequired) as raised:
            self.check("open", "closed", comment=" ", close_reason="solved")
        assert raised.value.what == "close"
        assert self.check("open", "waiting", comment=None) == "start"
        strict = Workflow(
            [WorkflowStatus("open", Status.OPEN),
             WorkflowStatus("waiting", "progress", comment_required=True),
             WorkflowStatus("closed", Status.CLOSED)],
            {"open": ["waiting", "closed"], "waiting": ["closed"]},
            comment_policy=CommentPolicy.none(),
        )
        with pytest.raises(CommentRequired):
            strict.check("c", "open", strict.status("waiting"), comment=None)
        assert strict.check("c", "open", strict.status("closed"), comment=None) == "close"


def _with(change: dict[str, Any]) -> dict[str, Any]:
    config = {**EXAMPLE, "statuses": [dict(s) for s in EXAMPLE["statuses"]],
              "transitions": {k: list(v) for k, v in EXAMPLE["transitions"].items()}}
    for key, value in change.items():
        config[key] = value
    return config


class TestBadConfig:
    """A bad configuration names the path to its mistake."""

    @pytest.mark.parametrize(("config", "field", "words"), [
        (_with({"statuses": [*EXAMPLE["statuses"][:2], {"name": "waiting", "category": "paused"},
                             EXAMPLE["statuses"][3]]}), "statuses[2].category", "unknown category"),
        (_with({"statuses": [*EXAMPLE["statuses"], {"name": "archived", "category": "closed"}]}),
         "statuses[4]", "cannot be reached"),
        (_with({"transitions": {**EXAMPLE["transitions"], "waiting": ["progress"],
                                "progress": ["waiting"], "open": ["progress", "closed"]}}),
         "transitions.progress", "no way from 'progress' to a Closed status"),
        (_with({"transitions": {**EXAMPLE["transitions"], "open": ["progress", "wating"]}}),
         "transitions.open[1]", "did you mean 'waiting'"),
        (_with({"transitions": {**EXAMPLE["transitions"], "opne": ["closed"]}}),
         "transitions.opne", "unknown status"),
        (_with({"transitions": {**EXAMPLE["transitions"], "open": ["open"]}}),
         "transitions.open[0]", "cannot move to itself"),
        (_with({"statuses": [*EXAMPLE["statuses"], {"name": "open", "category": "open"}]}),
         "statuses[4].name", "duplicate status"),
        (_with({"statuses": [{"name": "open", "category": "progress"}, *EXAMPLE["statuses"][1:]]}),
         "statuses[0].category", "must be in the category 'open'"),
        (_with({"statuses": [*EXAMPLE["statuses"][:3], {"name": "closed", "category": "closed",
                                                        "pauses_sla": True}]}),
         "statuses[3].pauses_sla", "no SLA to pause"),
        (_with({"statuses": [*EXAMPLE["statuses"][:2], {"name": "waiting", "category": "progress",
                                                        "colour": "red"}, EXAMPLE["statuses"][3]]}),
         "statuses[2].colour", "unknown key"),
        (_with({"statuses": [*EXAMPLE["statuses"][:2], {"name": "Waiting", "category": "progress"},
                             EXAMPLE["statuses"][3]]}), "statuses[2].name", "lower-case"),
        (_with({"statuses": EXAMPLE["statuses"][:3]}), "statuses", "category 'closed'"),
        (_with({"initial": "waiting"}), "initial", "must be in the category 'open'"),
        (_with({"close_reasons": ["solved", "solved"]}), "close_reasons[1]", "duplicate reason"),
        (_with({"comment_required_for": ["clsoe"]}), "comment_required_for", "unknown"),
        (_with({"transition": {}}), "transition", "unknown key"),
    ])
    def test_path_named(self, config: dict[str, Any], field: str, words: str) -> None:
        """Each mistake raises InvalidInput whose field is the path to it."""
        with pytest.raises(InvalidInput, match=words) as raised:
            Workflow.from_dict(config)
        assert raised.value.field == field


@st.composite
def workflows(draw: st.DrawFn) -> tuple[list[dict[str, Any]], dict[str, list[str]]]:
    """A random valid workflow: every status reachable, every non-closed one able to close."""
    count = draw(st.integers(2, 7))
    names = draw(st.lists(st.from_regex(r"[a-z][a-z0-9_-]{0,8}", fullmatch=True), min_size=count,
                          max_size=count, unique=True).filter(
        lambda found: not {"open", "progress", "closed"} & set(found)))
    categories = [Status.OPEN, *draw(st.lists(st.sampled_from(list(Status)), min_size=count - 2,
                                             max_size=count - 2)), Status.CLOSED]
    labels = st.text(min_size=1, max_size=12).filter(lambda t: bool(t.strip()) and "\n" not in t)
    statuses = [{"name": n, "category": c.value, "label": draw(labels),
                 "pauses_sla": c is not Status.CLOSED and draw(st.booleans())}
                for n, c in zip(names, categories, strict=True)]
    closed = [n for n, c in zip(names, categories, strict=True) if c is Status.CLOSED]
    edges: set[tuple[str, str]] = set()
    for index in range(1, count):  # reachable: an earlier status leads to each one
        edges.add((names[draw(st.integers(0, index - 1))], names[index]))
    for name, category in zip(names, categories, strict=True):  # closable
        if category is not Status.CLOSED:
            edges.add((name, draw(st.sampled_from(closed))))
    extra = draw(st.lists(st.tuples(st.sampled_from(names), st.sampled_from(names)), max_size=10))
    edges.update((a, b) for a, b in extra if a != b)
    order = draw(st.permutations(sorted(edges)))
    transitions: dict[str, list[str]] = {}
    for source, target in order:
        transitions.setdefault(source, []).append(target)
    return statuses, transitions


@settings(max_examples=150, deadline=None)
@given(config=workflows())
def test_generated_machine_agrees_with_its_derived_table(
    config: tuple[list[dict[str, Any]], dict[str, list[str]]],
) -> None:
    """For random valid workflows, every event sent in every state lands where the table says."""
    statuses, transitions = config
    workflow = Workflow.from_dict({"statuses": statuses, "transitions": transitions})
    table = workflow.transitions_table
    assert set(table) == {(s, t) for s, targets in transitions.items() for t in targets}
    events = {event.id for event in workflow.machine.events}
    for status in workflow.statuses:
        for event in events:
            expected = [t for (s, t), e in table.items() if s == status.name and e == event]
            assert run_machine(workflow, status.name, event) == (expected[0] if expected else None)
        allowed = [s.name for s in workflow.allowed(status.name)]
        assert allowed == transitions.get(status.name, [])
        for target in allowed:
            assert workflow.kind(status.name, target) is not None


def test_the_toml_example_in_the_docs_loads() -> None:
    """docs/workflow.md's TOML example builds the workflow and calendar it describes."""
    from pathlib import Path

    from closeloop.calendar import BusinessHours

    page = (Path(__file__).resolve().parent.parent / "docs" / "workflow.md").read_text()
    (example,) = [block.split("```", 1)[0] for block in page.split("```toml\n")[1:]]
    config = tomllib.loads(example)
    workflow = Workflow.from_dict(config["workflow"])
    assert workflow.close_reasons == ("solved", "no-response", "duplicate")
    assert workflow.pausing == {"waiting"}
    assert workflow.status("waiting").label == "Waiting on customer"
    hours = BusinessHours.from_dict(config["calendar"])
    assert hours.hours == "Mon-Fri 09:00-12:30, 13:00-17:30"
    assert hours == BusinessHours("Europe/Amsterdam", "Mon-Fri 09:00-12:30, 13:00-17:30",
                                  holidays=["2026-04-06", "2026-12-25"])
