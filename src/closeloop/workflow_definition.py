"""A workflow's definition: its statuses, checked, and the state machine generated from it.

:class:`~closeloop.workflow.Workflow` is what users build; this module holds its
parts: :class:`WorkflowStatus`, the conversions from plain data (each error names
its path, ``statuses[2].category``), the checks a definition must pass, and the
strict python-statemachine class generated from it with the transition table
read back out of that class.
"""

from __future__ import annotations

import difflib
import types
from collections.abc import Callable, Iterable, Mapping
from types import MappingProxyType
from typing import cast

from attrs import Factory, field, frozen
from statemachine import State, StateMachine
from statemachine.event import Event

from closeloop.errors import InvalidInput
from closeloop.model import CATEGORY_NAMES, Status
from closeloop.validate import attrs_validator, check_bool, check_status_name

__all__ = [
    "WorkflowStatus",
    "build_machine",
    "check_closable",
    "check_initial",
    "check_reachable",
    "check_statuses",
    "check_transitions",
    "close_reasons_from",
    "derive_table",
    "statuses_from",
    "transitions_from",
]

# -- statuses -------------------------------------------------------------------------------


def _default_label(instance: WorkflowStatus) -> str:
    if instance.name in CATEGORY_NAMES:
        return Status(instance.name).display_name
    return instance.name.replace("-", " ").replace("_", " ").capitalize()


def _category(value: object) -> Status:
    if isinstance(value, Status):
        return value
    if isinstance(value, str) and value.lower() in CATEGORY_NAMES:
        return Status(value.lower())
    raise InvalidInput("category", value, "unknown category; expected one of 'open', "
                       "'progress', 'closed'")


def _label(field_name: str, value: object) -> None:
    if not isinstance(value, str) or not value.strip() or len(value) > 80 or "\n" in value:
        raise InvalidInput(field_name, value, "must be a single line of text, at most 80 characters")


@frozen
class WorkflowStatus:
    """One status of a :class:`Workflow`.

    Args:
        name: what is stored and compared: lower-case letters, digits, ``-`` and ``_``.
            A status named like a category (``"open"``) must belong to it.
        category: Open, Progress or Closed (a :class:`~closeloop.Status` or its value).
        label: what people read; default the name, capitalised (the category's
            display name for a status named like one).
        pauses_sla: while a case is in this status its SLA clock stops: it is not
            overdue, and its due time moves on by the time spent here.
        comment_required: moving a case into this status needs a comment, whatever
            the comment policy says.
    """

    name: str = field(validator=attrs_validator(check_status_name))
    category: Status = field(converter=_category)
    label: str = field(default=Factory(_default_label, takes_self=True),
                       validator=attrs_validator(_label))
    pauses_sla: bool = field(default=False, validator=attrs_validator(check_bool), kw_only=True)
    comment_required: bool = field(default=False, validator=attrs_validator(check_bool),
                                   kw_only=True)

    @property
    def display_name(self) -> str:
        """The label, as :attr:`Status.display_name` is for a category."""
        return self.label

    @property
    def key(self) -> Status | str:
        """The :class:`~closeloop.Status` for a status named like a category, else the name."""
        return Status(self.name) if self.name in CATEGORY_NAMES else self.name


_STATUS_KEYS = ("name", "category", "label", "pauses_sla", "comment_required")


def statuses_from(value: object) -> tuple[WorkflowStatus, ...]:
    if isinstance(value, str | bytes | Mapping) or not isinstance(value, Iterable):
        raise InvalidInput("statuses", value, "must be a list of statuses")
    return tuple(_status_item(item, f"statuses[{index}]") for index, item in enumerate(value))


def _status_item(item: object, path: str) -> WorkflowStatus:
    if isinstance(item, WorkflowStatus):
        return item
    if not isinstance(item, Mapping):
        raise InvalidInput(path, item, "must be a mapping with 'name' and 'category'")
    for key in item:
        if key not in _STATUS_KEYS:
            raise InvalidInput(f"{path}.{key}", item[key],
                               f"unknown key; expected {', '.join(_STATUS_KEYS)}")
    for key in ("name", "category"):
        if key not in item:
            raise InvalidInput(path, dict(item), f"missing required key {key!r}")
    try:
        return WorkflowStatus(**item)
    except InvalidInput as exc:
        raise InvalidInput(f"{path}.{exc.field}", exc.value, exc.reason) from None


def transitions_from(value: object) -> Mapping[str, tuple[str, ...]]:
    if not isinstance(value, Mapping):
        raise InvalidInput("transitions", value, "must map each status name to the statuses "
                           "it may move to")
    table: dict[str, tuple[str, ...]] = {}
    for source, targets in value.items():
        path = f"transitions.{source}"
        if isinstance(targets, str) or not isinstance(targets, Iterable):
            raise InvalidInput(path, targets, "must be a list of status names")
        table[str(source)] = tuple(targets)
    return MappingProxyType(table)


def close_reasons_from(value: object) -> tuple[str, ...]:
    if isinstance(value, str | bytes | Mapping) or not isinstance(value, Iterable):
        raise InvalidInput("close_reasons", value, "must be a list of reason names")
    reasons = tuple(value)
    for index, reason in enumerate(reasons):
        check_status_name(f"close_reasons[{index}]", reason)
        if reasons.index(reason) != index:
            raise InvalidInput(f"close_reasons[{index}]", reason,
                               f"duplicate reason (also close_reasons[{reasons.index(reason)}])")
    return reasons


# -- checking a configuration ---------------------------------------------------------------


def check_statuses(statuses: tuple[WorkflowStatus, ...]) -> dict[str, WorkflowStatus]:
    by_name: dict[str, WorkflowStatus] = {}
    for index, status in enumerate(statuses):
        path = f"statuses[{index}]"
        if status.name in by_name:
            first = next(i for i, s in enumerate(statuses) if s.name == status.name)
            raise InvalidInput(f"{path}.name", status.name, f"duplicate status (also statuses[{first}])")
        if status.name in CATEGORY_NAMES and status.category.value != status.name:
            raise InvalidInput(f"{path}.category", status.category.value,
                               f"a status named {status.name!r} must be in the category "
                               f"{status.name!r}")
        if status.pauses_sla and status.category is Status.CLOSED:
            raise InvalidInput(f"{path}.pauses_sla", True, "a Closed status has no SLA to pause")
        by_name[status.name] = status
    for category in (Status.OPEN, Status.CLOSED):
        if not any(status.category is category for status in statuses):
            raise InvalidInput("statuses", [s.name for s in statuses],
                               f"needs at least one status in the category {category.value!r}")
    return by_name


def check_initial(initial: str | None, statuses: tuple[WorkflowStatus, ...],
                   by_name: Mapping[str, WorkflowStatus]) -> str:
    if initial is None:
        return next(status.name for status in statuses if status.category is Status.OPEN)
    found = by_name.get(initial) if isinstance(initial, str) else None
    if found is None:
        raise InvalidInput("initial", initial, "unknown status; expected one of "
                           + ", ".join(repr(s.name) for s in statuses))
    if found.category is not Status.OPEN:
        raise InvalidInput("initial", initial, "new cases are Open: the initial status must be "
                           "in the category 'open'")
    return found.name


def check_transitions(transitions: Mapping[str, tuple[str, ...]],
                       by_name: Mapping[str, WorkflowStatus]) -> None:
    known = list(by_name)
    for source, targets in transitions.items():
        if source not in by_name:
            raise _unknown(f"transitions.{source}", source, known)
        for index, target in enumerate(targets):
            path = f"transitions.{source}[{index}]"
            if not isinstance(target, str) or target not in by_name:
                raise _unknown(path, target, known)
            if target == source:
                raise InvalidInput(path, target, "a status cannot move to itself")
            if targets.index(target) != index:
                raise InvalidInput(path, target, "listed twice")


def _unknown(path: str, name: object, known: list[str]) -> InvalidInput:
    reason = f"unknown status {name!r}"
    close = difflib.get_close_matches(name, known, n=1) if isinstance(name, str) else []
    reason += f"; did you mean {close[0]!r}?" if close else f"; expected one of {', '.join(known)}"
    return InvalidInput(path, name, reason)


def check_reachable(initial: str, statuses: tuple[WorkflowStatus, ...],
                     transitions: Mapping[str, tuple[str, ...]]) -> None:
    reached = _closure({initial}, lambda name: transitions.get(name, ()))
    for index, status in enumerate(statuses):
        if status.name not in reached:
            raise InvalidInput(f"statuses[{index}]", status.name,
                               f"cannot be reached from the initial status {initial!r}: no "
                               "transition leads to it")


def check_closable(statuses: tuple[WorkflowStatus, ...],
                    transitions: Mapping[str, tuple[str, ...]],
                    by_name: Mapping[str, WorkflowStatus]) -> None:
    incoming: dict[str, list[str]] = {}
    for source, targets in transitions.items():
        for target in targets:
            incoming.setdefault(target, []).append(source)
    closed = {status.name for status in statuses if status.category is Status.CLOSED}
    can_close = _closure(closed, lambda name: incoming.get(name, ()))
    for status in statuses:
        if status.name not in can_close:
            raise InvalidInput(f"transitions.{status.name}", list(transitions.get(status.name, ())),
                               f"no way from {status.name!r} to a Closed status: a case there "
                               "could never be closed")


def _closure(start: set[str], step: Callable[[str], Iterable[str]]) -> set[str]:
    seen = set(start)
    todo = list(start)
    while todo:
        for following in step(todo.pop()):
            if following not in seen:
                seen.add(following)
                todo.append(following)
    return seen


# -- the generated state machine ---------------------------------------------------------------


def build_machine(statuses: tuple[WorkflowStatus, ...], transitions: Mapping[str, tuple[str, ...]],
             initial: str) -> type[StateMachine]:
    """A strict StateMachine class: one state per status, one event per target status.

    State ids are ``status_<n>`` and event ids ``to_<n>`` (``n`` the status's position),
    since names such as ``"no-response"`` or ``"send"`` are not usable attribute names.
    """
    states = {
        status.name: State(status.label, value=status.name, initial=status.name == initial,
                           final=status.category is Status.CLOSED
                           and not transitions.get(status.name))
        for status in statuses
    }
    namespace: dict[str, object] = {
        "__doc__": "A case workflow generated by closeloop.workflow.Workflow.",
        # closeloop checks reachability itself (with the configuration's paths in its errors).
        "validate_final_reachability": False,
    }
    for index, status in enumerate(statuses):
        namespace[f"status_{index}"] = states[status.name]
    for index, target in enumerate(statuses):
        moves = [states[source].to(states[target.name])
                 for source in transitions if target.name in transitions[source]]
        if moves:
            combined = moves[0]
            for move in moves[1:]:
                combined = combined | move
            namespace[f"to_{index}"] = Event(combined, name=f"to {target.label}")
    generated = types.new_class("GeneratedWorkflow", (StateMachine,),
                                exec_body=lambda body: body.update(namespace))
    return cast("type[StateMachine]", generated)


def derive_table(machine: type[StateMachine]) -> dict[tuple[str, str], str]:
    table: dict[tuple[str, str], str] = {}
    for state in machine.states:
        for transition in state.transitions:
            (event,) = list(transition.events)
            table[(str(transition.source.value), str(transition.target.value))] = str(event.id)
    return table


