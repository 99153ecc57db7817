"""What a change notifies, written as outbox rows: one delivery per channel that takes it.

A notice is data (:class:`~closeloop.notify.NoticeContent`), never text: the
templates render it when it is delivered. Two kinds of notice reach the outbox:

- **person notices**: an assignment to the assignee, an escalation to the
  assignee or the policy's fallback. The facade, intake and escalation build
  their content; :meth:`NoticeWriter.to_person` writes one delivery per channel
  that takes notices for people.
- **case events**: every event of a change whose kind a channel subscribes to
  (``Channel(events=...)``) becomes one delivery on that channel
  (:meth:`NoticeWriter.for_events`), carrying the app's case link only.

The deliveries of one notice share a ``message_id`` (from the loop's id
factory). A delivery's own id starts with a process-wide counter, so deliveries
written at the same instant are delivered in the order they were written (the
outbox delivers oldest ``created_at`` first, then by id). They are written in
the same transaction as the change (:meth:`closeloop.service.CaseService.commit`).
"""

from __future__ import annotations

import itertools
import secrets
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta

from attrs import evolve

from closeloop.model import (
    Assigned,
    Case,
    Escalated,
    Event,
    Notice,
    Opened,
    ResponseAttached,
    ResponseRecord,
    Status,
    StatusChanged,
)
from closeloop.notify.channel import Channel
from closeloop.notify.content import CaseFacts, Links, Note, NoticeContent, ResponseFacts
from closeloop.storage.base import Change

__all__ = ["NoticeWriter", "delivery_id", "event_content", "response_facts"]

# Starts at the wall clock in microseconds, so a restarted process keeps counting upwards.
_ORDER = itertools.count(time.time_ns() // 1000)


def delivery_id() -> str:
    """A new delivery id: 16 hex digits of a process-wide counter, then 16 random ones.

    Ids written later by the same process sort later, which orders the deliveries
    of one instant (the events of one change) as they were written.
    """
    return f"{next(_ORDER):016x}{secrets.token_hex(8)}"


def response_facts(record: ResponseRecord | None, response_id: str, comment: str | None
                   ) -> ResponseFacts:
    """The customer's response as a notice shows it: the record's score, the event's comment."""
    if record is None:
        return ResponseFacts(id=response_id, comment=comment)
    return ResponseFacts(id=response_id, score=record.score, comment=comment,
                         submitted_at=record.submitted_at)


def _note(event: Event) -> Note | None:
    return Note(text=event.comment, by=event.actor) if event.comment else None


def event_content(
    event: Event,
    case: Case,
    responses: Mapping[str, ResponseRecord],
    links: Links,
    facts: Callable[[Case], CaseFacts] = CaseFacts.from_case,
    label: Callable[[str], str] = str.capitalize,
) -> NoticeContent | None:
    """The case-event notice for ``event`` (``case`` as the change leaves it), or ``None``.

    ``responses`` are the response records the change wrote, by id (for the score).
    Comments and one-touch changes never make a case event; a status change to
    Closed is ``"closed"``, any other ``"status_changed"``. ``facts`` shows the case
    (the loop's workflow names its status) and ``label`` a status name.
    """
    base = NoticeContent(kind="opened", case=facts(case), actor=event.actor,
                         created_at=event.at, via=event.via, links=links, seq=event.seq)
    if isinstance(event, Opened):
        if event.via == "trigger" and case.response_ids:
            first = case.response_ids[0]
            return evolve(base, response=response_facts(responses.get(first), first, event.comment))
        return evolve(base, note=_note(event))
    if isinstance(event, Assigned):
        return evolve(base, kind="assigned", note=_note(event))
    if isinstance(event, StatusChanged):
        kind = "closed" if event.to_status is Status.CLOSED else "status_changed"
        return evolve(base, kind=kind, note=_note(event), from_status=event.from_status,
                      from_status_label=label(event.from_custom_status))
    if isinstance(event, Escalated):
        return evolve(base, kind="escalated", why=event.why)
    if isinstance(event, ResponseAttached):
        response = response_facts(responses.get(event.response_id), event.response_id,
                                  event.comment)
        return evolve(base, kind="response_attached", response=response)
    return None


class NoticeWriter:
    """Writes notices as outbox rows for a loop's channels.

    Args:
        channels: the loop's channels by name.
        new_id: makes message ids (the loop's checked id factory).
        hold: how long a new delivery waits before any deliverer may claim it: the
            writer's delivery lease when it delivers right after the commit (the
            rows are its own until then), else zero (a worker takes them at once).
        case_page: the app's page for a case, or ``None`` (the links of case events).
        facts: the case as notices show it (the loop's workflow labels its status).
        label: a status name as notices show it.
    """

    def __init__(
        self,
        channels: Mapping[str, Channel],
        new_id: Callable[[], str],
        hold: timedelta,
        case_page: Callable[[str], str | None],
        facts: Callable[[Case], CaseFacts] = CaseFacts.from_case,
        label: Callable[[str], str] = str.capitalize,
    ) -> None:
        self.channels = dict(channels)
        self._facts = facts
        self._label = label
        self._new_id = new_id
        self._hold = hold
        self._case_page = case_page
        self._people = [name for name, channel in self.channels.items() if channel.people]
        self._subscribed = {
            kind: [name for name, channel in self.channels.items() if kind in channel.events]
            for kind in {kind for channel in self.channels.values() for kind in channel.events}
        }

    @property
    def subscribed(self) -> bool:
        """Whether any channel subscribes to case events."""
        return bool(self._subscribed)

    def to_person(self, content: NoticeContent, to: str, now: datetime) -> tuple[Notice, ...]:
        """One delivery of ``content`` to user ``to`` per channel that takes notices for people."""
        return self._deliveries(content, [(name, to) for name in self._people], now)

    def for_events(self, change: Change, now: datetime) -> tuple[Notice, ...]:
        """One delivery per event of ``change`` and channel subscribed to its kind."""
        if not self._subscribed:
            return ()
        responses = {record.response_id: record for record in change.responses}
        links = Links(case_page=self._case_page(change.case.id))
        written: list[Notice] = []
        for event in change.events:
            content = event_content(event, change.case, responses, links, self._facts,
                                    self._label)
            names = self._subscribed.get(content.kind, []) if content is not None else []
            if content is not None and names:
                targets = [(name, self.channels[name].recipient) for name in names]
                written += self._deliveries(content, targets, now)
        return tuple(written)

    def _deliveries(self, content: NoticeContent, targets: Sequence[tuple[str, str | None]],
                    now: datetime) -> tuple[Notice, ...]:
        if not targets:
            return ()
        data = content.to_dict()
        message_id = self._new_id()
        return tuple(
            Notice(id=delivery_id(), message_id=message_id, case_id=content.case.id,
                   kind=content.kind, to=to, channel=name, content=data, created_at=now,
                   next_attempt_at=now + self._hold)
            for name, to in targets
        )
