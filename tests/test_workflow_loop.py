"""A team's workflow end to end on every store: set, history, SLA pause, calendars, report, CLI."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Iterator
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

import workflow_apps  # tests/ is on sys.path
from closeloop import CloseLoop, InvalidInput, Status, StatusChanged, SurveyResponse
from closeloop.calendar import BusinessHours
from closeloop.cli import main
from closeloop.escalation import EscalationPolicy
from closeloop.notify import MemoryNotifier
from closeloop.reporting import Durations, is_overdue
from closeloop.storage import MemoryStore, PostgresStore, SQLiteStore, Store
from closeloop.testing import FixedClock
from closeloop.triggers import Trigger, nps_between
from workflow_apps import WORKFLOW

AMSTERDAM = ZoneInfo("Europe/Amsterdam")
DAY = timedelta(days=1)
HOUR = timedelta(hours=1)


@pytest.fixture
def loop(store: Store, outbox: MemoryNotifier, clock: FixedClock) -> CloseLoop:
    """A loop with the example workflow and a 48-hour SLA on detractors."""
    return CloseLoop(store=store, notifier=outbox, clock=clock, workflow=WORKFLOW,
                     triggers=[Trigger("detractor", nps_between(0, 6), due_in=48 * HOUR)])


def detractor(loop: CloseLoop, response_id: str = "r-1") -> str:
    """Ingest a detractor response; the id of the case it opened."""
    case = loop.ingest(SurveyResponse(id=response_id, customer_id=f"c-{response_id}", score=2))
    assert case is not None
    return case.id


class TestSetAndHistory:
    """set_status with configured names and close reasons; what history records."""

    def test_a_case_through_waiting_to_closed_and_back(self, loop: CloseLoop, clock: FixedClock) -> None:
        """Open → waiting → closed (no-response) → open → closed (solved), recorded by name."""
        case_id = detractor(loop)
        assert loop.get(case_id).custom_status == "open"
        clock.advance(hours=1)
        waiting = loop.set_status(case_id, "waiting", by="alice", comment="Asked for the order")
        assert (waiting.status, waiting.custom_status) == (Status.PROGRESS, "waiting")
        clock.advance(days=2)
        closed = loop.set_status(case_id, "closed", by="alice", comment="No answer",
                                 close_reason="no-response")
        assert (closed.status, closed.close_reason, closed.closed_at) == (
            Status.CLOSED, "no-response", clock())
        reopened = loop.set_status(case_id, Status.OPEN, by="bob", comment="Customer called")
        assert (reopened.custom_status, reopened.close_reason, reopened.closed_at) == (
            "open", None, None)
        loop.set_status(case_id, "closed", by="bob", comment="Refunded", close_reason="solved")
        assert loop.get(case_id) == loop.store.get(case_id)
        changes = [e for e in loop.history(case_id) if isinstance(e, StatusChanged)]
        assert [(e.from_custom_status, e.to_custom_status, e.close_reason) for e in changes] == [
            ("open", "waiting", None), ("waiting", "closed", "no-response"),
            ("closed", "open", None), ("open", "closed", "solved"),
        ]
        assert [(e.from_status, e.to_status) for e in changes[:2]] == [
            (Status.OPEN, Status.PROGRESS), (Status.PROGRESS, Status.CLOSED)]

    def test_a_category_means_its_first_status(self, loop: CloseLoop) -> None:
        """set_status(Status.PROGRESS) puts the case in "progress", the first progress status."""
        case_id = detractor(loop)
        assert loop.set_status(case_id, Status.PROGRESS, by="alice").custom_status == "progress"

    @pytest.mark.parametrize(("status", "reason", "field"), [
        ("closed", None, "close_reason"),
        ("closed", "fixed", "close_reason"),
        ("waiting", "solved", "close_reason"),
        ("wating", None, "status"),
    ])
    def test_refused_changes_write_nothing(self, loop: CloseLoop, status: str, reason: str | None,
                                           field: str) -> None:
        """A missing, unknown or misplaced close reason, or an unknown status, writes nothing."""
        case_id = detractor(loop)
        before, history = loop.get(case_id), loop.history(case_id)
        with pytest.raises(InvalidInput) as raised:
            loop.set_status(case_id, status, by="alice", comment="done", close_reason=reason)
        assert raised.value.field == field
        assert (loop.get(case_id), loop.history(case_id)) == (before, history)


class TestSlaPause:
    """A status that pauses the SLA stops the clock: not overdue, and the due time moves on."""

    def test_paused_two_days_is_not_overdue(self, loop: CloseLoop, clock: FixedClock) -> None:
        """Waiting for two days past the due time is not overdue; the unpaused twin is."""
        paused, running = detractor(loop, "r-1"), detractor(loop, "r-2")
        due = loop.get(paused).due_at
        assert due == clock() + 48 * HOUR
        clock.advance(hours=1)
        loop.set_status(paused, "waiting", by="alice", comment="Asked for the order")
        clock.advance(days=3)  # one day past the due time
        assert [is_overdue(loop.get(i), clock()) for i in (paused, running)] == [False, True]
        assert loop.report().overdue == 1
        assert [e.case_id for e in loop.escalate(dry_run=True).escalated] == [running]
        resumed = loop.set_status(paused, "progress", by="alice", comment="They answered")
        assert resumed.paused_at is None and resumed.due_at == due + 3 * DAY
        assert not is_overdue(resumed, clock())
        clock.advance(hours=47)
        assert is_overdue(loop.get(paused), clock())

    def test_closing_from_a_pause_judges_the_sla_without_the_pause(
        self, loop: CloseLoop, clock: FixedClock
    ) -> None:
        """A case closed after a long wait is still closed within its SLA."""
        case_id = detractor(loop)
        loop.set_status(case_id, "waiting", by="alice")
        clock.advance(days=5)
        loop.set_status(case_id, "closed", by="alice", comment="Sorted", close_reason="solved")
        assert loop.report().closed_within_sla == 1.0


class TestCalendar:
    """Business hours in the loop: due times, pauses, untouched escalation, the report."""

    @pytest.fixture
    def hours(self) -> BusinessHours:
        """Mon-Fri 09:00-17:00 in Amsterdam, Easter Monday 2026 off."""
        return BusinessHours("Europe/Amsterdam", "Mon-Fri 09:00-17:00", holidays=[date(2026, 4, 6)])

    @pytest.fixture
    def calendar_loop(self, store: Store, clock: FixedClock, hours: BusinessHours) -> CloseLoop:
        """A loop with the example workflow, the calendar and a four-hour SLA."""
        clock.set(datetime(2026, 4, 3, 16, 0, tzinfo=AMSTERDAM))
        return CloseLoop(store=store, clock=clock, workflow=WORKFLOW, calendar=hours,
                         triggers=[Trigger("detractor", nps_between(0, 6), due_in=4 * HOUR)],
                         escalation=EscalationPolicy(untouched_for=8 * HOUR))

    def test_due_in_counts_business_hours(self, calendar_loop: CloseLoop) -> None:
        """Opened Friday 16:00 with 4 h to go, Monday a holiday: due Tuesday 12:00."""
        case = calendar_loop.get(detractor(calendar_loop))
        assert case.due_at == datetime(2026, 4, 7, 12, 0, tzinfo=AMSTERDAM)

    def test_a_pause_moves_the_due_time_by_business_time(
        self, calendar_loop: CloseLoop, clock: FixedClock
    ) -> None:
        """Paused Tuesday 09:00 to Wednesday 11:00 (10 business hours): due Wednesday 14:00."""
        case_id = detractor(calendar_loop)
        clock.set(datetime(2026, 4, 7, 9, 0, tzinfo=AMSTERDAM))
        calendar_loop.set_status(case_id, "waiting", by="alice")
        clock.set(datetime(2026, 4, 8, 11, 0, tzinfo=AMSTERDAM))
        resumed = calendar_loop.set_status(case_id, "progress", by="alice")
        assert resumed.due_at == datetime(2026, 4, 8, 14, 0, tzinfo=AMSTERDAM)

    def test_untouched_for_counts_business_hours(
        self, calendar_loop: CloseLoop, clock: FixedClock
    ) -> None:
        """Eight business hours after the last change (Tuesday 09:00): not at 15:59, at 17:00."""
        case_id = detractor(calendar_loop)
        calendar_loop.set_status(case_id, "progress", by="alice")
        clock.set(datetime(2026, 4, 7, 9, 0, tzinfo=AMSTERDAM))
        calendar_loop.set_status(case_id, "waiting", by="alice")  # the SLA is paused, not touched
        clock.set(datetime(2026, 4, 7, 15, 59, tzinfo=AMSTERDAM))
        assert calendar_loop.escalate(dry_run=True).escalated == ()
        clock.set(datetime(2026, 4, 7, 17, 0, tzinfo=AMSTERDAM))
        (escalation,) = calendar_loop.escalate(dry_run=True).escalated
        assert (escalation.case_id, escalation.why) == (case_id, "untouched")

    def test_report_keeps_wall_clock_and_adds_business_time(
        self, calendar_loop: CloseLoop, clock: FixedClock
    ) -> None:
        """Closed Tuesday 10:00: 90 hours on the wall clock, 2 business hours."""
        case_id = detractor(calendar_loop)
        clock.set(datetime(2026, 4, 7, 10, 0, tzinfo=AMSTERDAM))
        calendar_loop.set_status(case_id, "closed", by="alice", comment="Sorted",
                                 close_reason="solved")
        report = calendar_loop.report()
        assert report.time_to_close.median == 90 * HOUR
        assert report.business_time_to_close == Durations(count=1, mean=2 * HOUR,
                                                          median=2 * HOUR, p90=2 * HOUR)


class TestReport:
    """The report per custom status and per close reason, on every store."""

    def test_counts_and_times(self, loop: CloseLoop, clock: FixedClock) -> None:
        """Counts per custom status and category, closes per reason, time in each status."""
        first, second, third = (detractor(loop, f"r-{n}") for n in range(3))
        clock.advance(hours=1)
        loop.set_status(first, "waiting", by="alice")
        loop.set_status(third, "progress", by="alice")
        clock.advance(hours=3)
        loop.set_status(first, "closed", by="alice", comment="Gave up", close_reason="no-response")
        loop.set_status(second, "closed", by="alice", comment="Refund", close_reason="solved")
        report = loop.report()
        assert report.custom_status_counts == {"open": 0, "progress": 1, "waiting": 0, "closed": 2}
        assert report.status_counts == {Status.OPEN: 0, Status.PROGRESS: 1, Status.CLOSED: 2}
        four = Durations(count=1, mean=4 * HOUR, median=4 * HOUR, p90=4 * HOUR)
        assert report.by_close_reason == {"solved": four, "no-response": four}
        assert report.time_in_status["waiting"] == Durations(count=1, mean=3 * HOUR,
                                                             median=3 * HOUR, p90=3 * HOUR)
        assert report.time_in_status["open"].count == 3


@pytest.fixture
def cli(store: Store, clock: FixedClock, tmp_path: object) -> Iterator[Callable[..., str]]:
    """Run the CLI in-process on a fresh loop over the same data, as --app workflow_apps:make_loop."""

    def reopened() -> Store:
        if isinstance(store, MemoryStore):
            return store
        if isinstance(store, SQLiteStore):
            return SQLiteStore(store.path)
        from postgres_workers import ScratchPostgresStore  # needs psycopg

        assert isinstance(store, ScratchPostgresStore)
        return PostgresStore(store.dsn, schema=store.schema)  # not dropped when the CLI closes it

    workflow_apps.FACTORY = lambda: CloseLoop(store=reopened(), clock=clock, workflow=WORKFLOW)

    def run(capsys: pytest.CaptureFixture[str], *args: str) -> str:
        capsys.readouterr()
        assert main([*args, "--app", "workflow_apps:make_loop"]) == 0
        return capsys.readouterr().out

    yield run
    workflow_apps.FACTORY = None


def test_cli_shows_custom_statuses_and_close_reasons(
    loop: CloseLoop, clock: FixedClock, cli: Callable[..., str], capsys: pytest.CaptureFixture[str]
) -> None:
    """cases and report, as JSON and CSV, name the custom status and the close reason."""
    waiting, closed = detractor(loop, "r-1"), detractor(loop, "r-2")
    clock.advance(hours=2)
    loop.set_status(waiting, "waiting", by="alice")
    loop.set_status(closed, "closed", by="alice", comment="Refund", close_reason="solved")
    cases = {c["id"]: c for c in json.loads(cli(capsys, "cases", "--format", "json"))}
    assert (cases[waiting]["custom_status"], cases[waiting]["status"]) == ("waiting", "progress")
    assert cases[closed]["close_reason"] == "solved"
    rows = list(csv.DictReader(io.StringIO(cli(capsys, "cases", "--format", "csv"))))
    assert {(r["custom status"], r["close reason"]) for r in rows} == {("waiting", "-"),
                                                                       ("closed", "solved")}
    metrics = {(m, d): v for m, d, v in csv.reader(io.StringIO(cli(capsys, "report", "--format",
                                                                     "csv")))}
    assert metrics[("cases", "custom_status=waiting")] == "1"
    assert metrics[("time_to_close_count", "close_reason=solved")] == "1"
    assert metrics[("time_to_close_median_seconds", "close_reason=solved")] == "7200"
    report = json.loads(cli(capsys, "report", "--format", "json"))
    assert report["custom_status_counts"] == {"open": 0, "progress": 0, "waiting": 1, "closed": 1}
    assert report["by_close_reason"]["solved"]["median_seconds"] == 7200
    table = cli(capsys, "report")
    assert any(line.split()[:4] == ["custom", "status", "waiting", "1"]
               for line in table.splitlines())


def test_lists_filter_on_custom_statuses(
    loop: CloseLoop, cli: Callable[..., str], capsys: pytest.CaptureFixture[str]
) -> None:
    """cases(status="waiting"), CaseQuery(custom_status=…), count() and --status waiting agree."""
    from closeloop import CaseQuery

    waiting, progress, open_ = (detractor(loop, f"r-{n}") for n in range(3))
    loop.set_status(waiting, "waiting", by="alice")
    loop.set_status(progress, Status.PROGRESS, by="alice")
    assert [c.id for c in loop.cases(status="waiting")] == [waiting]
    assert [c.id for c in loop.cases(status="Progress")] == [waiting, progress]  # the category
    listed = loop.page(CaseQuery(custom_status=["waiting", "open"])).cases  # same opened_at:
    assert sorted(c.id for c in listed) == sorted([waiting, open_])          # ties by id
    assert loop.count(CaseQuery(custom_status="waiting")).by_status[Status.PROGRESS] == 1
    with pytest.raises(InvalidInput, match="status"):
        loop.cases(status="on-hold")
    listed = json.loads(cli(capsys, "cases", "--status", "waiting", "--format", "json"))
    assert [c["id"] for c in listed] == [waiting]


def test_notices_name_the_workflow_status(store: Store, clock: FixedClock) -> None:
    """Notices show a team's status by its label, before and after a change, not the category."""
    from closeloop.notify import Channel

    team = MemoryNotifier()
    loop = CloseLoop(store=store, clock=clock, workflow=WORKFLOW, notifiers={
        "team": Channel(team, people=True, events=("status_changed",), recipient="cx-lead")})
    case_id = loop.open_case("c-1", by="agent").id
    loop.set_status(case_id, "waiting", by="alice")
    loop.assign(case_id, to="bob", by="alice")
    loop.set_status(case_id, Status.PROGRESS, by="bob")
    moved, assigned, resumed = team.sent
    assert "Waiting on customer" in moved.subject + moved.text
    assert "Waiting on customer" in assigned.text
    assert "Progress (was Waiting on customer)" in resumed.subject
