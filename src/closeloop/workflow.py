"""Workflows: a team's statuses on the three standard categories, as python-statemachine machines.

Every case status belongs to one of three **categories**, :class:`~closeloop.Status`
Open, Progress and Closed. The standard workflow has one status per category.
A :class:`Workflow` lets a team add its own statuses on top ("waiting on
customer" in Progress, "won't fix" in Closed), with labels, the moves allowed
between them, which moves need a comment, which statuses pause the SLA clock,
and the reasons a case may be closed for.

python-statemachine stays the engine: a workflow generates a strict
:class:`~statemachine.StateMachine` class from its configuration
(:attr:`Workflow.machine`) and reads its transitions once into a table
(:attr:`Workflow.transitions_table`). Running a bound machine costs tens of
microseconds, so status changes are checked against that derived table, never a
second hand-written one.

Every change has a **kind**, named after what it means for the categories (see
:func:`change_kind`): ``start`` (Open → Progress), ``pause`` (Progress → Open),
``close`` (into Closed), ``reopen`` (out of Closed) and ``move`` (within one
category). A :class:`CommentPolicy` names the kinds that need a comment.

The standard workflow is also written out as a class, :class:`CaseWorkflow`, and
its table as :data:`TRANSITIONS`; :data:`DEFAULT_WORKFLOW` is the same workflow
as a :class:`Workflow`, and the one a loop uses unless told otherwise.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from types import MappingProxyType

from attrs import field, frozen
from statemachine import State, StateMachine

from closeloop.errors import CommentRequired, InvalidInput, TransitionNotAllowed
from closeloop.model import CATEGORY_NAMES, Status
from closeloop.workflow_definition import (
    WorkflowStatus,
    build_machine,
    check_closable,
    check_initial,
    check_reachable,
    check_statuses,
    check_transitions,
    close_reasons_from,
    derive_table,
    statuses_from,
    transitions_from,
)

__all__ = [
    "DEFAULT_WORKFLOW",
    "KINDS",
    "TRANSITIONS",
    "CaseWorkflow",
    "CommentPolicy",
    "Workflow",
    "WorkflowStatus",
    "allowed_targets",
    "change_kind",
    "check_transition",
    "event_for",
]

#: The kinds of change a comment policy can name, in workflow order.
KINDS = ("start", "close", "reopen", "pause", "move")


def change_kind(from_category: Status, to_category: Status) -> str:
    """The kind of a change between two categories: start, pause, close, reopen or move."""
    if to_category is Status.CLOSED and from_category is not Status.CLOSED:
        return "close"
    if from_category is Status.CLOSED and to_category is not Status.CLOSED:
        return "reopen"
    if from_category is Status.OPEN and to_category is Status.PROGRESS:
        return "start"
    if from_category is Status.PROGRESS and to_category is Status.OPEN:
        return "pause"
    return "move"


class CaseWorkflow(StateMachine):
    """The standard case life cycle. Event names are what the transitions mean to people.

    It can drive a case directly (``CaseWorkflow(model=obj, state_field="status")``)
    or be drawn as a diagram; closeloop itself reads its transitions once into
    :data:`TRANSITIONS`.
    """

    open = State("Open", initial=True, value=Status.OPEN.value)
    progress = State("Progress", value=Status.PROGRESS.value)
    closed = State("Closed", value=Status.CLOSED.value)

    start = open.to(progress)
    close = progress.to(closed) | open.to(closed)
    reopen = closed.to(open)
    pause = progress.to(open)


def _derive_transitions() -> Mapping[tuple[Status, Status], str]:
    table: dict[tuple[Status, Status], str] = {}
    for state in CaseWorkflow.states:
        for transition in state.transitions:
            (event,) = list(transition.events)
            table[(Status(transition.source.value), Status(transition.target.value))] = str(
                event.id
            )
    return MappingProxyType(table)


#: ``(from_status, to_status) -> event name``, read from :class:`CaseWorkflow`.
TRANSITIONS: Mapping[tuple[Status, Status], str] = _derive_transitions()

_TARGETS: Mapping[Status, tuple[Status, ...]] = MappingProxyType(
    {
        source: tuple(target for (src, target) in TRANSITIONS if src is source)
        for source in Status
    }
)


def allowed_targets(status: Status) -> tuple[Status, ...]:
    """The statuses a case in ``status`` may move to in the standard workflow, in definition order."""
    return _TARGETS[status]


def event_for(from_status: Status, to_status: Status) -> str | None:
    """The standard workflow's event that moves ``from_status`` to ``to_status``, or ``None``."""
    return TRANSITIONS.get((from_status, to_status))


def _names(value: Iterable[str]) -> frozenset[str]:
    if isinstance(value, str):  # a bare "close" would otherwise become {"c", "l", …}
        return frozenset({value})
    return frozenset(value)


@frozen
class CommentPolicy:
    """Which kinds of change need a comment (see :data:`KINDS`).

    The default asks for one when closing (what was done for the customer?)
    and when reopening (why is it not done after all?). In the standard workflow
    each kind is the name of its :class:`CaseWorkflow` event.

    Example::

        CommentPolicy(required_for={"close", "reopen", "pause"})
        CommentPolicy.none()
    """

    required_for: frozenset[str] = field(
        default=frozenset({"close", "reopen"}), converter=_names
    )

    def __attrs_post_init__(self) -> None:
        known = set(KINDS)
        for name in self.required_for:
            if name not in known:
                raise InvalidInput(
                    "comment_policy.required_for",
                    name,
                    f"unknown workflow event; expected some of {sorted(known)}",
                )

    @classmethod
    def none(cls) -> CommentPolicy:
        """A policy that never asks for a comment."""
        return cls(required_for=frozenset())

    @classmethod
    def for_events(cls, events: Iterable[str]) -> CommentPolicy:
        """A policy that asks for a comment on exactly these workflow events."""
        return cls(required_for=_names(events))

    def requires_comment(self, event: str) -> bool:
        """Whether the workflow event ``event`` needs a comment."""
        return event in self.required_for


def check_transition(
    case_id: str,
    from_status: Status,
    to_status: Status,
    comment: str | None,
    policy: CommentPolicy,
) -> str:
    """Check a change in the standard workflow: return its event, or raise what forbids it.

    A loop checks changes with its :class:`Workflow` (:meth:`Workflow.check`); this
    is the same check against :data:`TRANSITIONS`.

    Raises:
        TransitionNotAllowed: the workflow has no such transition, or ``to_status``
            is the current status.
        CommentRequired: the policy asks for a comment and none (or a blank one) was given.
    """
    if from_status is to_status:
        raise TransitionNotAllowed(case_id, from_status, to_status)
    event = TRANSITIONS.get((from_status, to_status))
    if event is None:
        raise TransitionNotAllowed(case_id, from_status, to_status)
    if policy.requires_comment(event) and not (comment and comment.strip()):
        raise CommentRequired(case_id, event)
    return event


_WORKFLOW_KEYS = ("statuses", "transitions", "initial", "close_reasons", "comment_required_for")


def _policy(value: object) -> CommentPolicy:
    if value is None:
        return CommentPolicy()
    if not isinstance(value, CommentPolicy):
        raise InvalidInput("comment_policy", value, "must be a CommentPolicy")
    return value


@frozen(eq=False)
class Workflow:
    """A team's case statuses on the three categories, and the rules for moving between them.

    Args:
        statuses: the statuses, each a :class:`WorkflowStatus` or a mapping with
            its fields; at least one Open and one Closed status.
        transitions: for each status name, the names it may move to.
        close_reasons: why a case may be closed; when given, every change into a
            Closed status needs one of them (``close_reason=``).
        comment_policy: which kinds of change need a comment (default: ``close``
            and ``reopen``, as for the standard workflow).
        initial: the status new cases start in; default the first Open status.

    Raises:
        InvalidInput: a mistake in the configuration, named by its path:
            ``statuses[2].category``, ``transitions.waiting[0]``, a status that
            cannot be reached, a status with no way to a Closed one, …

    Every status is reachable from ``initial``, and every status that is not
    Closed has a way to a Closed one. A Closed status without outgoing
    transitions is final (a case there stays closed).

    A :class:`~closeloop.Status` given where a status is expected (``set_status(id,
    Status.PROGRESS)``) means the **first status of that category** in
    ``statuses`` order: list the status you want as a category's default first.

    Example::

        workflow = Workflow.from_dict({
            "statuses": [
                {"name": "open", "category": "open"},
                {"name": "progress", "category": "progress"},
                {"name": "waiting", "label": "Waiting on customer", "category": "progress",
                 "pauses_sla": True},
                {"name": "closed", "category": "closed"},
            ],
            "transitions": {"open": ["progress", "waiting", "closed"],
                            "progress": ["open", "waiting", "closed"],
                            "waiting": ["progress", "closed"], "closed": ["open"]},
            "close_reasons": ["solved", "no-response"],
        })
        loop = CloseLoop(workflow=workflow)
    """

    statuses: tuple[WorkflowStatus, ...] = field(converter=statuses_from)
    transitions: Mapping[str, tuple[str, ...]] = field(converter=transitions_from)
    close_reasons: tuple[str, ...] = field(default=(), converter=close_reasons_from, kw_only=True)
    comment_policy: CommentPolicy = field(default=None, converter=_policy, kw_only=True)
    initial: str | None = field(default=None, kw_only=True)
    #: The python-statemachine class generated from this workflow.
    machine: type[StateMachine] = field(init=False, repr=False)
    #: ``(from name, to name) -> machine event id``, read from :attr:`machine`.
    transitions_table: Mapping[tuple[str, str], str] = field(init=False, repr=False)
    _by_name: Mapping[str, WorkflowStatus] = field(init=False, repr=False)
    _kinds: Mapping[tuple[str, str], str] = field(init=False, repr=False)
    _allowed: Mapping[str, tuple[WorkflowStatus, ...]] = field(init=False, repr=False)
    _defaults: Mapping[Status, WorkflowStatus] = field(init=False, repr=False)

    def __attrs_post_init__(self) -> None:
        by_name = check_statuses(self.statuses)
        initial = check_initial(self.initial, self.statuses, by_name)
        check_transitions(self.transitions, by_name)
        check_reachable(initial, self.statuses, self.transitions)
        check_closable(self.statuses, self.transitions, by_name)
        machine = build_machine(self.statuses, self.transitions, initial)
        table = derive_table(machine)
        kinds = {pair: change_kind(by_name[pair[0]].category, by_name[pair[1]].category)
                 for pair in table}
        allowed = {status.name: tuple(by_name[target]
                                      for target in self.transitions.get(status.name, ())
                                      if (status.name, target) in table)
                   for status in self.statuses}
        defaults: dict[Status, WorkflowStatus] = {}
        for status in self.statuses:
            defaults.setdefault(status.category, status)
        for name, value in (("initial", initial), ("machine", machine),
                            ("transitions_table", MappingProxyType(table)),
                            ("_by_name", MappingProxyType(by_name)),
                            ("_kinds", MappingProxyType(kinds)),
                            ("_allowed", MappingProxyType(allowed)),
                            ("_defaults", MappingProxyType(defaults))):
            object.__setattr__(self, name, value)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Workflow):
            return NotImplemented
        return self._config() == other._config()

    def __hash__(self) -> int:
        return hash(self.statuses)

    def _config(self) -> tuple[object, ...]:
        return (self.statuses, dict(self.transitions), self.close_reasons, self.comment_policy,
                self.initial)

    # -- building -------------------------------------------------------------------

    @classmethod
    def standard(cls) -> Workflow:
        """The standard workflow: Open, Progress, Closed, exactly as :class:`CaseWorkflow`."""
        return DEFAULT_WORKFLOW

    @classmethod
    def from_dict(cls, data: object) -> Workflow:
        """Build a workflow from plain data, as read from JSON or TOML.

        ``data`` has the keys ``statuses`` and ``transitions`` and optionally
        ``close_reasons``, ``initial`` and ``comment_required_for`` (a list of
        :data:`KINDS`; default ``["close", "reopen"]``). A mapping whose only key is
        ``workflow`` (a TOML file's ``[workflow]`` table) is unwrapped first. A
        status is a mapping with ``name``, ``category`` and optionally ``label``,
        ``pauses_sla`` and ``comment_required``.

        Raises:
            InvalidInput: the first mistake, its ``field`` the path to it
                (``statuses[2].category``).
        """
        if isinstance(data, Mapping) and set(data) == {"workflow"}:
            data = data["workflow"]
        if not isinstance(data, Mapping):
            raise InvalidInput("workflow", data, "must be a mapping with 'statuses' and "
                               "'transitions'")
        for key in data:
            if key not in _WORKFLOW_KEYS:
                raise InvalidInput(str(key), data[key],
                                   f"unknown key; expected {', '.join(_WORKFLOW_KEYS)}")
        for key in ("statuses", "transitions"):
            if key not in data:
                raise InvalidInput("workflow", sorted(map(str, data)), f"missing required key {key!r}")
        policy = None
        if "comment_required_for" in data:
            kinds = data["comment_required_for"]
            if isinstance(kinds, str) or not isinstance(kinds, Iterable):
                raise InvalidInput("comment_required_for", kinds, f"must be a list of {KINDS}")
            try:
                policy = CommentPolicy.for_events(kinds)
            except InvalidInput as exc:
                raise InvalidInput("comment_required_for", exc.value, exc.reason) from None
        return cls(data["statuses"], data["transitions"], close_reasons=data.get("close_reasons", ()),
                   comment_policy=policy, initial=data.get("initial"))

    def with_comment_policy(self, policy: CommentPolicy) -> Workflow:
        """This workflow with another comment policy."""
        return Workflow(self.statuses, self.transitions, close_reasons=self.close_reasons,
                        comment_policy=policy, initial=self.initial)

    # -- reading --------------------------------------------------------------------

    @property
    def initial_status(self) -> WorkflowStatus:
        """The status new cases start in."""
        assert self.initial is not None  # resolved when the workflow was built
        return self._by_name[self.initial]

    @property
    def pausing(self) -> frozenset[str]:
        """The names of the statuses that pause the SLA clock."""
        return frozenset(status.name for status in self.statuses if status.pauses_sla)

    def status(self, name: str) -> WorkflowStatus:
        """The status called ``name``. Raises InvalidInput for an unknown name."""
        found = self._by_name.get(name)
        if found is None:
            raise InvalidInput("status", name, f"unknown status; expected one of {self._names()}")
        return found

    def resolve(self, value: object, field: str = "status") -> WorkflowStatus:
        """The status named by ``value``: a configured name, or a category.

        A :class:`~closeloop.Status` (or a category's value, in any case) that is not
        itself a configured name means the first status of that category.

        Raises:
            InvalidInput: neither a configured status nor a category.
        """
        if isinstance(value, Status):
            return self._by_name.get(value.value) or self._defaults[value]
        if isinstance(value, str):
            found = self._by_name.get(value) or self._by_name.get(value.lower())
            if found is not None:
                return found
            if value.lower() in CATEGORY_NAMES:
                return self._defaults[Status(value.lower())]
        raise InvalidInput(field, value, f"unknown status; expected one of {self._names()}")

    def default_status(self, category: Status) -> WorkflowStatus:
        """The status a bare ``category`` means: the first status of it."""
        return self._defaults[category]

    def allowed(self, name: str) -> tuple[WorkflowStatus, ...]:
        """The statuses a case in status ``name`` may move to, in definition order."""
        return self._allowed.get(name, ())

    def kind(self, from_name: str, to_name: str) -> str | None:
        """The kind of the change (``"close"``, ``"move"``, …), or ``None`` if not allowed."""
        return self._kinds.get((from_name, to_name))

    def needs_close_reason(self, from_name: str, to_name: str) -> bool:
        """Whether this change must say why the case is closed (it closes, reasons are set)."""
        return bool(self.close_reasons) and self._kinds.get((from_name, to_name)) == "close"

    def close_reason_label(self, reason: str) -> str:
        """How a close reason reads: ``"no-response"`` → ``"No response"``."""
        return reason.replace("-", " ").replace("_", " ").capitalize()

    def _names(self) -> str:
        return ", ".join(repr(status.name) for status in self.statuses)

    # -- checking a change ----------------------------------------------------------------

    def check(
        self,
        case_id: str,
        from_name: str,
        target: WorkflowStatus,
        *,
        comment: str | None,
        close_reason: str | None = None,
        comment_policy: CommentPolicy | None = None,
    ) -> str:
        """Return the kind of the change, or raise what forbids it. Writes nothing.

        Args:
            case_id: for the error messages.
            from_name: the case's current status.
            target: where it should go.
            comment: the change's comment.
            close_reason: why the case is closed.
            comment_policy: overrides the workflow's own (one-touch asks for a
                comment on every change).

        Raises:
            TransitionNotAllowed: no such transition, or ``target`` is the current status.
            InvalidInput: ``close_reason`` is missing when closing with reasons
                configured, not one of them, or given for a change that does not close.
            CommentRequired: the policy (or ``target.comment_required``) asks for a
                comment and none, or a blank one, was given.
        """
        kind = self._kinds.get((from_name, target.name))
        if kind is None:
            source = self._by_name.get(from_name)
            labels = None if source is None else (source.label, target.label)
            raise TransitionNotAllowed(
                case_id, source.key if source is not None else from_name, target.key,
                labels=labels,
            )
        self._check_close_reason(kind, target, close_reason)
        policy = self.comment_policy if comment_policy is None else comment_policy
        if ((policy.requires_comment(kind) or target.comment_required)
                and not (comment and comment.strip())):
            raise CommentRequired(case_id, kind)
        return kind

    def _check_close_reason(self, kind: str, target: WorkflowStatus, reason: str | None) -> None:
        if reason is None:
            if kind == "close" and self.close_reasons:
                raise InvalidInput("close_reason", None, "closing a case needs a close reason: "
                                   f"one of {', '.join(map(repr, self.close_reasons))}")
            return
        if target.category is not Status.CLOSED:
            raise InvalidInput("close_reason", reason,
                               f"only a change into a Closed status takes one (this one goes to "
                               f"{target.label})")
        if reason not in self.close_reasons:
            expected = (f"one of {', '.join(map(repr, self.close_reasons))}" if self.close_reasons
                        else "none: this workflow has no close reasons (Workflow(close_reasons=...))")
            raise InvalidInput("close_reason", reason, f"unknown close reason; expected {expected}")


#: The standard workflow: Open, Progress and Closed with the moves of :class:`CaseWorkflow`.
DEFAULT_WORKFLOW = Workflow(
    [WorkflowStatus(status.value, status) for status in Status],
    {
        source.value: tuple(target.value for target in allowed_targets(source))
        for source in Status
    },
)
