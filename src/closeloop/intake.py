"""Ingesting survey responses: triggers decide, cases open or absorb, nothing twice.

The facade's :meth:`~closeloop.CloseLoop.ingest`, ``ingest_many``, ``explain``
and ``backtest`` live here. The rules:

- **Idempotent per response id.** Every ingested response is recorded, matched or
  not; ingesting the same id again changes nothing and returns the same case.
- **One case per customer at a time** (``dedupe="open-case"``, the default):
  while the customer's latest case is not Closed, a new matching response is
  attached to it (a ``"response_attached"`` event) instead of opening another.
  ``dedupe=timedelta(days=7)`` also attaches to a case closed less than seven
  days ago (without reopening it); ``dedupe="none"`` always opens a new case.
  ``dedupe=Dedupe.reopen_within(timedelta(days=7))`` reopens such a case instead.
- Both rules are enforced inside the store's transaction, so they hold when
  several processes ingest at once; a lost race is retried from the start.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Literal

from attrs import evolve, field, frozen

from closeloop.errors import ConcurrentUpdate, InvalidInput, TokenUsed
from closeloop.model import (
    Assigned,
    Case,
    Notice,
    Opened,
    ResponseAttached,
    ResponseRecord,
    Status,
    SurveyResponse,
)
from closeloop.notify.templates import render_assignment
from closeloop.service import CaseService, draft
from closeloop.storage.base import Change
from closeloop.triggers import Match, Trigger, TriggerExplanation, TriggerSet, due_at
from closeloop.validate import check_positive_int

__all__ = ["BacktestSummary", "Decision", "Dedupe", "IngestOutcome", "IngestSummary"]

#: How often a lost race (another process ingested first) is retried.
_ATTEMPTS = 5
#: Responses per transaction in ingest_many.
DEFAULT_BATCH = 500
#: IngestSummary's counter for each outcome kind.
_SUMMARY_KIND = {"opened": "open", "joined": "attach", "updated": "attach",
                 "duplicate": "duplicate", "ignored": "ignore"}


@frozen
class Dedupe:
    """How a matching response from a customer who already has a case is handled.

    Build it with :meth:`parse` from ``"open-case"`` (default), ``"none"`` or a
    :class:`~datetime.timedelta` cool-down.
    """

    mode: Literal["open-case", "none", "cooldown", "reopen"]
    cooldown: timedelta | None = None

    @classmethod
    def reopen_within(cls, window: timedelta) -> Dedupe:
        """Like a cool-down, but a matching response within ``window`` of the close
        reopens the case (a status change Closed → Open by the trigger) instead of
        only joining it."""
        if not isinstance(window, timedelta) or window <= timedelta(0):
            raise InvalidInput("dedupe", window, "the reopen window must be a positive timedelta")
        return cls("reopen", window)

    @classmethod
    def parse(cls, value: object) -> Dedupe:
        """Accept ``"open-case"``, ``"none"``, a positive timedelta, or a Dedupe."""
        if isinstance(value, Dedupe):
            return value
        if value == "open-case":
            return cls("open-case")
        if value == "none":
            return cls("none")
        if isinstance(value, timedelta) and value > timedelta(0):
            return cls("cooldown", value)
        raise InvalidInput(
            "dedupe", value, "must be 'open-case', 'none' or a positive timedelta cool-down"
        )

    def target(self, latest: Case | None, now: datetime) -> Case | None:
        """The case a new matching response is attached to, or ``None`` to open one."""
        if latest is None or self.mode == "none":
            return None
        if latest.status is not Status.CLOSED:
            return latest
        if self.cooldown is not None and latest.closed_at is not None:
            return latest if now - latest.closed_at < self.cooldown else None
        return None


@frozen
class Decision:
    """What ingesting one response does (or, from explain/backtest, would do).

    Attributes:
        response_id: the response.
        outcome: ``"open"``, ``"attach"``, ``"ignore"`` (no trigger matched) or
            ``"duplicate"`` (this response id was ingested before).
        triggers: every trigger with matched yes/no and why.
        reasons: the reasons the case gets (matched triggers' reasons).
        trigger: the first matching trigger's name (it routes a new case), if any.
        case_id: the case attached to (attach) or already holding it (duplicate).
        assignee: who a new case would be assigned to; round-robin routes are
            previewed without taking a turn, so this may differ from ingest.
        priority, due_at: of the case that would open.
    """

    response_id: str
    outcome: Literal["open", "attach", "ignore", "duplicate"]
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

    ``cases`` maps each ingested response id to the case it opened or joined
    (``None`` when it matched no trigger).
    """

    opened: int
    attached: int
    ignored: int
    duplicates: int
    cases: Mapping[str, str | None] = field(factory=dict)


@frozen
class BacktestSummary:
    """What a batch of responses would do under the current rules; nothing is written.

    Attributes:
        responses: how many were examined.
        would_open: cases that would open.
        would_attach: responses that would join a case (existing or opened earlier in the batch).
        attached_to_existing: of those, responses joining a case already in the store.
        ignored: responses no trigger matches.
        duplicates: responses already ingested (or repeated within the batch).
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


class _PreviewRotation:
    """A rotation that starts at the beginning and is thrown away: for previews."""

    def __init__(self) -> None:
        self.turns: Counter[str] = Counter()

    def next_in_rotation(self, key: str, size: int) -> int:
        turn = self.turns[key]
        self.turns[key] += 1
        return turn % size


def _check_response(value: object, field_name: str = "response") -> SurveyResponse:
    if not isinstance(value, SurveyResponse):
        raise InvalidInput(field_name, value, "must be a SurveyResponse")
    return value


class Intake:
    """Turns responses into case changes for one loop (used through the facade)."""

    def __init__(self, service: CaseService, triggers: Iterable[Trigger], dedupe: object) -> None:
        self.service = service
        self.triggers = triggers if isinstance(triggers, TriggerSet) else TriggerSet(triggers)
        self.dedupe = Dedupe.parse(dedupe)

    # -- single responses -------------------------------------------------------------

    def ingest(self, response: SurveyResponse) -> IngestOutcome:
        _check_response(response)
        for _ in range(_ATTEMPTS):
            try:
                return self._ingest_once(response)
            except ConcurrentUpdate:
                continue  # another process changed the customer's case or took the id
        raise ConcurrentUpdate(response.id, None, None)

    def _ingest_once(self, response: SurveyResponse) -> IngestOutcome:
        store = self.service.store
        seen = store.responses([response.id]).get(response.id)
        if seen is not None:
            case = None if seen.case_id is None else store.get(seen.case_id)
            return IngestOutcome("duplicate", case, response.id)
        now = self.service.now()
        match = self.triggers.evaluate(response)
        if match is None:
            store.record_responses([self._record(response, "ignored", None, now)])
            return IngestOutcome("ignored", None, response.id)
        latest = store.latest_cases([response.customer_id]).get(response.customer_id)
        change = self._change(response, match, self.dedupe.target(latest, now), now)
        # The commit fails (ConcurrentUpdate) if another process recorded this
        # response first, so "opened"/"joined" is said only by the one that wrote it.
        self.service.commit(change)
        kind: OutcomeKind = "opened" if change.expected_version is None else "joined"
        return IngestOutcome(kind, change.case, response.id)

    def explain(self, response: SurveyResponse) -> Decision:
        _check_response(response)
        store = self.service.store
        explanations = tuple(self.triggers.explain(response))
        seen = store.responses([response.id]).get(response.id)
        if seen is not None:
            return Decision(response.id, "duplicate", explanations, case_id=seen.case_id)
        match = self.triggers.evaluate(response)
        if match is None:
            return Decision(response.id, "ignore", explanations)
        latest = store.latest_cases([response.customer_id]).get(response.customer_id)
        return self._decide(response, match, latest, explanations, _PreviewRotation())

    # -- batches ----------------------------------------------------------------------

    def ingest_many(self, responses: Sequence[SurveyResponse], batch_size: int) -> IngestSummary:
        items = self._checked_batch(responses)
        check_positive_int("batch_size", batch_size)
        counts: Counter[str] = Counter()
        cases: dict[str, str | None] = {}
        for start in range(0, len(items), batch_size):
            chunk = items[start : start + batch_size]
            try:
                self._ingest_chunk(chunk, counts, cases)
            except (ConcurrentUpdate, TokenUsed):
                # Another process got in between: settle this chunk one by one.
                for response in chunk:
                    self._ingest_counted(response, counts, cases)
        return IngestSummary(
            opened=counts["open"], attached=counts["attach"], ignored=counts["ignore"],
            duplicates=counts["duplicate"], cases=cases,
        )

    def _ingest_chunk(
        self, chunk: Sequence[SurveyResponse], counts: Counter[str], cases: dict[str, str | None]
    ) -> None:
        store = self.service.store
        now = self.service.now()
        seen = store.responses([r.id for r in chunk])
        latest = store.latest_cases([r.customer_id for r in chunk])
        changes: list[Change] = []
        ignored: list[ResponseRecord] = []
        outcome: dict[str, tuple[str, str | None]] = {}  # response id -> (kind, case id)
        duplicates: list[tuple[str, str | None]] = []
        for response in chunk:
            if response.id in seen:
                duplicates.append((response.id, seen[response.id].case_id))
                continue
            if response.id in outcome:  # repeated within this batch
                duplicates.append((response.id, outcome[response.id][1]))
                continue
            match = self.triggers.evaluate(response)
            if match is None:
                ignored.append(self._record(response, "ignored", None, now))
                outcome[response.id] = ("ignore", None)
                continue
            target = self.dedupe.target(latest.get(response.customer_id), now)
            change = self._change(response, match, target, now)
            changes.append(change)
            latest[response.customer_id] = change.case
            kind = "open" if change.expected_version is None else "attach"
            outcome[response.id] = (kind, change.case.id)
        self.service.commit_many(changes, ignored)
        # Counted only once the chunk is committed, so a fallback never counts twice.
        for response_id, (kind, case_id) in outcome.items():
            counts[kind] += 1
            cases[response_id] = case_id
        for response_id, case_id in duplicates:
            counts["duplicate"] += 1
            cases.setdefault(response_id, case_id)

    def _ingest_counted(
        self, response: SurveyResponse, counts: Counter[str], cases: dict[str, str | None]
    ) -> None:
        # The outcome comes from the transaction that wrote (or refused) the
        # response, so another process's responses are never counted as ours.
        outcome = self.ingest(response)
        counts[_SUMMARY_KIND[outcome.kind]] += 1
        case_id = None if outcome.case is None else outcome.case.id
        if outcome.kind == "duplicate":
            cases.setdefault(response.id, case_id)
        else:
            cases[response.id] = case_id

    def backtest(self, responses: Sequence[SurveyResponse]) -> BacktestSummary:
        items = self._checked_batch(responses)
        store = self.service.store
        now = self.service.now()
        seen = store.responses([r.id for r in items])
        latest = store.latest_cases([r.customer_id for r in items])
        existing = {case.id for case in latest.values()}
        rotation = _PreviewRotation()
        decisions: list[Decision] = []
        matched: Counter[str] = Counter()
        done: set[str] = set()
        done_cases: dict[str, str | None] = {}
        for response in items:
            explanations = tuple(self.triggers.explain(response))
            if response.id in seen or response.id in done:
                earlier = seen.get(response.id)
                case_id = earlier.case_id if earlier is not None else done_cases.get(response.id)
                decisions.append(Decision(response.id, "duplicate", explanations, case_id=case_id))
                continue
            done.add(response.id)
            match = self.triggers.evaluate(response)
            if match is None:
                decisions.append(Decision(response.id, "ignore", explanations))
                continue
            matched.update(t.name for t in match.triggers)
            decision = self._decide(
                response, match, latest.get(response.customer_id), explanations, rotation
            )
            decisions.append(decision)
            if decision.outcome == "open":
                latest[response.customer_id] = preview = self._preview_case(response, now)
                done_cases[response.id] = preview.id
            else:
                done_cases[response.id] = decision.case_id
        opened = [d for d in decisions if d.outcome == "open"]
        attached = [d for d in decisions if d.outcome == "attach"]
        return BacktestSummary(
            responses=len(items),
            would_open=len(opened),
            would_attach=len(attached),
            attached_to_existing=sum(1 for d in attached if d.case_id in existing),
            ignored=sum(1 for d in decisions if d.outcome == "ignore"),
            duplicates=sum(1 for d in decisions if d.outcome == "duplicate"),
            opened_by_trigger=dict(Counter(d.trigger for d in opened if d.trigger)),
            matched_by_trigger=dict(matched),
            opened_by_assignee=dict(Counter(d.assignee for d in opened)),
            decisions=tuple(decisions),
        )

    # -- building changes -------------------------------------------------------------

    def _decide(
        self,
        response: SurveyResponse,
        match: Match,
        latest: Case | None,
        explanations: tuple[TriggerExplanation, ...],
        rotation: _PreviewRotation,
    ) -> Decision:
        now = self.service.now()
        target = self.dedupe.target(latest, now)
        if target is not None:
            return Decision(response.id, "attach", explanations, match.reasons, case_id=target.id,
                            trigger=match.trigger.name)
        return Decision(
            response.id, "open", explanations, match.reasons,
            assignee=match.trigger.route(response, rotation),
            priority=match.priority.value,
            due_at=due_at(match.trigger, response, now, self.service.calendar),
            trigger=match.trigger.name,
        )

    @staticmethod
    def _preview_case(response: SurveyResponse, now: datetime) -> Case:
        return Case(
            id=f"would-open:{response.id}", customer_id=response.customer_id, status=Status.OPEN,
            opened_at=now, updated_at=now, opened_by="backtest", version=1,
        )

    def _change(
        self, response: SurveyResponse, match: Match, target: Case | None, now: datetime
    ) -> Change:
        if target is not None:
            return self._attach(response, match, target, now)
        return self._open(response, match, now)

    def _attach(self, response: SurveyResponse, match: Match, case: Case, now: datetime) -> Change:
        drafts = [draft(
            ResponseAttached, actor=match.trigger.name, comment=response.comment, via="trigger",
            response_id=response.id, reasons=match.reasons,
        )]
        fields: dict[str, object] = {}
        if self.dedupe.mode == "reopen" and case.status is Status.CLOSED:
            comment = f"Reopened: response {response.id} matched {match.trigger.name!r}"
            reopened, fields = self.service.status_change(
                case, Status.OPEN, by=match.trigger.name, comment=comment, close_reason=None,
                via="trigger", now=now,
            )
            drafts.append(reopened)
        change = self.service.advance(
            case, *drafts, now=now,
            response_ids=(*case.response_ids, response.id),
            reasons=tuple(dict.fromkeys((*case.reasons, *match.reasons))),
            **fields,
        )
        return evolve(change, responses=(self._record(response, "attached", case.id, now),))

    def _open(self, response: SurveyResponse, match: Match, now: datetime) -> Change:
        service = self.service
        trigger = match.trigger
        case = Case(
            id=service.new_id(), customer_id=response.customer_id, status=Status.OPEN,
            opened_at=now, updated_at=now, opened_by=trigger.name, version=1,
            reasons=match.reasons, response_ids=(response.id,), priority=match.priority,
            due_at=due_at(trigger, response, now, service.calendar),
            custom_status=service.workflow.initial_status.name,
            paused_at=now if service.workflow.initial_status.pauses_sla else None,
        )
        drafts = [draft(Opened, actor=trigger.name, comment=response.comment, via="trigger")]
        assignee = trigger.route(response, service.store)
        if assignee is not None:
            case = evolve(case, assignee=assignee)
            drafts.append(draft(Assigned, actor=trigger.name, via="trigger", assignee=assignee))
        change = service.opening(case, *drafts)
        notices: list[Notice] = []
        if assignee is not None:
            link = service.links.for_recipient(change.case, assignee)
            rendered = render_assignment(
                change.case, f"Trigger {trigger.name!r}", link.url, comment=response.comment,
                action=link.label,
            )
            notices.append(service.notice(change.case, "assigned", assignee, rendered, now))
        return evolve(
            change, notices=tuple(notices),
            responses=(self._record(response, "opened", case.id, now),),
            sole_active_case=self.dedupe.mode != "none",
        )

    @staticmethod
    def _record(
        response: SurveyResponse,
        outcome: Literal["opened", "attached", "ignored"],
        case_id: str | None,
        now: datetime,
    ) -> ResponseRecord:
        return ResponseRecord(
            response_id=response.id, customer_id=response.customer_id, outcome=outcome,
            received_at=now, submitted_at=response.submitted_at or now, score=response.score,
            case_id=case_id,
        )

    @staticmethod
    def _checked_batch(responses: Sequence[SurveyResponse]) -> list[SurveyResponse]:
        if isinstance(responses, str | bytes | SurveyResponse) or not isinstance(
            responses, Iterable
        ):
            raise InvalidInput("responses", responses, "must be a list of SurveyResponse")
        items = list(responses)
        for index, item in enumerate(items):
            _check_response(item, f"responses[{index}]")
        return items
