"""Functions run in child processes by tests/test_intake.py (importable by spawn)."""

from __future__ import annotations

from datetime import timedelta

from closeloop import CloseLoop, Priority, SurveyResponse
from closeloop.storage import SQLiteStore
from closeloop.triggers import (
    Trigger,
    answer_equals,
    contact_requested,
    first_of,
    from_answer,
    nps_between,
    round_robin,
)


def RULES() -> list[Trigger]:
    """The standard rules of the intake tests."""
    return [
        Trigger("detractor", nps_between(0, 6), priority=Priority.HIGH,
                assign_to=first_of(from_answer("account_manager"), fallback="cx-team"),
                due_in=timedelta(hours=48)),
        Trigger("contact-request", contact_requested(), reason="asked to be contacted"),
        Trigger("enterprise", answer_equals("plan", "enterprise"), assign_to="enterprise-desk"),
    ]


def ingest_same_response(path: str, times: int) -> list[str]:
    """Ingest one fixed response ``times`` times; return the case ids seen."""
    loop = CloseLoop(store=SQLiteStore(path), triggers=RULES())
    seen = []
    for _ in range(times):
        case = loop.ingest(SurveyResponse(id="r-same", customer_id="c-1", score=2))
        assert case is not None
        seen.append(case.id)
    loop.store.close()
    return seen


def take_round_robin_turns(path: str, prefix: str, count: int) -> list[str]:
    """Ingest ``count`` detractors from distinct customers; return who got each case."""
    triggers = [Trigger("detractor", nps_between(0, 6), assign_to=round_robin(["a", "b", "c"]))]
    loop = CloseLoop(store=SQLiteStore(path), triggers=triggers)
    assignees = []
    for index in range(count):
        case = loop.ingest(SurveyResponse(id=f"{prefix}-{index}", customer_id=f"{prefix}-c{index}",
                                          score=1))
        assert case is not None and case.assignee is not None
        assignees.append(case.assignee)
    loop.store.close()
    return assignees
