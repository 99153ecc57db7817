"""Domain objects to SQL rows and back, shared by the SQL stores.

The stores agree on column order and differ only in how a time, a list of ids
and an event's kind-specific data are held (SQLite: integer microseconds and
JSON text; PostgreSQL: ``timestamptz``, ``text[]`` and ``jsonb``). A
:class:`RowCodec` takes those few conversions and does the rest.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from attrs import frozen

from closeloop.convert import event_extra, structure_event
from closeloop.model import Case, Event, Notice, Priority, ResponseRecord, Status, trusted

__all__ = [
    "CASE_COLUMNS",
    "CASE_PLACEHOLDERS",
    "EVENT_COLUMNS",
    "NOTICE_COLUMNS",
    "RESPONSE_COLUMNS",
    "RowCodec",
    "case_filters",
]

CASE_COLUMNS = (
    "id, customer_id, status, assignee, reasons, response_ids, priority, due_at, "
    "opened_at, updated_at, closed_at, opened_by, version, custom_status, close_reason, paused_at"
)
#: One placeholder per column of :data:`CASE_COLUMNS` (``?``; a store swaps in its own).
CASE_PLACEHOLDERS = ", ".join("?" for _ in CASE_COLUMNS.split(","))
#: The columns an update may change: customer_id, opened_at and opened_by never do.
CASE_UPDATE_COLUMNS = (
    "status", "assignee", "reasons", "response_ids", "priority", "due_at", "updated_at",
    "closed_at", "version", "custom_status", "close_reason", "paused_at",
)
EVENT_COLUMNS = "kind, case_id, actor, at, seq, comment, via, data"
_EVENT_COMMON = ("kind", "case_id", "actor", "at", "seq", "comment", "via")
NOTICE_COLUMNS = (
    "id, case_id, kind, recipient, subject, text, html, created_at, next_attempt_at, "
    "attempts, last_error, sent_at"
)
RESPONSE_COLUMNS = "response_id, customer_id, outcome, case_id, score, submitted_at, received_at"


def case_filters(
    placeholder: str,
    *,
    assignee: str | None,
    status: Status | None,
    customer_id: str | None,
) -> tuple[str, list[Any]]:
    """The ``WHERE`` clause (or ``""``) and parameters of ``Store.find``'s filters."""
    clauses: list[str] = []
    params: list[Any] = []
    for column, value in (
        ("assignee", assignee),
        ("status", None if status is None else status.value),
        ("customer_id", customer_id),
    ):
        if value is not None:
            clauses.append(f"{column} = {placeholder}")
            params.append(value)
    return (f"WHERE {' AND '.join(clauses)}" if clauses else ""), params


def _same(value: Any) -> Any:
    return value


@frozen
class RowCodec:
    """Row conversions for one SQL dialect.

    Attributes:
        time_out / time_in: an aware datetime to the column value and back (the
            value read back must be an aware datetime equal to the one written).
        ids_out / ids_in: a tuple of ids (reasons, response ids) to the column value
            and back.
        data_out / data_in: an event's kind-specific dict to the column value and back.
    """

    time_out: Callable[[datetime], Any]
    time_in: Callable[[Any], datetime]
    ids_out: Callable[[tuple[str, ...]], Any]
    ids_in: Callable[[Any], Sequence[str]] = _same
    data_out: Callable[[dict[str, Any]], Any] = _same
    data_in: Callable[[Any], dict[str, Any]] = _same

    def _optional_out(self, value: datetime | None) -> Any:
        return None if value is None else self.time_out(value)

    def _optional_in(self, value: Any) -> datetime | None:
        return None if value is None else self.time_in(value)

    def case_row(self, case: Case) -> tuple[Any, ...]:
        """All of :data:`CASE_COLUMNS`, in order."""
        return (
            case.id, case.customer_id, case.status.value, case.assignee,
            self.ids_out(case.reasons), self.ids_out(case.response_ids), case.priority.value,
            self._optional_out(case.due_at), self.time_out(case.opened_at),
            self.time_out(case.updated_at), self._optional_out(case.closed_at),
            case.opened_by, case.version, *self._workflow_out(case),
        )

    def case_update_row(self, case: Case) -> tuple[Any, ...]:
        """The values of :data:`CASE_UPDATE_COLUMNS`, in order."""
        return (
            case.status.value, case.assignee, self.ids_out(case.reasons),
            self.ids_out(case.response_ids), case.priority.value,
            self._optional_out(case.due_at), self.time_out(case.updated_at),
            self._optional_out(case.closed_at), case.version, *self._workflow_out(case),
        )

    def _workflow_out(self, case: Case) -> tuple[Any, Any, Any]:
        # custom_status is NULL when it is the category's own name (every case of the
        # standard workflow), so rows written before the column existed read the same.
        custom = None if case.custom_status == case.status.value else case.custom_status
        return custom, case.close_reason, self._optional_out(case.paused_at)

    def case_from_row(self, row: Sequence[Any]) -> Case:
        """A case from a row of :data:`CASE_COLUMNS`.

        The row is one a store wrote from a validated Case, so its fields are not
        validated again (:func:`~closeloop.model.trusted`): reading a case is on
        every status change's path. The enums are still parsed, so a row that is
        not closeloop's fails loudly rather than passing through.
        """
        return trusted(Case, {
            "id": row[0], "customer_id": row[1], "status": Status(row[2]), "assignee": row[3],
            "reasons": tuple(self.ids_in(row[4])), "response_ids": tuple(self.ids_in(row[5])),
            "priority": Priority(row[6]), "due_at": self._optional_in(row[7]),
            "opened_at": self.time_in(row[8]), "updated_at": self.time_in(row[9]),
            "closed_at": self._optional_in(row[10]), "opened_by": row[11], "version": row[12],
            "custom_status": row[13] or row[2], "close_reason": row[14],
            "paused_at": self._optional_in(row[15]),
        })

    def event_row(self, event: Event) -> tuple[Any, ...]:
        """All of :data:`EVENT_COLUMNS`, in order."""
        return (
            event.kind, event.case_id, event.actor, self.time_out(event.at), event.seq,
            event.comment, event.via, self.data_out(event_extra(event)),
        )

    def event_from_row(self, row: Sequence[Any]) -> Event:
        """An event from a row of :data:`EVENT_COLUMNS`."""
        data = dict(zip(_EVENT_COMMON, row[:7], strict=True))
        data["at"] = self.time_in(row[3])
        data.update(self.data_in(row[7]))
        return structure_event(data)

    def notice_row(self, notice: Notice) -> tuple[Any, ...]:
        """All of :data:`NOTICE_COLUMNS`, in order."""
        return (
            notice.id, notice.case_id, notice.kind, notice.to, notice.subject, notice.text,
            notice.html, self.time_out(notice.created_at), self.time_out(notice.next_attempt_at),
            notice.attempts, notice.last_error, self._optional_out(notice.sent_at),
        )

    def notice_from_row(self, row: Sequence[Any]) -> Notice:
        """A notice from a row of :data:`NOTICE_COLUMNS`."""
        return Notice(
            id=row[0], case_id=row[1], kind=row[2], to=row[3], subject=row[4], text=row[5],
            html=row[6], created_at=self.time_in(row[7]), next_attempt_at=self.time_in(row[8]),
            attempts=row[9], last_error=row[10], sent_at=self._optional_in(row[11]),
        )

    def response_row(self, record: ResponseRecord) -> tuple[Any, ...]:
        """All of :data:`RESPONSE_COLUMNS`, in order."""
        return (
            record.response_id, record.customer_id, record.outcome, record.case_id, record.score,
            self.time_out(record.submitted_at), self.time_out(record.received_at),
        )

    def response_from_row(self, row: Sequence[Any]) -> ResponseRecord:
        """A response record from a row of :data:`RESPONSE_COLUMNS`."""
        return ResponseRecord(
            response_id=row[0], customer_id=row[1], outcome=row[2], case_id=row[3],
            score=row[4], submitted_at=self.time_in(row[5]), received_at=self.time_in(row[6]),
        )
