"""The report's KPIs over every store, on small histories with hand-computed answers.

Histories are made through the CloseLoop facade with a FixedClock, so the events
are the ones a real programme writes. The last tests hold the memory and SQLite
stores to the same report on random histories.
"""

from __future__ import annotations

import json
import sqlite3
import tempfile
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import hypothesis.strategies as st
import pytest
from hypothesis import HealthCheck, given, settings

from closeloop import CloseLoop, CloseLoopError, InvalidInput, Status, SurveyResponse
from closeloop.convert import structure, unstructure
from closeloop.reporting import (
    AGE_BUCKETS,
    AssigneeStats,
    Durations,
    Recovery,
    Report,
    ReportQuery,
    durations,
    nearest_rank,
)
from closeloop.storage import MemoryStore, SQLiteStore, Store
from closeloop.storage.sqlite import MIGRATIONS, to_micros
from closeloop.testing import FixedClock
from closeloop.triggers import Trigger, contact_requested, nps_between
from closeloop.validate import MAX_INSTANT, MIN_INSTANT

T0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)  # FixedClock's default start
H = timedelta(hours=1)
NO_AGES = {name: 0 for name, _, _ in AGE_BUCKETS}


def counts(open_: int = 0, progress: int = 0, closed: int = 0) -> dict[Status, int]:
    """A status_counts mapping."""
    return {Status.OPEN: open_, Status.PROGRESS: progress, Status.CLOSED: closed}


@pytest.fixture
def survey_loop(store: Store, clock: FixedClock) -> CloseLoop:
    """A loop over each store whose triggers open cases from survey responses."""
    return CloseLoop(
        store=store,
        clock=clock,
        triggers=[
            Trigger("detractor", nps_between(0, 6), assign_to="alice", due_in=timedelta(hours=48)),
            Trigger("contact", contact_requested()),
        ],
    )


def close(loop: CloseLoop, case_id: str, by: str = "alice") -> None:
    """Close a case (closing needs a comment)."""
    loop.set_status(case_id, Status.CLOSED, by=by, comment="Sorted")


def reopen(loop: CloseLoop, case_id: str, by: str = "alice") -> None:
    """Reopen a Closed case (reopening needs a comment)."""
    loop.set_status(case_id, Status.OPEN, by=by, comment="Customer called back")


class TestArithmetic:
    """The shared helpers that every store finishes its figures with."""

    @pytest.mark.parametrize(
        ("count", "percent", "rank"),
        [(1, 50, 1), (1, 90, 1), (2, 50, 1), (2, 90, 2), (3, 50, 2), (4, 50, 2), (4, 90, 4),
         (10, 50, 5), (10, 90, 9), (11, 90, 10)],
    )
    def test_nearest_rank(self, count: int, percent: int, rank: int) -> None:
        """The rank is ceil(percent × count / 100)."""
        assert nearest_rank(count, percent) == rank

    def test_durations_of_one_to_ten_microseconds(self) -> None:
        """Of 1..10 µs the median is the 5th value, p90 the 9th, the mean 5.5 floored to 5."""
        summary = durations(range(10, 0, -1))
        us = timedelta(microseconds=1)
        assert summary == Durations(count=10, mean=5 * us, median=5 * us, p90=9 * us)

    def test_mean_is_floored_even_below_zero(self) -> None:
        """A mean of -1/3 µs rounds down to -1 µs, not towards zero."""
        assert durations([0, 0, -1]).mean == timedelta(microseconds=-1)

    def test_no_durations(self) -> None:
        """An empty set has count 0 and no figures."""
        assert durations([]) == Durations(count=0, mean=None, median=None, p90=None)


class TestEmptyStore:
    """A report on a store with no cases."""

    def test_every_figure_is_zero_or_none(self, loop: CloseLoop, clock: FixedClock) -> None:
        """All three statuses are present with 0; shares, durations and rates are None."""
        report = loop.report()
        assert report == Report(
            query=ReportQuery(now=clock()),
            status_counts=counts(),
            unassigned=0,
            by_assignee={},
            by_reason={},
            time_to_first_action=Durations(count=0),
            time_to_close=Durations(count=0),
            overdue=0,
            closed_within_sla=None,
            aging=NO_AGES,
            recovery=Recovery(customers=0, detractors=0, recovered=0, rate=None,
                              mean_score_before=None, mean_score_after=None),
        )
        assert report.total == 0
        assert list(report.status_counts) == [Status.OPEN, Status.PROGRESS, Status.CLOSED]


class TestStatusCounts:
    """Sums of Open, Progress and Closed cases, and the unassigned ones."""

    def test_counts_current_statuses(self, loop: CloseLoop) -> None:
        """Each case counts once, under the status it has now (a reopened case as Open)."""
        first = loop.open_case("c-1", by="agent")
        second = loop.open_case("c-2", by="agent")
        third = loop.open_case("c-3", by="agent")
        loop.open_case("c-4", by="agent")
        loop.set_status(first.id, Status.PROGRESS, by="alice")
        close(loop, second.id)
        close(loop, third.id)
        reopen(loop, third.id)
        report = loop.report()
        assert report.status_counts == counts(open_=2, progress=1, closed=1)
        assert report.total == 4

    def test_unassigned(self, loop: CloseLoop) -> None:
        """Cases with no assignee are counted, whatever their status."""
        first = loop.open_case("c-1", by="agent")
        second = loop.open_case("c-2", by="agent")
        loop.open_case("c-3", by="agent")
        loop.assign(first.id, to="alice", by="lead")
        close(loop, second.id)
        assert loop.report().unassigned == 2


class TestByAssignee:
    """Per current assignee: counts per status and median time to close."""

    def test_reassigned_case_counts_for_its_current_assignee(self, loop: CloseLoop) -> None:
        """A case moved from alice to bob is bob's only; alice keeps none of it."""
        case = loop.open_case("c-1", by="agent")
        loop.assign(case.id, to="alice", by="lead")
        loop.assign(case.id, to="bob", by="lead")
        assert loop.report().by_assignee == {
            "bob": AssigneeStats(status_counts=counts(open_=1), median_time_to_close=None),
        }

    def test_counts_and_median_time_to_close(self, loop: CloseLoop, clock: FixedClock) -> None:
        """alice closed in 2, 4 and 10 hours (median 4 h); bob in 1 and 3 (median 1 h)."""
        work = {"alice": [2, 4, 10], "bob": [3, 1]}
        for assignee, hours_list in work.items():
            for hours in hours_list:
                clock.set(T0)
                case = loop.open_case(f"c-{assignee}-{hours}", by="agent")
                loop.assign(case.id, to=assignee, by="lead")
                clock.set(T0 + hours * H)
                close(loop, case.id, by=assignee)
        waiting = loop.open_case("c-9", by="agent")
        loop.assign(waiting.id, to="bob", by="lead")
        busy = loop.open_case("c-10", by="agent")
        loop.assign(busy.id, to="carol", by="lead")
        loop.set_status(busy.id, Status.PROGRESS, by="carol")
        assert loop.report().by_assignee == {
            "alice": AssigneeStats(status_counts=counts(closed=3), median_time_to_close=4 * H),
            "bob": AssigneeStats(status_counts=counts(open_=1, closed=2),
                                 median_time_to_close=1 * H),
            "carol": AssigneeStats(status_counts=counts(progress=1), median_time_to_close=None),
        }

    def test_sorted_by_name(self, loop: CloseLoop) -> None:
        """Assignees come out in name order, whatever order their cases came in."""
        for name in ("zoe", "adam", "mia"):
            case = loop.open_case(f"c-{name}", by="agent")
            loop.assign(case.id, to=name, by="lead")
        assert list(loop.report().by_assignee) == ["adam", "mia", "zoe"]


class TestByReason:
    """Per reason (trigger): counts per status."""

    def test_counts_each_reason_of_each_case(
        self, survey_loop: CloseLoop, clock: FixedClock
    ) -> None:
        """A case with two reasons counts under both; a repeated reason counts once."""
        both = survey_loop.ingest(SurveyResponse(id="r-1", customer_id="c-1", score=3,
                                                 contact_requested=True))
        survey_loop.ingest(SurveyResponse(id="r-2", customer_id="c-2", score=9,
                                          contact_requested=True))
        detractor = survey_loop.ingest(SurveyResponse(id="r-3", customer_id="c-3", score=2))
        survey_loop.ingest(SurveyResponse(id="r-4", customer_id="c-4", score=8))  # no case
        assert both is not None and detractor is not None
        survey_loop.set_status(both.id, Status.PROGRESS, by="alice")
        close(survey_loop, detractor.id)
        survey_loop.open_case("c-5", by="agent", reasons=["vip", "vip"])
        report = survey_loop.report()
        assert report.by_reason == {
            "contact": counts(open_=1, progress=1),
            "detractor": counts(progress=1, closed=1),
            "vip": counts(open_=1),
        }
        assert report.total == 4

    def test_reasons_gained_by_an_attached_response_count(self, survey_loop: CloseLoop) -> None:
        """A later response that matches another trigger adds that reason to the case."""
        survey_loop.ingest(SurveyResponse(id="r-1", customer_id="c-1", score=9,
                                          contact_requested=True))
        survey_loop.ingest(SurveyResponse(id="r-2", customer_id="c-1", score=1))
        assert survey_loop.report().by_reason == {
            "contact": counts(open_=1), "detractor": counts(open_=1),
        }


class TestTimeToFirstAction:
    """Opened → first status change, assignment or comment by someone else."""

    def test_first_actions(self, survey_loop: CloseLoop, clock: FixedClock) -> None:
        """30 min, 1 h and 2 h: mean 70 min, median 1 h, p90 2 h; idle cases are left out."""
        # Opened by the trigger, which also assigns it: that assignment is not an action.
        by_trigger = survey_loop.ingest(SurveyResponse(id="r-1", customer_id="c-1", score=2))
        assert by_trigger is not None
        # Opened by hand by agent-1, whose own comment does not count; bob's assignment does.
        manual = survey_loop.open_case("c-2", by="agent-1")
        status_first = survey_loop.open_case("c-3", by="agent-1")
        survey_loop.open_case("c-4", by="agent-1")  # never touched
        survey_loop.ingest(SurveyResponse(id="r-2", customer_id="c-5", score=9,
                                          contact_requested=True))  # never touched
        clock.advance(minutes=10)
        survey_loop.comment(manual.id, "Tried to call", by="agent-1")
        # A response attached to a case is not an action either.
        survey_loop.ingest(SurveyResponse(id="r-3", customer_id="c-1", score=1))
        clock.advance(minutes=20)
        survey_loop.comment(by_trigger.id, "Called the customer", by="alice")
        clock.advance(minutes=30)
        survey_loop.set_status(status_first.id, Status.PROGRESS, by="alice")
        clock.advance(minutes=60)
        survey_loop.assign(manual.id, to="bob", by="bob")
        survey_loop.comment(by_trigger.id, "Again", by="alice")  # only the first counts
        assert survey_loop.report().time_to_first_action == Durations(
            count=3, mean=70 * timedelta(minutes=1), median=H, p90=2 * H
        )

    def test_reopen_does_not_change_the_first_action(
        self, loop: CloseLoop, clock: FixedClock
    ) -> None:
        """The first action stays the first, whatever happens after it."""
        case = loop.open_case("c-1", by="agent")
        clock.advance(hours=3)
        close(loop, case.id)
        clock.advance(hours=5)
        reopen(loop, case.id)
        assert loop.report().time_to_first_action == Durations(
            count=1, mean=3 * H, median=3 * H, p90=3 * H
        )


class TestTimeToClose:
    """Opened → last close, over cases that are Closed now."""

    def test_reopened_cases(self, loop: CloseLoop, clock: FixedClock) -> None:
        """Reclosed after a reopen: counted to the last close; reopened and open: not counted."""
        reclosed = loop.open_case("c-1", by="agent")
        still_open = loop.open_case("c-2", by="agent")
        plain = loop.open_case("c-3", by="agent")
        loop.open_case("c-4", by="agent")
        clock.advance(hours=1)
        close(loop, reclosed.id)
        close(loop, still_open.id)
        clock.advance(hours=1)
        reopen(loop, reclosed.id)
        reopen(loop, still_open.id)
        clock.advance(hours=1)
        close(loop, plain.id)
        clock.advance(hours=2)
        close(loop, reclosed.id)
        report = loop.report()
        assert report.time_to_close == Durations(count=2, mean=4 * H, median=3 * H, p90=5 * H)
        assert report.status_counts == counts(open_=2, closed=2)

    def test_mean_is_floored_to_the_microsecond(self, loop: CloseLoop, clock: FixedClock) -> None:
        """Three cases closed after 1 s, 1 s and 2 s: the mean 1.333… s floors to 1.333333 s."""
        for seconds in (1, 1, 2):
            clock.set(T0)
            case = loop.open_case(f"c-{seconds}", by="agent")
            clock.set(T0 + timedelta(seconds=seconds))
            close(loop, case.id)
        assert loop.report().time_to_close.mean == timedelta(seconds=1, microseconds=333333)

    def test_means_stay_exact_beyond_64_bits(self, loop: CloseLoop, clock: FixedClock) -> None:
        """Fifty cases open for ~7,100 years (the accepted range) sum past 2**63 µs; the mean is exact."""
        end = MAX_INSTANT - timedelta(microseconds=7)
        clock.set(MIN_INSTANT)
        cases = [loop.open_case(f"c-{n}", by="agent") for n in range(50)]
        clock.set(end)
        for case in cases:
            close(loop, case.id)
        took = end - MIN_INSTANT
        assert 50 * (took // timedelta(microseconds=1)) > 2**63
        report = loop.report()
        assert report.time_to_close == Durations(count=50, mean=took, median=took, p90=took)
        assert report.time_to_first_action.mean == took


class TestDueDates:
    """Overdue open cases, and the share of closed cases that met their due date."""

    def test_overdue_and_sla(self, loop: CloseLoop, clock: FixedClock) -> None:
        """Overdue: due at or before now, not Closed. SLA: 2 of 3 dated closes on time."""
        due = T0 + H
        loop.open_case("c-1", by="agent", due_at=due)  # overdue
        overdue_progress = loop.open_case("c-2", by="agent", due_at=due)
        loop.open_case("c-3", by="agent", due_at=T0 + 5 * H)  # not yet due
        loop.open_case("c-4", by="agent")  # no due date: never overdue
        loop.open_case("c-5", by="agent", due_at=T0 + 2 * H)  # due exactly now: overdue (due_at <= now)
        early = loop.open_case("c-6", by="agent", due_at=due)
        on_the_dot = loop.open_case("c-7", by="agent", due_at=due)
        late = loop.open_case("c-8", by="agent", due_at=due)
        undated = loop.open_case("c-9", by="agent")
        loop.set_status(overdue_progress.id, Status.PROGRESS, by="alice")
        clock.advance(minutes=30)
        close(loop, early.id)
        close(loop, undated.id)
        clock.advance(minutes=30)
        close(loop, on_the_dot.id)
        clock.advance(minutes=30)
        close(loop, late.id)
        clock.advance(minutes=30)  # now = T0 + 2 h
        report = loop.report()
        assert report.overdue == 3
        assert report.closed_within_sla == pytest.approx(2 / 3)
        assert report.status_counts == counts(open_=4, progress=1, closed=4)

    def test_no_dated_closes_means_no_share(self, loop: CloseLoop) -> None:
        """Closed cases without due dates give no SLA share (None, not 0 or 1)."""
        case = loop.open_case("c-1", by="agent")
        close(loop, case.id)
        assert loop.report().closed_within_sla is None

    def test_trigger_due_dates(self, survey_loop: CloseLoop, clock: FixedClock) -> None:
        """A trigger's 48-hour SLA makes its case overdue after two days, if still open."""
        survey_loop.ingest(SurveyResponse(id="r-1", customer_id="c-1", score=0))
        clock.advance(hours=47)
        assert survey_loop.report().overdue == 0
        clock.advance(hours=2)
        assert survey_loop.report().overdue == 1


class TestAging:
    """Cases not Closed, by age since opening."""

    def test_buckets(self, loop: CloseLoop, clock: FixedClock) -> None:
        """Ages 8 d, 5 d, exactly 1 d and 2 h fall in > 7, 3–7, 1–3 and < 1 day; Closed ones never."""
        for day, customer in ((0, "c-8d"), (3, "c-5d"), (7, "c-1d")):
            clock.set(T0 + timedelta(days=day))
            loop.open_case(customer, by="agent")
        closed = loop.open_case("c-closed", by="agent")
        close(loop, closed.id)
        clock.set(T0 + timedelta(days=8) - 2 * H)
        fresh = loop.open_case("c-2h", by="agent")
        loop.set_status(fresh.id, Status.PROGRESS, by="alice")
        clock.set(T0 + timedelta(days=8))
        assert loop.report().aging == {"< 1 day": 1, "1-3 days": 1, "3-7 days": 1, "> 7 days": 1}

    def test_keys_in_bucket_order(self, loop: CloseLoop) -> None:
        """The aging mapping lists every bucket, youngest first."""
        assert list(loop.report().aging) == [name for name, _, _ in AGE_BUCKETS]


class TestRecovery:
    """Customers whose case closed and who answered again: before and after."""

    def history(self, loop: CloseLoop, clock: FixedClock) -> dict[str, str]:
        """Five customers; returns each one's first case id."""
        first: dict[str, str] = {}

        def respond(response_id: str, customer: str, score: int | None) -> None:
            case = loop.ingest(SurveyResponse(id=response_id, customer_id=customer, score=score))
            if case is not None:
                first.setdefault(customer, case.id)

        respond("r-1", "recovered", 3)
        respond("r-2", "still-unhappy", 2)
        respond("r-3", "silent", 4)
        respond("r-4", "got-worse", 6)
        first["no-survey"] = loop.open_case("no-survey", by="agent").id
        clock.advance(hours=1)
        respond("r-5", "got-worse", 1)  # attached to the open case: the latest opinion
        clock.advance(hours=1)
        for case_id in first.values():
            close(loop, case_id)
        clock.advance(days=3)
        respond("r-6", "recovered", 9)  # no trigger matches; still the "after" answer
        respond("r-7", "still-unhappy", 5)  # opens a new case, which is not Closed
        respond("r-8", "no-survey", 8)
        respond("r-9", "got-worse", None)  # skipped the score
        clock.advance(hours=1)
        respond("r-10", "recovered", 0)  # only the first answer after the close counts
        return first

    def test_recovery(self, survey_loop: CloseLoop, clock: FixedClock) -> None:
        """4 customers answered after a close; 3 were detractors before and 1 of them recovered."""
        self.history(survey_loop, clock)
        assert survey_loop.report().recovery == Recovery(
            customers=4, detractors=3, recovered=1, rate=1 / 3,
            mean_score_before=(3 + 2 + 1) / 3, mean_score_after=(9 + 5 + 8) / 3,
        )

    def test_respects_the_filters(self, survey_loop: CloseLoop, clock: FixedClock) -> None:
        """Only the reported cases' customers count: here the detractor trigger's cases."""
        self.history(survey_loop, clock)
        assert survey_loop.report(reason="detractor").recovery == Recovery(
            customers=3, detractors=3, recovered=1, rate=1 / 3,
            mean_score_before=2.0, mean_score_after=7.0,
        )
        assert survey_loop.report(until=T0).recovery.customers == 0

    def test_reopened_case_is_not_a_close(self, survey_loop: CloseLoop, clock: FixedClock) -> None:
        """A case reopened and still open does not make its customer's later answer count."""
        first = self.history(survey_loop, clock)
        reopen(survey_loop, first["recovered"])
        assert survey_loop.report().recovery.customers == 3

    def test_latest_close_and_same_instant_responses(
        self, survey_loop: CloseLoop, clock: FixedClock
    ) -> None:
        """The latest close counts; answers at the same instant are taken in recorded order."""
        older = survey_loop.open_case("c-1", by="agent")
        close(survey_loop, older.id)
        clock.advance(hours=1)
        survey_loop.ingest(SurveyResponse(id="r-a", customer_id="c-1", score=9))  # ignored
        survey_loop.ingest(SurveyResponse(id="r-b", customer_id="c-1", score=3))  # opens
        (newer,) = survey_loop.cases(customer_id="c-1", status=Status.OPEN)
        clock.advance(hours=1)
        close(survey_loop, newer.id)
        clock.advance(hours=1)
        survey_loop.ingest(SurveyResponse(id="r-c", customer_id="c-1", score=8))
        survey_loop.ingest(SurveyResponse(id="r-d", customer_id="c-1", score=1))
        assert survey_loop.report().recovery == Recovery(
            customers=1, detractors=1, recovered=1, rate=1.0,
            mean_score_before=3.0, mean_score_after=8.0,
        )


class TestFilters:
    """since/until on opened_at, the current assignee, a reason."""

    def test_since_until_is_half_open(self, loop: CloseLoop, clock: FixedClock) -> None:
        """[since, until): a case opened exactly at until is left out, one at since is in."""
        for day in range(3):
            clock.set(T0 + timedelta(days=day))
            loop.open_case(f"c-{day}", by="agent")
        report = loop.report(since=T0 + timedelta(days=1), until=T0 + timedelta(days=2))
        assert report.total == 1
        assert loop.report(since=T0 + timedelta(days=1)).total == 2
        assert loop.report(until=T0 + timedelta(days=1)).total == 1
        assert report.query.since == T0 + timedelta(days=1)

    def test_assignee_and_reason(self, loop: CloseLoop) -> None:
        """assignee= is the current assignee; reason= is any of the case's reasons."""
        moved = loop.open_case("c-1", by="agent", reasons=["late", "rude"])
        loop.assign(moved.id, to="alice", by="lead")
        loop.assign(moved.id, to="bob", by="lead")
        loop.open_case("c-2", by="agent", reasons=["rude"])
        assert loop.report(assignee="alice").total == 0
        assert loop.report(assignee="bob").by_reason == {
            "late": counts(open_=1), "rude": counts(open_=1),
        }
        rude = loop.report(reason="rude")
        assert (rude.total, rude.unassigned) == (2, 1)
        assert loop.report(reason="late").by_assignee == {
            "bob": AssigneeStats(status_counts=counts(open_=1), median_time_to_close=None),
        }

    def test_reason_is_matched_exactly(self, loop: CloseLoop) -> None:
        """A reason with quotes, a backslash or accents matches itself, never a lookalike."""
        tricky = 'café "au lait"'
        loop.open_case("c-1", by="agent", reasons=[tricky + "\\"])
        loop.open_case("c-2", by="agent", reasons=["first", tricky])
        loop.open_case("c-3", by="agent", reasons=[f"x {tricky} y", "Café"])
        assert loop.report(reason=tricky).total == 1
        assert loop.report(reason=tricky + "\\").total == 1
        assert loop.report(reason="café").total == 0

    def test_bad_filters_are_rejected(self, loop: CloseLoop) -> None:
        """A naive datetime, an empty assignee or since >= until raises InvalidInput."""
        with pytest.raises(InvalidInput, match="since"):
            loop.report(since=datetime(2026, 1, 1))
        with pytest.raises(InvalidInput, match="assignee"):
            loop.report(assignee="")
        with pytest.raises(InvalidInput, match="until"):
            loop.report(since=T0, until=T0)


class TestPlainData:
    """A report as JSON-able data, and back."""

    def test_unstructure_and_structure(self, survey_loop: CloseLoop, clock: FixedClock) -> None:
        """Statuses become their values, durations seconds, times ISO strings; it round-trips."""
        case = survey_loop.ingest(SurveyResponse(id="r-1", customer_id="c-1", score=2))
        assert case is not None
        clock.advance(minutes=90)
        close(survey_loop, case.id)
        report = survey_loop.report()
        data = unstructure(report)
        assert json.loads(json.dumps(data)) == data
        assert data["status_counts"] == {"open": 0, "progress": 0, "closed": 1}
        assert data["time_to_close"] == {"count": 1, "mean": 5400.0, "median": 5400.0,
                                         "p90": 5400.0}
        assert data["by_assignee"]["alice"]["median_time_to_close"] == 5400.0
        assert data["by_reason"] == {"detractor": {"open": 0, "progress": 0, "closed": 1}}
        assert data["query"]["now"] == clock().isoformat()
        assert structure(data, Report) == report


class TestSQLiteSchema:
    """What the SQLite store keeps for reports."""

    def test_first_action_is_filled_in_for_an_older_file(self, tmp_path: Path) -> None:
        """A file made before the reporting migration gets first_action_at from its events."""
        path = tmp_path / "old.db"
        conn = sqlite3.connect(path)
        conn.executescript("\n".join(MIGRATIONS[:3]) + "\nPRAGMA user_version = 3;")
        opened, acted = to_micros(T0), to_micros(T0 + 2 * H)
        conn.execute(
            "INSERT INTO cases (id, customer_id, status, assignee, reasons, response_ids, "
            "priority, due_at, opened_at, updated_at, closed_at, opened_by, version) "
            "VALUES ('k', 'c', 'progress', NULL, '[]', '[]', 'normal', NULL, ?, ?, NULL, "
            "'agent', 3)", (opened, acted),
        )
        conn.executemany(
            "INSERT INTO events (case_id, seq, kind, actor, at, comment, via, data) "
            "VALUES ('k', ?, ?, ?, ?, NULL, NULL, ?)",
            [(1, "opened", "agent", opened, '{"status":"open"}'),
             (2, "commented", "agent", opened, "{}"),  # by the opener: not an action
             (3, "status_changed", "alice", acted,
              '{"from_status":"open","to_status":"progress"}')],
        )
        conn.commit()
        conn.close()
        store = SQLiteStore(path)
        try:
            report = store.report(ReportQuery(now=T0 + 3 * H))
        finally:
            store.close()
        assert report.time_to_first_action == Durations(count=1, mean=2 * H, median=2 * H,
                                                        p90=2 * H)


# -- the same report from every store -------------------------------------------------

CUSTOMERS = [f"c-{n}" for n in range(6)]
USERS = ["alice", "bob", "agent"]

OPERATIONS = st.one_of(
    st.tuples(st.just("ingest"), st.sampled_from(CUSTOMERS),
              st.one_of(st.none(), st.integers(0, 10)), st.booleans()),
    st.tuples(st.just("open"), st.sampled_from(CUSTOMERS), st.sampled_from(USERS),
              st.sampled_from([(), ("vip",), ("vip", "late", "vip")]),
              st.sampled_from([None, 1, 30])),
    st.tuples(st.just("status"), st.integers(0, 50), st.sampled_from(list(Status)),
              st.sampled_from(USERS)),
    st.tuples(st.just("assign"), st.integers(0, 50), st.sampled_from(USERS),
              st.sampled_from(USERS)),
    st.tuples(st.just("comment"), st.integers(0, 50), st.sampled_from(USERS)),
    st.tuples(st.just("wait"), st.sampled_from([0, 1, 60, 600, 3000])),
)


def replay(loop: CloseLoop, clock: FixedClock, operations: list[tuple[Any, ...]]) -> None:
    """Apply the operations through the facade; refused ones (bad transitions) are skipped."""
    case_ids: list[str] = []
    for number, (kind, *args) in enumerate(operations):
        try:
            if kind == "wait":
                clock.advance(minutes=args[0])
            elif kind == "ingest":
                customer, score, contact = args
                case = loop.ingest(SurveyResponse(
                    id=f"r-{number}", customer_id=customer, score=score,
                    contact_requested=contact,
                ))
                if case is not None:
                    case_ids.append(case.id)
            elif kind == "open":
                customer, by, reasons, due_hours = args
                due = None if due_hours is None else clock() + timedelta(hours=due_hours)
                case_ids.append(loop.open_case(customer, by=by, reasons=reasons,
                                               due_at=due).id)
            elif case_ids:
                case_id = case_ids[args[0] % len(case_ids)]
                if kind == "status":
                    loop.set_status(case_id, args[1], by=args[2], comment="why")
                elif kind == "assign":
                    loop.assign(case_id, to=args[1], by=args[2])
                else:
                    loop.comment(case_id, "note", by=args[1])
        except CloseLoopError:
            pass


def reports_of(store: Store, operations: list[tuple[Any, ...]], later: int) -> list[Report]:
    """Replay ``operations`` on ``store``; ``later`` minutes on, the full report and filtered ones."""
    clock = FixedClock(T0)
    numbers = iter(range(1_000_000))
    loop = CloseLoop(
        store=store, clock=clock, id_factory=lambda: f"id-{next(numbers):06}",
        triggers=[
            Trigger("detractor", nps_between(0, 6), assign_to="alice", due_in=timedelta(hours=4)),
            Trigger("contact", contact_requested()),
        ],
    )
    replay(loop, clock, operations)
    clock.advance(minutes=later)
    reports = [
        loop.report(),
        loop.report(since=T0 + timedelta(hours=10)),
        loop.report(until=T0 + timedelta(hours=10)),
        loop.report(assignee="alice"),
        loop.report(reason="vip"),
        loop.report(reason="detractor", since=T0),
    ]
    assert reports[0].total == len(loop.cases())
    return reports


def with_sqlite(work: Callable[[Store], list[Report]]) -> list[Report]:
    """Run ``work`` on a fresh SQLite store in a scratch directory."""
    with tempfile.TemporaryDirectory(prefix="closeloop-report-") as scratch:
        store = SQLiteStore(Path(scratch) / "closeloop.db")
        try:
            return work(store)
        finally:
            store.close()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(operations=st.lists(OPERATIONS, max_size=60), later=st.sampled_from([0, 60, 1440, 20160]))
def test_memory_and_sqlite_give_the_same_report(
    operations: list[tuple[Any, ...]], later: int
) -> None:
    """For any history, both stores report the same figures, and the counts add up to the cases."""
    memory = reports_of(MemoryStore(), operations, later)
    sqlite = with_sqlite(lambda store: reports_of(store, operations, later))
    assert memory == sqlite
    for report in memory:
        assigned = sum(sum(stats.status_counts.values()) for stats in report.by_assignee.values())
        assert assigned + report.unassigned == report.total
        assert sum(report.aging.values()) == report.total - report.status_counts[Status.CLOSED]
        assert report.time_to_close.count == report.status_counts[Status.CLOSED]
