"""Functions run in child processes by tests/test_response_updates.py (importable by spawn)."""

from __future__ import annotations

from closeloop import CloseLoop, SurveyResponse
from closeloop.storage import SQLiteStore
from closeloop.triggers import Trigger, nps_between


def deliver_update(path: str) -> str:
    """Deliver the late comment of response r-1 once; return what ingest_outcome said."""
    loop = CloseLoop(store=SQLiteStore(path), triggers=[Trigger("detractor", nps_between(0, 6))])
    try:
        return loop.ingest_outcome(
            SurveyResponse(id="r-1", customer_id="c-1", score=3, comment="slow")).kind
    finally:
        loop.store.close()
