"""A month of closed-loop feedback, simulated, and the manager's report on it.

How to run:  python examples/report.py [--sqlite path/to/file.db]
(9,000 survey responses over November 2026 open about 4,500 cases; the same seed
gives the same report every time, from either store; --sqlite keeps the cases in
a new SQLite file)

Two triggers open cases from the survey: detractors (score 0–6, due in 48 hours,
routed round-robin to four agents) and contact requests (due in 24 hours, handed
out by a team lead). Agents pick cases up a few hours later, comment, move them
to Progress and close them; some cases are reassigned, some reopened after a
customer calls back, and some customers answer the survey again after their
case closed (the recovery KPI).
Everything goes through the public API with a FixedClock, so the history is the
one a real programme would write. The report is computed inside the store.
"""

from __future__ import annotations

import argparse
import contextlib
import heapq
import itertools
import random
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from closeloop import CloseLoop, CloseLoopError, Status, SurveyResponse
from closeloop.notify import MemoryNotifier
from closeloop.reporting import AGE_BUCKETS, Durations, Report
from closeloop.storage import MemoryStore, SQLiteStore, Store
from closeloop.testing import FixedClock
from closeloop.triggers import Trigger, contact_requested, nps_between, round_robin

SEED = 2026
START = datetime(2026, 11, 1, tzinfo=UTC)
DAYS = 30
RESPONSES_PER_DAY = 300
CUSTOMERS = 4000
AGENTS = ["alice", "bob", "carol", "dave"]

Action = Callable[[], None]


class Month:
    """The simulation: a clock, a loop, and a queue of things people do later."""

    def __init__(self, store: Store) -> None:
        self.random = random.Random(SEED)
        self.clock = FixedClock(START)
        numbers = itertools.count(1)
        self.loop = CloseLoop(
            store=store,
            notifier=MemoryNotifier(),
            clock=self.clock,
            id_factory=lambda: f"case-{next(numbers):05}",
            triggers=[
                Trigger("detractor", nps_between(0, 6), priority="high",
                        assign_to=round_robin(AGENTS), due_in=timedelta(hours=48)),
                # Contact requests wait in a queue until the team lead hands them out.
                Trigger("contact-request", contact_requested(), due_in=timedelta(hours=24)),
            ],
        )
        self.queue: list[tuple[datetime, int, Action]] = []
        self.order = itertools.count()
        self.responses = itertools.count(1)

    def later(self, delay: timedelta, action: Action) -> None:
        """Do ``action`` after ``delay``, if that is still within the month."""
        at = self.clock() + delay
        if at < START + timedelta(days=DAYS):
            heapq.heappush(self.queue, (at, next(self.order), action))

    def hours(self, mean: float) -> timedelta:
        """A random delay of about ``mean`` hours (exponential)."""
        return timedelta(hours=self.random.expovariate(1 / mean))

    def run(self) -> None:
        """Schedule the month's survey responses, then play everything in time order."""
        for day in range(DAYS):
            for _ in range(RESPONSES_PER_DAY):
                at = START + timedelta(days=day, seconds=self.random.randrange(86_400))
                customer = f"cust-{self.random.randrange(CUSTOMERS):04}"
                heapq.heappush(self.queue, (at, next(self.order),
                                            lambda customer=customer: self.survey(customer)))
        while self.queue:
            at, _, action = heapq.heappop(self.queue)
            self.clock.set(at)
            # A step planned for a case that has changed since (closed before it was
            # moved to Progress, say) is refused by the workflow: the agent moves on.
            with contextlib.suppress(CloseLoopError):
                action()
        self.clock.set(START + timedelta(days=DAYS))

    def survey(self, customer: str, score: int | None = None) -> None:
        """The customer answers the survey; a case may open (or the answer joins one)."""
        if score is None and self.random.random() > 0.03:  # 3 % skip the score
            score = self.random.choice([0, 1, 2, 3, 4, 5, 6, 7, 7, 8, 8, 9, 9, 9, 10, 10, 10])
        response = SurveyResponse(
            id=f"resp-{next(self.responses):06}", customer_id=customer, score=score,
            contact_requested=self.random.random() < 0.08, submitted_at=self.clock(),
        )
        case = self.loop.ingest(response)
        if case is not None and case.version <= 2:  # a new case: someone will pick it up
            self.later(self.hours(5), lambda: self.pick_up(case.id))

    def pick_up(self, case_id: str) -> None:
        """The assignee (sometimes after a reassignment) starts work on the case."""
        case = self.loop.get(case_id)
        agent = case.assignee
        if agent is None:
            agent = self.random.choice(AGENTS)
            self.loop.assign(case_id, to=agent, by="team-lead")
        elif self.random.random() < 0.06:
            agent = self.random.choice([a for a in AGENTS if a != agent])
            self.loop.assign(case_id, to=agent, by="team-lead", comment="Covering for leave")
        self.loop.comment(case_id, "Left a voicemail", by=agent)
        self.later(self.hours(6), lambda: self.loop.set_status(
            case_id, Status.PROGRESS, by=agent, comment="Spoke to the customer"))
        self.later(self.hours(40), lambda: self.close(case_id, agent))

    def close(self, case_id: str, agent: str) -> None:
        """Close the case; sometimes the customer calls back, sometimes answers again."""
        self.loop.set_status(case_id, Status.CLOSED, by=agent, comment="Resolved")
        customer = self.loop.get(case_id).customer_id
        if self.random.random() < 0.07:
            self.later(self.hours(30), lambda: self.reopen(case_id, agent))
        elif self.random.random() < 0.4:
            happier = self.random.random() < 0.45
            score = self.random.randint(7, 10) if happier else self.random.randint(0, 6)
            self.later(timedelta(days=3) + self.hours(48),
                       lambda: self.survey(customer, score))

    def reopen(self, case_id: str, agent: str) -> None:
        """The customer calls back: reopen, and close again a day or so later."""
        self.loop.set_status(case_id, Status.OPEN, by=agent, comment="Customer called back")
        self.later(self.hours(24), lambda: self.close(case_id, agent))


def duration(value: timedelta | None) -> str:
    """A duration as "1 d 4 h 12 min" (to the minute), or "-"."""
    if value is None:
        return "-"
    minutes = int(value.total_seconds() // 60)
    days, minutes = divmod(minutes, 24 * 60)
    hours, minutes = divmod(minutes, 60)
    parts = [f"{days} d"] * bool(days) + [f"{hours} h"] * bool(hours) + [f"{minutes} min"]
    return " ".join(parts)


def share(value: float | None) -> str:
    """A share as a percentage, or "-"."""
    return "-" if value is None else f"{value:.1%}"


def durations_line(name: str, summary: Durations) -> str:
    """One line for a Durations summary."""
    return (f"{name:<22}{summary.count:>6,} cases   mean {duration(summary.mean)}, "
            f"median {duration(summary.median)}, p90 {duration(summary.p90)}")


def print_report(title: str, report: Report) -> None:
    """The report as a manager would read it."""
    print(title)
    print("=" * len(title))
    counts = report.status_counts
    print(f"Status counts: Open {counts[Status.OPEN]:,}, Progress {counts[Status.PROGRESS]:,}, "
          f"Closed {counts[Status.CLOSED]:,} (total {report.total:,}; "
          f"unassigned {report.unassigned:,})")
    print()
    print(f"{'assignee':<12}{'Open':>8}{'Progress':>10}{'Closed':>8}   median time to close")
    for name, stats in report.by_assignee.items():
        c = stats.status_counts
        print(f"{name:<12}{c[Status.OPEN]:>8,}{c[Status.PROGRESS]:>10,}{c[Status.CLOSED]:>8,}   "
              f"{duration(stats.median_time_to_close)}")
    print()
    print(f"{'reason':<16}{'Open':>8}{'Progress':>10}{'Closed':>8}")
    for reason, c in report.by_reason.items():
        print(f"{reason:<16}{c[Status.OPEN]:>8,}{c[Status.PROGRESS]:>10,}{c[Status.CLOSED]:>8,}")
    print()
    print(durations_line("Time to first action:", report.time_to_first_action))
    print(durations_line("Time to close:", report.time_to_close))
    print(f"Overdue (not Closed, past due): {report.overdue:,}")
    print(f"Closed within SLA: {share(report.closed_within_sla)}")
    print("Aging of cases not Closed: " + ", ".join(
        f"{name}: {report.aging[name]:,}" for name, _, _ in AGE_BUCKETS))
    r = report.recovery
    before = "-" if r.mean_score_before is None else f"{r.mean_score_before:.1f}"
    after = "-" if r.mean_score_after is None else f"{r.mean_score_after:.1f}"
    print(f"Recovery: {r.customers:,} customers answered again after their case closed; "
          f"{r.detractors:,} had been detractors, {r.recovered:,} of them came back at 7 or "
          f"more (recovery rate {share(r.rate)}); mean score {before} -> {after}")
    print()


def main() -> None:
    """Simulate the month, then print the month's report and the last week's."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sqlite", type=Path, default=None,
                        help="keep the cases in this SQLite file (must not exist yet)")
    args = parser.parse_args()
    store: Store = (MemoryStore() if args.sqlite is None
                    else SQLiteStore(args.sqlite, synchronous="NORMAL"))
    try:
        month = Month(store)
        month.run()
        print_report("November 2026, all cases", month.loop.report())
        last_week = START + timedelta(days=DAYS - 7)
        print_report("Detractor cases opened in the last 7 days",
                     month.loop.report(since=last_week, reason="detractor"))
    finally:
        store.close()


if __name__ == "__main__":
    main()
