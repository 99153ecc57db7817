"""TEMPORARY until the lead's ingest_outcome lands: a CloseLoop with ``ingest_outcome``.

The real ``CloseLoop.ingest_outcome`` decides the outcome inside the store's
transaction; this stand-in asks ``explain()`` first and then ``ingest()``, which
is racy under concurrency and knows no "updated". Delete this file (and use
CloseLoop directly in test_webhook.py / test_sources.py) once the facade has it.
"""

from __future__ import annotations

from typing import Literal

from attrs import frozen

from closeloop import Case, CloseLoop, SurveyResponse

_KINDS: dict[str, Literal["opened", "joined", "duplicate", "ignored"]] = {
    "open": "opened", "attach": "joined", "duplicate": "duplicate", "ignore": "ignored",
}


# TEMPORARY until the lead's ingest_outcome lands
@frozen
class IngestOutcome:
    """What ingesting one response did (stand-in for closeloop's own IngestOutcome)."""

    kind: Literal["opened", "joined", "updated", "duplicate", "ignored"]
    case: Case | None
    response_id: str


# TEMPORARY until the lead's ingest_outcome lands
class OutcomeLoop(CloseLoop):
    """CloseLoop plus a non-transactional ingest_outcome built from explain() + ingest()."""

    def ingest_outcome(self, response: SurveyResponse) -> IngestOutcome:
        """Ingest ``response`` and say what happened (racy stand-in)."""
        decision = self.explain(response)
        case = self.ingest(response)
        return IngestOutcome(_KINDS[decision.outcome], case, response.id)
