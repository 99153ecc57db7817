"""Validators shared by the domain objects and the facade.

Each raises :class:`~closeloop.errors.InvalidInput` naming the field and the
value, so an invalid object can never be constructed and a bad argument never
reaches a store.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, Final, TypeVar

from closeloop.errors import InvalidInput

__all__ = [
    "MAX_ANSWERS",
    "MAX_ANSWERS_SIZE",
    "MAX_ANSWER_DEPTH",
    "MAX_ANSWER_LENGTH",
    "MAX_ANSWER_TEXT_LENGTH",
    "MAX_COMMENT_LENGTH",
    "MAX_COUNT",
    "MAX_DURATION",
    "MAX_ID_LENGTH",
    "MAX_INSTANT",
    "MAX_RESPONSE_COMMENT_LENGTH",
    "MIN_INSTANT",
    "FrozenDict",
    "aware_datetime",
    "check_answers",
    "check_bool",
    "check_callable",
    "check_comment",
    "check_id",
    "check_int",
    "check_optional_label",
    "check_optional_positive_timedelta",
    "check_optional_version",
    "check_positive_int",
    "check_positive_timedelta",
    "check_response_comment",
    "check_score",
    "check_seconds",
    "check_status_name",
    "freeze_answers",
    "optional_aware_datetime",
    "optional_stored_datetime",
    "stored_datetime",
    "thaw",
]

#: Longest id (case, customer, response, user) accepted, in characters.
MAX_ID_LENGTH = 200
#: Longest comment accepted, in characters.
MAX_COMMENT_LENGTH = 10_000
#: Most answers one survey response may carry.
MAX_ANSWERS = 500
#: Longest answer value (as text) accepted, in characters (kept for compatibility:
#: answers now take text up to :data:`MAX_ANSWER_TEXT_LENGTH`).
MAX_ANSWER_LENGTH = 10_000
#: Largest count (a limit, a batch size, a version) accepted: well inside every
#: database's 64-bit integers, so a driver never overflows on one.
MAX_COUNT = 1_000_000_000
#: Earliest and latest instant accepted anywhere (due dates, submission times,
#: report bounds, clocks). Every datetime is checked to lie in this range in UTC,
#: so converting it to UTC, storing it in any database, or adding the longest
#: duration to it can never overflow.
MIN_INSTANT: Final = datetime(1900, 1, 1, tzinfo=UTC)
MAX_INSTANT: Final = datetime(9000, 1, 1, tzinfo=UTC)
#: Longest duration accepted (an SLA, a lease, a link's lifetime): 100 years.
#: ``MAX_INSTANT + MAX_DURATION`` is still far from the end of ``datetime``'s range,
#: which leaves room for durations counted in business hours as well.
MAX_DURATION: Final = timedelta(days=36_525)
#: The range of instants closeloop stores: what it computes from accepted instants
#: and durations (a due date counted in business hours may lie centuries out).
_MIN_STORED: Final = datetime(1800, 1, 1, tzinfo=UTC)
_MAX_STORED: Final = datetime(9999, 1, 1, tzinfo=UTC)
#: Longest survey-response comment accepted, in characters. Generous on purpose: a
#: customer who writes a long letter must not make the webhook fail.
MAX_RESPONSE_COMMENT_LENGTH = 100_000
#: Longest text inside an answer (a free-text answer), in characters.
MAX_ANSWER_TEXT_LENGTH = 100_000
#: How deeply answers may nest: ``{"plan": {"label": "x"}}`` is 2 levels.
MAX_ANSWER_DEPTH = 8
#: Most characters all answers may hold together (keys, text, and one per other value).
MAX_ANSWERS_SIZE = 1_000_000

# C0 and C1 controls and the Unicode line/paragraph separators: none belongs in an
# id, and each could break a mail header or a log line.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")

T = TypeVar("T")


def _check_encodable(field: str, value: str) -> None:
    # Lone surrogates are valid in a Python str but cannot be stored or emailed.
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidInput(field, value, "must be valid Unicode (no lone surrogates)") from None


def check_id(field: str, value: Any) -> str:
    """Return ``value`` if it is a usable id: a non-blank string without control characters."""
    if not isinstance(value, str):
        raise InvalidInput(field, value, "must be a string")
    _check_encodable(field, value)
    if not value.strip():
        raise InvalidInput(field, value, "must not be empty")
    if len(value) > MAX_ID_LENGTH:
        raise InvalidInput(field, value, f"must be at most {MAX_ID_LENGTH} characters")
    if _CONTROL.search(value):
        raise InvalidInput(field, value, "must not contain control characters")
    return value


#: A workflow status or close reason name: lower-case letters, digits, "-" and "_".
_STATUS_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")


def check_status_name(field: str, value: Any) -> str:
    """Return ``value`` if it is a workflow name (a status or close reason): ``"no-response"``.

    Lower-case letters, digits, ``-`` and ``_``, starting with a letter or digit, at
    most 64 characters: names are stored and compared; labels are what people read.
    """
    if not isinstance(value, str) or not _STATUS_NAME.fullmatch(value):
        raise InvalidInput(field, value, "must be a name of lower-case letters, digits, '-' and "
                           "'_' (at most 64), such as 'waiting' or 'no-response'")
    return value


def check_optional_id(field: str, value: Any) -> str | None:
    """Like :func:`check_id`, but ``None`` is allowed."""
    return None if value is None else check_id(field, value)


def check_optional_label(field: str, value: Any) -> str | None:
    """Return ``None`` or a short label such as ``via="one-touch"``: an id without spaces
    at either end (see :func:`check_id`)."""
    if value is None:
        return None
    check_id(field, value)
    label: str = value
    if label != label.strip():
        raise InvalidInput(field, value, "must not start or end with white space")
    return label


def check_comment(field: str, value: Any) -> str | None:
    """Return a comment (``None`` or a string of at most :data:`MAX_COMMENT_LENGTH`)."""
    return _comment(field, value, MAX_COMMENT_LENGTH)


def _comment(field: str, value: Any, limit: int) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidInput(field, value, "must be a string or None")
    if len(value) > limit:
        raise InvalidInput(field, value, f"must be at most {limit} characters")
    if "\x00" in value:
        raise InvalidInput(field, value, "must not contain NUL characters")
    _check_encodable(field, value)
    return value


def check_score(field: str, value: Any) -> int | None:
    """Return an NPS score: an ``int`` from 0 to 10, or ``None`` when not answered.

    Booleans, floats (NaN included) and numeric strings are refused rather
    than coerced: a survey tool that sends ``"7"`` has a bug worth seeing.
    """
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        if isinstance(value, float) and math.isnan(value):
            raise InvalidInput(field, value, "must be an integer from 0 to 10, not NaN")
        raise InvalidInput(field, value, "must be an integer from 0 to 10 or None")
    if not 0 <= value <= 10:
        raise InvalidInput(field, value, "must be an integer from 0 to 10")
    return value


def check_bool(field: str, value: Any) -> bool:
    """Return ``value`` if it is ``True`` or ``False`` (not 0, 1 or ``"yes"``)."""
    if not isinstance(value, bool):
        raise InvalidInput(field, value, "must be True or False")
    return value


def check_int(field: str, value: Any, *, minimum: int = 0, maximum: int = MAX_COUNT) -> int:
    """Return ``value`` if it is an ``int`` (not a bool) from ``minimum`` to ``maximum``."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidInput(field, value, f"must be an integer from {minimum} to {maximum}")
    if not minimum <= value <= maximum:
        raise InvalidInput(field, value, f"must be an integer from {minimum} to {maximum}")
    return value


def check_positive_int(field: str, value: Any, *, maximum: int = MAX_COUNT) -> int:
    """Return ``value`` if it is an ``int`` from 1 to ``maximum`` (a limit, a batch size)."""
    return check_int(field, value, minimum=1, maximum=maximum)


def check_seconds(field: str, value: Any, *, allow_zero: bool = False) -> float:
    """Return a number of seconds (a timeout) as a float: a finite ``int`` or ``float``, not a
    bool, above zero (or zero too, with ``allow_zero``)."""
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or value < 0
        or (value == 0 and not allow_zero)
    ):
        qualifier = "non-negative" if allow_zero else "positive"
        raise InvalidInput(field, value, f"must be a {qualifier} number of seconds")
    return float(value)


def check_optional_version(field: str, value: Any) -> int | None:
    """Return ``None`` or a case version (an ``int`` of at least 1)."""
    return None if value is None else check_int(field, value, minimum=1)


def check_positive_timedelta(field: str, value: Any) -> timedelta:
    """Return ``value`` if it is a :class:`~datetime.timedelta` longer than zero.

    At most :data:`MAX_DURATION` (100 years), so adding it to any accepted instant
    stays representable.
    """
    if not isinstance(value, timedelta) or value <= timedelta(0):
        raise InvalidInput(field, value, "must be a positive timedelta")
    if value > MAX_DURATION:
        raise InvalidInput(field, value, "must be at most 100 years (36525 days)")
    return value


def check_optional_positive_timedelta(field: str, value: Any) -> timedelta | None:
    """Like :func:`check_positive_timedelta`, but ``None`` is allowed."""
    return None if value is None else check_positive_timedelta(field, value)


def check_callable(field: str, value: Any, what: str = "a callable") -> Callable[..., Any]:
    """Return ``value`` if it can be called; ``what`` says what it should be."""
    if not callable(value):
        raise InvalidInput(field, value, f"must be {what}")
    checked: Callable[..., Any] = value
    return checked


def aware_datetime(field: str, value: Any) -> datetime:
    """Return ``value`` if it is a timezone-aware datetime from :data:`MIN_INSTANT` to
    :data:`MAX_INSTANT`: what every argument and clock reading must be."""
    return _datetime_between(field, value, MIN_INSTANT, MAX_INSTANT)


def optional_aware_datetime(field: str, value: Any) -> datetime | None:
    """Like :func:`aware_datetime`, but ``None`` is allowed."""
    return None if value is None else aware_datetime(field, value)


def stored_datetime(field: str, value: Any) -> datetime:
    """Return ``value`` if it is an aware datetime closeloop may have computed and stored.

    Wider than :func:`aware_datetime` by the longest duration (a due date is a
    submission time plus an SLA, perhaps counted in business hours), and still
    representable in UTC by Python and by every database.
    """
    return _datetime_between(field, value, _MIN_STORED, _MAX_STORED)


def optional_stored_datetime(field: str, value: Any) -> datetime | None:
    """Like :func:`stored_datetime`, but ``None`` is allowed."""
    return None if value is None else stored_datetime(field, value)


def _datetime_between(field: str, value: Any, low: datetime, high: datetime) -> datetime:
    if not isinstance(value, datetime):
        raise InvalidInput(field, value, "must be a datetime")
    if value.tzinfo is None or value.utcoffset() is None:
        raise InvalidInput(field, value, "must be timezone-aware (naive datetimes are ambiguous)")
    try:
        in_range = low <= value <= high
    except (OverflowError, ValueError, TypeError):  # its UTC value is beyond datetime's range
        in_range = False
    if not in_range:
        raise InvalidInput(field, value, f"must lie between {low:%Y-%m-%d} and {high:%Y-%m-%d} UTC")
    return value


def check_answers(field: str, value: Any) -> Mapping[str, Any]:
    """Return a survey's answers if valid: a mapping of string keys to JSON-like values.

    Values are ``None``, booleans, finite numbers, strings, lists and mappings
    with string keys, nested at most :data:`MAX_ANSWER_DEPTH` levels, each
    container holding at most :data:`MAX_ANSWERS` items, all of it at most
    :data:`MAX_ANSWERS_SIZE` characters. Errors name the path
    (``answers['plan']['label']``).
    """
    freeze_answers(field, value)
    answers: Mapping[str, Any] = value
    return answers


def freeze_answers(field: str, value: Any) -> FrozenDict:
    """Validate answers (see :func:`check_answers`) and return them read-only.

    Mappings become :class:`FrozenDict` and lists become tuples, so a frozen
    SurveyResponse cannot be changed through its answers.
    """
    if not isinstance(value, Mapping):
        raise InvalidInput(field, value, "must be a mapping of question to answer")
    budget = [MAX_ANSWERS_SIZE]
    frozen = _freeze(field, value, 1, budget)
    assert isinstance(frozen, FrozenDict)
    return frozen


def _spend(field: str, budget: list[int], amount: int) -> None:
    budget[0] -= amount
    if budget[0] < 0:
        raise InvalidInput(field, "…", f"answers must total at most {MAX_ANSWERS_SIZE} characters")


def _freeze(field: str, value: Any, depth: int, budget: list[int]) -> Any:
    # Iterative depth is bounded by MAX_ANSWER_DEPTH, so recursion cannot run away.
    if value is None or isinstance(value, bool | int):
        if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 2**63:
            raise InvalidInput(field, value, "must fit in 64 bits")
        _spend(field, budget, 1)
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise InvalidInput(field, value, "must be a finite number")
        _spend(field, budget, 1)
        return value
    if isinstance(value, str):
        if len(value) > MAX_ANSWER_TEXT_LENGTH:
            raise InvalidInput(field, value, f"must be at most {MAX_ANSWER_TEXT_LENGTH} characters")
        if "\x00" in value:
            raise InvalidInput(field, value, "must not contain NUL characters")
        _check_encodable(field, value)
        _spend(field, budget, max(1, len(value)))
        return value
    if isinstance(value, Mapping | list | tuple):
        if depth > MAX_ANSWER_DEPTH:
            raise InvalidInput(field, depth, f"answers may nest at most {MAX_ANSWER_DEPTH} levels deep")
        if len(value) > MAX_ANSWERS:
            raise InvalidInput(field, len(value), f"must hold at most {MAX_ANSWERS} items")
        if isinstance(value, Mapping):
            items: dict[str, Any] = {}
            for key, item in value.items():
                check_id(f"{field} key", key)
                _spend(field, budget, len(key))
                items[key] = _freeze(f"{field}[{key!r}]", item, depth + 1, budget)
            return FrozenDict(items)
        return tuple(
            _freeze(f"{field}[{index}]", item, depth + 1, budget) for index, item in enumerate(value)
        )
    raise InvalidInput(
        field, value, "must be a string, number, boolean, None, list or mapping of those"
    )


class FrozenDict(Mapping[str, Any]):
    """A read-only, hashable mapping: how a SurveyResponse holds its (nested) answers.

    It compares equal to a ``dict`` with the same items; :func:`thaw` turns it
    (and the tuples inside) back into plain dicts and lists for JSON.
    """

    __slots__ = ("_items",)
    _items: dict[str, Any]

    def __init__(self, items: Mapping[str, Any] | None = None) -> None:
        object.__setattr__(self, "_items", dict(items or {}))

    def __getitem__(self, key: str) -> Any:
        return self._items[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __hash__(self) -> int:
        return hash(frozenset(self._items.items()))

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("FrozenDict is read-only")

    def __reduce__(self) -> tuple[Any, ...]:
        return (FrozenDict, (self._items,))

    def __repr__(self) -> str:
        return repr(self._items)


def frozen_to_json(value: Any) -> Any:
    """A ``JSONEncoder`` ``default`` that writes a FrozenDict as its items.

    An encoder given it writes frozen data (FrozenDicts, tuples) as :func:`thaw`
    would, without building the plain copy first.
    """
    if type(value) is FrozenDict:
        return value._items
    if isinstance(value, Mapping):
        return dict(value)
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def thaw(value: Any) -> Any:
    """Plain JSON data from frozen answers: FrozenDicts to dicts, tuples to lists."""
    kind = type(value)
    if kind is str or kind is int or kind is float or kind is bool or value is None:
        return value  # the common leaves, without the costlier checks below
    if kind is FrozenDict:
        return {key: thaw(item) for key, item in value._items.items()}
    if isinstance(value, Mapping):
        return {key: thaw(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [thaw(item) for item in value]
    return value


def check_response_comment(field: str, value: Any) -> str | None:
    """Like :func:`check_comment`, but up to :data:`MAX_RESPONSE_COMMENT_LENGTH` characters."""
    return _comment(field, value, MAX_RESPONSE_COMMENT_LENGTH)


def attrs_validator(check: Callable[[str, Any], object]) -> Callable[[Any, Any, Any], None]:
    """Adapt a ``check(field, value)`` function to an attrs validator."""

    def validator(instance: Any, attribute: Any, value: Any) -> None:
        check(attribute.name, value)

    return validator
