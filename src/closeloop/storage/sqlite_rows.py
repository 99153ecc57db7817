"""SQLiteStore's schema, its migrations, and how its columns hold values.

Times are stored as integer microseconds since the Unix epoch (UTC), so SQL can
compute with them; JSON holds the list fields and each event's kind-specific data.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from closeloop.storage.rows import RESPONSE_COLUMNS, RowCodec
from closeloop.validate import frozen_to_json

__all__ = [
    "CODEC",
    "FILL_STATUS_STINTS",
    "INSERT_RESPONSE",
    "MIGRATIONS",
    "PURGE_CANDIDATES",
    "UPDATE_RESPONSE",
    "from_micros",
    "split_statements",
    "to_micros",
]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICRO = timedelta(microseconds=1)

#: Fills ``status_stints`` from the status changes already written: the workflow
#: migration runs it, and so may a bulk load that bypasses the trigger (bench/report.py).
FILL_STATUS_STINTS = """
    INSERT INTO status_stints (case_id, seq, status, took)
    SELECT e.case_id, e.seq,
        coalesce(json_extract(e.data, '$.from_custom_status'), json_extract(e.data, '$.from_status')),
        e.at - coalesce(
            (SELECT p.at FROM events AS p WHERE p.case_id = e.case_id AND p.seq < e.seq
                AND p.kind = 'status_changed' ORDER BY p.seq DESC LIMIT 1),
            (SELECT c.opened_at FROM cases AS c WHERE c.id = e.case_id))
    FROM events AS e WHERE e.kind = 'status_changed'
"""

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
    # Response updates: what a response said, so a repeat with other content is an update.
    """
    ALTER TABLE responses ADD COLUMN content TEXT;
    """,
    # Notices as data, one row per (notice, channel): a delivery. Rows written before
    # keep their rendered subject/text/html (content stays NULL) and go to the channel
    # "default"; a case event sent to a webhook has no recipient, hence the rebuild
    # (SQLite cannot drop a NOT NULL). `failed_at` ends a delivery that cannot succeed.
    """
    CREATE TABLE outbox_deliveries (
        id TEXT PRIMARY KEY,
        case_id TEXT NOT NULL REFERENCES cases (id),
        kind TEXT NOT NULL,
        recipient TEXT,
        subject TEXT NOT NULL,
        text TEXT NOT NULL,
        html TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        next_attempt_at INTEGER NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        last_error TEXT,
        sent_at INTEGER,
        channel TEXT NOT NULL,
        message_id TEXT NOT NULL,
        content TEXT,
        failed_at INTEGER
    );
    INSERT INTO outbox_deliveries
        (id, case_id, kind, recipient, subject, text, html, created_at, next_attempt_at,
         attempts, last_error, sent_at, channel, message_id, content, failed_at)
    SELECT id, case_id, kind, recipient, subject, text, html, created_at, next_attempt_at,
           attempts, last_error, sent_at, 'default', id, NULL, NULL
    FROM outbox;
    DROP TABLE outbox;
    ALTER TABLE outbox_deliveries RENAME TO outbox;
    CREATE INDEX outbox_pending ON outbox (next_attempt_at, created_at)
        WHERE sent_at IS NULL AND failed_at IS NULL;
    """,
    # Case lists (see storage/sql_query.py): one index per order, and one more with the
    # assignee in front for the home page, so a page is a range scan in index order.
    # The id ends each, as it ends each order (cases_by_assignee stays: its rowid order
    # is find()'s creation order). The due and priority orders sort on generated
    # columns, not on expressions: SQLite starts a range scan at a row value such as
    # (due_order, opened_at, id) > (?, ?, ?) only over plain columns. None of these
    # indexes holds a column a status change writes. The updated order has no index
    # on purpose: updated_at changes with every change, and its two indexes cost each
    # status change a fifth of its time (measured); it sorts the matching cases.
    """
    ALTER TABLE cases ADD COLUMN due_order INTEGER
        GENERATED ALWAYS AS (coalesce(due_at, 9223372036854775807)) VIRTUAL;
    ALTER TABLE cases ADD COLUMN urgency INTEGER GENERATED ALWAYS AS (CASE priority
        WHEN 'urgent' THEN 0 WHEN 'high' THEN 1 WHEN 'normal' THEN 2 WHEN 'low' THEN 3 END) VIRTUAL;
    CREATE INDEX cases_by_assignee_opened ON cases (assignee, opened_at, id);
    CREATE INDEX cases_by_opened ON cases (opened_at, id);
    CREATE INDEX cases_by_assignee_due ON cases (assignee, due_order, opened_at, id);
    CREATE INDEX cases_by_due ON cases (due_order, opened_at, id);
    CREATE INDEX cases_by_assignee_priority ON cases (assignee, urgency, opened_at, id);
    CREATE INDEX cases_by_priority ON cases (urgency, opened_at, id);
    """,
    # Workflows (closeloop.workflow.Workflow): a team's own status name (NULL when it is
    # the category's, as for every case written before), the close reason, and when the
    # SLA clock was paused. The report index takes the new columns so the report's one
    # GROUP BY still streams from a covering index. `status_stints` holds, per status
    # change, how long the case had been in the status it left (for time in each
    # status); a trigger writes it in the same transaction as the event.
    """
    ALTER TABLE cases ADD COLUMN custom_status TEXT;
    ALTER TABLE cases ADD COLUMN close_reason TEXT;
    ALTER TABLE cases ADD COLUMN paused_at INTEGER;
    DROP INDEX cases_report;
    CREATE INDEX cases_report ON cases (assignee, reasons, status, custom_status, close_reason,
        opened_at, due_at, closed_at, first_action_at, paused_at);
    CREATE INDEX cases_time_to_close_by_reason ON cases
        (close_reason, closed_at - opened_at, opened_at, assignee, reasons)
        WHERE close_reason IS NOT NULL;
    CREATE TABLE status_stints (
        case_id TEXT NOT NULL REFERENCES cases (id),
        seq INTEGER NOT NULL,
        status TEXT NOT NULL,
        took INTEGER NOT NULL,
        PRIMARY KEY (case_id, seq)
    ) WITHOUT ROWID;
    {fill_status_stints};
    CREATE INDEX status_stints_by_status ON status_stints (status, took);
    CREATE TRIGGER cases_status_stint AFTER INSERT ON events
    WHEN NEW.kind = 'status_changed'
    BEGIN
        INSERT INTO status_stints (case_id, seq, status, took) VALUES (NEW.case_id, NEW.seq,
            coalesce(json_extract(NEW.data, '$.from_custom_status'),
                     json_extract(NEW.data, '$.from_status')),
            NEW.at - coalesce(
                (SELECT p.at FROM events AS p WHERE p.case_id = NEW.case_id AND p.seq < NEW.seq
                    AND p.kind = 'status_changed' ORDER BY p.seq DESC LIMIT 1),
                (SELECT c.opened_at FROM cases AS c WHERE c.id = NEW.case_id)));
    END;
    """.replace("{fill_status_stints}", FILL_STATUS_STINTS.strip()),
    # Personal data (closeloop.lifecycle): an export or an erasure reads the notices
    # about a customer's cases.
    """
    CREATE INDEX outbox_by_case ON outbox (case_id);
    """,
    # A faster report over a million cases. (1) Recovery picks, per customer, the
    # response just before and just after their last close, ties on submitted_at
    # going by the order responses were recorded (the rowid). SQLite cannot put the
    # rowid in an index, so each of those seeks sorted its tie group: the table is
    # rebuilt with `seq INTEGER PRIMARY KEY` (the same values, now a column), and
    # responses_scores holds it before the score. (2) The counts stream from an
    # index with the status in front, so Closed cases and the others are summed by
    # two range scans, each adding up only the figures that mean something for it.
    """
    CREATE TABLE responses_by_seq (
        seq INTEGER PRIMARY KEY,
        response_id TEXT NOT NULL UNIQUE,
        customer_id TEXT NOT NULL,
        outcome TEXT NOT NULL CHECK (outcome IN ('opened', 'attached', 'ignored')),
        case_id TEXT REFERENCES cases (id),
        score INTEGER,
        submitted_at INTEGER NOT NULL,
        received_at INTEGER NOT NULL,
        content TEXT
    );
    INSERT INTO responses_by_seq (seq, response_id, customer_id, outcome, case_id, score,
        submitted_at, received_at, content)
    SELECT rowid, response_id, customer_id, outcome, case_id, score, submitted_at,
        received_at, content
    FROM responses ORDER BY rowid;
    DROP TABLE responses;
    ALTER TABLE responses_by_seq RENAME TO responses;
    CREATE INDEX responses_by_customer ON responses (customer_id, submitted_at);
    CREATE INDEX responses_scores ON responses (customer_id, submitted_at, seq, score);
    DROP INDEX cases_report;
    CREATE INDEX cases_report ON cases (status, assignee, reasons, custom_status, close_reason,
        opened_at, due_at, closed_at, first_action_at, paused_at);
    """,
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


#: Inserts one response record (parameters from ``CODEC.response_row``).
INSERT_RESPONSE = f"INSERT INTO responses ({RESPONSE_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
#: Updates one response record if it is still as read (``CODEC.response_update_row``).
UPDATE_RESPONSE = (
    "UPDATE responses SET outcome = ?, case_id = ?, score = ?, content = ?, customer_id = ? "
    "WHERE response_id = ? AND content IS ? AND outcome = ? AND case_id IS ? AND customer_id = ?"
)
#: The retention rule (closeloop.retention) in SQL, with the parameter ``:before``: per
#: customer, whether every case is closed before it and every response received before
#: it, and how many cases (whose last event is not ``erased``) and responses (with
#: content) still hold something to erase. A pseudonym with nothing left is not due.
PURGE_CANDIDATES = """
    WITH case_facts AS (
        SELECT c.customer_id,
            count(*) = count(c.closed_at) AND max(c.closed_at) < :before AS aged,
            sum(e.kind IS NOT 'erased') AS open_to_erase
        FROM cases AS c LEFT JOIN events AS e ON e.case_id = c.id AND e.seq = c.version
        GROUP BY c.customer_id
    ), response_facts AS (
        SELECT customer_id, max(received_at) < :before AS aged,
            sum(content IS NOT NULL) AS open_to_erase
        FROM responses GROUP BY customer_id
    ), customers AS (
        SELECT customer_id FROM case_facts UNION SELECT customer_id FROM response_facts
    )
    SELECT k.customer_id FROM customers AS k
        LEFT JOIN case_facts AS c ON c.customer_id = k.customer_id
        LEFT JOIN response_facts AS r ON r.customer_id = k.customer_id
    WHERE coalesce(c.aged, 1) AND coalesce(r.aged, 1)
        AND (substr(k.customer_id, 1, 7) != 'erased-'
             OR coalesce(c.open_to_erase, 0) + coalesce(r.open_to_erase, 0) > 0)
    ORDER BY k.customer_id
"""


def split_statements(script: str) -> list[str]:
    """The statements of a migration script, one string each."""
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


#: One encoder for every row: ``json.dumps`` with options builds a new one per call.
#: It writes frozen data (a notice's content) as is, without a thawed copy.
_COMPACT = json.JSONEncoder(separators=(",", ":"), default=frozen_to_json)


def _compact_json(value: Mapping[str, Any]) -> str:
    return _COMPACT.encode(value)


def _json_ids(value: tuple[str, ...]) -> str:
    return json.dumps(value)


def _stored_micros(value: Any) -> datetime:
    """A time column as written: integer microseconds (anything else is not closeloop's)."""
    if type(value) is not int:
        raise TypeError(f"a time is stored as integer microseconds, not {value!r}")
    return _EPOCH + value * _MICRO


#: SQLite's row conversions: times as integer microseconds, lists and data as JSON text.
CODEC = RowCodec(
    time_out=to_micros, time_in=_stored_micros, ids_out=_json_ids, ids_in=json.loads,
    data_out=_compact_json, data_in=json.loads, content_out=_compact_json,
)
