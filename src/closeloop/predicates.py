"""Predicates: conditions on a survey response that describe and explain themselves.

Pure domain logic: nothing here reads a clock, a database or the network.

A **predicate** is a condition on a :class:`~closeloop.model.SurveyResponse`.
The built-ins describe themselves and explain their verdict; compose them with
``&``, ``|``, ``~`` (or :func:`all_of`, :func:`any_of`, :func:`not_`). Any
function ``(response) -> bool`` is a predicate too::

    >>> from closeloop.predicates import nps_between, contact_requested
    >>> urgent = nps_between(0, 6) & contact_requested()
    >>> urgent.description
    'score in 0..6 and contact requested'

Triggers (:mod:`closeloop.triggers`) use predicates as their conditions, and
re-export everything public here.

Why this module runs past ~400 lines: it holds one idea, the predicate
vocabulary. Each built-in states its condition three ways that must agree --
``description``, the talkative ``explain`` and the fast expression ``_emit``
hands to :mod:`closeloop._codegen` -- and the composites (``all_of``,
``any_of``, ``not_``) are defined by how they combine those three views of
their parts. Keeping every view of a condition beside the others is what lets
a reader check that they agree; splitting the file would separate them.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, TypeAlias

from attrs import field, frozen

from closeloop._codegen import _Source
from closeloop.errors import InvalidInput
from closeloop.model import SurveyResponse
from closeloop.validate import attrs_validator, check_callable, check_id, check_int

__all__ = [
    "MAX_DEPTH",
    "AllOf",
    "AnswerEquals",
    "AnswerIn",
    "AnyOf",
    "CommentContains",
    "ContactRequested",
    "Explanation",
    "FunctionPredicate",
    "Not",
    "NpsBetween",
    "Predicate",
    "PredicateLike",
    "ScoreMissing",
    "all_of",
    "answer_at",
    "answer_equals",
    "answer_in",
    "any_of",
    "comment_contains",
    "contact_requested",
    "not_",
    "nps_between",
    "predicate",
    "score_missing",
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
    check_int(field_name, value, minimum=0, maximum=10)


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
        lo, hi = int.__index__(self.lo), int.__index__(self.hi)  # exact ints: only digits
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


def answer_at(answers: Mapping[str, Any], path: str, default: Any = None) -> Any:
    """The answer at ``path``, or ``default`` when there is none.

    The path syntax: a key that is in ``answers`` as it is wins (so an answer
    named ``"plan.label"`` is found first); otherwise the path is split on ``.``
    and each part looks up a key in a mapping, or, when it is all digits, an
    index into a list (from 0). ``answer_at(a, "plan.label")`` is
    ``a["plan"]["label"]``; ``answer_at(a, "choices.0.text")`` is
    ``a["choices"][0]["text"]``.

    Example::

        >>> answer_at({"plan": {"label": "Business"}}, "plan.label")
        'Business'
    """
    value = _lookup(answers, path)
    return default if value is _MISSING else value


def _lookup(answers: Mapping[str, Any], path: str) -> Any:
    found = answers.get(path, _MISSING)
    if found is not _MISSING or "." not in path:
        return found
    value: Any = answers
    for part in path.split("."):
        if isinstance(value, Mapping):
            value = value.get(part, _MISSING)
        elif isinstance(value, list | tuple) and part.isascii() and part.isdigit():
            index = int(part)
            value = value[index] if index < len(value) else _MISSING
        else:
            return _MISSING
        if value is _MISSING:
            return _MISSING
    return value


def _answer_code(source: _Source, key: str) -> str:
    """The expression for the answer at ``key`` (``None`` when missing) in compiled code."""
    if "." not in key:
        return f"r.answers.get({source.constant(key)})"
    return f"{source.constant(answer_at)}(r.answers, {source.constant(key)})"


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
        answer = _lookup(response.answers, self.key)
        if answer is _MISSING:
            return Explanation(False, self.description, f"answer {self.key!r} is missing")
        if _answer_equals(answer, self.value):
            return Explanation(True, self.description, f"answer {self.key!r} is {answer!r}")
        why = f"answer {self.key!r} is {answer!r}, not {self.value!r}"
        return Explanation(False, self.description, why)

    def _emit(self, source: _Source) -> str:
        answer, value = _answer_code(source, self.key), source.constant(self.value)
        if isinstance(self.value, bool):
            return f"({answer} is {value})"
        if isinstance(self.value, str):
            return f"({answer} == {value})"
        return f"((_a := {answer}).__class__ is not bool and _a == {value})"


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
        answer = _lookup(response.answers, self.key)
        if answer is _MISSING:
            return Explanation(False, self.description, f"answer {self.key!r} is missing")
        if _member_test(self.values)(answer):
            return Explanation(True, self.description, f"answer {self.key!r} is {answer!r}")
        why = f"answer {self.key!r} is {answer!r}, not one of {_listing(self.values)}"
        return Explanation(False, self.description, why)

    def _emit(self, source: _Source) -> str:
        answer = _answer_code(source, self.key)
        if all(isinstance(v, str) for v in self.values):
            strings = source.constant(frozenset(self.values))
            # A validated multi-choice answer holds only hashable scalars, and a set of
            # strings never equals a number or bool, so isdisjoint is the same test.
            sequences = source.constant((list, tuple))
            return (
                f"(_a in {strings} if (_a := {answer}).__class__ is str "
                f"else _a.__class__ in {sequences} and not {strings}.isdisjoint(_a))"
            )
        member = source.constant(_member_test(self.values))
        return f"{member}({answer})"


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
    check_callable(field_name, value, "callable: (SurveyResponse) -> bool")


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

    ``key`` may be a path into a nested answer: ``answer_equals("plan.label",
    "Business")`` (see :func:`answer_at` for the syntax). ``True`` does not equal
    ``1`` here, and a multi-choice (list) answer never equals a single value: use
    :func:`answer_in` for those.
    """
    return AnswerEquals(key, value)


def answer_in(key: str, values: Iterable[str | int | float | bool]) -> AnswerIn:
    """Match responses whose answer to ``key`` is one of ``values``.

    For a multi-choice answer (a list), it matches when any chosen item is listed.
    ``key`` may be a path into a nested answer (see :func:`answer_at`).

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
    return Not(as_predicate(predicate, "predicate"))


def predicate(function: PredicateLike, description: str | None = None) -> Predicate:
    """Turn a function ``(response) -> bool`` into a predicate that composes and explains.

    Args:
        function: called with the :class:`~closeloop.model.SurveyResponse`; it
            must return ``True`` or ``False`` and should not have side effects
            (:func:`~closeloop.triggers.explain` and backtests call it too).
        description: how explanations name it; defaults to the function's name.

    A :class:`Predicate` given without a description is returned unchanged.

    Example::

        is_vip = predicate(lambda r: r.answers.get("tier") == "vip", "VIP customer")
    """
    if isinstance(function, Predicate) and description is None:
        return function
    _callable("predicate", function)
    if description is None:
        description = getattr(function, "__name__", None) or type(function).__name__
    return FunctionPredicate(function, description)


def as_predicate(value: Any, field_name: str) -> Predicate:
    """``value`` as a Predicate: a Predicate as it is, a function wrapped by :func:`predicate`."""
    if isinstance(value, Predicate):
        return value
    check_callable(field_name, value, "a predicate or a function (response) -> bool")
    return predicate(value)


def _flatten(kind: type[AllOf | AnyOf], items: Sequence[Any], field_name: str) -> list[Predicate]:
    parts: list[Predicate] = []
    for index, item in enumerate(items):
        part = as_predicate(item, f"{field_name}[{index}]")
        if type(part) is kind:
            parts.extend(part.predicates)
        else:
            parts.append(part)
    if not parts:
        raise InvalidInput(field_name, items, "needs at least one predicate")
    return parts
