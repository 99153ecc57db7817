"""SQLiteStore's schema, its migrations, and rows to domain objects and back.

Times are stored as integer microseconds since the Unix epoch (UTC), so SQL can
compute with them; JSON holds the list fields and each event's kind-specific data.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from closeloop.convert import event_extra, structure_event
from closeloop.model import Case, Event, Notice, ResponseRecord

__all__ = ["MIGRATIONS", "from_micros", "to_micros"]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICRO = timedelta(microseconds=1)

#: Schema migrations; entry ``n`` takes ``user_version`` from ``n`` to ``n + 1``.
MIGRATIONS: Sequence[str] = (
    """
    CREATE TABLE cases (
        id TEXT PRIMARY KEY,
        customer_id TEXT NOT NULL,
        status TEXT NOT NULL CHECK (status IN ('open', 'progress', 'closed')),
        assignee TEXT,
        reasons TEXT NOT NULL,
        response_ids TEXT NOT NULL,
        priority TEXT NOT NULL,
        due_at INTEGER,
        opened_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL,
        closed_at INTEGER,
        opened_by TEXT NOT NULL,
        version INTEGER NOT NULL CHECK (version >= 1)
    );
    CREATE INDEX cases_by_assignee ON cases (assignee, opened_at);
    CREATE INDEX cases_by_customer ON cases (customer_id, opened_at);
    CREATE INDEX cases_by_status ON cases (status, opened_at);
    CREATE TABLE events (
        case_id TEXT NOT NULL REFERENCES cases (id),
        seq INTEGER NOT NULL,
        kind TEXT NOT NULL,
        actor TEXT NOT NULL,
        at INTEGER NOT NULL,
        comment TEXT,
        via TEXT,
        data TEXT NOT NULL,
        PRIMARY KEY (case_id, seq)
    ) WITHOUT ROWID;
    CREATE TABLE outbox (
        id TEXT PRIMARY KEY,
        case_id TEXT NOT NULL REFERENCES cases (id),
        kind TEXT NOT NULL,
        recipient TEXT NOT NULL,
        subject TEXT NOT NULL,
        text TEXT NOT NULL,
        html TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        next_attempt_at INTEGER NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        last_error TEXT,
        sent_at INTEGER
    );
    CREATE INDEX outbox_pending ON outbox (next_attempt_at, created_at) WHERE sent_at IS NULL;
    """,
    """
    CREATE TABLE responses (
        response_id TEXT PRIMARY KEY,
        customer_id TEXT NOT NULL,
        outcome TEXT NOT NULL CHECK (outcome IN ('opened', 'attached', 'ignored')),
        case_id TEXT REFERENCES cases (id),
        score INTEGER,
        submitted_at INTEGER NOT NULL,
        received_at INTEGER NOT NULL
    );
    CREATE INDEX responses_by_customer ON responses (customer_id, submitted_at);
    CREATE TABLE rotations (
        key TEXT PRIMARY KEY,
        position INTEGER NOT NULL
    );
    """,
    """
    CREATE TABLE used_links (
        link_id TEXT PRIMARY KEY,
        case_id TEXT NOT NULL REFERENCES cases (id)
    );
    """,
    # Reporting (see storage/sqlite_report.py): every KPI comes from an index scan, a
    # streaming GROUP BY or an index walk to a rank, never from a sort of every case.
    # `first_action_at` is kept by a trigger in the same transaction as the event;
    # it is when the case's first status change, assignment or comment by someone
    # other than its opener happened (NULL until then).
    """
    ALTER TABLE cases ADD COLUMN first_action_at INTEGER;
    UPDATE cases SET first_action_at = (
        SELECT e.at FROM events AS e
        WHERE e.case_id = cases.id AND e.seq > 1
            AND e.kind IN ('status_changed', 'assigned', 'commented')
            AND e.actor != cases.opened_by
        ORDER BY e.seq LIMIT 1
    );
    CREATE TRIGGER cases_first_action AFTER INSERT ON events
    WHEN NEW.seq > 1 AND NEW.kind IN ('status_changed', 'assigned', 'commented')
    BEGIN
        UPDATE cases SET first_action_at = NEW.at
        WHERE id = NEW.case_id AND first_action_at IS NULL AND opened_by != NEW.actor;
    END;
    CREATE INDEX cases_report ON cases
        (assignee, reasons, status, opened_at, due_at, closed_at, first_action_at);
    CREATE INDEX cases_time_to_close ON cases
        (closed_at - opened_at, opened_at, assignee, reasons) WHERE closed_at IS NOT NULL;
    CREATE INDEX cases_time_to_close_by_assignee ON cases
        (assignee, closed_at - opened_at, opened_at, reasons) WHERE closed_at IS NOT NULL;
    CREATE INDEX cases_time_to_first_action ON cases
        (first_action_at - opened_at, opened_at, assignee, reasons)
        WHERE first_action_at IS NOT NULL;
    CREATE INDEX cases_last_close ON cases (customer_id, closed_at, opened_at, assignee, reasons)
        WHERE closed_at IS NOT NULL;
    CREATE INDEX responses_scores ON responses (customer_id, submitted_at, score);
    """,
)

_CASE_COLUMNS = (
    "id, customer_id, status, assignee, reasons, response_ids, priority, due_at, "
    "opened_at, updated_at, closed_at, opened_by, version"
)
_EVENT_COMMON = ("kind", "case_id", "actor", "at", "seq", "comment", "via")
_NOTICE_COLUMNS = (
    "id, case_id, kind, recipient, subject, text, html, created_at, next_attempt_at, "
    "attempts, last_error, sent_at"
)



def to_micros(value: datetime) -> int:
    """An aware datetime as integer microseconds since the epoch."""
    return (value - _EPOCH) // _MICRO


def from_micros(value: int) -> datetime:
    """Integer microseconds since the epoch as an aware UTC datetime."""
    return _EPOCH + value * _MICRO


def _optional_micros(value: datetime | None) -> int | None:
    return None if value is None else to_micros(value)


def _optional_datetime(value: int | None) -> datetime | None:
    return None if value is None else from_micros(value)


_RESPONSE_COLUMNS = "response_id, customer_id, outcome, case_id, score, submitted_at, received_at"
_INSERT_RESPONSE = f"INSERT INTO responses ({_RESPONSE_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)"


def _response_row(record: ResponseRecord) -> tuple[Any, ...]:
    return (
        record.response_id,
        record.customer_id,
        record.outcome,
        record.case_id,
        record.score,
        to_micros(record.submitted_at),
        to_micros(record.received_at),
    )


def _response_from_row(row: Sequence[Any]) -> ResponseRecord:
    return ResponseRecord(
        response_id=row[0],
        customer_id=row[1],
        outcome=row[2],
        case_id=row[3],
        score=row[4],
        submitted_at=from_micros(row[5]),
        received_at=from_micros(row[6]),
    )


def _statements(script: str) -> list[str]:
    # Split on ";" but keep a CREATE TRIGGER whole: its body has ";" of its own.
    statements: list[str] = []
    pending = ""
    for part in script.split(";"):
        pending += part + ";"
        if sqlite3.complete_statement(pending):
            if pending.strip(" \n;"):
                statements.append(pending.strip())
            pending = ""
    if pending.strip(" \n;"):
        statements.append(pending.strip())
    return statements


def _case_row(case: Case) -> tuple[Any, ...]:
    return (
        case.id,
        case.customer_id,
        case.status.value,
        case.assignee,
        json.dumps(case.reasons),
        json.dumps(case.response_ids),
        case.priority.value,
        _optional_micros(case.due_at),
        to_micros(case.opened_at),
        to_micros(case.updated_at),
        _optional_micros(case.closed_at),
        case.opened_by,
        case.version,
    )


def _case_from_row(row: Sequence[Any]) -> Case:
    return Case(
        id=row[0],
        customer_id=row[1],
        status=row[2],
        assignee=row[3],
        reasons=json.loads(row[4]),
        response_ids=json.loads(row[5]),
        priority=row[6],
        due_at=_optional_datetime(row[7]),
        opened_at=from_micros(row[8]),
        updated_at=from_micros(row[9]),
        closed_at=_optional_datetime(row[10]),
        opened_by=row[11],
        version=row[12],
    )


def _event_row(event: Event) -> tuple[Any, ...]:
    extra = event_extra(event)
    return (
        event.kind,
        event.case_id,
        event.actor,
        to_micros(event.at),
        event.seq,
        event.comment,
        event.via,
        json.dumps(extra, separators=(",", ":")),
    )


def _event_from_row(row: Sequence[Any]) -> Event:
    data = dict(zip(_EVENT_COMMON, row[:7], strict=True))
    data["at"] = from_micros(row[3])
    data.update(json.loads(row[7]))
    return structure_event(data)


def _notice_row(notice: Notice) -> tuple[Any, ...]:
    return (
        notice.id,
        notice.case_id,
        notice.kind,
        notice.to,
        notice.subject,
        notice.text,
        notice.html,
        to_micros(notice.created_at),
        to_micros(notice.next_attempt_at),
        notice.attempts,
        notice.last_error,
        _optional_micros(notice.sent_at),
    )


def _notice_from_row(row: Sequence[Any]) -> Notice:
    return Notice(
        id=row[0],
        case_id=row[1],
        kind=row[2],
        to=row[3],
        subject=row[4],
        text=row[5],
        html=row[6],
        created_at=from_micros(row[7]),
        next_attempt_at=from_micros(row[8]),
        attempts=row[9],
        last_error=row[10],
        sent_at=_optional_datetime(row[11]),
    )
