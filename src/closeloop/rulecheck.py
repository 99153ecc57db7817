"""Rule checks: triggers that can never match, triggers an earlier one shadows, unknown answers.

Pure domain logic, used through :func:`closeloop.rules.check` (which also reads
rules from plain data) and ``closeloop rules check``.

How it decides: each built-in predicate depends on a few facts of a response
(the score, the contact box, whether the comment mentions a word, the value
at an answer path). The checker enumerates every combination of those facts
that the predicates can tell apart and evaluates the conditions on each. Facts
it cannot see into (your own functions, comment words that overlap, answer
paths inside one another) are taken as independent, which can only add
combinations: so "never matches" and "shadowed" are never reported wrongly. A
rule set too large to enumerate (more than :data:`MAX_COMBINATIONS`
combinations for one question) is left undecided rather than guessed.
"""

from __future__ import annotations

import difflib
import itertools
from collections.abc import Callable, Hashable, Iterable, Iterator, Mapping, Sequence
from typing import Any, Literal

from attrs import frozen

from closeloop.model import SurveyResponse
from closeloop.predicates import (
    MAX_DEPTH,
    AllOf,
    AnswerEquals,
    AnswerIn,
    AnyOf,
    CommentContains,
    ContactRequested,
    FunctionPredicate,
    Not,
    NpsBetween,
    Predicate,
    ScoreMissing,
    answer_at,
)
from closeloop.routing import FirstOf, FromAnswer, Router
from closeloop.triggers import Trigger

__all__ = ["MAX_COMBINATIONS", "Finding", "FindingKind", "analyse", "empty_range"]

#: The most combinations of facts one question may enumerate before it is left undecided.
MAX_COMBINATIONS = 200_000
#: The most distinct values one answer may be compared with (each set of them is a case).
_MAX_VALUES = 10

FindingKind = Literal["never_matches", "shadowed", "unknown_answer", "invalid"]

_MISSING: Any = object()


@frozen
class Finding:
    """One problem with a rule set.

    Attributes:
        kind: ``"never_matches"`` (no response can match the trigger),
            ``"shadowed"`` (every response it matches also matches an earlier
            trigger, which then routes the case: it only adds its reason),
            ``"unknown_answer"`` (the trigger reads an answer that no response of
            the sample has) or ``"invalid"`` (the rule could not be read).
        trigger: the trigger's name (``triggers[3]`` when it has none).
        index: the trigger's position in the rule set, from 0.
        message: the finding in words, naming the trigger.
        by: for ``"shadowed"``, the earlier trigger(s) that shadow it.
        answer: for ``"unknown_answer"``, the answer path.
    """

    kind: FindingKind
    trigger: str
    index: int
    message: str
    by: tuple[str, ...] = ()
    answer: str | None = None

    def __str__(self) -> str:
        return self.message


# -- the facts a predicate reads, and their possible values -------------------------------

_SCORE = ("score",)
_CONTACT = ("contact",)


def _value_key(value: Any) -> tuple[str, Any]:
    """How an answer compares: True is not 1, 1 is 1.0, strings are themselves."""
    if isinstance(value, bool):
        return ("bool", value)
    if isinstance(value, int | float):
        return ("number", float(value))
    return ("text", value)


def _opaque(predicate: Any) -> Hashable:
    try:
        hash(predicate)
    except TypeError:
        return ("opaque", id(predicate))
    return ("opaque", predicate)


def _leaves(predicate: Predicate) -> Iterator[Predicate]:
    if isinstance(predicate, AllOf | AnyOf):
        for part in predicate.predicates:
            yield from _leaves(part)
    elif isinstance(predicate, Not):
        yield from _leaves(predicate.predicate)
    elif isinstance(predicate, FunctionPredicate) and isinstance(predicate.function, Predicate):
        yield from _leaves(predicate.function)
    else:
        yield predicate


def _domains(predicates: Iterable[Predicate]) -> dict[Hashable, list[Any]] | None:
    """Every fact the predicates read, with the values that tell them apart (None: too many)."""
    facts: dict[Hashable, list[Any]] = {}
    answers: dict[str, set[tuple[str, Any]]] = {}
    for leaf in (leaf for predicate in predicates for leaf in _leaves(predicate)):
        if isinstance(leaf, NpsBetween | ScoreMissing):
            facts[_SCORE] = [None, *range(11)]
        elif isinstance(leaf, ContactRequested):
            facts[_CONTACT] = [False, True]
        elif isinstance(leaf, CommentContains):
            for word in leaf.words:
                facts[("comment", word.casefold())] = [False, True]
        elif isinstance(leaf, AnswerEquals):
            answers.setdefault(leaf.key, set()).add(_value_key(leaf.value))
        elif isinstance(leaf, AnswerIn):
            answers.setdefault(leaf.key, set()).update(map(_value_key, leaf.values))
        else:
            facts[_opaque(leaf)] = [False, True]
    for key, values in answers.items():
        if len(values) > _MAX_VALUES:
            return None
        ordered = sorted(values, key=repr)
        # Nothing usable (missing, another value, an empty list), one value, or a list of several.
        lists = [("list", frozenset(chosen)) for size in range(1, len(ordered) + 1)
                 for chosen in itertools.combinations(ordered, size)]
        facts[("answer", key)] = [("none",), *(("scalar", v) for v in ordered), *lists]
    return facts


def _holds(predicate: Predicate, facts: Mapping[Hashable, Any]) -> bool:
    """The predicate's verdict on one combination of facts."""
    if isinstance(predicate, AllOf):
        return all(_holds(part, facts) for part in predicate.predicates)
    if isinstance(predicate, AnyOf):
        return any(_holds(part, facts) for part in predicate.predicates)
    if isinstance(predicate, Not):
        return not _holds(predicate.predicate, facts)
    if isinstance(predicate, FunctionPredicate) and isinstance(predicate.function, Predicate):
        return _holds(predicate.function, facts)
    if isinstance(predicate, NpsBetween):
        score = facts[_SCORE]
        return score is not None and predicate.lo <= score <= predicate.hi
    if isinstance(predicate, ScoreMissing):
        return facts[_SCORE] is None
    if isinstance(predicate, ContactRequested):
        return bool(facts[_CONTACT])
    if isinstance(predicate, CommentContains):
        return any(facts[("comment", word.casefold())] for word in predicate.words)
    if isinstance(predicate, AnswerEquals):
        return bool(facts[("answer", predicate.key)] == ("scalar", _value_key(predicate.value)))
    if isinstance(predicate, AnswerIn):
        state, wanted = facts[("answer", predicate.key)], {_value_key(v) for v in predicate.values}
        if state[0] == "scalar":
            return state[1] in wanted
        return bool(state[0] == "list" and not wanted.isdisjoint(state[1]))
    return bool(facts[_opaque(predicate)])


def _exists(predicates: Sequence[Predicate], test: Callable[[Mapping[Hashable, Any]], bool]) -> bool | None:
    """Whether some combination of the predicates' facts passes ``test`` (None: undecided)."""
    domains = _domains(predicates)
    if domains is None:
        return None
    size = 1
    for values in domains.values():
        size *= len(values)
    if size > MAX_COMBINATIONS:
        return None
    names = list(domains)
    return any(test(dict(zip(names, combination, strict=True)))
               for combination in itertools.product(*domains.values()))


# -- the checks ----------------------------------------------------------------------------


def _never(trigger: Trigger, index: int) -> Finding | None:
    when = trigger.when
    if _exists([when], lambda facts: _holds(when, facts)) is not False:
        return None
    reason = f"no response can satisfy {when.description!r}"
    if isinstance(when, AllOf):
        for first, second in itertools.combinations(when.predicates, 2):
            if _exists([first, second], _both(first, second)) is False:
                reason = (f"its conditions {first.description!r} and {second.description!r} "
                          "cannot both hold")
                break
    return Finding("never_matches", trigger.name, index,
                   f"trigger {trigger.name!r} never matches: {reason}")


def _both(first: Predicate, second: Predicate) -> Callable[[Mapping[Hashable, Any]], bool]:
    """A test that both predicates hold."""
    return lambda facts: _holds(first, facts) and _holds(second, facts)


def _shadowed(trigger: Trigger, index: int, earlier: Sequence[Trigger]) -> Finding | None:
    when = trigger.when
    for other in earlier:
        if _exists([when, other.when], _both(when, Not(other.when))) is False:
            return Finding(
                "shadowed", trigger.name, index,
                f"trigger {trigger.name!r} is shadowed by {other.name!r}: every response it matches "
                f"also matches {other.name!r}, which comes first and routes the case, so "
                f"{trigger.name!r} only adds its reason",
                by=(other.name,))
    if len(earlier) > 1:
        conditions = [other.when for other in earlier]
        covered = _exists([when, *conditions], lambda facts: _holds(when, facts) and not any(
            _holds(condition, facts) for condition in conditions))
        if covered is False:
            names = tuple(other.name for other in earlier)
            return Finding(
                "shadowed", trigger.name, index,
                f"trigger {trigger.name!r} is shadowed by the triggers before it together "
                f"({', '.join(map(repr, names))}): every response it matches matches one of them "
                "first, so it only adds its reason",
                by=names)
    return None


def _answer_keys(trigger: Trigger) -> list[str]:
    keys = [leaf.key for leaf in _leaves(trigger.when) if isinstance(leaf, AnswerEquals | AnswerIn)]
    keys += _router_keys(trigger.assign_to)
    return list(dict.fromkeys(keys))


def _router_keys(router: Router | None) -> list[str]:
    if isinstance(router, FromAnswer):
        return [router.key]
    if isinstance(router, FirstOf):
        return [key for part in router.routers for key in _router_keys(part)]
    return []


def _paths(value: Any, prefix: str = "", depth: int = 0) -> Iterator[str]:
    """The answer paths a response has: top-level names, and dotted paths into mappings."""
    if not isinstance(value, Mapping) or depth > 3:
        return
    for key, item in value.items():
        path = f"{prefix}{key}"
        yield path
        yield from _paths(item, f"{path}.", depth + 1)


def _unknown_answers(triggers: Sequence[tuple[int, Trigger]],
                     sample: Sequence[SurveyResponse]) -> list[Finding]:
    known = sorted({path for response in sample for path in _paths(response.answers)})
    findings = []
    for index, trigger in triggers:
        for key in _answer_keys(trigger):
            if any(answer_at(response.answers, key, _MISSING) is not _MISSING for response in sample):
                continue
            close = difflib.get_close_matches(key, known, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            findings.append(Finding(
                "unknown_answer", trigger.name, index,
                f"trigger {trigger.name!r} reads answer {key!r}, which none of the "
                f"{len(sample)} sample responses has{hint}", answer=key))
    return findings


def analyse(triggers: Sequence[tuple[int, Trigger]],
            sample: Sequence[SurveyResponse] | None = None) -> list[Finding]:
    """The findings for ``triggers`` (each with its position in the rule set), in rule order.

    Args:
        triggers: the triggers in order, each with its index in the rule set.
        sample: survey responses; when given, answers no response has are reported.
    """
    findings: list[Finding] = []
    earlier: list[Trigger] = []
    for index, trigger in triggers:
        never = _never(trigger, index)
        if never is not None:
            findings.append(never)
        else:
            shadow = _shadowed(trigger, index, earlier)
            if shadow is not None:
                findings.append(shadow)
        earlier.append(trigger)
    if sample is not None:
        findings += _unknown_answers(triggers, sample)
    findings.sort(key=lambda finding: finding.index)  # stable: a trigger's findings stay in order
    return findings


def empty_range(when: Any, depth: int = 0) -> str | None:
    """Why a trigger's ``when``, as plain data, can never match because of an empty
    ``nps_between`` range (``[7, 6]``), or ``None``.

    Such a range cannot become a predicate (:func:`~closeloop.predicates.nps_between`
    refuses it), so the plain data is read for it before the rule is loaded.
    """
    if depth > MAX_DEPTH or not isinstance(when, Mapping) or len(when) != 1:
        return None
    ((name, args),) = when.items()
    if name == "nps_between":
        if isinstance(args, Mapping):
            lo, hi = args.get("lo"), args.get("hi")
        elif isinstance(args, list | tuple) and len(args) == 2:
            lo, hi = args
        else:
            return None
        if type(lo) is int and type(hi) is int and lo > hi:  # bools are not scores
            return f"nps_between [{lo}, {hi}] is an empty range ({lo} is above {hi})"
        return None
    if name == "all_of" and isinstance(args, list | tuple):
        # Any part that can never match sinks the whole all_of.
        for part in args:
            found = empty_range(part, depth + 1)
            if found is not None:
                return found
    if name == "any_of" and isinstance(args, list | tuple) and args:
        # Only when every alternative is impossible.
        reasons = [empty_range(part, depth + 1) for part in args]
        if all(reasons):
            return "; ".join(str(reason) for reason in reasons)
    return None
