"""Plain data to domain objects and back, through one strict cattrs converter.

cattrs is lenient by default (``"7"`` becomes 7, naive datetimes pass). The
converter here is strict where the domain needs it, and every failure comes out
as one :class:`~closeloop.errors.InvalidInput` whose message lists each
offending path with the validator's own words::

    >>> from closeloop.convert import structure
    >>> from closeloop import SurveyResponse
    >>> structure({"id": "r-1", "customer_id": "c-1", "score": "7"}, SurveyResponse)
    Traceback (most recent call last):
    ...
    closeloop.errors.InvalidInput: survey response: score: must be an integer ... @ $.score ...
"""

from __future__ import annotations

import enum
import math
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any, TypeVar

import attrs
import cattrs
from cattrs.v import format_exception, transform_error

from closeloop.calendar import BusinessHours
from closeloop.errors import CloseLoopError, InvalidInput
from closeloop.model import EVENT_TYPES, Event, Priority, Status
from closeloop.validate import MAX_DURATION, FrozenDict, check_score, stored_datetime, thaw

__all__ = ["converter", "event_extra", "structure", "structure_event", "unstructure"]

T = TypeVar("T")

converter = cattrs.Converter(detailed_validation=True, forbid_extra_keys=True)


def _strict_int(value: Any, _: type) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidInput("value", value, "must be an integer")
    return value


def _strict_str(value: Any, _: type) -> str:
    if not isinstance(value, str):
        raise InvalidInput("value", value, "must be a string")
    return value


def _strict_bool(value: Any, _: type) -> bool:
    if not isinstance(value, bool):
        raise InvalidInput("value", value, "must be true or false")
    return value


def _datetime(value: Any, _: type) -> datetime:
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            raise InvalidInput("value", value, "must be an ISO 8601 date-time") from None
    return stored_datetime("value", value)


def _seconds(value: Any) -> timedelta:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise InvalidInput("value", value, "must be a number of seconds")
    if abs(value) > MAX_DURATION.total_seconds():
        raise InvalidInput("value", value, "must be at most 100 years (3155760000 seconds)")
    return timedelta(seconds=value)


def _score(value: Any, _: type) -> int | None:
    return check_score("score", value)


converter.register_structure_hook(int, _strict_int)
converter.register_structure_hook(str, _strict_str)
converter.register_structure_hook(bool, _strict_bool)
converter.register_structure_hook(datetime, _datetime)
converter.register_unstructure_hook(datetime, lambda value: value.isoformat())
# Durations (report KPIs) as seconds: a float, exact to the microsecond for spans
# under about 285 years, and what JSON consumers and spreadsheets expect.
converter.register_unstructure_hook(timedelta, lambda value: value.total_seconds())
converter.register_structure_hook(timedelta, lambda value, _: _seconds(value))
converter.register_unstructure_hook(Status, lambda value: value.value)
converter.register_unstructure_hook(Priority, lambda value: value.value)
converter.register_structure_hook(Status, lambda value, _: Status.parse(value))
converter.register_structure_hook(Priority, lambda value, _: Priority.parse(value))
# A report's calendar as its zone, hours and holiday dates (see BusinessHours.to_dict).
converter.register_unstructure_hook(BusinessHours, BusinessHours.to_dict)
converter.register_structure_hook(BusinessHours, lambda value, _: BusinessHours.from_dict(value))
# Frozen answers go out as plain JSON data (dicts and lists).
converter.register_unstructure_hook(FrozenDict, thaw)


def _structure_event(value: Any, _: Any) -> Event:
    if not isinstance(value, Mapping):
        raise InvalidInput("event", value, "must be a mapping")
    kind: Any = value.get("kind")
    cls = EVENT_TYPES.get(kind) if isinstance(kind, str) else None
    if cls is None:
        raise InvalidInput("kind", kind, f"unknown event kind; expected one of {sorted(EVENT_TYPES)}")
    return converter.structure(value, cls)


converter.register_structure_hook_func(lambda cls: cls == Event, _structure_event)


def _keep_messages(exc: BaseException, type_: type | None) -> str:
    """cattrs' formatter, but keeping the words of our own validators."""
    if isinstance(exc, CloseLoopError):
        return str(exc)
    return format_exception(exc, type_)


def structure(data: Any, cls: type[T], what: str | None = None) -> T:
    """Build a ``cls`` from plain data, or raise :class:`InvalidInput` naming every bad path.

    Args:
        data: dicts, lists and scalars, as read from JSON, TOML or a database row.
        cls: the attrs class (or type) to build.
        what: how to name the value in the error message; defaults to the class name.
    """
    try:
        return converter.structure(data, cls)
    except InvalidInput:
        raise
    except Exception as exc:  # cattrs wraps validator errors in exception groups
        label = what if what is not None else str(getattr(cls, "__name__", cls))
        problems = "; ".join(transform_error(exc, "$", _keep_messages))
        raise InvalidInput(label, data, problems) from None


def structure_event(data: Mapping[str, Any]) -> Event:
    """Build a history event from plain data, dispatching on its ``kind``."""
    return structure(data, Event, "event")  # type: ignore[arg-type]


_EVENT_COMMON = frozenset({"kind", "case_id", "actor", "at", "seq", "comment", "via"})
#: Per event class, the fields beyond those every event has.
_EVENT_EXTRA: dict[type, tuple[str, ...]] = {
    cls: tuple(f.name for f in attrs.fields(cls) if f.name not in _EVENT_COMMON)
    for cls in EVENT_TYPES.values()
}


def event_extra(event: Event) -> dict[str, Any]:
    """The kind-specific fields of an event as plain data (what stores keep as JSON).

    The same as ``unstructure(event)`` minus the common fields, but without going
    through cattrs: this runs on every write.
    """
    extra: dict[str, Any] = {}
    for name in _EVENT_EXTRA[type(event)]:
        value = getattr(event, name)
        if isinstance(value, enum.Enum):
            value = value.value
        elif isinstance(value, tuple):
            value = list(value)
        extra[name] = value
    return extra


def unstructure(value: Any) -> Any:
    """Turn a domain object into plain data (dicts, lists, strings, numbers)."""
    return converter.unstructure(value)
