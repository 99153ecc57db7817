"""Triggers: which survey responses open a case, for whom, and how urgently.

Pure domain logic: nothing here reads a clock, a database or the network.

A :class:`Trigger` names a predicate (a condition on the response, see
:mod:`closeloop.predicates`) and says what a match opens: priority, assignee
(a :class:`~closeloop.routing.Router`, see :mod:`closeloop.routing`) and an SLA
(``due_in``). :func:`evaluate` tries the triggers in order; one case is opened
per response, routed by the first match and carrying the reasons of every
match. :func:`explain` says, for each trigger, whether it matched and why.

A :class:`TriggerSet` compiles the conditions of all its triggers into one
function, so a rule set costs about what a hand-written ``if`` chain costs;
:mod:`closeloop._codegen` says why and what keeps that safe.

This module re-exports the public names of :mod:`closeloop.predicates` and
:mod:`closeloop.routing`, so one import serves a whole rule set::

    >>> from closeloop.triggers import Trigger, contact_requested, nps_between
    >>> urgent = Trigger("urgent", nps_between(0, 6) & contact_requested())
    >>> urgent.when.description
    'score in 0..6 and contact requested'
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from datetime import datetime, timedelta
from typing import Any

from attrs import field, frozen

from closeloop._codegen import _Source
from closeloop.calendar import BusinessHours
from closeloop.errors import CloseLoopError, InvalidInput
from closeloop.model import Priority, SurveyResponse
from closeloop.predicates import (
    MAX_DEPTH,
    AllOf,
    AnswerEquals,
    AnswerIn,
    AnyOf,
    CommentContains,
    ContactRequested,
    Explanation,
    FunctionPredicate,
    Not,
    NpsBetween,
    Predicate,
    PredicateLike,
    ScoreMissing,
    all_of,
    answer_at,
    answer_equals,
    answer_in,
    any_of,
    as_predicate,
    comment_contains,
    contact_requested,
    not_,
    nps_between,
    predicate,
    score_missing,
)
from closeloop.routing import (
    FirstOf,
    FromAnswer,
    FunctionRouter,
    RotationState,
    RoundRobin,
    Router,
    RouterLike,
    ToUser,
    first_of,
    from_answer,
    round_robin,
    to_router,
)
from closeloop.validate import (
    attrs_validator,
    aware_datetime,
    check_id,
    check_optional_positive_timedelta,
)

__all__ = [
    "MAX_DEPTH",
    "AllOf",
    "AnswerEquals",
    "AnswerIn",
    "AnyOf",
    "CommentContains",
    "ContactRequested",
    "Explanation",
    "FirstOf",
    "FromAnswer",
    "FunctionPredicate",
    "FunctionRouter",
    "Match",
    "Not",
    "NpsBetween",
    "Predicate",
    "PredicateLike",
    "RotationState",
    "RoundRobin",
    "Router",
    "RouterLike",
    "ScoreMissing",
    "ToUser",
    "Trigger",
    "TriggerExplanation",
    "TriggerSet",
    "all_of",
    "answer_at",
    "answer_equals",
    "answer_in",
    "any_of",
    "comment_contains",
    "contact_requested",
    "due_at",
    "evaluate",
    "explain",
    "first_of",
    "from_answer",
    "not_",
    "nps_between",
    "predicate",
    "round_robin",
    "score_missing",
    "to_router",
]


def _when(value: Any) -> Predicate:
    return as_predicate(value, "when")


def _priority(value: Any) -> Priority:
    return Priority.parse(value)


@frozen
class Trigger:
    """A named condition that opens a case, and how that case starts out.

    Args:
        name: unique among the triggers; explanations and events use it.
        when: a :class:`Predicate` or a function ``(response) -> bool``.
        priority: the case's :class:`~closeloop.model.Priority` (or its value).
        assign_to: a user id, a :class:`Router`, a function
            ``(response) -> user id | None``, or ``None`` to leave the case unassigned.
        due_in: the SLA: the case is due this long after the response was submitted.
        reason: what the case's ``reasons`` record; defaults to ``name``.

    Example::

        Trigger("detractor", nps_between(0, 6), priority="high",
                assign_to=first_of(from_answer("account_manager"), fallback="cx-team"),
                due_in=timedelta(hours=48))
    """

    name: str = field(validator=attrs_validator(check_id))
    when: Predicate = field(converter=_when)
    priority: Priority = field(default=Priority.NORMAL, converter=_priority, kw_only=True)
    assign_to: Router | None = field(default=None, converter=to_router, kw_only=True)
    due_in: timedelta | None = field(
        default=None, validator=attrs_validator(check_optional_positive_timedelta), kw_only=True
    )
    #: ``None`` given (the default) becomes ``name``.
    reason: str = field(default=None, kw_only=True)

    def __attrs_post_init__(self) -> None:
        if self.reason is None:
            object.__setattr__(self, "reason", self.name)
        check_id("reason", self.reason)

    def matches(self, response: SurveyResponse) -> bool:
        """Whether ``response`` matches; a failing condition raises InvalidInput naming the trigger."""
        try:
            return self.when(response)
        except Exception as exc:
            raise _condition_failed(self, response, exc) from exc

    def explain(self, response: SurveyResponse) -> TriggerExplanation:
        """Whether ``response`` matches and why, computed the slow, detailed way."""
        try:
            condition = self.when.explain(response)
        except Exception as exc:
            raise _condition_failed(self, response, exc) from exc
        return TriggerExplanation(self.name, condition.matched, condition.why, condition)

    def route(self, response: SurveyResponse, rotation: RotationState) -> str | None:
        """Whom a case this trigger opens for ``response`` is assigned to (``None``: nobody).

        Raises:
            InvalidInput: a routing function failed or returned a bad id; names the trigger.
            StoreError: the rotation state failed.
        """
        if self.assign_to is None:
            return None
        try:
            return self.assign_to.route(response, rotation)
        except InvalidInput as exc:
            raise InvalidInput(f"trigger {self.name!r}", response, f"assign_to: {exc}") from exc
        except CloseLoopError:
            raise  # a failing store (StoreError) is not a configuration bug
        except Exception as exc:
            reason = f"assign_to raised {type(exc).__name__}: {exc}"
            raise InvalidInput(f"trigger {self.name!r}", response, reason) from exc


def _condition_failed(trigger: Trigger, response: Any, exc: BaseException) -> InvalidInput:
    return InvalidInput(
        f"trigger {trigger.name!r}", response, f"its condition raised {type(exc).__name__}: {exc}"
    )


def due_at(
    trigger: Trigger, response: SurveyResponse, now: datetime,
    calendar: BusinessHours | None = None,
) -> datetime | None:
    """When a case opened by ``trigger`` for ``response`` is due, or ``None`` without an SLA.

    The SLA runs from the response's ``submitted_at``, or from ``now`` (aware)
    when the survey tool did not say; with a ``calendar`` it counts business time
    only (``due_in=timedelta(hours=4)`` from Friday 16:00 is Monday 12:00 on
    Mon-Fri 09:00-17:00).
    """
    aware_datetime("now", now)
    if trigger.due_in is None:
        return None
    start = response.submitted_at or now
    if calendar is not None:
        return calendar.add(start, trigger.due_in)
    return start + trigger.due_in


@frozen
class Match:
    """The triggers one response matched: the case to open is built from it.

    Attributes:
        triggers: every matching trigger, in trigger order.
        reasons: their ``reason``, in order and without repeats (the case's ``reasons``).
    """

    triggers: tuple[Trigger, ...]
    reasons: tuple[str, ...]

    @property
    def trigger(self) -> Trigger:
        """The first matching trigger: it sets priority, assignee and due date."""
        return self.triggers[0]

    @property
    def priority(self) -> Priority:
        """The priority of the first matching trigger."""
        return self.triggers[0].priority


@frozen
class TriggerExplanation:
    """Whether one trigger matched one response, and why.

    Attributes:
        name: the trigger's name.
        matched: whether it matched.
        why: the verdict in words (which part failed or matched).
        condition: the full :class:`Explanation` tree of its predicate.
    """

    name: str
    matched: bool
    why: str
    condition: Explanation

    @property
    def description(self) -> str:
        """What the trigger's condition tests, in words."""
        return self.condition.description


#: Combinations of matching triggers whose Match is cached; more are built each time.
_MAX_CACHED_MATCHES = 4096


class TriggerSet:
    """An ordered list of triggers, compiled once to evaluate many responses fast.

    The facade builds one from its triggers; :func:`evaluate` and :func:`explain`
    accept either a TriggerSet or a plain list.

    Raises:
        InvalidInput: an item is not a :class:`Trigger`, or two share a name.
    """

    __slots__ = ("_hits", "_matches", "triggers")

    def __init__(self, triggers: Iterable[Trigger]) -> None:
        if isinstance(triggers, Trigger | str) or not isinstance(triggers, Iterable):
            raise InvalidInput("triggers", triggers, "must be a list of triggers")
        self.triggers: tuple[Trigger, ...] = tuple(triggers)
        first_index: dict[str, int] = {}
        for index, trigger in enumerate(self.triggers):
            if not isinstance(trigger, Trigger):
                raise InvalidInput(f"triggers[{index}]", trigger, "must be a Trigger")
            if trigger.name in first_index:
                raise InvalidInput(
                    f"triggers[{index}].name",
                    trigger.name,
                    f"duplicate trigger name (also triggers[{first_index[trigger.name]}])",
                )
            first_index[trigger.name] = index
        source = _Source()
        lines = ["def _hits(r):", "    h = 0"]
        for index, trigger in enumerate(self.triggers):
            lines += [f"    if {trigger.when._emit(source)}:", f"        h |= {1 << index}"]
        lines.append("    return h")
        self._hits: Callable[[SurveyResponse], int] = source.compile(lines, "_hits")
        self._matches: dict[int, Match] = {}

    def evaluate(self, response: SurveyResponse) -> Match | None:
        """Return which triggers ``response`` matches, or ``None`` if none does.

        Raises:
            InvalidInput: ``response`` is not a SurveyResponse, or a trigger's
                condition raised (the error names the trigger and chains the cause).
        """
        if not isinstance(response, SurveyResponse):
            raise InvalidInput("response", response, "must be a SurveyResponse")
        try:
            hits = self._hits(response)
        except Exception as exc:
            raise self._failure(response, exc) from exc
        if not hits:
            return None
        match = self._matches.get(hits)
        if match is None:
            match = self._match(hits)
        return match

    def explain(self, response: SurveyResponse) -> list[TriggerExplanation]:
        """For every trigger, in order: whether ``response`` matches it and why. Writes nothing."""
        if not isinstance(response, SurveyResponse):
            raise InvalidInput("response", response, "must be a SurveyResponse")
        return [trigger.explain(response) for trigger in self.triggers]

    def _match(self, hits: int) -> Match:
        matched = tuple(t for index, t in enumerate(self.triggers) if hits >> index & 1)
        match = Match(matched, tuple(dict.fromkeys(t.reason for t in matched)))
        if len(self._matches) < _MAX_CACHED_MATCHES:
            self._matches[hits] = match
        return match

    def _failure(self, response: SurveyResponse, exc: Exception) -> InvalidInput:
        # The compiled function cannot say which trigger failed: ask each in turn.
        for trigger in self.triggers:
            try:
                trigger.matches(response)
            except InvalidInput as error:
                return error
        return InvalidInput("triggers", response, f"a condition raised {type(exc).__name__}: {exc}")

    def __iter__(self) -> Iterator[Trigger]:
        return iter(self.triggers)

    def __len__(self) -> int:
        return len(self.triggers)

    def __repr__(self) -> str:
        return f"TriggerSet({[t.name for t in self.triggers]!r})"


# One compiled set, for callers who pass the same list again and again.
_last_compiled: TriggerSet | None = None


def _trigger_set(triggers: TriggerSet | Iterable[Trigger]) -> TriggerSet:
    global _last_compiled
    if isinstance(triggers, TriggerSet):
        return triggers
    cached = _last_compiled
    # Identity, not equality: answer_equals("k", 1) == answer_equals("k", True), yet
    # they match different answers, so equal-looking lists must not share a compiled set.
    if (
        cached is not None
        and type(triggers) in (list, tuple)
        and len(cached.triggers) == len(triggers)  # type: ignore[arg-type]
        and all(a is b for a, b in zip(cached.triggers, triggers, strict=True))
    ):
        return cached
    if isinstance(triggers, Trigger | str) or not isinstance(triggers, Iterable):
        raise InvalidInput("triggers", triggers, "must be a list of triggers")
    key = tuple(triggers)
    _last_compiled = compiled = TriggerSet(key)
    return compiled


def evaluate(triggers: TriggerSet | Iterable[Trigger], response: SurveyResponse) -> Match | None:
    """Return the triggers ``response`` matches, in order, or ``None`` if none does.

    One case is opened per match: routing, priority and due date come from the
    first matching trigger (:attr:`Match.trigger`), and the case records the
    reasons of all of them (:attr:`Match.reasons`).

    Example::

        match = evaluate([Trigger("detractor", nps_between(0, 6))], response)
        if match is not None:
            print(match.reasons)            # ('detractor',)

    Raises:
        InvalidInput: bad triggers, or a trigger's condition raised (naming the trigger).
    """
    return _trigger_set(triggers).evaluate(response)


def explain(
    triggers: TriggerSet | Iterable[Trigger], response: SurveyResponse
) -> list[TriggerExplanation]:
    """For each trigger, in order: whether ``response`` matches it and why. Pure."""
    return _trigger_set(triggers).explain(response)
