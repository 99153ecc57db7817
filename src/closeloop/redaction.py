"""What an erasure does to each record: the customer's id becomes a pseudonym, their words go.

closeloop holds a customer's personal data in these places, and nowhere else:

============================  ==================================================
record                        personal data
============================  ==================================================
:class:`~closeloop.Case`      ``customer_id``; ``opened_by`` when the customer
                              opened it themselves
history events                every ``comment`` (the survey comment on an opened,
                              attached or updated event; agents' comments, which
                              talk about the customer; a notifier's reason on
                              ``notice_failed``); ``actor`` when it is the
                              customer (a response update is their own act)
:class:`~closeloop.model.ResponseRecord`  ``customer_id``; ``content`` (the
                              comment and answers)
:class:`~closeloop.Notice`    ``content`` (the case's customer id, the agent's
                              note, the customer's comment); the rendered
                              ``subject``/``text``/``html`` of notices written
                              before notices were data; ``last_error``
============================  ==================================================

Everything else stays, because it is not the customer's and the reports need
it: times, statuses, scores, trigger names (reasons), user ids (assignees,
actors), the survey tool's response ids, notice kinds and recipients.

An erasure replaces the customer id by one random pseudonym
(:func:`new_pseudonym`, ``erased-`` and 32 hex digits: not derived from the id,
so it cannot be guessed back) in every record of that customer, so a report
that links a customer's cases and responses (recovery) links them as before.
Comments become ``None``, response content ``None`` (a re-delivery of the same
response is then a duplicate, not an update), notices keep their facts without
the customer's words, and a notice still pending is cancelled: it ends
(``failed_at``) with :data:`CANCELLED` as its error and is never sent.

The functions here are pure: :mod:`closeloop.lifecycle` reads, calls them and
commits what they return.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, Literal

from attrs import evolve, frozen

from closeloop.model import Case, Erased, Event, Notice, ResponseRecord
from closeloop.storage.base import Change
from closeloop.validate import thaw

__all__ = [
    "CANCELLED",
    "ERROR_ERASED",
    "PSEUDONYM_PREFIX",
    "CaseRedaction",
    "is_pseudonym",
    "new_pseudonym",
    "redact_case",
    "redact_content",
    "redact_notice",
    "redact_record",
]

#: How every pseudonym starts. Customer ids of this form are closeloop's own.
PSEUDONYM_PREFIX = "erased-"
#: The error of a pending notice that an erasure cancelled.
CANCELLED = "cancelled: the customer's personal data was erased"
#: What replaces the error of a notice that had ended before the erasure.
ERROR_ERASED = "erased with the customer's personal data"

Why = Literal["request", "retention"]


def new_pseudonym() -> str:
    """A fresh pseudonym: ``erased-`` and 32 random hex digits (128 bits)."""
    return PSEUDONYM_PREFIX + secrets.token_hex(16)


def is_pseudonym(customer_id: str) -> bool:
    """Whether ``customer_id`` is a pseudonym an erasure gave (it starts with ``erased-``)."""
    return customer_id.startswith(PSEUDONYM_PREFIX)


@frozen
class CaseRedaction:
    """The redacting change of one case, and what it does to the case's notices.

    Attributes:
        change: the :class:`~closeloop.storage.Change` (``redacts=True``) to commit.
        notices: how many of the case's notices it redacts (``cancelled`` included).
        cancelled: how many of them were pending and are cancelled.
    """

    change: Change
    notices: int
    cancelled: int


def redact_case(
    case: Case,
    history: Sequence[Event],
    notices: Sequence[Notice],
    *,
    pseudonym: str,
    by: str,
    at: datetime,
    why: Why,
) -> CaseRedaction | None:
    """The erasure of ``case``: its row, ``history`` and ``notices`` redacted, an ``erased`` event added.

    ``None`` when there is nothing to erase: the case already belongs to
    ``pseudonym`` and nothing happened to it since its last erasure. The case keeps
    ``updated_at`` (an erasure is not a touch); its version rises by one, for the
    :class:`~closeloop.model.Erased` event (actor ``by``, at ``at``).
    """
    if case.customer_id == pseudonym and history and history[-1].kind == "erased":
        return None
    customer = case.customer_id

    def who(user: str) -> str:
        return pseudonym if user == customer else user

    events = [evolve(event, comment=None, actor=who(event.actor)) for event in history]
    events.append(Erased(case_id=case.id, actor=by, at=at, seq=case.version + 1, why=why))
    redacted = [redact_notice(notice, customer, pseudonym, at) for notice in notices]
    change = Change(
        case=evolve(case, customer_id=pseudonym, opened_by=who(case.opened_by),
                    version=case.version + 1),
        expected_version=case.version, events=events, notices=redacted, redacts=True,
    )
    return CaseRedaction(change, len(redacted), sum(notice.pending for notice in notices))


def redact_notice(notice: Notice, customer_id: str, pseudonym: str, at: datetime) -> Notice:
    """``notice`` without the customer's personal data; cancelled (ended at ``at``) if pending."""
    content = None if notice.content is None else redact_content(notice.content, customer_id,
                                                                 pseudonym)
    failed_at: datetime | None
    if notice.pending:
        error: str | None = CANCELLED
        failed_at = at
    else:
        error = None if notice.last_error is None else ERROR_ERASED
        failed_at = notice.failed_at
    return evolve(notice, content=content, subject="", text="", html="", last_error=error,
                  failed_at=failed_at)


def redact_content(content: Mapping[str, Any], customer_id: str, pseudonym: str) -> dict[str, Any]:
    """A notice's content (:meth:`NoticeContent.to_dict <closeloop.notify.NoticeContent.to_dict>`)
    without the customer's data: their id pseudonymised, the note and the response comment gone.

    The case's facts, the kind, the links and the response's score stay.
    """
    data: dict[str, Any] = thaw(content)
    case = data.get("case")
    if isinstance(case, dict) and case.get("customer_id") == customer_id:
        case["customer_id"] = pseudonym
    if data.get("actor") == customer_id:
        data["actor"] = pseudonym
    if "note" in data:
        data["note"] = None
    response = data.get("response")
    if isinstance(response, dict) and "comment" in response:
        response["comment"] = None
    return data


def redact_record(record: ResponseRecord, pseudonym: str) -> ResponseRecord | None:
    """``record`` under ``pseudonym`` and without its content; ``None`` if it already is."""
    if record.customer_id == pseudonym and record.content is None:
        return None
    return evolve(record, customer_id=pseudonym, content=None)
