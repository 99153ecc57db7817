"""What ingesting does, as values: outcomes, decisions and the summaries of batches.

:mod:`closeloop.intake` computes them; they are re-exported there.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Literal

from attrs import field, frozen

from closeloop.model import Case
from closeloop.triggers import TriggerExplanation

__all__ = ["BacktestSummary", "Decision", "IngestOutcome", "IngestSummary", "OutcomeKind"]


@frozen
class Decision:
    """What ingesting one response does (or, from explain/backtest, would do).

    Attributes:
        response_id: the response.
        outcome: ``"open"``, ``"attach"``, ``"ignore"`` (no trigger matched),
            ``"duplicate"`` (this response id was ingested before, with the same
            content) or ``"update"`` (ingested before with other content: the
            case holding it, if any, records the change).
        triggers: every trigger with matched yes/no and why.
        reasons: the reasons the case gets (matched triggers' reasons).
        trigger: the first matching trigger's name (it routes a new case), if any.
        case_id: the case attached to (attach) or already holding it (duplicate).
        assignee: who a new case would be assigned to; round-robin routes are
            previewed without taking a turn, so this may differ from ingest.
        priority, due_at: of the case that would open.
    """

    response_id: str
    outcome: Literal["open", "attach", "ignore", "duplicate", "update"]
    triggers: tuple[TriggerExplanation, ...] = ()
    reasons: tuple[str, ...] = ()
    case_id: str | None = None
    assignee: str | None = None
    priority: str | None = None
    due_at: datetime | None = None
    trigger: str | None = None


#: What ingesting one response did; see :class:`IngestOutcome`.
OutcomeKind = Literal["opened", "joined", "updated", "duplicate", "ignored"]


@frozen
class IngestOutcome:
    """What :meth:`~closeloop.CloseLoop.ingest_outcome` did with one response.

    Decided by the transaction that wrote it, so concurrent deliveries of the
    same response are each told the truth: one ``"opened"``, the rest
    ``"duplicate"``.

    Attributes:
        kind: ``"opened"`` (a new case), ``"joined"`` (attached to the customer's
            case), ``"updated"`` (a response seen before arrived with new
            content), ``"duplicate"`` (seen before, same content: nothing
            written) or ``"ignored"`` (no trigger matched; recorded, no case).
        case: the case opened, joined or already holding the response; ``None``
            when no case holds it.
        response_id: the response.
    """

    kind: OutcomeKind
    case: Case | None
    response_id: str


@frozen
class IngestSummary:
    """What :meth:`~closeloop.CloseLoop.ingest_many` did.

    ``cases`` maps each ingested response id to the case it opened, joined or
    updated (``None`` when it matched no trigger). ``updated`` counts responses
    seen before that arrived with new content and opened or joined nothing
    (an update that opens or joins a case counts there).
    """

    opened: int
    attached: int
    ignored: int
    duplicates: int
    cases: Mapping[str, str | None] = field(factory=dict)
    updated: int = 0


@frozen
class BacktestSummary:
    """What a batch of responses would do under the current rules; nothing is written.

    Attributes:
        responses: how many were examined.
        would_open: cases that would open.
        would_attach: responses that would join a case (existing or opened earlier in the batch).
        attached_to_existing: of those, responses joining a case already in the store.
        ignored: responses no trigger matches.
        duplicates: responses already ingested with the same content (or repeated
            within the batch).
        opened_by_trigger: cases that would open, by first matching trigger.
        matched_by_trigger: responses each trigger matches (all matches, not just the first).
        opened_by_assignee: cases that would open, by assignee (``None`` = unassigned).
        decisions: one Decision per response, in order.
    """

    responses: int
    would_open: int
    would_attach: int
    attached_to_existing: int
    ignored: int
    duplicates: int
    opened_by_trigger: Mapping[str, int]
    matched_by_trigger: Mapping[str, int]
    opened_by_assignee: Mapping[str | None, int]
    decisions: tuple[Decision, ...]
    #: Responses ingested before that arrive with new content (see Decision "update").
    updated: int = 0
