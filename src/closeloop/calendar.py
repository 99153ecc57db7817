"""Business hours: weekly opening spans in an IANA time zone, minus holidays.

:class:`BusinessHours` measures time the way an SLA does: only while the team
works. ``add(start, duration)`` is the moment ``duration`` of business time after
``start``; ``between(start, end)`` is the business time from one to the other.

    >>> from datetime import date, datetime, timedelta
    >>> from zoneinfo import ZoneInfo
    >>> hours = BusinessHours("Europe/Amsterdam", "Mon-Fri 09:00-17:00",
    ...                       holidays=[date(2026, 4, 6)])          # Easter Monday
    >>> friday = datetime(2026, 4, 3, 16, 0, tzinfo=ZoneInfo("Europe/Amsterdam"))
    >>> hours.add(friday, timedelta(hours=4)).isoformat()
    '2026-04-07T12:00:00+02:00'

The rule behind every figure: an instant is business time when its local wall
clock (date and time, in ``timezone``) falls inside one of that weekday's spans
and the local date is not a holiday. So a span that contains the hour skipped
when clocks go forward is an hour shorter that day, and one that contains the
repeated hour when they go back is an hour longer, exactly as a clock on the
office wall would count it.

Opening hours are written as text, a list, or a mapping (each error names its path):

- ``"Mon-Fri 09:00-17:30"``; several spans a day and several groups:
  ``"Mon-Fri 09:00-12:00, 13:00-17:00; Sat 10:00-14:00"``;
- the same groups as a list: ``["Mon-Fri 09:00-12:00, 13:00-17:00", "Sat 10:00-14:00"]``;
- a mapping from days to spans: ``{"Mon-Fri": ["09:00-12:00", "13:00-17:00"], "Sat": "10:00-14:00"}``.

Days are ``Mon`` … ``Sun`` (or full names, any case), ranges ``Mon-Fri`` (a range
may wrap: ``Fri-Mon``), lists ``Mon,Wed,Fri``, or ``Daily``. A span is
``HH:MM-HH:MM`` within one day (``24:00`` ends at midnight); split a night shift
into two days. Spans given twice for a day are merged.

Holidays are dates, or any mapping keyed by date, such as a calendar of the
`holidays <https://pypi.org/project/holidays/>`_ package (``pip install
"closeloop[holidays]"``): ``BusinessHours("Europe/Amsterdam", "Mon-Fri 09:00-17:00",
holidays=holidays.countryparse_holidays("NL"))``. closeloop never imports that package
unless :meth:`BusinessHours.from_dict` is asked for a country's holidays.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from typing import Any
from zoneinfo import ZoneInfo

from closeloop.calendar_spec import (
    Spans,
    describe_hours,
    holidays_from_data,
    parse_holidays,
    parse_hours,
    parse_zone,
)
from closeloop.errors import InvalidInput
from closeloop.validate import aware_datetime

__all__ = ["BusinessHours"]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICRO = timedelta(microseconds=1)
_MINUTE_US = 60_000_000
_HOUR_US = 60 * _MINUTE_US
_DAY_US = 24 * _HOUR_US
#: No time zone is more than 14 hours from UTC: instants of one local date lie
#: within this much of that date's midnight read as UTC.
_MAX_OFFSET_US = 15 * _HOUR_US
#: Offsets are sampled this often when looking for a clock change in a day.
_SAMPLE_US = 3 * _HOUR_US
#: How far add() and subtract() look before deciding the calendar never opens.
_MAX_DAYS = 100 * 366

#: Business time of one local date: (start, end) instants in µs since the epoch.
_Intervals = tuple[tuple[int, int], ...]


def _to_us(moment: datetime) -> int:
    return (moment - _EPOCH) // _MICRO


def _from_us(micros: int, zone: tzinfo | None) -> datetime:
    return (_EPOCH + micros * _MICRO).astimezone(zone)


class BusinessHours:
    """Weekly opening hours in one time zone, without holidays: the clock an SLA runs on.

    Args:
        timezone: an IANA time zone name (``"Europe/Amsterdam"``) or a
            :class:`zoneinfo.ZoneInfo`; opening hours are local wall-clock times there.
        hours: the weekly opening hours, as text, a list or a mapping (see the
            module docstring).
        holidays: dates on which the team does not work, or a mapping keyed by
            date (a ``holidays`` package calendar).

    Raises:
        InvalidInput: an unknown zone, a malformed day or span (its path named,
            e.g. ``hours[1]``), hours that never open, or a holiday that is not a date.

    Example::

        hours = BusinessHours("Europe/Amsterdam", "Mon-Fri 09:00-12:00, 13:00-17:00")
        loop = CloseLoop(calendar=hours, triggers=[Trigger("detractor", nps_between(0, 6),
                                                           due_in=timedelta(hours=8))])
    """

    __slots__ = ("_days", "_fixed_holidays", "_holiday_calendar", "_hours_text", "_years",
                 "timezone")

    def __init__(
        self,
        timezone: str | ZoneInfo,
        hours: str | Sequence[str] | Mapping[str, str | Sequence[str]],
        holidays: Iterable[date] | Mapping[date, Any] = (),
    ) -> None:
        self.timezone: ZoneInfo = parse_zone(timezone)
        self._days: tuple[Spans, ...] = parse_hours(hours)
        self._hours_text = describe_hours(self._days)
        self._fixed_holidays, self._holiday_calendar = parse_holidays(holidays)
        # Per local year: each day's business intervals and their running totals.
        self._years: dict[int, _Year] = {}

    @classmethod
    def from_dict(cls, data: Any, path: str = "calendar") -> BusinessHours:
        """Build from plain data, as read from JSON or TOML.

        Keys: ``timezone``, ``hours`` (see the module docstring) and optionally
        ``holidays``: a list of dates (TOML dates or ``"YYYY-MM-DD"`` strings), or
        ``{"country": "NL", "subdiv": …, "dates": [...]}`` for a country's public
        holidays from the ``holidays`` package (plus any extra dates).

        Example (TOML)::

            [calendar]
            timezone = "Europe/Amsterdam"
            hours = "Mon-Fri 09:00-17:00"
            holidays = { country = "NL", dates = [2026-12-24] }

        Raises:
            InvalidInput: a mistake, named by its path (``calendar.hours``).
        """
        if not isinstance(data, Mapping):
            raise InvalidInput(path, data, "must be a mapping with 'timezone' and 'hours'")
        unknown = sorted(set(map(str, data)) - {"timezone", "hours", "holidays"})
        if unknown:
            raise InvalidInput(f"{path}.{unknown[0]}", data[unknown[0]],
                               "unknown key; expected timezone, hours, holidays")
        for key in ("timezone", "hours"):
            if key not in data:
                raise InvalidInput(path, sorted(map(str, data)), f"missing required key {key!r}")
        try:
            return cls(data["timezone"], data["hours"], holidays_from_data(data.get("holidays", ())))
        except InvalidInput as exc:
            raise InvalidInput(f"{path}.{exc.field}", exc.value, exc.reason) from None

    def to_dict(self) -> dict[str, Any]:
        """Plain data that :meth:`from_dict` reads back: zone, hours and the holiday dates.

        A holiday calendar (a mapping such as a ``holidays`` package calendar) is not
        plain data and is left out; only the dates given as a list are kept.
        """
        return {"timezone": self.timezone.key, "hours": self._hours_text,
                "holidays": [day.isoformat() for day in sorted(self._fixed_holidays)]}

    # -- the arithmetic -------------------------------------------------------------

    def between(self, start: datetime, end: datetime) -> timedelta:
        """The business time from ``start`` to ``end`` (negative when ``end`` is earlier)."""
        aware_datetime("start", start)
        aware_datetime("end", end)
        return self.between_us(_to_us(start), _to_us(end)) * _MICRO

    def between_us(self, start: int, end: int) -> int:
        """:meth:`between` on instants given as integer µs since the epoch (for bulk use)."""
        if end < start:
            return -self.between_us(end, start)
        first = self._local_date(start)
        last = self._local_date(end)
        base = first.year - 1  # positions count from the start of the year before
        return self._position(end, last, base) - self._position(start, first, base)

    def add(self, start: datetime, duration: timedelta) -> datetime:
        """The earliest moment with ``duration`` of business time since ``start``.

        ``add(start, timedelta(0))`` is ``start``; an SLA that runs out exactly at
        closing time is due at closing time, not when the team opens again. A
        negative duration counts back (see :meth:`subtract`). The result is in
        ``start``'s time zone.

        Raises:
            InvalidInput: a naive ``start``, or the calendar has no business time
                for a hundred years (holidays on every working day).
        """
        aware_datetime("start", start)
        if not isinstance(duration, timedelta):
            raise InvalidInput("duration", duration, "must be a timedelta")
        if duration < timedelta(0):
            return self.subtract(start, -duration)
        remaining = duration // _MICRO
        if remaining == 0:
            return start
        at = _to_us(start)
        for begin, finish in self._forward(self._local_date(at) - timedelta(days=1), at):
            begin = max(begin, at)
            if remaining <= finish - begin:
                return _from_us(begin + remaining, start.tzinfo)
            remaining -= finish - begin
        raise InvalidInput("duration", duration, "the calendar has no business time left "
                           "within a hundred years (is every working day a holiday?)")

    def subtract(self, end: datetime, duration: timedelta) -> datetime:
        """The latest moment with at least ``duration`` of business time before ``end``.

        A case last touched at or before ``subtract(now, untouched_for)`` has been
        left alone for ``untouched_for`` of business time.
        """
        aware_datetime("end", end)
        if not isinstance(duration, timedelta):
            raise InvalidInput("duration", duration, "must be a timedelta")
        if duration < timedelta(0):
            return self.add(end, -duration)
        remaining = duration // _MICRO
        if remaining == 0:
            return end
        at = _to_us(end)
        for begin, finish in self._backward(self._local_date(at) + timedelta(days=1), at):
            finish = min(finish, at)
            if remaining <= finish - begin:
                return _from_us(finish - remaining, end.tzinfo)
            remaining -= finish - begin
        raise InvalidInput("duration", duration, "the calendar has no business time within "
                           "a hundred years before this moment")

    def is_open(self, moment: datetime) -> bool:
        """Whether ``moment`` is business time."""
        at = _to_us(aware_datetime("moment", moment))
        return any(begin <= at < finish
                   for begin, finish in self._intervals(self._local_date(at)))

    # -- value semantics --------------------------------------------------------------

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, BusinessHours):
            return NotImplemented
        return (self.timezone.key, self._days, self._fixed_holidays) == (
            other.timezone.key, other._days, other._fixed_holidays
        ) and self._holiday_calendar is other._holiday_calendar

    def __hash__(self) -> int:
        return hash((self.timezone.key, self._days, self._fixed_holidays))

    def __repr__(self) -> str:
        holidays = len(self._fixed_holidays)
        extra = "" if self._holiday_calendar is None else " + a holiday calendar"
        return (f"BusinessHours({self.timezone.key!r}, {self._hours_text!r}, "
                f"holidays=<{holidays} dates{extra}>)")

    @property
    def hours(self) -> str:
        """The weekly opening hours, normalised: ``"Mon-Fri 09:00-17:00"``."""
        return self._hours_text

    # -- days and years ----------------------------------------------------------------

    def _local_date(self, micros: int) -> date:
        return _from_us(micros, self.timezone).date()

    def _is_holiday(self, day: date) -> bool:
        if day in self._fixed_holidays:
            return True
        return self._holiday_calendar is not None and day in self._holiday_calendar

    def _year(self, year: int) -> _Year:
        known = self._years.get(year)
        if known is None:  # a race computes a year twice, identically: harmless
            known = self._years[year] = _Year(year, self._day_intervals)
        return known

    def _intervals(self, day: date) -> _Intervals:
        year = self._year(day.year)
        return year.days[day.toordinal() - year.first]

    def _position(self, at: int, day: date, base: int) -> int:
        """Business µs from the start of year ``base`` up to instant ``at`` (local date ``day``).

        A clock set back across midnight can give a few instants of the previous
        local date after ``at``, so the days either side are measured exactly; every
        earlier day lies wholly before ``at`` and is taken from the running totals.
        """
        ordinal = day.toordinal()
        year = self._year(date.fromordinal(ordinal - 1).year)
        total = year.before[ordinal - 1 - year.first]
        total += sum(self._year(y).total for y in range(base, year.year))
        for near in range(ordinal - 1, ordinal + 2):
            if not year.first <= near < year.first + len(year.days):
                year = self._year(date.fromordinal(near).year)
            for begin, finish in year.days[near - year.first]:
                if begin >= at:
                    break
                total += min(finish, at) - begin
        return total

    def _forward(self, first: date, after: int) -> Iterator[tuple[int, int]]:
        """Business intervals ending after ``after``, in time order, from local date ``first``.

        Instants of one local date can follow some of the next one's (a clock set
        back across midnight), so intervals wait in a sorted buffer until no later
        date can hold anything before them.
        """
        pending: list[tuple[int, int]] = []
        day = first
        for _ in range(_MAX_DAYS):
            pending.extend(i for i in self._intervals(day) if i[1] > after)
            pending.sort()
            day += timedelta(days=1)
            floor = _wall_midnight_us(day) - _MAX_OFFSET_US  # no instant of a later date before this
            while pending and pending[0][1] <= floor:
                yield pending.pop(0)
        yield from pending

    def _backward(self, last: date, before: int) -> Iterator[tuple[int, int]]:
        """Business intervals starting before ``before``, latest first, from local date ``last``."""
        pending: list[tuple[int, int]] = []
        day = last
        for _ in range(_MAX_DAYS):
            pending.extend(i for i in self._intervals(day) if i[0] < before)
            pending.sort()
            ceiling = _wall_midnight_us(day) + _MAX_OFFSET_US  # nothing of an earlier date after
            day -= timedelta(days=1)
            while pending and pending[-1][0] >= ceiling:
                yield pending.pop()
        while pending:
            yield pending.pop()

    def _day_intervals(self, day: date) -> _Intervals:
        """The instants whose local wall clock is in one of ``day``'s spans."""
        spans = self._days[day.weekday()]
        if not spans or self._is_holiday(day):
            return ()
        midnight = _wall_midnight_us(day)
        pieces = _constant_offsets(self.timezone, midnight - _MAX_OFFSET_US,
                                   midnight + _DAY_US + _MAX_OFFSET_US)
        found: list[tuple[int, int]] = []
        for start_minute, end_minute in spans:
            wall_start = midnight + start_minute * _MINUTE_US
            wall_end = midnight + end_minute * _MINUTE_US
            for piece_start, piece_end, offset in pieces:
                begin = max(wall_start, piece_start + offset)
                finish = min(wall_end, piece_end + offset)
                if begin < finish:
                    found.append((begin - offset, finish - offset))
        return _merged(found)


class _Year:
    """One local year of a calendar: each day's intervals and the totals before each day."""

    __slots__ = ("before", "days", "first", "total", "year")

    def __init__(self, year: int, day_intervals: Any) -> None:
        first = date(year, 1, 1)
        count = (date(year + 1, 1, 1) - first).days
        self.year = year
        self.first = first.toordinal()
        self.days: list[_Intervals] = [day_intervals(first + timedelta(days=n)) for n in range(count)]
        self.before: list[int] = [0]
        for intervals in self.days:
            self.before.append(self.before[-1] + sum(end - start for start, end in intervals))
        self.total = self.before[-1]


def _wall_midnight_us(day: date) -> int:
    """Local midnight of ``day`` as wall-clock µs (the local date and time read as if UTC)."""
    return _to_us(datetime.combine(day, time(), UTC))


def _offset_us(zone: ZoneInfo, micros: int) -> int:
    offset = _from_us(micros, zone).utcoffset()
    assert offset is not None  # a ZoneInfo always has one
    return offset // _MICRO


def _constant_offsets(zone: ZoneInfo, start: int, end: int) -> list[tuple[int, int, int]]:
    """Split ``[start, end)`` (UTC µs) into pieces of constant UTC offset: (start, end, offset).

    Offsets are sampled every few hours and each change is found by bisection to
    the second (zone transitions fall on whole seconds).
    """
    samples = [*range(start, end, _SAMPLE_US), end]
    offsets = [_offset_us(zone, at) for at in samples]
    pieces: list[tuple[int, int, int]] = []
    piece_start = start
    for index in range(1, len(samples)):
        if offsets[index] == offsets[index - 1]:
            continue
        low, high = samples[index - 1] // 1_000_000, -(-samples[index] // 1_000_000)
        while high - low > 1:  # the offset at `low` is the old one, at `high` the new one
            middle = (low + high) // 2
            if _offset_us(zone, middle * 1_000_000) == offsets[index - 1]:
                low = middle
            else:
                high = middle
        change = high * 1_000_000
        pieces.append((piece_start, change, offsets[index - 1]))
        piece_start = change
    pieces.append((piece_start, end, offsets[-1]))
    return pieces


def _merged(intervals: list[tuple[int, int]]) -> _Intervals:
    intervals.sort()
    merged: list[tuple[int, int]] = []
    for start, end in intervals:
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return tuple(merged)
