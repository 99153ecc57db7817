"""Ingesting survey responses: triggers decide, cases open or absorb, nothing twice.

The facade's :meth:`~closeloop.CloseLoop.ingest`, ``ingest_many``, ``explain``
and ``backtest`` live here. The rules:

- **Idempotent per response id.** Every ingested response is recorded, matched or
  not; ingesting the same id again with the same content changes nothing and
  returns the same case.
- **Updates.** The same id with other content (a late comment, a changed score,
  a box ticked on a later page; see :mod:`closeloop.response_content`) updates
  the recorded response. Its case gets a ``"response_updated"`` event saying what
  changed, and the triggers run again on the new content: a response that had
  opened nothing now opens or joins a case, once.
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
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from typing import Literal

from attrs import evolve, frozen

from closeloop.errors import ConcurrentUpdate, InvalidInput, TokenUsed
from closeloop.intake_results import (
    BacktestSummary,
    Decision,
    IngestOutcome,
    IngestSummary,
    OutcomeKind,
)
from closeloop.model import (
    Assigned,
    Case,
    Notice,
    Opened,
    ResponseAttached,
    ResponseRecord,
    ResponseUpdated,
    Status,
    SurveyResponse,
    evolve_trusted,
    trusted,
)
from closeloop.notify.content import ResponseFacts
from closeloop.response_content import changed_fields, response_content
from closeloop.service import CaseService, draft
from closeloop.storage.base import Change, ResponseUpdate
from closeloop.triggers import Match, Trigger, TriggerExplanation, TriggerSet, due_at
from closeloop.validate import (
    check_positive_int,
    check_positive_timedelta,
    optional_stored_datetime,
)

__all__ = ["BacktestSummary", "Decision", "Dedupe", "IngestOutcome", "IngestSummary"]

#: How often a lost race (another process ingested first) is retried.
_ATTEMPTS = 5
#: Responses per transaction in ingest_many.
DEFAULT_BATCH = 500
#: IngestSummary's counter for each outcome kind.
_SUMMARY_KIND = {"opened": "open", "joined": "attach", "updated": "update",
                 "duplicate": "duplicate", "ignored": "ignore"}
#: Marks a response id this batch has not seen (``None`` is a record without content).
_UNSEEN = object()
#: Who a ``response_updated`` event says made the change: the survey tool's delivery.
_VIA_SURVEY = "survey"


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
        return cls("reopen", check_positive_timedelta("dedupe", window))

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
            return cls("cooldown", check_positive_timedelta("dedupe", value))
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
        for attempt in range(_ATTEMPTS):
            try:
                return self._ingest_once(response)
            except ConcurrentUpdate:
                # another process changed the customer's case or took the id: read again,
                # unless this was the last try; then the caller gets the last conflict,
                # which names the case that kept changing (never the response as a case)
                if attempt == _ATTEMPTS - 1:
                    raise
        raise AssertionError("unreachable: the last attempt returns or raises")  # pragma: no cover

    def _ingest_once(self, response: SurveyResponse) -> IngestOutcome:
        store = self.service.store
        seen = store.responses([response.id]).get(response.id)
        content = response_content(response)
        if seen is not None:
            if seen.content is not None and seen.content != content:
                return self._update(response, seen, content)
            case = None if seen.case_id is None else store.get(seen.case_id)
            return IngestOutcome("duplicate", case, response.id)
        now = self.service.now()
        match = self.triggers.evaluate(response)
        if match is None:
            # Strict: fails (ConcurrentUpdate) if another process recorded it first,
            # so "ignored" is said only by the one that wrote it.
            self.service.commit_many([], [self._record(response, "ignored", None, now)])
            return IngestOutcome("ignored", None, response.id)
        latest = store.latest_cases([response.customer_id]).get(response.customer_id)
        change = self._change(response, match, self.dedupe.target(latest, now), now)
        # The commit fails (ConcurrentUpdate) if another process recorded this
        # response first, so "opened"/"joined" is said only by the one that wrote it.
        self.service.commit(change)
        kind: OutcomeKind = "opened" if change.expected_version is None else "joined"
        return IngestOutcome(kind, change.case, response.id)

    def _update(self, response: SurveyResponse, seen: ResponseRecord, content: str) -> IngestOutcome:
        """A response recorded before arrived with other content: record it, run the triggers.

        The record is swapped only if nobody changed it since it was read
        (:class:`~closeloop.storage.base.ResponseUpdate`), so of concurrent
        deliveries of one update exactly one says "updated".
        """
        store = self.service.store
        now = self.service.now()
        match = self.triggers.evaluate(response)
        refreshed = evolve(seen, score=response.score, content=content)
        if seen.case_id is not None:
            case = store.get(seen.case_id)
            change = self._record_update(response, match, case, seen, content, now)
            self.service.commit_many([change], (), [ResponseUpdate(seen, refreshed)])
            return IngestOutcome("updated", change.case, response.id)
        if match is None:
            store.commit_many([], (), [ResponseUpdate(seen, refreshed)])
            return IngestOutcome("updated", None, response.id)
        # It opened nothing before and matches now: it opens or joins a case, once.
        latest = store.latest_cases([response.customer_id]).get(response.customer_id)
        change = self._change(response, match, self.dedupe.target(latest, now), now)
        (record,) = change.responses
        update = ResponseUpdate(seen, evolve(refreshed, outcome=record.outcome, case_id=record.case_id))
        self.service.commit_many([evolve(change, responses=())], (), [update])
        kind: OutcomeKind = "opened" if change.expected_version is None else "joined"
        return IngestOutcome(kind, change.case, response.id)

    def _record_update(
        self, response: SurveyResponse, match: Match | None, case: Case, seen: ResponseRecord,
        content: str, now: datetime,
    ) -> Change:
        """The ``response_updated`` event on the case that holds the response."""
        assert seen.content is not None  # only a record with content can be updated
        changed = changed_fields(seen.content, content)
        reasons = () if match is None else match.reasons
        return self.service.advance(
            case,
            draft(ResponseUpdated, actor=response.customer_id, via=_VIA_SURVEY,
                  comment=response.comment if "comment" in changed else None,
                  response_id=response.id, changed=changed, score=response.score,
                  reasons=reasons),
            now=now, reasons=tuple(dict.fromkeys((*case.reasons, *reasons))),
        )

    def explain(self, response: SurveyResponse) -> Decision:
        _check_response(response)
        store = self.service.store
        explanations = tuple(self.triggers.explain(response))
        seen = store.responses([response.id]).get(response.id)
        match = self.triggers.evaluate(response)
        if seen is not None:
            earlier = self._earlier(response, seen.content, seen.case_id, match, explanations)
            if earlier is not None:
                return earlier
        if match is None:
            return Decision(response.id, "ignore", explanations)
        latest = store.latest_cases([response.customer_id]).get(response.customer_id)
        return self._decide(response, match, latest, explanations, _PreviewRotation())

    @staticmethod
    def _earlier(
        response: SurveyResponse, content: str | None, case_id: str | None, match: Match | None,
        explanations: tuple[TriggerExplanation, ...],
    ) -> Decision | None:
        """The decision for a response id seen before; ``None`` when it would open or join."""
        if content is None or content == response_content(response):
            return Decision(response.id, "duplicate", explanations, case_id=case_id)
        if case_id is None and match is not None:
            return None  # it opened nothing before and matches now: decided as a new one
        reasons = () if match is None else match.reasons
        return Decision(response.id, "update", explanations, reasons, case_id=case_id)

    # -- batches ----------------------------------------------------------------------

    def ingest_many(self, responses: Sequence[SurveyResponse], batch_size: int) -> IngestSummary:
        items = self._checked_batch(responses)
        check_positive_int("batch_size", batch_size)
        counts: Counter[str] = Counter()
        cases: dict[str, str | None] = {}
        for start in range(0, len(items), batch_size):
            chunk = items[start : start + batch_size]
            try:
                updates = self._ingest_chunk(chunk, counts, cases)
            except (ConcurrentUpdate, TokenUsed):
                # Another process got in between: settle this chunk one by one.
                updates = chunk
            for response in updates:
                self._ingest_counted(response, counts, cases)
        return IngestSummary(
            opened=counts["open"], attached=counts["attach"], ignored=counts["ignore"],
            duplicates=counts["duplicate"], cases=cases, updated=counts["update"],
        )

    def _ingest_chunk(
        self, chunk: Sequence[SurveyResponse], counts: Counter[str], cases: dict[str, str | None]
    ) -> list[SurveyResponse]:
        """Commit the chunk's new responses in one transaction; return its updates.

        Updates (an id seen before, or earlier in the chunk, with other content)
        are left to the caller, which ingests them one by one after this commit:
        each is a compare-and-swap of its own.
        """
        store = self.service.store
        now = self.service.now()
        seen = store.responses([r.id for r in chunk])
        latest = store.latest_cases([r.customer_id for r in chunk])
        changes: list[Change] = []
        ignored: list[ResponseRecord] = []
        outcome: dict[str, tuple[str, str | None]] = {}  # response id -> (kind, case id)
        duplicates: list[tuple[str, str | None]] = []
        updates: list[SurveyResponse] = []
        contents: dict[str, str | None] = {r.id: seen[r.id].content for r in chunk if r.id in seen}
        for response in chunk:
            earlier = contents.get(response.id, _UNSEEN)
            if earlier is not _UNSEEN:
                if earlier is not None and earlier != response_content(response):
                    updates.append(response)
                elif response.id in outcome:  # repeated within this batch
                    duplicates.append((response.id, outcome[response.id][1]))
                else:
                    duplicates.append((response.id, seen[response.id].case_id))
                continue
            said = contents[response.id] = response_content(response)
            match = self.triggers.evaluate(response)
            if match is None:
                ignored.append(self._record(response, "ignored", None, now, said))
                outcome[response.id] = ("ignore", None)
                continue
            target = self.dedupe.target(latest.get(response.customer_id), now)
            change = self._change(response, match, target, now, said)
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
        return updates

    def _ingest_counted(
        self, response: SurveyResponse, counts: Counter[str], cases: dict[str, str | None]
    ) -> None:
        # The outcome comes from the transaction that wrote (or refused) the
        # response, so another process's responses are never counted as ours.
        outcome = self.ingest(response)
        counts[_SUMMARY_KIND[outcome.kind]] += 1
        case_id = None if outcome.case is None else outcome.case.id
        if outcome.kind == "duplicate" or (outcome.kind == "updated" and case_id is None):
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
        done: dict[str, str] = {}  # response id -> content, for repeats within the batch
        done_cases: dict[str, str | None] = {}
        for response in items:
            explanations = tuple(self.triggers.explain(response))
            match = self.triggers.evaluate(response)
            if response.id in seen or response.id in done:
                stored = seen.get(response.id)
                content: str | None
                if response.id in done:
                    content, case_id = done[response.id], done_cases.get(response.id)
                else:
                    assert stored is not None
                    content, case_id = stored.content, stored.case_id
                earlier = self._earlier(response, content, case_id, match, explanations)
                done[response.id] = response_content(response)
                if earlier is not None:
                    decisions.append(earlier)
                    continue
            done[response.id] = response_content(response)
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
            updated=sum(1 for d in decisions if d.outcome == "update"),
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
        self, response: SurveyResponse, match: Match, target: Case | None, now: datetime,
        content: str | None = None,
    ) -> Change:
        """The change ``response`` makes; ``content`` is its :func:`response_content`, if known."""
        if target is not None:
            return self._attach(response, match, target, now, content)
        return self._open(response, match, now, content)

    def _attach(self, response: SurveyResponse, match: Match, case: Case, now: datetime,
                content: str | None = None) -> Change:
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
        return evolve(change, responses=(
            self._record(response, "attached", case.id, now, content),))

    def _open(self, response: SurveyResponse, match: Match, now: datetime,
              content: str | None = None) -> Change:
        service = self.service
        trigger = match.trigger
        initial = service.workflow.initial_status
        # Every value comes from a validated response, trigger, clock or id factory (and a
        # due date inside the stored range), so the case is built without validators again.
        case = trusted(Case, {
            "id": service.new_id(), "customer_id": response.customer_id, "status": Status.OPEN,
            "opened_at": now, "updated_at": now, "opened_by": trigger.name, "version": 1,
            "reasons": tuple(match.reasons), "response_ids": (response.id,),
            "priority": match.priority,
            "due_at": optional_stored_datetime(
                "due_at", due_at(trigger, response, now, service.calendar)),
            "custom_status": initial.name, "paused_at": now if initial.pauses_sla else None,
        })
        drafts = [draft(Opened, actor=trigger.name, comment=response.comment, via="trigger")]
        assignee = trigger.route(response, service.store)
        if assignee is not None:
            case = evolve_trusted(case, assignee=assignee)
            drafts.append(draft(Assigned, actor=trigger.name, via="trigger", assignee=assignee))
        change = service.opening(case, *drafts)
        notices: tuple[Notice, ...] = ()
        if assignee is not None:
            notices = service.person_notice(
                change.case, "assigned", assignee, actor=trigger.name, via="trigger", now=now,
                response=ResponseFacts.from_response(response),
            )
        return evolve(
            change, notices=notices,
            responses=(self._record(response, "opened", case.id, now, content),),
            sole_active_case=self.dedupe.mode != "none",
        )

    @staticmethod
    def _record(
        response: SurveyResponse,
        outcome: Literal["opened", "attached", "ignored"],
        case_id: str | None,
        now: datetime,
        content: str | None = None,
    ) -> ResponseRecord:
        # From a validated response, the checked clock and a case id closeloop made:
        # built without running the validators again (this is on every ingest's path).
        return trusted(ResponseRecord, {
            "response_id": response.id, "customer_id": response.customer_id, "outcome": outcome,
            "received_at": now, "submitted_at": response.submitted_at or now,
            "score": response.score, "case_id": case_id,
            "content": response_content(response) if content is None else content,
        })

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
