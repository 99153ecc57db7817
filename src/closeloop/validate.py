"""Validators shared by the domain objects and the facade.

Each raises :class:`~closeloop.errors.InvalidInput` naming the field and the
value, so an invalid object can never be constructed and a bad argument never
reaches a store.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import Any, TypeVar

from closeloop.errors import InvalidInput

__all__ = [
    "MAX_ANSWERS",
    "MAX_ANSWER_LENGTH",
    "MAX_COMMENT_LENGTH",
    "MAX_COUNT",
    "MAX_ID_LENGTH",
    "aware_datetime",
    "check_answers",
    "check_bool",
    "check_callable",
    "check_comment",
    "check_id",
    "check_int",
    "check_optional_positive_timedelta",
    "check_optional_version",
    "check_positive_int",
    "check_positive_timedelta",
    "check_score",
]

#: Longest id (case, customer, response, user) accepted, in characters.
MAX_ID_LENGTH = 200
#: Longest comment accepted, in characters.
MAX_COMMENT_LENGTH = 10_000
#: Most answers one survey response may carry.
MAX_ANSWERS = 500
#: Longest answer value (as text) accepted, in characters.
MAX_ANSWER_LENGTH = 10_000
#: Largest count (a limit, a batch size, a version) accepted: well inside every
#: database's 64-bit integers, so a driver never overflows on one.
MAX_COUNT = 1_000_000_000

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


def check_optional_id(field: str, value: Any) -> str | None:
    """Like :func:`check_id`, but ``None`` is allowed."""
    return None if value is None else check_id(field, value)


def check_comment(field: str, value: Any) -> str | None:
    """Return a comment (``None`` or a string of at most :data:`MAX_COMMENT_LENGTH`)."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidInput(field, value, "must be a string or None")
    if len(value) > MAX_COMMENT_LENGTH:
        raise InvalidInput(field, value, f"must be at most {MAX_COMMENT_LENGTH} characters")
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


def check_optional_version(field: str, value: Any) -> int | None:
    """Return ``None`` or a case version (an ``int`` of at least 1)."""
    return None if value is None else check_int(field, value, minimum=1)


def check_positive_timedelta(field: str, value: Any) -> timedelta:
    """Return ``value`` if it is a :class:`~datetime.timedelta` longer than zero."""
    if not isinstance(value, timedelta) or value <= timedelta(0):
        raise InvalidInput(field, value, "must be a positive timedelta")
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
    """Return ``value`` if it is a timezone-aware :class:`~datetime.datetime`."""
    if not isinstance(value, datetime):
        raise InvalidInput(field, value, "must be a datetime")
    if value.tzinfo is None or value.utcoffset() is None:
        raise InvalidInput(field, value, "must be timezone-aware (naive datetimes are ambiguous)")
    return value


def optional_aware_datetime(field: str, value: Any) -> datetime | None:
    """Like :func:`aware_datetime`, but ``None`` is allowed."""
    return None if value is None else aware_datetime(field, value)


def check_answers(field: str, value: Any) -> Mapping[str, Any]:
    """Return a survey's answers: a mapping of string keys to JSON-like scalars or lists."""
    if not isinstance(value, Mapping):
        raise InvalidInput(field, value, "must be a mapping of question to answer")
    if len(value) > MAX_ANSWERS:
        raise InvalidInput(field, len(value), f"must hold at most {MAX_ANSWERS} answers")
    for key, answer in value.items():
        check_id(f"{field} key", key)
        _check_answer(f"{field}[{key!r}]", answer)
    return value


def _check_answer(field: str, value: Any) -> None:
    if value is None or isinstance(value, bool | int):
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            raise InvalidInput(field, value, "must be a finite number")
        return
    if isinstance(value, str):
        if len(value) > MAX_ANSWER_LENGTH:
            raise InvalidInput(field, value, f"must be at most {MAX_ANSWER_LENGTH} characters")
        if "\x00" in value:
            raise InvalidInput(field, value, "must not contain NUL characters")
        _check_encodable(field, value)
        return
    if isinstance(value, list | tuple):
        if len(value) > MAX_ANSWERS:
            raise InvalidInput(field, len(value), f"must hold at most {MAX_ANSWERS} items")
        for index, item in enumerate(value):
            if isinstance(item, list | tuple | Mapping):
                raise InvalidInput(f"{field}[{index}]", item, "must be a scalar")
            _check_answer(f"{field}[{index}]", item)
        return
    raise InvalidInput(field, value, "must be a string, number, boolean, None or list of those")


def attrs_validator(check: Callable[[str, Any], object]) -> Callable[[Any, Any, Any], None]:
    """Adapt a ``check(field, value)`` function to an attrs validator."""

    def validator(instance: Any, attribute: Any, value: Any) -> None:
        check(attribute.name, value)

    return validator
