"""Stores that each get one report rule wrong: the report contract must fail every one.

Each mutant is a MemoryStore (which passes the whole contract) with one bug of the
kind a store author writes: in a report override (a figure computed with a rule
that is off at its boundary) or in the facts it hands the reference
(``report_facts``). ``tests/test_contract_kit.py`` runs the whole StoreContract
against each of them in a pytest subprocess.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from typing import Any

from attrs import evolve

from closeloop.model import Case, Event, ResponseRecord, Status
from closeloop.report_reference import ReportFacts, report_from_facts, report_from_parts
from closeloop.reporting import (
    AGE_BUCKETS,
    FIRST_ACTION_KINDS,
    MICROSECOND,
    Durations,
    Recovery,
    Report,
    ReportQuery,
    durations,
)
from closeloop.storage import MemoryStore

__all__ = ["MUTANTS"]


class OneWrongFigure(MemoryStore):
    """A report override that recomputes some figures with a wrong rule (``wrong``)."""

    def wrong(self, query: ReportQuery, cases: list[Case], facts: ReportFacts) -> dict[str, Any]:
        """The figures to replace, computed the wrong way."""
        raise NotImplementedError

    def report(self, query: ReportQuery) -> Report:
        facts = self.report_facts(query)
        cases = [case for case in facts.cases if query.selects(case)]
        return evolve(super().report(query), **self.wrong(query, cases, facts))


def _aging(cases: Iterable[Case], now: datetime, below: Callable[[Any, Any], bool]) -> dict[str, int]:
    aging = {name: 0 for name, _, _ in AGE_BUCKETS}
    for case in cases:
        if case.status is not Status.CLOSED:
            name = next(name for name, _, upper in AGE_BUCKETS
                        if upper is None or below(now - case.opened_at, upper))
            aging[name] += 1
    return aging


class AgingOffByOne(OneWrongFigure):
    """A case exactly one day old is put in "< 1 day" (``<=`` where the rule says ``<``)."""

    def wrong(self, query: ReportQuery, cases: list[Case], facts: ReportFacts) -> dict[str, Any]:
        return {"aging": _aging(cases, query.now, lambda age, upper: age <= upper)}


class AgingCountsClosedCases(OneWrongFigure):
    """Closed cases are aged too."""

    def wrong(self, query: ReportQuery, cases: list[Case], facts: ReportFacts) -> dict[str, Any]:
        reopened = [evolve(case, status=Status.OPEN, closed_at=None) for case in cases]
        return {"aging": _aging(reopened, query.now, lambda age, upper: age < upper)}


class OverdueStrictlyBefore(OneWrongFigure):
    """A case due exactly now is not overdue (``due_at < now``: the old report rule)."""

    def wrong(self, query: ReportQuery, cases: list[Case], facts: ReportFacts) -> dict[str, Any]:
        return {"overdue": sum(
            case.status is not Status.CLOSED and case.due_at is not None and case.due_at < query.now
            for case in cases
        )}


class OverdueCountsClosedCases(OneWrongFigure):
    """A Closed case past its due date counts as overdue."""

    def wrong(self, query: ReportQuery, cases: list[Case], facts: ReportFacts) -> dict[str, Any]:
        return {"overdue": sum(case.due_at is not None and case.due_at <= query.now for case in cases)}


def _sla(cases: Iterable[Case], in_time: Callable[[datetime, datetime], bool],
         counted: Callable[[Case], bool]) -> float | None:
    closed = [case for case in cases if case.closed_at is not None and counted(case)]
    hits = sum(case.due_at is not None and in_time(case.closed_at, case.due_at)
               for case in closed if case.closed_at is not None)
    return None if not closed else hits / len(closed)


class SlaStrictlyBefore(OneWrongFigure):
    """A case closed exactly at its due date counts as late."""

    def wrong(self, query: ReportQuery, cases: list[Case], facts: ReportFacts) -> dict[str, Any]:
        return {"closed_within_sla": _sla(cases, lambda closed, due: closed < due,
                                          lambda case: case.due_at is not None)}


class SlaOverEveryClosedCase(OneWrongFigure):
    """The SLA share is taken over every Closed case, with a due date or not."""

    def wrong(self, query: ReportQuery, cases: list[Case], facts: ReportFacts) -> dict[str, Any]:
        return {"closed_within_sla": _sla(cases, lambda closed, due: closed <= due,
                                          lambda case: True)}


def _first_actions(cases: Iterable[Case], events: Any,
                   counts: Callable[[Case, Event], bool]) -> Durations:
    took = []
    for case in cases:
        first = next((e.at for e in events.get(case.id, ()) if e.seq > 1 and counts(case, e)), None)
        if first is not None:
            took.append((first - case.opened_at) // MICROSECOND)
    return durations(took)


class FirstActionIgnoresComments(OneWrongFigure):
    """A comment is not taken as a first action."""

    def wrong(self, query: ReportQuery, cases: list[Case], facts: ReportFacts) -> dict[str, Any]:
        return {"time_to_first_action": _first_actions(cases, facts.events, lambda case, e: (
            e.kind in ("status_changed", "assigned") and e.actor != case.opened_by))}


class FirstActionByTheOpener(OneWrongFigure):
    """Whoever opened the case can make its first action."""

    def wrong(self, query: ReportQuery, cases: list[Case], facts: ReportFacts) -> dict[str, Any]:
        return {"time_to_first_action": _first_actions(
            cases, facts.events, lambda case, e: e.kind in FIRST_ACTION_KINDS)}


class FirstActionOfAnyKind(OneWrongFigure):
    """Any event after the opening counts, attached responses and escalations included."""

    def wrong(self, query: ReportQuery, cases: list[Case], facts: ReportFacts) -> dict[str, Any]:
        return {"time_to_first_action": _first_actions(
            cases, facts.events, lambda case, e: e.actor != case.opened_by)}


class MedianTakesTheUpperMiddle(OneWrongFigure):
    """The median of an even count is the upper middle value, not the nearest rank."""

    def wrong(self, query: ReportQuery, cases: list[Case], facts: ReportFacts) -> dict[str, Any]:
        took = sorted((case.closed_at - case.opened_at) // MICROSECOND
                      for case in cases if case.closed_at is not None)
        right = durations(took)
        if not took:
            return {}
        return {"time_to_close": evolve(right, median=took[len(took) // 2] * MICROSECOND)}


class MeanRoundedToNearest(OneWrongFigure):
    """The mean time to close is rounded to the nearest microsecond, not floored."""

    def wrong(self, query: ReportQuery, cases: list[Case], facts: ReportFacts) -> dict[str, Any]:
        took = [(case.closed_at - case.opened_at) // MICROSECOND
                for case in cases if case.closed_at is not None]
        right = durations(took)
        if not took:
            return {}
        return {"time_to_close": evolve(right, mean=round(sum(took) / len(took)) * MICROSECOND)}


class CloseTimeFromTheFirstClose(OneWrongFigure):
    """Time to close runs to a case's first close (from its history), not its last."""

    def wrong(self, query: ReportQuery, cases: list[Case], facts: ReportFacts) -> dict[str, Any]:
        took = []
        for case in cases:
            if case.closed_at is None:
                continue
            first = next(e.at for e in facts.events[case.id]
                         if e.kind == "status_changed" and getattr(e, "to_status", None) is Status.CLOSED)
            took.append((first - case.opened_at) // MICROSECOND)
        return {"time_to_close": durations(took)}


class RepeatedReasonCountsTwice(OneWrongFigure):
    """A case listing a reason twice is counted twice under it."""

    def wrong(self, query: ReportQuery, cases: list[Case], facts: ReportFacts) -> dict[str, Any]:
        by_reason: dict[str, dict[Status, int]] = {}
        for case in cases:
            for reason in case.reasons:
                row = by_reason.setdefault(reason, {status: 0 for status in Status})
                row[case.status] += 1
        return {"by_reason": {reason: by_reason[reason] for reason in sorted(by_reason)}}


def _recovery(
    cases: Sequence[Case], responses: Sequence[ResponseRecord], *,
    latest: Callable[[Iterable[datetime]], datetime] = max,
    after: Callable[[datetime, datetime], bool] = lambda submitted, closed: submitted > closed,
    detractor: Callable[[int], bool] = lambda score: score <= 6,
    recovered: Callable[[int], bool] = lambda score: score >= 7,
) -> Recovery:
    """Recovery with each rule as a parameter (the defaults are the right rules)."""
    closes: dict[str, list[datetime]] = {}
    for case in cases:
        if case.closed_at is not None:
            closes.setdefault(case.customer_id, []).append(case.closed_at)
    customers = detractors = won = before_sum = before_count = after_sum = after_count = 0
    for customer, times in closes.items():
        closed = latest(times)
        mine = sorted(((r.submitted_at, n, r.score) for n, r in enumerate(responses)
                       if r.customer_id == customer), key=lambda row: row[:2])
        before = [row for row in mine if not after(row[0], closed)]
        later = [row for row in mine if after(row[0], closed)]
        if not later:
            continue
        customers += 1
        before_score = before[-1][2] if before else None
        after_score = later[0][2]
        if before_score is not None:
            before_sum, before_count = before_sum + before_score, before_count + 1
        if after_score is not None:
            after_sum, after_count = after_sum + after_score, after_count + 1
        if before_score is not None and detractor(before_score):
            detractors += 1
            won += after_score is not None and recovered(after_score)
    return Recovery.from_totals(customers=customers, detractors=detractors, recovered=won,
                                before_sum=before_sum, before_count=before_count,
                                after_sum=after_sum, after_count=after_count)


class RecoveryCountsAResponseAtTheCloseAsAfter(OneWrongFigure):
    """A response submitted at the very microsecond of the close counts as "after"."""

    def wrong(self, query: ReportQuery, cases: list[Case], facts: ReportFacts) -> dict[str, Any]:
        return {"recovery": _recovery(cases, facts.responses,
                                      after=lambda submitted, closed: submitted >= closed)}


class RecoveryFromTheEarliestClose(OneWrongFigure):
    """Recovery is measured around a customer's first close instead of their latest."""

    def wrong(self, query: ReportQuery, cases: list[Case], facts: ReportFacts) -> dict[str, Any]:
        return {"recovery": _recovery(cases, facts.responses, latest=min)}


class RecoveredOnlyAboveSeven(OneWrongFigure):
    """A 7 after the close does not count as recovered (``> 7``)."""

    def wrong(self, query: ReportQuery, cases: list[Case], facts: ReportFacts) -> dict[str, Any]:
        return {"recovery": _recovery(cases, facts.responses, recovered=lambda score: score > 7)}


class RecoveryIgnoresTheFilters(OneWrongFigure):
    """Recovery is computed over every case, whatever the query selects."""

    def wrong(self, query: ReportQuery, cases: list[Case], facts: ReportFacts) -> dict[str, Any]:
        everything = ReportQuery(now=query.now)
        return {"recovery": self.report_facts_report(everything).recovery}

    def report_facts_report(self, query: ReportQuery) -> Report:
        """The reference report for another query."""
        return report_from_facts(query, self.report_facts(query))


class SinceExclusive(MemoryStore):
    """Selects cases opened strictly after ``since``, in its report and in its facts."""

    @staticmethod
    def selects(query: ReportQuery, case: Case) -> bool:
        """The wrong selection."""
        return query.selects(case) and (query.since is None or case.opened_at > query.since)

    def report_facts(self, query: ReportQuery) -> ReportFacts:
        facts = super().report_facts(query)
        return evolve(facts, cases=[case for case in facts.cases if self.selects(query, case)])

    def report(self, query: ReportQuery) -> Report:
        return report_from_facts(query, self.report_facts(query))


class UntilInclusive(MemoryStore):
    """Its report override selects cases opened at or before ``until`` (one too many)."""

    def report(self, query: ReportQuery) -> Report:
        unbounded = evolve(query, until=None)
        facts = self.report_facts(unbounded)
        cases = [case for case in facts.cases
                 if query.until is None or case.opened_at <= query.until]
        return evolve(report_from_parts(unbounded, cases, facts.events, facts.responses),
                      query=query)


class FactsWithoutComments(MemoryStore):
    """Hands the reference every event but the comments (its report is the reference's)."""

    def report_facts(self, query: ReportQuery) -> ReportFacts:
        facts = super().report_facts(query)
        return evolve(facts, events={
            case_id: [e for e in events if e.kind != "commented"]
            for case_id, events in facts.events.items()
        })

    def report(self, query: ReportQuery) -> Report:
        return report_from_facts(query, self.report_facts(query))


class FactsWithOnlyMatchedResponses(MemoryStore):
    """Hands the reference only the responses that opened or joined a case."""

    def report_facts(self, query: ReportQuery) -> ReportFacts:
        facts = super().report_facts(query)
        return evolve(facts, responses=[r for r in facts.responses if r.case_id is not None])

    def report(self, query: ReportQuery) -> Report:
        return report_from_facts(query, self.report_facts(query))


class FactsOneEventBehind(MemoryStore):
    """Its own report is right, but the facts it hands the reference lack each case's
    latest event: the override and the reference disagree."""

    def report_facts(self, query: ReportQuery) -> ReportFacts:
        facts = super().report_facts(query)
        return evolve(facts, events={case_id: events[:-1] for case_id, events in facts.events.items()})


#: Every mutant, by name; each must fail the contract.
MUTANTS: dict[str, type[MemoryStore]] = {
    cls.__name__: cls
    for cls in [
        AgingOffByOne, AgingCountsClosedCases, OverdueStrictlyBefore, OverdueCountsClosedCases,
        SlaStrictlyBefore, SlaOverEveryClosedCase, FirstActionIgnoresComments,
        FirstActionByTheOpener, FirstActionOfAnyKind, MedianTakesTheUpperMiddle,
        MeanRoundedToNearest, CloseTimeFromTheFirstClose, RepeatedReasonCountsTwice,
        RecoveryCountsAResponseAtTheCloseAsAfter, RecoveryFromTheEarliestClose,
        RecoveredOnlyAboveSeven, RecoveryIgnoresTheFilters, SinceExclusive, UntilInclusive,
        FactsWithoutComments, FactsWithOnlyMatchedResponses, FactsOneEventBehind,
    ]
}

