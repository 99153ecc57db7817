"""The Case workflow: Open → Progress → Closed, as one python-statemachine class.

:class:`CaseWorkflow` is the single definition of which status changes exist.
Running a bound state machine costs tens of microseconds, so the facade's hot
path uses :data:`TRANSITIONS`, a table *derived* from the class at import
time, never a second hand-written one.

Which changes need a comment is a policy, not a transition: see
:class:`CommentPolicy`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from types import MappingProxyType

from attrs import field, frozen
from statemachine import State, StateMachine

from closeloop.errors import CommentRequired, InvalidInput, TransitionNotAllowed
from closeloop.model import Status

__all__ = [
    "TRANSITIONS",
    "CaseWorkflow",
    "CommentPolicy",
    "allowed_targets",
    "check_transition",
    "event_for",
]


class CaseWorkflow(StateMachine):
    """The case life cycle. Event names are what the transitions mean to people.

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
    """The statuses a case in ``status`` may move to, in definition order."""
    return _TARGETS[status]


def event_for(from_status: Status, to_status: Status) -> str | None:
    """The workflow event that moves ``from_status`` to ``to_status``, or ``None``."""
    return TRANSITIONS.get((from_status, to_status))


def _names(value: Iterable[str]) -> frozenset[str]:
    if isinstance(value, str):  # a bare "close" would otherwise become {"c", "l", …}
        return frozenset({value})
    return frozenset(value)


@frozen
class CommentPolicy:
    """Which workflow events need a comment.

    The default asks for one when closing (what was done for the customer?)
    and when reopening (why is it not done after all?).

    Example::

        CommentPolicy(required_for={"close", "reopen", "pause"})
        CommentPolicy.none()
    """

    required_for: frozenset[str] = field(
        default=frozenset({"close", "reopen"}), converter=_names
    )

    def __attrs_post_init__(self) -> None:
        known = set(TRANSITIONS.values())
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
    """Return the workflow event for the change, or raise the workflow error that forbids it.

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
