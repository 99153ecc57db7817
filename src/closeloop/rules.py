"""Declarative triggers: build :class:`~closeloop.triggers.Trigger` objects from plain data.

The data is what ``json.load`` or ``tomllib.load`` returns: a list of trigger
mappings (or a mapping whose only key is ``"triggers"``, as a TOML file with
``[[triggers]]`` tables gives)::

    [[triggers]]
    name = "detractor"
    when = { nps_between = [0, 6] }
    assign_to = { from_answer = "account_manager", fallback = "cx-team" }
    due_in = "PT48H"
    priority = "high"

    [[triggers]]
    name = "angry-enterprise"
    when = { all_of = [{ answer_equals = ["plan", "enterprise"] },
                       { any_of = [{ nps_between = [0, 4] }, { comment_contains = ["cancel"] }] }] }
    assign_to = { round_robin = ["alice", "bob"] }

A trigger has ``name`` and ``when``, and optionally ``priority`` (``"low"``,
``"normal"``, ``"high"``, ``"urgent"``), ``assign_to``, ``due_in`` (an ISO 8601
duration such as ``"PT48H"`` or ``"P2D"``, or a number of seconds) and ``reason``.

``when`` is a predicate name, or a mapping with one key, the predicate's name,
whose value gives its arguments: a list is positional, a mapping is by keyword,
``true``/``null``/``{}`` is none, anything else is the single argument. The
names are those of :data:`default_registry` (the built-ins of
:mod:`closeloop.triggers`) plus ``all_of``/``any_of`` (a list of predicates) and
``not`` (one predicate). Register your own with :meth:`PredicateRegistry.register`.

``assign_to`` is a user id, ``{"from_answer": key, "fallback": user}``,
``{"round_robin": [users], "key": name}`` or ``{"first_of": [routers], "fallback": user}``
(``fallback`` and ``key`` optional).

Every mistake raises one :class:`~closeloop.errors.InvalidInput` whose
``field`` is the path to it, e.g.
``triggers[2].when.any_of[1]: unknown predicate 'nps_betwen'; did you mean 'nps_between'?``

:func:`check` finds what loading cannot: triggers that can never match, triggers
shadowed by an earlier one, answers that no sample response has.
"""

from __future__ import annotations

import difflib
import inspect
import re
from collections.abc import Callable, Mapping, Sequence
from datetime import timedelta
from typing import Any, TypeAlias, TypeVar, overload

import cattrs
from attrs import frozen

from closeloop.convert import converter
from closeloop.errors import InvalidInput
from closeloop.model import Priority, SurveyResponse
from closeloop.rulecheck import Finding, FindingKind, analyse, empty_range
from closeloop.triggers import (
    MAX_DEPTH,
    FirstOf,
    Predicate,
    PredicateLike,
    Router,
    ToUser,
    Trigger,
    all_of,
    answer_equals,
    answer_in,
    any_of,
    comment_contains,
    contact_requested,
    from_answer,
    not_,
    nps_between,
    predicate,
    round_robin,
    score_missing,
)
from closeloop.validate import MAX_DURATION, check_id

__all__ = [
    "MAX_DATA_DEPTH",
    "Finding",
    "FindingKind",
    "PredicateFactory",
    "PredicateRegistry",
    "check",
    "default_registry",
    "load_and_check",
    "load_triggers",
    "parse_duration",
]

#: How deeply the plain data may nest at all (lists and mappings); deeper is refused
#: before anything else looks at it, so no input can exhaust the interpreter's stack.
MAX_DATA_DEPTH = 100

#: Builds a predicate from a configuration's arguments; may return a plain function.
PredicateFactory: TypeAlias = Callable[..., PredicateLike]
F = TypeVar("F", bound=PredicateFactory)

_COMBINATORS = ("all_of", "any_of", "not")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


class PredicateRegistry:
    """The predicate names a configuration may use, each with the factory that builds it.

    Example::

        registry = default_registry.copy()

        @registry.register("answer_at_least")
        def answer_at_least(key: str, minimum: float) -> PredicateLike:
            return predicate(lambda r: (r.answers.get(key) or 0) >= minimum,
                             f"answer {key!r} at least {minimum}")

        registry.register("vip", predicate(is_vip))          # a fixed predicate
        load_triggers([{"name": "big-fan", "when": {"answer_at_least": ["spend", 1000]}}],
                      registry=registry)

    A factory is called with the configured arguments (see :mod:`closeloop.rules`)
    and raises :class:`~closeloop.errors.InvalidInput` (or ``TypeError`` /
    ``ValueError``) for bad ones; the loader adds the path.
    """

    def __init__(self, factories: Mapping[str, PredicateFactory | Predicate] | None = None) -> None:
        self._factories: dict[str, PredicateFactory] = {}
        for name, factory in (factories or {}).items():
            self.register(name, factory)

    @overload
    def register(self, name: str) -> Callable[[F], F]: ...

    @overload
    def register(self, name: str, factory: F, *, replace: bool = False) -> F: ...

    @overload
    def register(self, name: str, factory: Predicate, *, replace: bool = False) -> Predicate: ...

    def register(self, name: str, factory: Any = None, *, replace: bool = False) -> Any:
        """Make ``name`` usable in configurations; without ``factory``, a decorator.

        Args:
            name: a Python-identifier-like name; ``all_of``, ``any_of`` and ``not``
                are reserved.
            factory: a function from the configured arguments to a predicate (or
                to a function ``(response) -> bool``), or a ready
                :class:`~closeloop.triggers.Predicate`, used when the name is
                given without arguments.
            replace: allow replacing an existing name.

        Raises:
            InvalidInput: bad or reserved name, taken name, or factory not callable.
        """
        if factory is None:

            def decorator(function: F) -> F:
                self.register(name, function, replace=replace)
                return function

            return decorator
        if not isinstance(name, str) or not _NAME.match(name):
            raise InvalidInput("name", name, "must be a name like 'nps_between'")
        if name in _COMBINATORS:
            raise InvalidInput("name", name, "is reserved for combining predicates")
        if name in self._factories and not replace:
            raise InvalidInput("name", name, "is already registered (pass replace=True)")
        if not callable(factory):
            raise InvalidInput("factory", factory, "must be callable or a Predicate")
        if isinstance(factory, Predicate):
            fixed = factory
            self._factories[name] = lambda: fixed
        else:
            self._factories[name] = factory
        return factory

    def names(self) -> list[str]:
        """The registered names, sorted (the combinators not included)."""
        return sorted(self._factories)

    def copy(self) -> PredicateRegistry:
        """A new registry with the same names, to extend without touching this one."""
        clone = PredicateRegistry()
        clone._factories = dict(self._factories)
        return clone

    def __contains__(self, name: object) -> bool:
        return name in self._factories

    def build(self, name: str, args: Any, path: str) -> Predicate:
        """Call ``name``'s factory with configured ``args``; errors name ``path``."""
        factory = self._factories.get(name)
        if factory is None:
            raise _unknown(path, "predicate", name, [*self._factories, *_COMBINATORS])
        where = f"{path}.{name}"
        positional, keywords = _arguments(args, where)
        try:
            inspect.signature(factory).bind(*positional, **keywords)
        except TypeError as exc:
            raise InvalidInput(where, args, f"wrong arguments: {exc}") from None
        except ValueError:  # no signature to check (some builtins): let the call decide
            pass
        try:
            built = factory(*positional, **keywords)
        except InvalidInput as exc:
            raise InvalidInput(where, exc.value, f"{exc.field} {exc.reason}") from exc
        except Exception as exc:
            raise InvalidInput(where, args, f"{type(exc).__name__}: {exc}") from exc
        if isinstance(built, Predicate):
            return built
        if not callable(built):
            raise InvalidInput(where, built, "the factory must return a predicate")
        return predicate(built, name)


def _arguments(args: Any, where: str) -> tuple[tuple[Any, ...], dict[str, Any]]:
    if args is None or args is True:
        return (), {}
    if args is False:
        raise InvalidInput(where, args, "false is not allowed; to negate, use {\"not\": …}")
    if isinstance(args, Mapping):
        for key in args:
            if not isinstance(key, str) or not key.isidentifier():
                raise InvalidInput(where, key, "argument names must be identifiers")
        return (), dict(args)
    if isinstance(args, list | tuple):
        return tuple(args), {}
    return (args,), {}


def _unknown(path: str, what: str, name: Any, known: list[str]) -> InvalidInput:
    if not isinstance(name, str):
        return InvalidInput(path, name, f"a {what} name must be a string")
    reason = f"unknown {what} {name!r}"
    close = difflib.get_close_matches(name, known, n=1)
    if close:
        reason += f"; did you mean {close[0]!r}?"
    else:
        reason += f"; expected one of {', '.join(sorted(known))}"
    return InvalidInput(path, name, reason)


#: The built-in predicates, by the names configurations use. Extend a :meth:`copy`.
default_registry = PredicateRegistry(
    {
        "nps_between": nps_between,
        "contact_requested": contact_requested,
        "score_missing": score_missing,
        "answer_equals": answer_equals,
        "answer_in": answer_in,
        "comment_contains": comment_contains,
    }
)


@frozen
class _TriggerSpec:
    """The outer shape of one trigger, structured by cattrs; the rest is parsed below."""

    name: str
    when: Any
    priority: Priority = Priority.NORMAL
    assign_to: Any = None
    due_in: Any = None
    reason: str | None = None


_TRIGGER_KEYS = ", ".join(a.name for a in _TriggerSpec.__attrs_attrs__)


def load_triggers(data: Any, *, registry: PredicateRegistry | None = None) -> list[Trigger]:
    """Build triggers from plain data, as read from JSON or TOML.

    Args:
        data: a list of trigger mappings, or ``{"triggers": [...]}``; the format
            is described in :mod:`closeloop.rules`.
        registry: the predicate names allowed; defaults to :data:`default_registry`.

    Returns:
        The triggers, in order (pass them to ``CloseLoop(triggers=...)``).

    Raises:
        InvalidInput: the first mistake found; ``field`` is its path, such as
            ``"triggers[2].when.any_of[1]"``.
    """
    registry = default_registry if registry is None else registry
    if isinstance(data, Mapping):
        if set(data) != {"triggers"}:
            raise InvalidInput("triggers", sorted(map(str, data)), "expected a list of triggers, "
                               "or a mapping whose only key is 'triggers'")
        data = data["triggers"]
    if not isinstance(data, list | tuple):
        raise InvalidInput("triggers", data, "must be a list of triggers")
    triggers: list[Trigger] = []
    seen: dict[str, int] = {}
    for index, item in enumerate(data):
        path = f"triggers[{index}]"
        _check_nesting(item, path)
        trigger = _trigger(item, path, registry)
        if trigger.name in seen:
            raise InvalidInput(
                f"{path}.name", trigger.name, f"duplicate trigger name (also triggers[{seen[trigger.name]}])"
            )
        seen[trigger.name] = index
        triggers.append(trigger)
    return triggers


def check(
    triggers: Any,
    *,
    sample: Sequence[SurveyResponse] | None = None,
    registry: PredicateRegistry | None = None,
) -> list[Finding]:
    """Check a rule set: what can never match, what an earlier rule shadows, unknown answers.

    Args:
        triggers: :class:`~closeloop.triggers.Trigger` objects, or the plain data
            :func:`load_triggers` reads (then a rule that cannot be read is a finding
            of kind ``"invalid"`` instead of an error, and the others are still checked).
        sample: survey responses (an export of real ones); when given, a trigger
            that reads an answer none of them has is reported, with the closest
            answer name they do have.
        registry: for plain data, the predicate names allowed (default: the built-ins).

    Returns:
        The findings (:class:`~closeloop.rulecheck.Finding`), in rule order; empty when clean.

    Example::

        >>> from closeloop.rules import check
        >>> [str(f) for f in check([{"name": "x", "when": {"nps_between": [7, 6]}}])]
        ["trigger 'x' never matches: nps_between [7, 6] is an empty range (7 is above 6)"]
    """
    if not isinstance(triggers, Mapping) and all(isinstance(t, Trigger) for t in triggers):
        return analyse(list(enumerate(triggers)), sample)
    return load_and_check(triggers, sample=sample, registry=registry)[1]


def load_and_check(
    data: Any,
    *,
    sample: Sequence[SurveyResponse] | None = None,
    registry: PredicateRegistry | None = None,
) -> tuple[list[Trigger], list[Finding]]:
    """Load what can be loaded of a rule set, and check it: the triggers and the findings.

    Like :func:`check` on plain data, but also returns the triggers that could be
    read, in order (a trigger with an empty score range or a mistake is left out:
    the first never matches, the second is an ``"invalid"`` finding).
    """
    triggers = data
    registry = default_registry if registry is None else registry
    if isinstance(triggers, Mapping) and set(triggers) == {"triggers"}:
        triggers = triggers["triggers"]
    if not isinstance(triggers, list | tuple):
        raise InvalidInput("triggers", triggers, "must be a list of triggers or of trigger mappings")
    findings: list[Finding] = []
    loaded: list[tuple[int, Trigger]] = []
    names: dict[str, int] = {}
    for index, item in enumerate(triggers):
        path = f"triggers[{index}]"
        name = item.get("name") if isinstance(item, Mapping) else None
        label = name if isinstance(name, str) and name else path
        empty = empty_range(item.get("when") if isinstance(item, Mapping) else None)
        if empty is not None:
            findings.append(Finding("never_matches", label, index,
                                    f"trigger {label!r} never matches: {empty}"))
            continue
        try:
            _check_nesting(item, path)
            trigger = _trigger(item, path, registry)
        except InvalidInput as exc:
            findings.append(Finding("invalid", label, index, f"trigger {label!r} cannot be read: {exc}"))
            continue
        if trigger.name in names:
            findings.append(Finding("invalid", label, index, f"trigger {label!r} cannot be read: "
                                    f"the name is also used by triggers[{names[trigger.name]}]"))
            continue
        names[trigger.name] = index
        loaded.append((index, trigger))
    findings += analyse(loaded, sample)
    findings.sort(key=lambda finding: finding.index)
    return [trigger for _, trigger in loaded], findings


def _check_nesting(data: Any, path: str) -> None:
    """Refuse data nested deeper than MAX_DATA_DEPTH, without recursing (cycles included)."""
    stack = [(data, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, Mapping):
            children = [*value.keys(), *value.values()]
        elif isinstance(value, list | tuple):
            children = list(value)
        else:
            continue
        if depth > MAX_DATA_DEPTH:
            raise InvalidInput(path, depth, f"is nested more than {MAX_DATA_DEPTH} levels deep")
        stack.extend((child, depth + 1) for child in children)


def _trigger(item: Any, path: str, registry: PredicateRegistry) -> Trigger:
    if not isinstance(item, Mapping):
        raise InvalidInput(path, item, "must be a mapping with at least 'name' and 'when'")
    try:
        spec = converter.structure(item, _TriggerSpec)
    except cattrs.ClassValidationError as exc:
        raise _spec_error(exc, item, path) from None
    when = _predicate(spec.when, f"{path}.when", registry, 1)
    assign_to = _router(spec.assign_to, f"{path}.assign_to", 1)
    due_in = None if spec.due_in is None else parse_duration(spec.due_in, f"{path}.due_in")
    try:
        return Trigger(
            spec.name, when, priority=spec.priority, assign_to=assign_to, due_in=due_in,
            reason=spec.name if spec.reason is None else spec.reason,
        )
    except InvalidInput as exc:
        raise InvalidInput(f"{path}.{exc.field}", exc.value, exc.reason) from None


def _spec_error(exc: cattrs.ClassValidationError, item: Any, path: str) -> InvalidInput:
    with_notes, without_notes = exc.group_exceptions()
    for error in without_notes:
        if isinstance(error, cattrs.ForbiddenExtraKeysError):
            key = sorted(map(str, error.extra_fields))[0]
            return InvalidInput(path, key, f"unknown key {key!r}; expected {_TRIGGER_KEYS}")
    for error, note in with_notes:
        if isinstance(error, KeyError):
            return InvalidInput(path, item, f"missing required key {note.name!r}")
        if isinstance(error, InvalidInput):
            return InvalidInput(f"{path}.{note.name}", error.value, error.reason)
        return InvalidInput(f"{path}.{note.name}", None, str(error))
    return InvalidInput(path, None, str(exc))


def _predicate(spec: Any, path: str, registry: PredicateRegistry, depth: int) -> Predicate:
    if depth > MAX_DEPTH:
        raise InvalidInput(path, depth, f"conditions may nest at most {MAX_DEPTH} levels deep")
    if isinstance(spec, str):
        name, args = spec, None
    elif isinstance(spec, Mapping) and len(spec) == 1:
        ((name, args),) = spec.items()
    elif isinstance(spec, Mapping):
        raise InvalidInput(
            path, sorted(map(str, spec)),
            "must have exactly one key, the predicate's name (combine several with all_of)",
        )
    else:
        raise InvalidInput(path, spec, "must be a predicate name or a mapping {name: arguments}")
    if name in ("all_of", "any_of"):
        if not isinstance(args, list | tuple) or not args:
            raise InvalidInput(f"{path}.{name}", args, "must be a non-empty list of predicates")
        parts = [
            _predicate(part, f"{path}.{name}[{index}]", registry, depth + 1)
            for index, part in enumerate(args)
        ]
        return all_of(*parts) if name == "all_of" else any_of(*parts)
    if name == "not":
        return not_(_predicate(args, f"{path}.not", registry, depth + 1))
    return registry.build(name, args, path)


_ROUTERS = ("from_answer", "round_robin", "first_of")
_ROUTER_OPTIONS = {"from_answer": {"fallback"}, "round_robin": {"key"}, "first_of": {"fallback"}}


def _router(spec: Any, path: str, depth: int) -> Router | None:
    if spec is None:
        return None
    if isinstance(spec, str):
        return ToUser(check_id(path, spec))
    if not isinstance(spec, Mapping):
        raise InvalidInput(path, spec, "must be a user id or a router mapping such as "
                           "{'round_robin': ['alice', 'bob']}")
    if depth > MAX_DEPTH:
        raise InvalidInput(path, depth, f"routers may nest at most {MAX_DEPTH} levels deep")
    kinds = [key for key in spec if key in _ROUTERS]
    if len(kinds) != 1:
        unknown = next((key for key in spec if key not in ("fallback", "key")), None)
        if kinds or unknown is None:
            raise InvalidInput(path, sorted(map(str, spec)), f"needs exactly one of {', '.join(_ROUTERS)}")
        raise _unknown(path, "router", unknown, list(_ROUTERS))
    kind = kinds[0]
    for key in spec:
        if key != kind and key not in _ROUTER_OPTIONS[kind]:
            allowed = ", ".join(sorted({kind, *_ROUTER_OPTIONS[kind]}))
            raise InvalidInput(path, key, f"unknown key {key!r} for {kind}; expected {allowed}")
    args, where = spec[kind], f"{path}.{kind}"
    fallback = spec.get("fallback")
    if fallback is not None:
        check_id(f"{path}.fallback", fallback)
    try:
        if kind == "from_answer":
            router: Router = from_answer(check_id(where, args))
            return router if fallback is None else FirstOf((router,), fallback)
        if kind == "round_robin":
            if isinstance(args, str) or not isinstance(args, list | tuple):
                raise InvalidInput(where, args, "must be a list of user ids")
            users = [check_id(f"{where}[{index}]", user) for index, user in enumerate(args)]
            key = spec.get("key")
            if key is not None:
                check_id(f"{path}.key", key)
            return round_robin(users, key=key)
        if not isinstance(args, list | tuple) or not args:
            raise InvalidInput(where, args, "must be a non-empty list of routers")
        routers = [_router(part, f"{where}[{index}]", depth + 1) for index, part in enumerate(args)]
        for index, part in enumerate(routers):
            if part is None:
                raise InvalidInput(f"{where}[{index}]", None, "must be a router, not null")
        return FirstOf(tuple(routers), fallback)
    except InvalidInput as exc:
        if exc.field.startswith(path):
            raise
        raise InvalidInput(where, exc.value, f"{exc.field} {exc.reason}") from None


_DURATION = re.compile(
    r"P(?!\Z)(?:(?P<weeks>\d{1,9})W)?(?:(?P<days>\d{1,9})D)?"
    r"(?:T(?=\d)(?:(?P<hours>\d{1,9})H)?(?:(?P<minutes>\d{1,9})M)?(?:(?P<seconds>\d{1,9})S)?)?\Z"
)


def parse_duration(value: Any, field: str = "due_in") -> timedelta:
    """Read an SLA: an ISO 8601 duration (``"PT48H"``, ``"P2D"``, ``"P1DT12H"``, ``"PT30M"``),
    a whole number of seconds, or a :class:`~datetime.timedelta`. It must be positive.

    Years and months are refused: they have no fixed length.

    Raises:
        InvalidInput: naming ``field``.
    """
    if isinstance(value, timedelta):
        duration = value
    elif isinstance(value, int) and not isinstance(value, bool):
        duration = _timedelta(field, value, seconds=value)
    elif isinstance(value, str):
        found = _DURATION.match(value)
        if found is None:
            raise InvalidInput(
                field, value, "must be an ISO 8601 duration in weeks, days, hours, minutes or "
                "seconds, such as 'PT48H', 'P2D' or 'P1DT12H', or a number of seconds",
            )
        parts = {unit: int(amount) for unit, amount in found.groupdict().items() if amount}
        duration = _timedelta(field, value, **parts)
    else:
        raise InvalidInput(field, value, "must be an ISO 8601 duration string or a number of seconds")
    if duration <= timedelta(0):
        raise InvalidInput(field, value, "must be positive")
    if duration > MAX_DURATION:
        raise InvalidInput(field, value, "must be at most 100 years (36525 days)")
    return duration


def _timedelta(field: str, value: Any, **parts: int) -> timedelta:
    try:
        return timedelta(**parts)
    except OverflowError:
        raise InvalidInput(field, value, "is too long") from None
