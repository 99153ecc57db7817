"""closeloop next to the ORMs a host app would otherwise use: Django 5 + django-fsm-2, SQLAlchemy 2.

The workload of issue 16, on SQLite: a fresh file per side and attempt (WAL,
``synchronous=NORMAL``), 500 cases spread over 5 assignees, all Open to begin with.
Each side models a case the way its users would (all of closeloop's case fields, a
history table with one row per change) and does the same work:

- **status changes**: ``size`` changes round-robin over the cases (Open → Progress →
  Open …). Each reads the case, checks the transition, writes the case guarded
  against concurrent writers and adds a history row with a comment, in one
  transaction. closeloop: ``loop.set_status``. Django: ``get()``, a django-fsm-2
  ``@transition`` method on a ``ConcurrentTransitionMixin`` model, ``save()`` and
  ``Event.objects.create`` under ``transaction.atomic()`` (``transaction_mode``
  IMMEDIATE, as closeloop's ``BEGIN IMMEDIATE``). SQLAlchemy: ``session.get``, a
  transition table, the mapper's ``version_id_col`` guard and ``session.add(event)``
  in ``session.begin()``.
- **list one assignee's 100 cases**, oldest opened first, as objects of the side's
  case class with every field decoded (times, the lists of reasons and responses).
  closeloop: ``loop.page(CaseQuery(assignee=…), size=100)``. Django:
  ``list(Case.objects.filter(assignee=…).order_by("opened_at", "id")[:100])``.
  SQLAlchemy: ``select(Case).where(…).order_by(…).limit(100)`` in a new session (one
  per request, as web apps do, so its identity map starts empty each time).
- **count cases per status**: closeloop ``loop.count()``; Django
  ``values("status").annotate(Count("id"))``; SQLAlchemy
  ``select(status, count()).group_by(status)``.

Each side has the indexes its queries need (assignee with opened_at and id; status).
The sides take turns, each on a fresh file, three times; the best rate of each side
counts. The peers are installed only for this benchmark: ``pip install -e '.[bench]'``.
Without them the benchmark prints a note and adds no rows.
"""

from __future__ import annotations

import importlib.util
import tempfile
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any, Protocol

from bench.common import Row, peak_traced_kib, rate
from closeloop import CaseQuery, CloseLoop, Status
from closeloop.model import Case, Opened
from closeloop.notify import MemoryNotifier
from closeloop.storage import Change, SQLiteStore

__all__ = ["CASES", "run"]

REPEATS = 3
CASES = 500
ASSIGNEES = tuple(f"agent-{index}" for index in range(5))
LISTED = "agent-1"
COMMENT = "benchmark change"
OPENED = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
#: The issue's targets: closeloop's rate over each peer's.
TARGETS = {"status changes": 3.0, "list": {"Django": 2.0, "SQLAlchemy": 1.5}, "count": 1.0}


class Side(Protocol):
    """One contender on its own fresh SQLite file, already holding the 500 cases."""

    def change_statuses(self, changes: int) -> None:
        """Make ``changes`` status changes round-robin over the cases."""

    def list_cases(self, times: int) -> None:
        """List :data:`LISTED`'s 100 cases ``times`` times."""

    def count(self, times: int) -> None:
        """Count cases per status ``times`` times."""

    def close(self) -> None:
        """Release the file."""


def seed() -> list[dict[str, Any]]:
    """The 500 cases every side starts from, as plain values (the same on each side)."""
    return [
        {
            "id": f"case-{index:04}", "customer_id": f"customer-{index:04}",
            "assignee": ASSIGNEES[index % len(ASSIGNEES)], "reasons": ["detractor"],
            "response_ids": [f"response-{index:04}"], "priority": "normal",
            "due_at": OPENED + timedelta(days=2, minutes=index),
            "opened_at": OPENED + timedelta(minutes=index),
            "updated_at": OPENED + timedelta(minutes=index), "opened_by": "detractor",
        }
        for index in range(CASES)
    ]


def target_for(change: int) -> Status:
    """Round-robin: the first lap goes to Progress, the next back to Open."""
    return Status.PROGRESS if (change // CASES) % 2 == 0 else Status.OPEN


class CloseLoopSide:
    """closeloop over SQLiteStore with ``synchronous="NORMAL"``."""

    def __init__(self, path: Path) -> None:
        self.store = SQLiteStore(path, synchronous="NORMAL")
        self.loop = CloseLoop(store=self.store, notifier=MemoryNotifier())
        cases = [Case(status=Status.OPEN, version=1, **row) for row in seed()]
        self.store.commit_many([
            Change(case=case, expected_version=None, events=[
                Opened(case_id=case.id, actor=case.opened_by, at=case.opened_at, seq=1)])
            for case in cases
        ])
        self.ids = [case.id for case in cases]
        self.query = CaseQuery(assignee=LISTED)

    def change_statuses(self, changes: int) -> None:
        loop, ids = self.loop, self.ids
        for change in range(changes):
            loop.set_status(ids[change % CASES], target_for(change), by="bench", comment=COMMENT)

    def list_cases(self, times: int) -> None:
        loop, query = self.loop, self.query
        for _ in range(times):
            if len(loop.page(query, size=100).cases) != 100:
                raise AssertionError("closeloop listed the wrong cases")

    def count(self, times: int) -> None:
        loop = self.loop
        for _ in range(times):
            if loop.count().total != CASES:
                raise AssertionError("closeloop counted wrong")

    def close(self) -> None:
        self.store.close()


def peers_missing() -> list[str]:
    """The peer packages that are not installed."""
    needed = {"django": "django", "django_fsm": "django-fsm-2", "sqlalchemy": "sqlalchemy"}
    return [name for module, name in needed.items() if importlib.util.find_spec(module) is None]


def run(size: int) -> list[Row]:
    """The six rows (three operations, two peers), or none with a note if a peer is missing."""
    missing = peers_missing()
    if missing:
        print(f"bench.peers: skipped, needs {', '.join(missing)}: pip install -e '.[bench]'")
        return []
    from bench.peer_django import DjangoSide
    from bench.peer_sqlalchemy import SQLAlchemySide

    makers: dict[str, Callable[[Path], Side]] = {
        "closeloop": CloseLoopSide, "Django": DjangoSide, "SQLAlchemy": SQLAlchemySide,
    }
    work: dict[str, Callable[[Side], None]] = {
        "status changes": lambda side: side.change_statuses(size),
        "list": lambda side: side.list_cases(listings(size)),
        "count": lambda side: side.count(size),
    }
    operations = {"status changes": size, "list": listings(size), "count": size}
    best = {(name, op): 0.0 for name in makers for op in work}
    with tempfile.TemporaryDirectory(prefix="closeloop-peers-") as tmp:
        for attempt in range(REPEATS):
            for name, make in makers.items():  # taking turns: a noisy neighbour slows all alike
                side = make(Path(tmp) / f"{name}-{attempt}.db")
                try:
                    for op, do in work.items():
                        best[name, op] = max(best[name, op], rate(operations[op], partial(do, side)))
                finally:
                    side.close()
        peaks = {}
        for op, do in work.items():
            side = CloseLoopSide(Path(tmp) / f"traced-{op}.db")
            peaks[op] = peak_traced_kib(partial(do, side))
            side.close()
    rows = []
    for op, title in (("status changes", "status changes (SQLite, NORMAL)"),
                      ("list", "list one assignee's 100 cases"),
                      ("count", "count cases per status")):
        for peer, what in (("Django", "Django 5 ORM + django-fsm-2"),
                           ("SQLAlchemy", "SQLAlchemy 2 ORM")):
            goal = TARGETS[op]
            rows.append(Row(
                operation=f"{title} vs {peer}",
                closeloop_rate=best["closeloop", op],
                baseline_rate=best[peer, op],
                baseline=f"{what}, same workload and SQLite setup (bench/peers.py)",
                peak_kib=peaks[op],
                target=goal[peer] if isinstance(goal, dict) else goal,
            ))
    return rows


def listings(size: int) -> int:
    """How many listings a run makes: enough to time, fewer than the cheap operations."""
    return max(20, size // 10)
