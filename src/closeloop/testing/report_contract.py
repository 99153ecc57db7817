"""The report part of the store contract: every KPI rule, at its boundaries, and any override.

:class:`ReportContract` is mixed into :class:`~closeloop.testing.StoreContract`.
Each test builds a history through a real :class:`~closeloop.CloseLoop` on the
store under test, with a :class:`~closeloop.testing.FixedClock`, and checks two
reports against values computed by hand:

- ``store.report(query)``: the store's own report (a SQL store's override), and
- ``report_from_facts(query, store.report_facts(query))``: the library's reference
  computation over the facts the store returns.

So a store fails when it gets a rule wrong (aging, overdue, SLA, the
``since``/``until`` boundaries, first action, time to close, recovery), whether
the mistake is in its report override or in the facts it hands the reference.
The last test generates histories with hypothesis and holds ``store.report()`` to
the reference field by field, and to a :class:`~closeloop.storage.MemoryStore`
given the same history.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import attrs
import hypothesis.strategies as st
from hypothesis import HealthCheck, given, settings

from closeloop import CloseLoop, Status, SurveyResponse
from closeloop.report_reference import report_from_facts
from closeloop.reporting import (
    AssigneeStats,
    Durations,
    Recovery,
    Report,
    ReportQuery,
)
from closeloop.storage.base import Store
from closeloop.storage.memory import MemoryStore
from closeloop.testing.clock import START as T0
from closeloop.testing.clock import FixedClock
from closeloop.testing.generated_histories import EPOCH_LENGTH, EPOCHS, OPERATIONS, make_loop, replay
from closeloop.triggers import Trigger, contact_requested, nps_between

__all__ = ["ReportContract", "report_fields"]

H = timedelta(hours=1)
D = timedelta(days=1)
US = timedelta(microseconds=1)

#: The figures of a Report, in declaration order (``query`` is what was asked, not a figure).
_FIGURES = tuple(a.name for a in attrs.fields(Report) if a.name != "query")


def report_fields(report: Report) -> dict[str, Any]:
    """The report's figures by name, so that a failing comparison names each wrong one."""
    return {name: getattr(report, name) for name in _FIGURES}


def counts(open_: int = 0, progress: int = 0, closed: int = 0) -> dict[Status, int]:
    """A ``status_counts`` mapping."""
    return {Status.OPEN: open_, Status.PROGRESS: progress, Status.CLOSED: closed}


def _close(loop: CloseLoop, case_id: str, by: str = "alice") -> None:
    loop.set_status(case_id, Status.CLOSED, by=by, comment="Sorted")


def _reopen(loop: CloseLoop, case_id: str, by: str = "alice") -> None:
    loop.set_status(case_id, Status.OPEN, by=by, comment="Called back")


def _expect(store: Store, query: ReportQuery, **expected: Any) -> None:
    """Both the store's report and the reference over its facts have the ``expected`` figures."""
    reports = {
        "store.report(query)": store.report(query),
        "report_from_facts(query, store.report_facts(query))":
            report_from_facts(query, store.report_facts(query)),
    }
    for source, report in reports.items():
        got = {name: getattr(report, name) for name in expected}
        assert got == expected, f"{source} is wrong for {query}"


class ReportContract:
    """The report rules every store keeps (see :class:`~closeloop.reporting.Report`).

    Mixed into :class:`~closeloop.testing.StoreContract`; on its own it needs the
    same ``store`` fixture (a fresh, empty store).
    """

    def test_report_aging_buckets_by_exact_age(self, store: Store) -> None:
        """Open cases fall in [0, 1 d), [1 d, 3 d), [3 d, 7 d), [7 d, …) by age at query.now."""
        now = T0 + 30 * D
        clock = FixedClock(T0)
        loop = make_loop(store, clock)
        done = loop.open_case("cust-closed", by="agent")
        clock.advance(H)
        _close(loop, done.id)
        for age in (30 * D, 7 * D, 3 * D, 3 * D - US, D, D - US, timedelta(0)):
            clock.set(now - age)
            loop.open_case("cust", by="agent")
        _expect(store, ReportQuery(now=now), status_counts=counts(open_=7, closed=1), aging={
            "< 1 day": 2, "1-3 days": 2, "3-7 days": 1, "> 7 days": 2,
        })
        # One microsecond earlier every case is a microsecond younger, the newest one
        # not opened yet (a negative age counts as the first bucket).
        _expect(store, ReportQuery(now=now - US), aging={
            "< 1 day": 3, "1-3 days": 2, "3-7 days": 1, "> 7 days": 1,
        })

    def test_report_overdue_is_due_at_or_before_now_and_not_closed(self, store: Store) -> None:
        """A case due exactly at query.now is overdue, one due a microsecond later is not."""
        now = T0 + 10 * D
        clock = FixedClock(T0)
        loop = make_loop(store, clock)
        for due in (now, now + US, now - D, None):
            loop.open_case("cust", by="agent", due_at=due)
        in_progress = loop.open_case("cust", by="agent", due_at=now - D)
        loop.set_status(in_progress.id, Status.PROGRESS, by="alice")
        closed = loop.open_case("cust", by="agent", due_at=now - D)
        _close(loop, closed.id)
        _expect(store, ReportQuery(now=now), overdue=3)
        _expect(store, ReportQuery(now=now - US), overdue=2)

    def test_report_sla_counts_closed_cases_with_a_due_date(self, store: Store) -> None:
        """closed_within_sla: of cases Closed now with a due date, those closed at or before it."""
        clock = FixedClock(T0)
        loop = make_loop(store, clock)
        due = T0 + 2 * H

        def case_closed_at(*times: timedelta, due_at: datetime | None = due) -> None:
            """Open a case at T0, then close / reopen / close … it at T0 + each time."""
            clock.set(T0)
            case = loop.open_case("cust", by="agent", due_at=due_at)
            for number, at in enumerate(times):
                clock.set(T0 + at)
                (_close if number % 2 == 0 else _reopen)(loop, case.id)

        case_closed_at(2 * H)  # exactly at the due date: in time
        case_closed_at(2 * H + US)  # a microsecond late
        case_closed_at(H)  # early
        case_closed_at(H, due_at=None)  # no due date: not in the share
        case_closed_at()  # still Open: not in the share
        case_closed_at(H, 3 * H)  # closed in time, reopened: not Closed now
        case_closed_at(H, 3 * H, 4 * H)  # its last close is late
        _expect(store, ReportQuery(now=T0 + D), closed_within_sla=0.5,
                status_counts=counts(open_=2, closed=5))

    def test_report_since_is_inclusive_and_until_exclusive(self, store: Store) -> None:
        """A report selects cases opened in [since, until), to the microsecond."""
        since, until = T0 + D, T0 + 2 * D
        clock = FixedClock(T0)
        loop = make_loop(store, clock)
        for name, opened in [("before-since", since - US), ("at-since", since),
                             ("before-until", until - US), ("at-until", until)]:
            clock.set(opened)
            case = loop.open_case("cust", by="agent")
            loop.assign(case.id, to=name, by="lead")
        now = T0 + 5 * D
        one_open = AssigneeStats(status_counts=counts(open_=1), median_time_to_close=None)
        for lower, upper, names in [
            (since, until, ["at-since", "before-until"]),
            (since, None, ["at-since", "before-until", "at-until"]),
            (None, until, ["before-since", "at-since", "before-until"]),
        ]:
            _expect(store, ReportQuery(now=now, since=lower, until=upper),
                    by_assignee={name: one_open for name in sorted(names)})

    def test_report_first_action_rule(self, store: Store) -> None:
        """First action: the first change, assignment or comment by someone but the opener."""
        # Attached responses and escalations are not actions; a reopen does not move it.
        clock = FixedClock(T0)
        loop = make_loop(store, clock, Trigger("detractor", nps_between(0, 6), due_in=H),
                     Trigger("contact", contact_requested()))
        commented = loop.open_case("a", by="agent-1")
        own_then_assigned = loop.open_case("b", by="agent-1")
        automatic = loop.ingest(SurveyResponse(id="r-1", customer_id="c", score=3))
        assert automatic is not None
        loop.open_case("d", by="agent-1")  # no action at all: left out
        reopened = loop.open_case("e", by="agent-1")
        clock.set(T0 + H)
        loop.comment(commented.id, "Left a voicemail", by="alice")  # 1 h
        loop.comment(own_then_assigned.id, "Noted", by="agent-1")  # the opener: not an action
        loop.ingest(SurveyResponse(id="r-2", customer_id="c", contact_requested=True))
        clock.set(T0 + 2 * H)
        assert [e.case_id for e in loop.escalate().escalated] == [automatic.id]
        _close(loop, reopened.id)  # 2 h
        clock.set(T0 + 3 * H)
        loop.assign(own_then_assigned.id, to="bob", by="bob")  # 3 h
        clock.set(T0 + 4 * H)
        _reopen(loop, reopened.id)
        clock.set(T0 + 5 * H)
        loop.set_status(automatic.id, Status.PROGRESS, by="alice")  # 5 h
        # 1 h, 2 h, 3 h, 5 h: median the 2nd (nearest rank), p90 the 4th, mean floored
        _expect(store, ReportQuery(now=T0 + D), time_to_first_action=Durations(
            count=4, mean=2 * H + 45 * timedelta(minutes=1), median=2 * H, p90=5 * H,
        ))

    def test_report_time_to_close_and_per_assignee_medians(self, store: Store) -> None:
        """Time to close runs to the last close of cases Closed now; means floor to the µs."""
        clock = FixedClock(T0)
        loop = make_loop(store, clock)
        closes: dict[str, tuple[str, list[timedelta]]] = {
            "p": ("alice", [H]),
            "q": ("alice", [2 * H]),
            "r": ("bob", [4 * H]),
            "s": ("alice", [10 * H + 3 * US]),
            "t": ("alice", [H, 2 * H]),  # reopened, not closed again: left out
            "u": ("alice", [H / 2, H, 20 * H]),  # the last close counts
        }
        for customer, (assignee, times) in closes.items():
            clock.set(T0)
            case = loop.open_case(customer, by="agent")
            loop.assign(case.id, to=assignee, by="lead")
            for number, at in enumerate(times):
                clock.set(T0 + at)
                (_close if number % 2 == 0 else _reopen)(loop, case.id, assignee)
        # 1 h, 2 h, 4 h, 10 h 3 µs, 20 h: sum 37 h 3 µs, mean 7 h 24 min 0.6 µs -> floored
        _expect(
            store, ReportQuery(now=T0 + D),
            time_to_close=Durations(count=5, mean=7 * H + 24 * timedelta(minutes=1),
                                    median=4 * H, p90=20 * H),
            by_assignee={
                "alice": AssigneeStats(status_counts=counts(open_=1, closed=4),
                                       median_time_to_close=2 * H),
                "bob": AssigneeStats(status_counts=counts(closed=1), median_time_to_close=4 * H),
            },
        )
        # alice's four: 1 h, 2 h, 10 h 3 µs, 20 h: the median of an even count is the lower
        # middle (nearest rank 2), the mean 8 h 15 min 0.75 µs is floored
        _expect(store, ReportQuery(now=T0 + D, assignee="alice"), time_to_close=Durations(
            count=4, mean=8 * H + 15 * timedelta(minutes=1), median=2 * H, p90=20 * H,
        ))

    def test_report_reasons_assignees_and_filters(self, store: Store) -> None:
        """A repeated reason counts once; reason and assignee filters match exactly."""
        clock = FixedClock(T0)
        loop = make_loop(store, clock)
        loop.open_case("a", by="agent", reasons=("vip", "late", "vip"))
        late = loop.open_case("b", by="agent", reasons=("late",))
        loop.assign(late.id, to="alice", by="lead")
        _close(loop, late.id)
        working = loop.open_case("c", by="agent")
        loop.set_status(working.id, Status.PROGRESS, by="bob")
        now = T0 + H
        _expect(store, ReportQuery(now=now), unassigned=2,
                status_counts=counts(open_=1, progress=1, closed=1),
                by_reason={"late": counts(open_=1, closed=1), "vip": counts(open_=1)})
        report = store.report(ReportQuery(now=now))
        assert list(report.by_reason) == ["late", "vip"]  # ordered by key
        _expect(store, ReportQuery(now=now, reason="vip"), status_counts=counts(open_=1))
        _expect(store, ReportQuery(now=now, reason="lat"), status_counts=counts())
        _expect(store, ReportQuery(now=now, assignee="alice"), status_counts=counts(closed=1),
                unassigned=0)

    def test_report_recovery_rules(self, store: Store) -> None:
        """Recovery: last response at or before the latest close vs first after; 0–6 → 7+."""
        # Per customer with a Closed case: the last response submitted at or before their
        # latest close against the first one after it; detractors are 0–6, recovered 7 or more.
        clock = FixedClock(T0)
        loop = make_loop(store, clock)  # no triggers: every response is only recorded
        close_at = T0 + 10 * H
        cases: dict[str, list[str]] = {}
        for customer in ("c1", "c2", "c3", "c4", "c5", "c6", "c6", "c7", "c8"):
            clock.set(T0)
            cases.setdefault(customer, []).append(loop.open_case(customer, by="agent").id)
        for customer, ids in cases.items():
            clock.set(T0 + 5 * H if customer == "c6" else close_at)
            _close(loop, ids[0])
            if customer == "c6":
                clock.set(close_at)
                _close(loop, ids[1])  # c6's latest close
        clock.set(close_at + H / 2)
        _reopen(loop, cases["c7"][0])  # c7 has no Closed case any more
        clock.set(close_at + 3 * H)
        answers: list[tuple[str, int | None, datetime]] = [
            ("c1", 3, T0 - D), ("c1", 5, close_at), ("c1", 9, close_at + H), ("c1", 2, close_at + 2 * H),
            ("c2", 6, T0 - D), ("c2", 7, close_at + H),
            ("c3", 7, T0 - D), ("c3", 10, close_at + H), ("c3", 1, close_at + H),  # same µs
            ("c4", 2, T0 - D), ("c4", 6, close_at + H),
            ("c5", 1, T0 - D),  # nothing after the close: not counted
            ("c6", 1, T0 - D), ("c6", 4, T0 + 7 * H), ("c6", 8, close_at + H),
            ("c7", 2, T0 - D), ("c7", 9, close_at + H),
            ("c8", 3, T0 - D), ("c8", None, close_at + H),
            ("c9", 2, T0 - D), ("c9", 9, close_at + H),  # no case at all
        ]
        for number, (customer, score, submitted) in enumerate(answers):
            loop.ingest(SurveyResponse(id=f"r-{number}", customer_id=customer, score=score,
                                       submitted_at=submitted))
        # before: c1 5, c2 6, c3 7, c4 2, c6 4, c8 3; after: 9, 7, 10, 6, 8 and c8 unscored
        _expect(store, ReportQuery(now=clock()), recovery=Recovery(
            customers=6, detractors=5, recovered=3, rate=0.6,
            mean_score_before=4.5, mean_score_after=8.0,
        ))
        nobody = Recovery(customers=0, detractors=0, recovered=0, rate=None,
                          mean_score_before=None, mean_score_after=None)
        _expect(store, ReportQuery(now=clock(), until=T0), recovery=nobody)

    @settings(
        deadline=None,
        # The store fixture is built once per test, not per example: each example
        # works in a time window, with customers and ids of its own (see below).
        # Each subclass runs it on its own store: several executors are the point.
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                               HealthCheck.differing_executors],
    )
    @given(data=st.data())
    def test_report_matches_the_reference_on_generated_histories(
        self, store: Store, data: st.DataObject
    ) -> None:
        """For any history, store.report() equals the reference, figure by figure."""
        # The reference twice: over this store's report_facts(), and a MemoryStore given the
        # same history; for several queries (since/until at case boundaries, assignee,
        # reason, a `now` at a due date).
        operations = data.draw(st.lists(OPERATIONS, max_size=40), label="operations")
        epoch = next(EPOCHS)
        base = T0 + epoch * EPOCH_LENGTH
        prefix = f"e{epoch}-"
        oracle = MemoryStore()
        ends = [replay(target, base, prefix, operations) for target in (store, oracle)]
        assert ends[0] == ends[1], "the same operations made a different history on this store"
        end, opened, due = ends[0]
        later = data.draw(st.sampled_from([timedelta(0), H, D, 14 * D]), label="later")
        queries = [
            ReportQuery(now=end + later, since=base),
            ReportQuery(now=end + later, since=base, assignee="alice"),
            ReportQuery(now=end + later, since=base, reason="vip"),
            ReportQuery(now=end + later, since=base, reason="detractor"),
            ReportQuery(now=base + H, since=base),  # before most of the history
        ]
        if opened:
            cut = data.draw(st.sampled_from(opened), label="cut")
            queries += [ReportQuery(now=end + later, since=cut),
                        ReportQuery(now=end + later, since=base, until=cut)]
        for moment in due[:3]:
            queries.append(ReportQuery(now=moment, since=base))  # overdue exactly now
        for query in queries:
            report = store.report(query)
            reference = report_from_facts(query, store.report_facts(query))
            assert report_fields(report) == report_fields(reference), (
                f"store.report() differs from the reference over store.report_facts() for {query}")
            assert report_fields(report) == report_fields(oracle.report(query)), (
                f"store.report() differs from MemoryStore's for the same history, {query}")
