"""Histories for the report contract: generated operations, replayed through a real CloseLoop.

:data:`OPERATIONS` is a hypothesis strategy for one step of a feedback programme
(a survey response, a case opened, a status change, an assignment, a comment,
an escalation, time passing); :func:`replay` applies a list of them to a store
through :class:`~closeloop.CloseLoop` with a :class:`~closeloop.testing.FixedClock`,
skipping what the workflow refuses, as an app would.

Many examples share one store (the contract's fixture gives one per test), so each
replay works in its own window of time, :data:`EPOCH_LENGTH` long, numbered by
:data:`EPOCHS`, with ids and customers prefixed by that number: a report over
``since=`` the window's start sees only that example's cases.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Any

import attrs
import hypothesis.strategies as st

from closeloop import CloseLoop, CloseLoopError, Status, SurveyResponse
from closeloop.escalation import ESCALATION_ACTOR
from closeloop.model import Escalated
from closeloop.storage.base import Change, Store
from closeloop.testing.clock import FixedClock
from closeloop.triggers import Trigger, contact_requested, nps_between

__all__ = ["EPOCHS", "EPOCH_LENGTH", "OPERATIONS", "make_loop", "replay"]

H = timedelta(hours=1)
D = timedelta(days=1)
US = timedelta(microseconds=1)


def make_loop(store: Store, clock: FixedClock, *triggers: Trigger, prefix: str = "") -> CloseLoop:
    """A loop on ``store`` with predictable ids that writes notices but never sends them."""
    numbers = itertools.count(1)
    return CloseLoop(
        store=store, clock=clock, triggers=triggers, deliver_notices=False,
        id_factory=lambda: f"{prefix}id-{next(numbers):05}",
    )


#: Each generated example works in its own window of time (and with its own ids and
#: customers), so examples sharing one store never see each other's cases.
EPOCHS = itertools.count()
EPOCH_LENGTH = timedelta(days=128)  # > 40 waits of at most 50 h, plus 14 days later

_CUSTOMERS = [f"c-{n}" for n in range(5)]
_USERS = ["alice", "bob", "agent"]

OPERATIONS = st.one_of(
    st.tuples(st.just("ingest"), st.sampled_from(_CUSTOMERS),
              st.one_of(st.none(), st.integers(0, 10)), st.booleans(),
              st.sampled_from([timedelta(0), -H, -D])),
    st.tuples(st.just("open"), st.sampled_from(_CUSTOMERS), st.sampled_from(_USERS),
              st.sampled_from([(), ("vip",), ("vip", "late", "vip")]),
              st.sampled_from([None, H, 30 * H, -H])),
    st.tuples(st.just("status"), st.integers(0, 50), st.sampled_from(list(Status)),
              st.sampled_from(_USERS)),
    st.tuples(st.just("assign"), st.integers(0, 50), st.sampled_from(_USERS),
              st.sampled_from(_USERS)),
    st.tuples(st.just("comment"), st.integers(0, 50), st.sampled_from(_USERS)),
    st.tuples(st.just("escalate"), st.integers(0, 50)),
    st.tuples(st.just("wait"), st.sampled_from([timedelta(0), US, timedelta(minutes=1), H,
                                                10 * H, 50 * H])),
)


def _escalate(store: Store, case_id: str, at: datetime) -> None:
    """Record an escalation of one case, as ``loop.escalate()`` would (but of this case only:
    the store may hold other examples' cases, which must stay untouched)."""
    case = store.get(case_id)
    version = case.version + 1
    store.commit(Change(
        case=attrs.evolve(case, version=version, updated_at=at), expected_version=case.version,
        events=(Escalated(case_id=case_id, actor=ESCALATION_ACTOR, at=at, seq=version),),
    ))


def replay(
    store: Store, base: datetime, prefix: str, operations: Sequence[tuple[Any, ...]]
) -> tuple[datetime, list[datetime], list[datetime]]:
    """Apply ``operations`` through a CloseLoop on ``store`` from ``base``.

    Refused operations (a transition the workflow forbids) are skipped, as an app would.
    Returns the time at the end, the cases' opening times and their due dates.
    """
    clock = FixedClock(base)
    loop = make_loop(
        store, clock,
        Trigger("detractor", nps_between(0, 6), assign_to="alice", due_in=4 * H),
        Trigger("contact", contact_requested()),
        prefix=prefix,
    )
    case_ids: list[str] = []
    steps: dict[str, Callable[..., Any]] = {
        "status": lambda case_id, status, by: loop.set_status(case_id, status, by=by,
                                                              comment="why"),
        "assign": lambda case_id, to, by: loop.assign(case_id, to=to, by=by),
        "comment": lambda case_id, by: loop.comment(case_id, "note", by=by),
    }
    for number, (kind, *args) in enumerate(operations):
        try:
            if kind == "wait":
                clock.advance(args[0])
            elif kind == "escalate" and case_ids:
                _escalate(store, case_ids[args[0] % len(case_ids)], clock())
            elif kind == "ingest":
                customer, score, contact, submitted = args
                case = loop.ingest(SurveyResponse(
                    id=f"{prefix}r-{number}", customer_id=prefix + customer, score=score,
                    contact_requested=contact, submitted_at=clock() + submitted,
                ))
                if case is not None and case.id not in case_ids:
                    case_ids.append(case.id)
            elif kind == "open":
                customer, by, reasons, due_in = args
                due = None if due_in is None else clock() + due_in
                case_ids.append(loop.open_case(prefix + customer, by=by, reasons=reasons,
                                               due_at=due).id)
            elif case_ids:
                case_id, *rest = args
                steps[kind](case_ids[case_id % len(case_ids)], *rest)
        except CloseLoopError:
            pass
    cases = [loop.get(case_id) for case_id in case_ids]
    return (
        clock(),
        sorted({case.opened_at for case in cases}),
        sorted({case.due_at for case in cases if case.due_at is not None}),
    )
