"""Business hours: parsing, the arithmetic, and agreement with a minute-by-minute reference."""

from __future__ import annotations

import tomllib
from collections.abc import Collection
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import holidays as holiday_package
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from closeloop import InvalidInput
from closeloop.calendar import BusinessHours

AMSTERDAM = ZoneInfo("Europe/Amsterdam")
MINUTE = timedelta(minutes=1)
DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
#: Zones with clock changes of different kinds: Amsterdam (1 h at 02:00/03:00, the issue's
#: 2026-03-29), New York (at 02:00 local), Lord Howe (30 minutes), Asunción (at midnight).
ZONES = ("Europe/Amsterdam", "America/New_York", "Australia/Lord_Howe", "America/Asuncion")
#: Windows around the 2026 clock changes of those zones.
WINDOWS = (
    datetime(2026, 3, 5, tzinfo=UTC), datetime(2026, 3, 24, tzinfo=UTC),
    datetime(2026, 4, 1, tzinfo=UTC), datetime(2026, 9, 30, tzinfo=UTC),
    datetime(2026, 10, 1, tzinfo=UTC), datetime(2026, 10, 22, tzinfo=UTC),
    datetime(2026, 10, 30, tzinfo=UTC), datetime(2026, 12, 29, tzinfo=UTC),
)

Week = tuple[tuple[tuple[int, int], ...], ...]


def reference_minutes(zone: ZoneInfo, week: Week, holidays: Collection[date],
                      start: datetime, end: datetime) -> int:
    """Business minutes in [start, end), counted one minute at a time on the local wall clock."""
    count = 0
    moment = start
    while moment < end:
        local = moment.astimezone(zone)
        minute = local.hour * 60 + local.minute
        if local.date() not in holidays and any(s <= minute < e for s, e in week[local.weekday()]):
            count += 1
        moment += MINUTE
    return count


def spec(week: Week) -> str:
    """The text form of ``week``, one group per day."""
    return "; ".join(
        f"{DAYS[day]} " + ", ".join(f"{s // 60:02}:{s % 60:02}-{e // 60:02}:{e % 60:02}" for s, e in spans)
        for day, spans in enumerate(week) if spans
    )


@st.composite
def weeks(draw: st.DrawFn) -> Week:
    """Weekly hours: 0-2 disjoint spans a day on quarter hours, at least one span in the week."""
    days = []
    for _ in range(7):
        marks = sorted(draw(st.sets(st.integers(0, 96), max_size=4)))
        marks = marks[: len(marks) // 2 * 2]
        days.append(tuple((marks[i] * 15, marks[i + 1] * 15) for i in range(0, len(marks), 2)
                          if marks[i] < marks[i + 1]))
    if not any(days):
        days[draw(st.integers(0, 6))] = ((60, 180),)  # 01:00-03:00: inside the clock changes
    return tuple(days)


@st.composite
def calendars(draw: st.DrawFn) -> tuple[ZoneInfo, Week, frozenset[date], BusinessHours]:
    """A zone, weekly hours, some holidays, and the BusinessHours built from them."""
    zone = ZoneInfo(draw(st.sampled_from(ZONES)))
    week = draw(weeks())
    holidays = frozenset(draw(st.sets(st.dates(date(2026, 3, 1), date(2027, 1, 10)), max_size=8)))
    return zone, week, holidays, BusinessHours(zone, spec(week), holidays=holidays)


def minutes_around_changes(max_days: int) -> st.SearchStrategy[tuple[datetime, datetime]]:
    """A whole-minute interval near a 2026 clock change, up to ``max_days`` long."""
    return st.tuples(
        st.sampled_from(WINDOWS), st.integers(0, 12 * 24 * 60), st.integers(0, max_days * 24 * 60),
    ).map(lambda t: (t[0] + t[1] * MINUTE, t[0] + (t[1] + t[2]) * MINUTE))


PROPERTY = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])


class TestAgainstReference:
    """The arithmetic agrees with counting minutes on the local wall clock."""

    @PROPERTY
    @given(calendar=calendars(), interval=minutes_around_changes(9))
    def test_between_counts_the_reference_minutes(
        self, calendar: tuple[ZoneInfo, Week, frozenset[date], BusinessHours],
        interval: tuple[datetime, datetime],
    ) -> None:
        """between() equals the minute-by-minute count, and is its negative backwards."""
        zone, week, holidays, hours = calendar
        start, end = interval
        expected = reference_minutes(zone, week, holidays, start, end) * MINUTE
        assert hours.between(start, end) == expected
        assert hours.between(end, start) == -expected

    @PROPERTY
    @given(calendar=calendars(), interval=minutes_around_changes(2), local=st.booleans())
    def test_add_is_the_earliest_moment_with_that_much_business_time(
        self, calendar: tuple[ZoneInfo, Week, frozenset[date], BusinessHours],
        interval: tuple[datetime, datetime], local: bool,
    ) -> None:
        """add(start, d) has exactly d of business time since start, and a minute less has less."""
        zone, week, holidays, hours = calendar
        start, until = interval
        start = start.astimezone(zone) if local else start
        wanted = hours.between(start, until)
        due = hours.add(start, wanted)
        assert due.tzinfo is start.tzinfo and start <= due <= until
        assert reference_minutes(zone, week, holidays, start, due) * MINUTE == wanted
        if wanted:
            assert reference_minutes(zone, week, holidays, start, due - MINUTE) * MINUTE < wanted

    @PROPERTY
    @given(calendar=calendars(), interval=minutes_around_changes(2))
    def test_subtract_is_the_latest_moment_with_that_much_business_time(
        self, calendar: tuple[ZoneInfo, Week, frozenset[date], BusinessHours],
        interval: tuple[datetime, datetime],
    ) -> None:
        """subtract(end, d) has exactly d of business time until end, and a minute later has less."""
        zone, week, holidays, hours = calendar
        since, end = interval
        wanted = hours.between(since, end)
        cutoff = hours.subtract(end, wanted)
        assert since <= cutoff <= end
        assert reference_minutes(zone, week, holidays, cutoff, end) * MINUTE == wanted
        if wanted:
            assert reference_minutes(zone, week, holidays, cutoff + MINUTE, end) * MINUTE < wanted
        assert hours.add(end, -wanted) == cutoff


class TestExamples:
    """The cases people ask about, spelled out."""

    def test_friday_afternoon_sla_skips_the_weekend_and_easter_monday(self) -> None:
        """The issue's example: Friday 16:00 + 4 h, Monday a holiday, is Tuesday 12:00."""
        hours = BusinessHours("Europe/Amsterdam", "Mon-Fri 09:00-17:00", holidays=[date(2026, 4, 6)])
        friday = datetime(2026, 4, 3, 16, 0, tzinfo=AMSTERDAM)
        assert hours.add(friday, timedelta(hours=4)) == datetime(2026, 4, 7, 12, 0, tzinfo=AMSTERDAM)

    def test_spring_forward_day_is_an_hour_shorter(self) -> None:
        """On 2026-03-29 in Amsterdam, 01:00-04:00 on the wall clock is two hours."""
        hours = BusinessHours("Europe/Amsterdam", "Daily 01:00-04:00")
        day = datetime(2026, 3, 29, tzinfo=AMSTERDAM)
        assert hours.between(day, day + timedelta(days=1)) == timedelta(hours=2)
        assert hours.between(day - timedelta(days=1), day) == timedelta(hours=3)

    def test_fall_back_day_is_an_hour_longer(self) -> None:
        """On 2026-10-25 in Amsterdam, 01:00-04:00 on the wall clock is four hours."""
        hours = BusinessHours("Europe/Amsterdam", "Daily 01:00-04:00")
        day = datetime(2026, 10, 25, tzinfo=AMSTERDAM)
        assert hours.between(day, day + timedelta(days=1)) == timedelta(hours=4)

    def test_due_at_closing_time_is_not_pushed_to_the_next_opening(self) -> None:
        """An SLA that ends exactly at closing time is due then."""
        hours = BusinessHours("Europe/Amsterdam", "Mon-Fri 09:00-17:00")
        start = datetime(2026, 4, 3, 9, 0, tzinfo=AMSTERDAM)
        assert hours.add(start, timedelta(hours=8)) == datetime(2026, 4, 3, 17, 0, tzinfo=AMSTERDAM)
        assert hours.add(start, timedelta(0)) == start

    def test_starting_outside_hours_counts_from_the_next_opening(self) -> None:
        """A case opened on Saturday is due counting from Monday morning."""
        hours = BusinessHours("Europe/Amsterdam", "Mon-Fri 09:00-12:00, 13:00-17:00")
        saturday = datetime(2026, 4, 4, 11, 0, tzinfo=AMSTERDAM)
        assert hours.add(saturday, timedelta(hours=4)) == datetime(2026, 4, 6, 14, 0, tzinfo=AMSTERDAM)

    def test_a_holidays_package_calendar(self) -> None:
        """A holidays-package calendar works as holidays: NL's Good Friday and Easter Monday 2026."""
        hours = BusinessHours("Europe/Amsterdam", "Mon-Fri 09:00-17:00",
                              holidays=holiday_package.country_holidays("NL"))
        thursday = datetime(2026, 4, 2, 16, 0, tzinfo=AMSTERDAM)
        assert hours.add(thursday, timedelta(hours=4)) == datetime(2026, 4, 7, 12, 0,
                                                                   tzinfo=AMSTERDAM)
        assert not hours.is_open(datetime(2026, 4, 6, 10, 0, tzinfo=AMSTERDAM))
        assert hours.is_open(datetime(2026, 4, 7, 10, 0, tzinfo=AMSTERDAM))

    @pytest.mark.parametrize("hours", [
        "Mon-Fri 09:00-12:00, 13:00-17:00; Sat 10:00-14:00",
        ["Mon-Fri 09:00-12:00, 13:00-17:00", "sat 10:00-14:00"],
        {"Mon-Fri": ["09:00-12:00", "13:00-17:00"], "Saturday": "10:00-14:00"},
        "Mon,Tue,Wed-Fri 09:00-12:00; Mon-Fri 13:00-17:00; Sat 10:00-12:00, 11:00-14:00",
    ])
    def test_the_three_forms_mean_the_same(self, hours: object) -> None:
        """Text, list and mapping forms give the same calendar; overlapping spans merge."""
        calendar = BusinessHours("Europe/Amsterdam", hours)  # type: ignore[arg-type]
        assert calendar.hours == "Mon-Fri 09:00-12:00, 13:00-17:00; Sat 10:00-14:00"

    def test_from_toml(self) -> None:
        """A [calendar] TOML table with a country's holidays and extra dates loads."""
        data = tomllib.loads(
            '[calendar]\ntimezone = "Europe/Amsterdam"\nhours = "Mon-Fri 09:00-17:00"\n'
            'holidays = { country = "NL", dates = [2026-04-02] }\n'
        )
        hours = BusinessHours.from_dict(data["calendar"])
        wednesday = datetime(2026, 4, 1, 16, 0, tzinfo=AMSTERDAM)
        # Thu 2 April (the extra date), Good Friday and Easter Monday are closed.
        assert hours.add(wednesday, timedelta(hours=2)) == datetime(2026, 4, 7, 10, 0,
                                                                    tzinfo=AMSTERDAM)


class TestBadInput:
    """Mistakes name their path and value."""

    @pytest.mark.parametrize(("hours", "field", "words"), [
        ("Mon-Fri 9-17", "hours", "must look like"),
        ("Mon-Fry 09:00-17:00", "hours", "unknown day 'Fry'"),
        ("Mon-Fri 17:00-09:00", "hours", "must end after it starts"),
        ("Mon-Fri 09:00-25:00", "hours", "between 00:00 and 24:00"),
        ("Mon-Fri", "hours", "expected days then spans"),
        (["Mon 09:00-10:00", "Tue 10:00"], "hours[1]", "must look like"),
        ({"Mon": ["09:00-10:00", "10-11"]}, "hours.Mon[1]", "must look like"),
        ({"Mo": "09:00-10:00"}, "hours.Mo", "unknown day"),
        ("", "hours", "opens no hours"),
        (42, "hours", "must be text"),
    ])
    def test_bad_hours(self, hours: object, field: str, words: str) -> None:
        """A malformed day or span is refused with its path."""
        with pytest.raises(InvalidInput, match=words) as raised:
            BusinessHours("Europe/Amsterdam", hours)  # type: ignore[arg-type]
        assert raised.value.field == field

    @pytest.mark.parametrize("zone", ["Europe/Amsterdma", "", "../etc/passwd", 3])
    def test_bad_timezone(self, zone: object) -> None:
        """An unknown zone is refused as timezone."""
        with pytest.raises(InvalidInput) as raised:
            BusinessHours(zone, "Mon-Fri 09:00-17:00")  # type: ignore[arg-type]
        assert raised.value.field == "timezone"

    @pytest.mark.parametrize(("holidays", "field"), [
        ([date(2026, 1, 1), datetime(2026, 1, 2, tzinfo=UTC)], "holidays[1]"),
        (["2026-13-01"], "holidays[0]"),
        ("2026-01-01", "holidays"),
    ])
    def test_bad_holidays(self, holidays: object, field: str) -> None:
        """A holiday that is not a date is refused with its index."""
        with pytest.raises(InvalidInput) as raised:
            BusinessHours("UTC", "Mon-Fri 09:00-17:00", holidays=holidays)  # type: ignore[arg-type]
        assert raised.value.field == field

    def test_from_dict_prefixes_the_path(self) -> None:
        """from_dict names the table: calendar.hours, calendar.holidays.country."""
        with pytest.raises(InvalidInput) as raised:
            BusinessHours.from_dict({"timezone": "UTC", "hours": "Mon 9-5"})
        assert raised.value.field == "calendar.hours"
        with pytest.raises(InvalidInput) as raised:
            BusinessHours.from_dict({"timezone": "UTC", "hours": "Mon 09:00-17:00",
                                     "holidays": {"country": "XX"}})
        assert raised.value.field == "calendar.holidays.country"
        with pytest.raises(InvalidInput, match="unknown key") as raised:
            BusinessHours.from_dict({"timezone": "UTC", "hours": "Mon 09:00-17:00", "tz": "x"})
        assert raised.value.field == "calendar.tz"

    def test_naive_datetimes_are_refused(self) -> None:
        """between and add refuse naive datetimes, naming the argument."""
        hours = BusinessHours("UTC", "Mon-Fri 09:00-17:00")
        with pytest.raises(InvalidInput, match="start"):
            hours.add(datetime(2026, 1, 1), timedelta(hours=1))
        with pytest.raises(InvalidInput, match="end"):
            hours.between(datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 1, 2))

    def test_a_calendar_that_never_opens_again(self) -> None:
        """add() gives up with InvalidInput when every working day is a holiday."""
        everything = {date(2026, 1, 1) + timedelta(days=n): "x" for n in range(36600 + 400)}
        hours = BusinessHours("UTC", "Mon 09:00-10:00", holidays=everything)
        with pytest.raises(InvalidInput, match="hundred years"):
            hours.add(datetime(2026, 1, 1, tzinfo=UTC), timedelta(hours=1))

