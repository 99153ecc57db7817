"""Triggers: which survey responses open a case, for whom, and how urgently.

Pure domain logic: nothing here reads a clock, a database or the network.

A **predicate** is a condition on a :class:`~closeloop.model.SurveyResponse`.
The built-ins describe themselves and explain their verdict; compose them with
``&``, ``|``, ``~`` (or :func:`all_of`, :func:`any_of`, :func:`not_`). Any
function ``(response) -> bool`` is a predicate too::

    >>> from closeloop.triggers import nps_between, contact_requested
    >>> urgent = nps_between(0, 6) & contact_requested()
    >>> urgent.description
    'score in 0..6 and contact requested'

A :class:`Trigger` names a predicate and says what a match opens: priority,
assignee (a :class:`Router`) and an SLA (``due_in``). :func:`evaluate` tries the
triggers in order; one case is opened per response, routed by the first match
and carrying the reasons of every match. :func:`explain` says, for each
trigger, whether it matched and why.

Why evaluation generates code: the facade runs every trigger against every
response, and a rule set should cost about what the equivalent hand-written
``if`` chain costs. Each built-in predicate therefore emits a small Python
expression; a :class:`TriggerSet` joins them into one function, compiled once.
The generated source contains only names chosen here and validated integers;
every other value (answer keys, words, user functions) is passed in a
namespace, never spliced into the source.
"""

from __future__ import annotations

import functools
import hashlib
import math
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import datetime, timedelta
from typing import Any, Protocol, TypeAlias, runtime_checkable

import attrs
from attrs import field, frozen

from closeloop.errors import CloseLoopError, InvalidInput, StoreError
from closeloop.model import Priority, SurveyResponse
from closeloop.validate import (
    MAX_ID_LENGTH,
    attrs_validator,
    aware_datetime,
    check_id,
    check_optional_id,
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

#: How deeply ``all_of`` / ``any_of`` / ``not_`` (and ``first_of``) may nest.
MAX_DEPTH = 32

#: Anything a trigger accepts as its condition: a :class:`Predicate` or a
#: function ``(response) -> bool``.
PredicateLike: TypeAlias = Callable[[SurveyResponse], bool]

_MISSING: Any = object()


@frozen
class Explanation:
    """Why a predicate did or did not match one response.

    Attributes:
        matched: the predicate's verdict.
        description: what the predicate tests, e.g. ``"score in 0..6"``.
        why: the verdict in words, e.g. ``"score 8 is not in 0..6"``. For a
            failed ``all_of`` it names the parts that failed; for a matched
            ``any_of``, the parts that matched.
        parts: the explanations of a composite's parts, in order.
    """

    matched: bool
    description: str
    why: str
    parts: tuple[Explanation, ...] = ()


class _Source:
    """The constants a generated expression refers to, under the names it uses."""

    def __init__(self) -> None:
        # No builtins: generated code may only use what is put here.
        self.namespace: dict[str, Any] = {"__builtins__": {}, "bool": bool, "str": str}

    def constant(self, value: Any) -> str:
        name = f"_k{len(self.namespace)}"
        self.namespace[name] = value
        return name

    def compile(self, lines: list[str], name: str) -> Callable[..., Any]:
        code = compile("\n".join(lines), f"<closeloop.triggers {name}>", "exec")
        # The source holds only names made here and validated ints (see module docstring).
        exec(code, self.namespace)  # noqa: S102
        function: Callable[..., Any] = self.namespace[name]
        return function


# ----------------------------------------------------------------------------------------------
# Predicates


@frozen
class Predicate:
    """Base class of the built-in conditions; call it with a response to test it.

    Use the factory functions (:func:`nps_between`, :func:`all_of`, …) rather
    than the classes. To write your own condition, pass a function
    ``(response) -> bool`` wherever a predicate is expected, or wrap it with
    :func:`predicate` to give it a description.
    """

    _test: Callable[[SurveyResponse], bool] | None = field(
        init=False, default=None, eq=False, repr=False, hash=False
    )

    @property
    def description(self) -> str:
        """What the predicate tests, in words (``"score in 0..6 and contact requested"``)."""
        raise NotImplementedError

    @property
    def depth(self) -> int:
        """How many levels of predicates this one is made of (1 for a simple one)."""
        return 1

    def explain(self, response: SurveyResponse) -> Explanation:
        """Test ``response`` the slow, talkative way: the verdict and why."""
        raise NotImplementedError

    def _emit(self, source: _Source) -> str:
        """A Python expression over the response ``r`` that is this predicate's verdict."""
        raise NotImplementedError

    def __call__(self, response: SurveyResponse) -> bool:
        test = self._test
        if test is None:
            source = _Source()
            test = source.compile(["def _test(r):", f"    return {self._emit(source)}"], "_test")
            object.__setattr__(self, "_test", test)
        return test(response)

    def __and__(self, other: PredicateLike) -> AllOf:
        if not callable(other):
            return NotImplemented
        return all_of(self, other)

    def __rand__(self, other: PredicateLike) -> AllOf:
        if not callable(other):
            return NotImplemented
        return all_of(other, self)

    def __or__(self, other: PredicateLike) -> AnyOf:
        if not callable(other):
            return NotImplemented
        return any_of(self, other)

    def __ror__(self, other: PredicateLike) -> AnyOf:
        if not callable(other):
            return NotImplemented
        return any_of(other, self)

    def __invert__(self) -> Not:
        return not_(self)

    def __str__(self) -> str:
        return self.description


def _score_bound(field_name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 10:
        raise InvalidInput(field_name, value, "must be an integer from 0 to 10")


@frozen
class NpsBetween(Predicate):
    """The score is answered and within ``lo..hi`` (inclusive). See :func:`nps_between`."""

    lo: int = field(validator=attrs_validator(_score_bound))
    hi: int = field(validator=attrs_validator(_score_bound))

    def __attrs_post_init__(self) -> None:
        if self.lo > self.hi:
            raise InvalidInput("lo", self.lo, f"must not be greater than hi ({self.hi})")

    @property
    def description(self) -> str:
        return f"score in {self.lo}..{self.hi}"

    def explain(self, response: SurveyResponse) -> Explanation:
        score = response.score
        if score is None:
            return Explanation(False, self.description, "score is missing")
        matched = self.lo <= score <= self.hi
        verdict = "is" if matched else "is not"
        return Explanation(matched, self.description, f"score {score} {verdict} in {self.lo}..{self.hi}")

    def _emit(self, source: _Source) -> str:
        # Scores are validated ints 0..10, so an open end needs no comparison.
        lo, hi = int(self.lo), int(self.hi)
        if lo == 0 and hi == 10:
            return "(r.score is not None)"
        if lo == 0:
            return f"((_s := r.score) is not None and _s <= {hi})"
        if hi == 10:
            return f"((_s := r.score) is not None and _s >= {lo})"
        return f"((_s := r.score) is not None and {lo} <= _s <= {hi})"


@frozen
class ContactRequested(Predicate):
    """The "please contact me" box is ticked. See :func:`contact_requested`."""

    @property
    def description(self) -> str:
        return "contact requested"

    def explain(self, response: SurveyResponse) -> Explanation:
        matched = response.contact_requested
        why = "contact was requested" if matched else "contact was not requested"
        return Explanation(matched, self.description, why)

    def _emit(self, source: _Source) -> str:
        return "r.contact_requested"


@frozen
class ScoreMissing(Predicate):
    """The score question was skipped. See :func:`score_missing`."""

    @property
    def description(self) -> str:
        return "score missing"

    def explain(self, response: SurveyResponse) -> Explanation:
        if response.score is None:
            return Explanation(True, self.description, "score is missing")
        return Explanation(False, self.description, f"score is {response.score}")

    def _emit(self, source: _Source) -> str:
        return "(r.score is None)"


def _check_scalar(field_name: str, value: Any) -> None:
    if isinstance(value, float) and not math.isfinite(value):
        raise InvalidInput(field_name, value, "must be a finite number")
    if not isinstance(value, str | int | float):  # bool is an int
        raise InvalidInput(field_name, value, "must be a string, number or boolean")


def _check_key(field_name: str, value: Any) -> None:
    check_id(field_name, value)


def _answer_equals(answer: Any, value: Any) -> bool:
    # True == 1 in Python; an answer of True is not the number 1 here.
    if isinstance(value, bool) or isinstance(answer, bool):
        return answer is value
    return bool(answer == value) if isinstance(answer, str | int | float) else False


@frozen
class AnswerEquals(Predicate):
    """The answer to ``key`` is exactly ``value``. See :func:`answer_equals`."""

    key: str = field(validator=attrs_validator(_check_key))
    value: str | int | float | bool = field(validator=attrs_validator(_check_scalar))

    @property
    def description(self) -> str:
        return f"answer {self.key!r} is {self.value!r}"

    def explain(self, response: SurveyResponse) -> Explanation:
        answer = response.answers.get(self.key, _MISSING)
        if answer is _MISSING:
            return Explanation(False, self.description, f"answer {self.key!r} is missing")
        if _answer_equals(answer, self.value):
            return Explanation(True, self.description, f"answer {self.key!r} is {answer!r}")
        why = f"answer {self.key!r} is {answer!r}, not {self.value!r}"
        return Explanation(False, self.description, why)

    def _emit(self, source: _Source) -> str:
        key, value = source.constant(self.key), source.constant(self.value)
        if isinstance(self.value, bool):
            return f"(r.answers.get({key}) is {value})"
        if isinstance(self.value, str):
            return f"(r.answers.get({key}) == {value})"
        return f"((_a := r.answers.get({key})).__class__ is not bool and _a == {value})"


def _values(value: Any) -> tuple[str | int | float | bool, ...]:
    if isinstance(value, str | bytes) or not isinstance(value, Sequence | set | frozenset):
        raise InvalidInput("values", value, "must be a list of strings, numbers or booleans")
    items = tuple(value)
    if not items:
        raise InvalidInput("values", value, "must not be empty")
    for index, item in enumerate(items):
        _check_scalar(f"values[{index}]", item)
    return items


def _member_test(values: tuple[Any, ...]) -> Callable[[Any], bool]:
    """``answer -> bool``: the answer, or for a multi-choice answer any of its items, is listed."""
    bools = frozenset(v for v in values if isinstance(v, bool))
    plain = frozenset(v for v in values if not isinstance(v, bool))

    def listed(item: Any) -> bool:
        if item.__class__ is bool:
            return item in bools
        return isinstance(item, str | int | float) and item in plain

    def member(answer: Any) -> bool:
        if isinstance(answer, list | tuple):
            return any(listed(item) for item in answer)
        return listed(answer)

    return member


@frozen
class AnswerIn(Predicate):
    """The answer to ``key`` is one of ``values``. See :func:`answer_in`."""

    key: str = field(validator=attrs_validator(_check_key))
    values: tuple[str | int | float | bool, ...] = field(converter=_values)

    @property
    def description(self) -> str:
        return f"answer {self.key!r} is one of {_listing(self.values)}"

    def explain(self, response: SurveyResponse) -> Explanation:
        answer = response.answers.get(self.key, _MISSING)
        if answer is _MISSING:
            return Explanation(False, self.description, f"answer {self.key!r} is missing")
        if _member_test(self.values)(answer):
            return Explanation(True, self.description, f"answer {self.key!r} is {answer!r}")
        why = f"answer {self.key!r} is {answer!r}, not one of {_listing(self.values)}"
        return Explanation(False, self.description, why)

    def _emit(self, source: _Source) -> str:
        key, member = source.constant(self.key), source.constant(_member_test(self.values))
        if all(isinstance(v, str) for v in self.values):
            strings = source.constant(frozenset(self.values))
            return (
                f"({member}(_a) if (_a := r.answers.get({key})).__class__ is not str "
                f"else _a in {strings})"
            )
        return f"{member}(r.answers.get({key}))"


def _listing(values: Iterable[Any], last: str = ", ") -> str:
    items = [repr(v) for v in values]
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + last + items[-1]


def _words(value: Any) -> tuple[str, ...]:
    if isinstance(value, str) or not isinstance(value, Sequence):
        raise InvalidInput("words", value, "must be a list of words")
    if not value:
        raise InvalidInput("words", value, "needs at least one word")
    return tuple(check_id(f"words[{index}]", word) for index, word in enumerate(value))


@functools.lru_cache(maxsize=256)
def _word_pattern(words: tuple[str, ...]) -> re.Pattern[str]:
    """Whole words (or phrases), matched against the casefolded comment; group i+1 is word i."""
    alternatives = (r"\s+".join(re.escape(part) for part in word.casefold().split()) for word in words)
    # Look-arounds rather than \b so that words starting or ending in punctuation ("c++") work.
    return re.compile(r"(?<!\w)(?:" + "|".join(f"({alt})" for alt in alternatives) + r")(?!\w)")


@frozen
class CommentContains(Predicate):
    """The comment mentions one of ``words``. See :func:`comment_contains`."""

    words: tuple[str, ...] = field(converter=_words)

    @property
    def description(self) -> str:
        return f"comment mentions {_listing(self.words, ' or ')}"

    def explain(self, response: SurveyResponse) -> Explanation:
        if response.comment is None:
            return Explanation(False, self.description, "there is no comment")
        found = _word_pattern(self.words).search(response.comment.casefold())
        if found is None:
            why = f"comment does not mention {_listing(self.words, ' or ')}"
            return Explanation(False, self.description, why)
        word = self.words[(found.lastindex or 1) - 1]
        return Explanation(True, self.description, f"comment mentions {word!r}")

    def _emit(self, source: _Source) -> str:
        search = source.constant(_word_pattern(self.words).search)
        return f"((_c := r.comment) is not None and {search}(_c.casefold()) is not None)"


def _checked(function: Callable[[SurveyResponse], Any], label: str) -> Callable[[SurveyResponse], bool]:
    def call(response: SurveyResponse) -> bool:
        result = function(response)
        if result is True or result is False:
            return result
        raise TypeError(
            f"predicate {label!r} returned {result!r}; a predicate must return True or False"
        )

    return call


def _label(field_name: str, value: Any) -> None:
    check_id(field_name, value)


def _callable(field_name: str, value: Any) -> None:
    if not callable(value):
        raise InvalidInput(field_name, value, "must be callable: (SurveyResponse) -> bool")


@frozen
class FunctionPredicate(Predicate):
    """Your own condition: a function ``(response) -> bool``. See :func:`predicate`.

    The function must return ``True`` or ``False``; anything else (``None``, a
    string, a count) raises :class:`TypeError` rather than being taken as
    truthy, because that is almost always a bug in the function. Called from a
    trigger, the error (or anything the function raises) becomes an
    :class:`~closeloop.errors.InvalidInput` naming the trigger.
    """

    function: Callable[[SurveyResponse], bool] = field(validator=attrs_validator(_callable))
    label: str = field(validator=attrs_validator(_label))

    @property
    def description(self) -> str:
        return self.label

    def explain(self, response: SurveyResponse) -> Explanation:
        if isinstance(self.function, Predicate):
            inner = self.function.explain(response)
            return Explanation(inner.matched, self.label, inner.why, (inner,))
        matched = _checked(self.function, self.label)(response)
        return Explanation(matched, self.label, f"{self.label} returned {matched}")

    def _emit(self, source: _Source) -> str:
        return f"{source.constant(_checked(self.function, self.label))}(r)"


def _parts(value: Any) -> tuple[Predicate, ...]:
    if isinstance(value, Predicate) or not isinstance(value, Iterable):
        raise InvalidInput("predicates", value, "must be a list of predicates")
    parts = tuple(value)
    if not parts:
        raise InvalidInput("predicates", value, "needs at least one predicate")
    for index, part in enumerate(parts):
        if not isinstance(part, Predicate):
            raise InvalidInput(f"predicates[{index}]", part, "must be a Predicate")
    depth = 1 + max(part.depth for part in parts)
    if depth > MAX_DEPTH:
        raise InvalidInput("predicates", depth, f"may nest at most {MAX_DEPTH} levels deep")
    return parts


def _phrase(part: Predicate) -> str:
    return f"({part.description})" if isinstance(part, AllOf | AnyOf) else part.description


@frozen
class AllOf(Predicate):
    """Every part matches. See :func:`all_of` and ``&``."""

    predicates: tuple[Predicate, ...] = field(converter=_parts)

    @property
    def description(self) -> str:
        return " and ".join(_phrase(part) for part in self.predicates)

    @property
    def depth(self) -> int:
        return 1 + max(part.depth for part in self.predicates)

    def explain(self, response: SurveyResponse) -> Explanation:
        parts = tuple(part.explain(response) for part in self.predicates)
        failed = [part for part in parts if not part.matched]
        why = "; ".join(part.why for part in (failed or parts))
        return Explanation(not failed, self.description, why, parts)

    def _emit(self, source: _Source) -> str:
        return "(" + " and ".join(part._emit(source) for part in self.predicates) + ")"


@frozen
class AnyOf(Predicate):
    """At least one part matches. See :func:`any_of` and ``|``."""

    predicates: tuple[Predicate, ...] = field(converter=_parts)

    @property
    def description(self) -> str:
        return " or ".join(_phrase(part) for part in self.predicates)

    @property
    def depth(self) -> int:
        return 1 + max(part.depth for part in self.predicates)

    def explain(self, response: SurveyResponse) -> Explanation:
        parts = tuple(part.explain(response) for part in self.predicates)
        matched = [part for part in parts if part.matched]
        why = "; ".join(part.why for part in (matched or parts))
        return Explanation(bool(matched), self.description, why, parts)

    def _emit(self, source: _Source) -> str:
        return "(" + " or ".join(part._emit(source) for part in self.predicates) + ")"


def _negated(value: Any) -> Predicate:
    if not isinstance(value, Predicate):
        raise InvalidInput("predicate", value, "must be a Predicate")
    if value.depth + 1 > MAX_DEPTH:
        raise InvalidInput("predicate", value.depth + 1, f"may nest at most {MAX_DEPTH} levels deep")
    return value


@frozen
class Not(Predicate):
    """The part does not match. See :func:`not_` and ``~``."""

    predicate: Predicate = field(converter=_negated)

    @property
    def description(self) -> str:
        return f"not {_phrase(self.predicate)}"

    @property
    def depth(self) -> int:
        return 1 + self.predicate.depth

    def explain(self, response: SurveyResponse) -> Explanation:
        inner = self.predicate.explain(response)
        return Explanation(not inner.matched, self.description, inner.why, (inner,))

    def _emit(self, source: _Source) -> str:
        return f"(not {self.predicate._emit(source)})"


def nps_between(lo: int, hi: int) -> NpsBetween:
    """Match responses whose score is answered and in ``lo..hi``, both ends included.

    Args:
        lo: lowest matching score, an ``int`` 0–10.
        hi: highest matching score, an ``int`` from ``lo`` to 10.

    Raises:
        InvalidInput: a bound is not an int 0–10, or ``lo > hi``.

    Example: ``nps_between(0, 6)`` matches detractors.
    """
    return NpsBetween(lo, hi)


def contact_requested() -> ContactRequested:
    """Match responses with the "please contact me" box ticked."""
    return ContactRequested()


def score_missing() -> ScoreMissing:
    """Match responses whose score question was skipped."""
    return ScoreMissing()


def answer_equals(key: str, value: str | int | float | bool) -> AnswerEquals:
    """Match responses whose answer to ``key`` is exactly ``value``.

    ``True`` does not equal ``1`` here, and a multi-choice (list) answer never
    equals a single value: use :func:`answer_in` for those.
    """
    return AnswerEquals(key, value)


def answer_in(key: str, values: Iterable[str | int | float | bool]) -> AnswerIn:
    """Match responses whose answer to ``key`` is one of ``values``.

    For a multi-choice answer (a list), it matches when any chosen item is listed.

    Example: ``answer_in("plan", ["business", "enterprise"])``.
    """
    return AnswerIn(key, values)


def comment_contains(*words: str) -> CommentContains:
    """Match responses whose comment mentions any of ``words``.

    Matching is by whole word (``"late"`` does not match ``"chocolate"``) and
    ignores case (Unicode casefolding). A word may be a phrase
    (``"not happy"``); any run of whitespace in the comment matches its spaces.
    """
    return CommentContains(words)


def all_of(*predicates: PredicateLike) -> AllOf:
    """Match when every one of ``predicates`` matches (also written ``p & q``).

    Nested ``all_of`` parts are flattened: ``all_of(all_of(a, b), c)`` is
    ``all_of(a, b, c)``.
    """
    return AllOf(_flatten(AllOf, predicates, "all_of"))


def any_of(*predicates: PredicateLike) -> AnyOf:
    """Match when at least one of ``predicates`` matches (also written ``p | q``)."""
    return AnyOf(_flatten(AnyOf, predicates, "any_of"))


def not_(predicate: PredicateLike) -> Not:
    """Match exactly when ``predicate`` does not (also written ``~p``)."""
    return Not(_as_predicate(predicate, "predicate"))


def predicate(function: PredicateLike, description: str | None = None) -> Predicate:
    """Turn a function ``(response) -> bool`` into a predicate that composes and explains.

    Args:
        function: called with the :class:`~closeloop.model.SurveyResponse`; it
            must return ``True`` or ``False`` and should not have side effects
            (:func:`explain` and backtests call it too).
        description: how explanations name it; defaults to the function's name.

    A :class:`Predicate` given without a description is returned unchanged.

    Example::

        is_vip = predicate(lambda r: r.answers.get("tier") == "vip", "VIP customer")
    """
    if isinstance(function, Predicate) and description is None:
        return function
    _callable("predicate", function)
    label = description if description is not None else getattr(function, "__name__", None)
    return FunctionPredicate(function, label or type(function).__name__)


def _as_predicate(value: Any, field_name: str) -> Predicate:
    if isinstance(value, Predicate):
        return value
    if not callable(value):
        raise InvalidInput(field_name, value, "must be a predicate or a function (response) -> bool")
    return predicate(value)


def _flatten(kind: type[AllOf | AnyOf], items: Sequence[Any], field_name: str) -> list[Predicate]:
    parts: list[Predicate] = []
    for index, item in enumerate(items):
        part = _as_predicate(item, f"{field_name}[{index}]")
        if type(part) is kind:
            parts.extend(part.predicates)
        else:
            parts.append(part)
    if not parts:
        raise InvalidInput(field_name, items, "needs at least one predicate")
    return parts


# ----------------------------------------------------------------------------------------------
# Routing


@runtime_checkable
class RotationState(Protocol):
    """Protocol: where :func:`round_robin` routers keep whose turn it is.

    The facade passes its store, which implements this, so a rotation survives
    restarts and stays fair across processes sharing the store.
    """

    def next_in_rotation(self, key: str, size: int) -> int:
        """Return whose turn it is in rotation ``key`` of ``size`` members, and advance it.

        The result is an index ``0 <= i < size``. Successive calls for one key
        cycle through ``0, 1, …, size - 1, 0, …``. Reading and advancing is one
        atomic step: concurrent callers (threads or processes) never get the
        same turn. If ``size`` changes for a key, continue the count modulo the
        new size.
        """
        ...


@runtime_checkable
class Router(Protocol):
    """Protocol: chooses who a newly opened case is assigned to.

    Example, a router that sends Spanish responses to one team member::

        class BySurveyLanguage:
            def route(self, response, rotation):
                return "maria" if response.answers.get("language") == "es" else None
    """

    def route(self, response: SurveyResponse, rotation: RotationState) -> str | None:
        """Return the user id to assign the case to, or ``None`` to leave it unassigned."""
        ...


#: Anything a trigger accepts as ``assign_to``: a user id, a :class:`Router`,
#: a function ``(response) -> user id | None``, or ``None``.
RouterLike: TypeAlias = "str | Router | Callable[[SurveyResponse], str | None] | None"


@frozen
class ToUser:
    """Always the same user (what a plain user id in ``assign_to`` means)."""

    user: str = field(validator=attrs_validator(check_id))

    def route(self, response: SurveyResponse, rotation: RotationState) -> str | None:
        """Return the user."""
        return self.user


@frozen
class FromAnswer:
    """The user named by an answer of the response. See :func:`from_answer`."""

    key: str = field(validator=attrs_validator(_check_key))

    def route(self, response: SurveyResponse, rotation: RotationState) -> str | None:
        """Return the answer if it is a usable user id, else ``None``."""
        answer = response.answers.get(self.key)
        try:
            return check_id(self.key, answer)
        except InvalidInput:
            return None


def _users(value: Any) -> tuple[str, ...]:
    if isinstance(value, str) or not isinstance(value, Sequence):
        raise InvalidInput("users", value, "must be a list of user ids")
    if not value:
        raise InvalidInput("users", value, "needs at least one user")
    return tuple(check_id(f"users[{index}]", user) for index, user in enumerate(value))


def _rotation_key(users: tuple[str, ...]) -> str:
    key = "round_robin:" + ",".join(users)
    if len(key) <= MAX_ID_LENGTH:
        return key
    digest = hashlib.sha256("\x00".join(users).encode()).hexdigest()
    return f"round_robin:sha256:{digest[:40]}"


def _default_rotation_key(router: RoundRobin) -> str:
    return _rotation_key(router.users)


@frozen
class RoundRobin:
    """Each user in turn, the turn kept in the store. See :func:`round_robin`."""

    users: tuple[str, ...] = field(converter=_users)
    key: str = field(
        default=attrs.Factory(_default_rotation_key, takes_self=True),
        validator=attrs_validator(check_id),
    )

    def route(self, response: SurveyResponse, rotation: RotationState) -> str | None:
        """Return the user whose turn it is, advancing the rotation."""
        size = len(self.users)
        index = rotation.next_in_rotation(self.key, size)
        if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < size:
            raise StoreError(
                f"rotation {self.key!r} returned turn {index!r}; expected 0 to {size - 1}"
            )
        return self.users[index]


def _routers(value: Any) -> tuple[Router, ...]:
    routers = tuple(to_router(item, f"routers[{index}]") for index, item in enumerate(value))
    if not routers or any(router is None for router in routers):
        raise InvalidInput("routers", value, "must be one or more routers (not None)")
    depth = 1 + max(_router_depth(router) for router in routers)
    if depth > MAX_DEPTH:
        raise InvalidInput("routers", depth, f"may nest at most {MAX_DEPTH} levels deep")
    return routers  # type: ignore[return-value]  # None was refused above


def _router_depth(router: Any) -> int:
    return 1 + max(map(_router_depth, router.routers)) if isinstance(router, FirstOf) else 1


@frozen
class FirstOf:
    """The first router that names someone, else ``fallback``. See :func:`first_of`."""

    routers: tuple[Router, ...] = field(converter=_routers)
    fallback: str | None = field(default=None, validator=attrs_validator(check_optional_id))

    def route(self, response: SurveyResponse, rotation: RotationState) -> str | None:
        """Ask each router in order; later routers (and their rotations) are not consulted."""
        for router in self.routers:
            user = router.route(response, rotation)
            if user is not None:
                return user
        return self.fallback


@frozen
class FunctionRouter:
    """Your own routing function ``(response) -> user id | None``."""

    function: Callable[[SurveyResponse], str | None] = field(
        validator=attrs_validator(_callable)
    )

    def route(self, response: SurveyResponse, rotation: RotationState) -> str | None:
        """Call the function; raise InvalidInput if it returns something other than an id or None."""
        user = self.function(response)
        if user is None:
            return None
        try:
            return check_id("user", user)
        except InvalidInput as exc:
            name = getattr(self.function, "__name__", type(self.function).__name__)
            raise InvalidInput(
                f"router {name!r}", user, f"must return a user id or None; {exc.reason}"
            ) from None


def from_answer(key: str) -> FromAnswer:
    """Route to the user id given in the response's answer to ``key``.

    An answer that is missing, not a string, or not a usable id routes nowhere
    (``None``), so a :func:`first_of` fallback applies::

        first_of(from_answer("account_manager"), fallback="cx-team")
    """
    return FromAnswer(key)


def round_robin(users: Sequence[str], *, key: str | None = None) -> RoundRobin:
    """Route to each of ``users`` in turn.

    The turn is kept in the :class:`RotationState` passed at routing time (the
    store), so it survives restarts and is fair across processes.

    Args:
        users: user ids, in rotation order (list one twice to give them two turns).
        key: names the rotation in the store; defaults to one derived from
            ``users``, so two triggers with the same list share one rotation.
    """
    if key is None:
        return RoundRobin(users)
    return RoundRobin(users, key)


def first_of(*routers: RouterLike, fallback: str | None = None) -> FirstOf:
    """Ask each router in order; the first that names a user wins, else ``fallback``."""
    return FirstOf(routers, fallback)


def to_router(value: Any, field_name: str = "assign_to") -> Router | None:
    """Normalise an ``assign_to`` value into a :class:`Router` (or ``None``).

    A string is a user id (:class:`ToUser`), a :class:`Router` is kept, any other
    callable is a routing function (:class:`FunctionRouter`).
    """
    if value is None:
        return None
    if isinstance(value, str):
        return ToUser(check_id(field_name, value))
    if isinstance(value, Router):
        return value
    if callable(value):
        return FunctionRouter(value)
    raise InvalidInput(
        field_name, value, "must be a user id, a router, a function (response) -> user id, or None"
    )


# ----------------------------------------------------------------------------------------------
# Triggers


def _when(value: Any) -> Predicate:
    return _as_predicate(value, "when")


def _priority(value: Any) -> Priority:
    return Priority.parse(value)


def _due_in(field_name: str, value: Any) -> None:
    if value is None:
        return
    if not isinstance(value, timedelta):
        raise InvalidInput(field_name, value, "must be a timedelta or None")
    if value <= timedelta(0):
        raise InvalidInput(field_name, value, "must be positive")


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
    due_in: timedelta | None = field(default=None, validator=attrs_validator(_due_in), kw_only=True)
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
        except CloseLoopError as exc:
            if not isinstance(exc, InvalidInput):
                raise
            raise InvalidInput(f"trigger {self.name!r}", response, f"assign_to: {exc}") from exc
        except Exception as exc:
            reason = f"assign_to raised {type(exc).__name__}: {exc}"
            raise InvalidInput(f"trigger {self.name!r}", response, reason) from exc


def _condition_failed(trigger: Trigger, response: Any, exc: BaseException) -> InvalidInput:
    return InvalidInput(
        f"trigger {trigger.name!r}", response, f"its condition raised {type(exc).__name__}: {exc}"
    )


def due_at(trigger: Trigger, response: SurveyResponse, now: datetime) -> datetime | None:
    """When a case opened by ``trigger`` for ``response`` is due, or ``None`` without an SLA.

    The SLA runs from the response's ``submitted_at``, or from ``now`` (aware)
    when the survey tool did not say.
    """
    aware_datetime("now", now)
    if trigger.due_in is None:
        return None
    return (response.submitted_at or now) + trigger.due_in


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
    if isinstance(triggers, Trigger | str) or not isinstance(triggers, Iterable):
        raise InvalidInput("triggers", triggers, "must be a list of triggers")
    key = tuple(triggers)
    cached = _last_compiled
    if cached is not None and cached.triggers == key:
        return cached
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
