"""Reading business hours: time zones, weekly spans and holidays, from text or plain data.

The parsers behind :class:`~closeloop.calendar.BusinessHours`; each mistake raises
:class:`~closeloop.errors.InvalidInput` naming its path (``hours[1]``,
``holidays[2]``). The formats are described in :mod:`closeloop.calendar`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from closeloop.errors import InvalidInput

__all__ = [
    "Spans",
    "describe_hours",
    "holidays_from_data",
    "parse_holidays",
    "parse_hours",
    "parse_zone",
]

_WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_DAY_NAMES = {
    name: index
    for index, names in enumerate((
        ("mon", "monday"), ("tue", "tues", "tuesday"), ("wed", "wednesday"),
        ("thu", "thur", "thurs", "thursday"), ("fri", "friday"), ("sat", "saturday"),
        ("sun", "sunday"),
    ))
    for name in names
}
_SPAN = re.compile(r"(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})")

#: Spans of one weekday: (start, end) in minutes after local midnight, sorted, disjoint.
Spans = tuple[tuple[int, int], ...]


def parse_zone(value: Any) -> ZoneInfo:
    """The IANA time zone named by ``value`` (or ``value`` itself, a ZoneInfo)."""
    if isinstance(value, ZoneInfo):
        return value
    if not isinstance(value, str) or not value:
        raise InvalidInput("timezone", value, "must be an IANA time zone name such as "
                           "'Europe/Amsterdam'")
    try:
        return ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise InvalidInput("timezone", value, "unknown time zone; use an IANA name such as "
                           "'Europe/Amsterdam'") from None


def parse_hours(value: Any) -> tuple[Spans, ...]:
    """Weekly opening hours as seven days of merged spans, Monday first."""
    week: list[list[tuple[int, int]]] = [[] for _ in _WEEKDAYS]
    if isinstance(value, str):
        groups = [("hours", group) for group in value.split(";") if group.strip()]
        for path, group in groups:
            _add_group(week, group, path)
    elif isinstance(value, Mapping):
        for key, spans in value.items():
            path = f"hours.{key}"
            days = _parse_days(key, path)
            items = [spans] if isinstance(spans, str) else spans
            if not isinstance(items, list | tuple) or not items:
                raise InvalidInput(path, spans, "must be a span such as '09:00-17:00' or a list "
                                   "of them")
            for index, span in enumerate(items):
                parsed = _parse_span(span, f"{path}[{index}]" if len(items) > 1 or
                                     not isinstance(spans, str) else path)
                for day in days:
                    week[day].append(parsed)
    elif isinstance(value, list | tuple):
        for index, group in enumerate(value):
            if not isinstance(group, str):
                raise InvalidInput(f"hours[{index}]", group, "must be text such as "
                                   "'Mon-Fri 09:00-17:00'")
            _add_group(week, group, f"hours[{index}]")
    else:
        raise InvalidInput("hours", value, "must be text such as 'Mon-Fri 09:00-17:00', a list "
                           "of such groups, or a mapping from days to spans")
    merged = tuple(_merged_spans(spans) for spans in week)
    if not any(merged):
        raise InvalidInput("hours", value, "opens no hours in the week")
    return merged


def _add_group(week: list[list[tuple[int, int]]], group: str, path: str) -> None:
    days_text, _, spans_text = group.strip().partition(" ")
    if not spans_text.strip():
        raise InvalidInput(path, group.strip(), "expected days then spans, such as "
                           "'Mon-Fri 09:00-12:00, 13:00-17:00'")
    days = _parse_days(days_text, path)
    for span in spans_text.split(","):
        parsed = _parse_span(span, path)
        for day in days:
            week[day].append(parsed)


def _parse_days(text: Any, path: str) -> list[int]:
    if not isinstance(text, str):
        raise InvalidInput(path, text, "days must be text such as 'Mon-Fri'")
    if text.strip().lower() == "daily":
        return list(range(7))
    days: list[int] = []
    for item in text.split(","):
        first, dash, last = item.strip().partition("-")
        start = _day(first, text, path)
        end = _day(last, text, path) if dash else start
        days.extend((start + step) % 7 for step in range((end - start) % 7 + 1))
    return days


def _day(name: str, text: str, path: str) -> int:
    index = _DAY_NAMES.get(name.strip().lower())
    if index is None:
        raise InvalidInput(path, text, f"unknown day {name.strip()!r}; expected Mon, Tue, Wed, "
                           "Thu, Fri, Sat, Sun, a range such as Mon-Fri, or Daily")
    return index


def _parse_span(text: Any, path: str) -> tuple[int, int]:
    match = _SPAN.fullmatch(text.strip()) if isinstance(text, str) else None
    if match is None:
        raise InvalidInput(path, text, "a span must look like '09:00-17:30'")
    start_hour, start_minute, end_hour, end_minute = (int(part) for part in match.groups())
    for hour, minute in ((start_hour, start_minute), (end_hour, end_minute)):
        if minute > 59 or hour > 24 or (hour == 24 and minute):
            raise InvalidInput(path, text.strip(), "a time must be between 00:00 and 24:00")
    start, end = start_hour * 60 + start_minute, end_hour * 60 + end_minute
    if start >= end:
        raise InvalidInput(path, text.strip(), "a span must end after it starts, on the same day "
                           "(split a night shift into two days)")
    return start, end


def _merged_spans(spans: list[tuple[int, int]]) -> Spans:
    merged: list[tuple[int, int]] = []
    for start, end in sorted(spans):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return tuple(merged)


def describe_hours(days: Sequence[Spans]) -> str:
    """Weekly spans as normalised text, consecutive days with the same spans joined."""
    groups: list[str] = []
    index = 0
    while index < len(days):
        last = index
        while last + 1 < len(days) and days[last + 1] == days[index]:
            last += 1
        if days[index]:
            names = _WEEKDAYS[index] if last == index else f"{_WEEKDAYS[index]}-{_WEEKDAYS[last]}"
            spans = ", ".join(f"{_clock(start)}-{_clock(end)}" for start, end in days[index])
            groups.append(f"{names} {spans}")
        index = last + 1
    return "; ".join(groups)


def _clock(minutes: int) -> str:
    return f"{minutes // 60:02}:{minutes % 60:02}"


def parse_holidays(value: Any) -> tuple[frozenset[date], Mapping[date, Any] | None]:
    """Holidays as fixed dates, or a calendar mapping keyed by date (kept as it is)."""
    if isinstance(value, Mapping):
        return frozenset(), value
    if isinstance(value, str | bytes) or not isinstance(value, Iterable):
        raise InvalidInput("holidays", value, "must be a list of dates or a holiday calendar "
                           "(a mapping keyed by date)")
    fixed: set[date] = set()
    for index, item in enumerate(value):
        fixed.add(_holiday_date(item, f"holidays[{index}]"))
    return frozenset(fixed), None


def _holiday_date(item: Any, path: str) -> date:
    if isinstance(item, str):
        try:
            item = date.fromisoformat(item)
        except ValueError:
            raise InvalidInput(path, item, "must be a date (YYYY-MM-DD)") from None
    if isinstance(item, datetime) or not isinstance(item, date):
        raise InvalidInput(path, item, "must be a date (not a datetime)")
    return item


def holidays_from_data(value: Any) -> Iterable[date] | Mapping[date, Any]:
    """Holidays from plain data: a list of dates, or ``{"country": …, "subdiv": …, "dates": […]}``."""
    if not isinstance(value, Mapping):
        dates: Iterable[date] = value  # a list of dates, checked by the constructor
        return dates
    unknown = sorted(set(map(str, value)) - {"country", "subdiv", "dates"})
    if unknown:
        raise InvalidInput(f"holidays.{unknown[0]}", value[unknown[0]],
                           "unknown key; expected country, subdiv, dates")
    extra = parse_holidays(value.get("dates", ()))[0]
    if "country" not in value:
        return extra
    try:
        import holidays as holiday_package  # optional: imported only when asked for
    except ImportError:
        raise InvalidInput("holidays.country", value["country"], "needs the holidays package: "
                           'pip install "closeloop[holidays]"') from None
    try:
        country: Any = holiday_package.country_holidays(value["country"],
                                                        subdiv=value.get("subdiv"))
    except (NotImplementedError, KeyError, TypeError, ValueError) as exc:
        raise InvalidInput("holidays.country", value["country"],
                           f"unknown to the holidays package ({exc})") from None
    if extra:
        country.update(dict.fromkeys(extra, "holiday"))
    calendar: Mapping[date, Any] = country
    return calendar
