"""The embedded default store: one SQLite file, safe for several threads and processes.

How it keeps the :class:`~closeloop.storage.Store` contract:

- every write is one ``BEGIN IMMEDIATE`` transaction (the write lock is taken up
  front, so two writers never deadlock upgrading a read lock);
- the case row is updated only ``WHERE version = expected``: a stale write
  changes no row and raises :class:`~closeloop.errors.ConcurrentUpdate`;
- WAL journal, so readers never block the writer; ``busy_timeout`` makes a
  writer wait for the lock instead of failing at once;
- each thread gets its own connection (and a forked child opens fresh ones);
- the schema is versioned with ``PRAGMA user_version`` and migrated on open.

Times are stored as integer microseconds since the Unix epoch (UTC), so SQL can
compute with them.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

from closeloop.convert import event_extra, structure_event
from closeloop.errors import (
    CaseNotFound,
    CloseLoopError,
    ConcurrentUpdate,
    InvalidInput,
    StoreError,
    TokenUsed,
)
from closeloop.model import Case, Event, Notice, ResponseRecord, Status
from closeloop.reporting import Report, ReportQuery
from closeloop.storage.base import Change, check_change

__all__ = ["SQLiteStore"]

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

Synchronous = Literal["OFF", "NORMAL", "FULL", "EXTRA"]


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


class SQLiteStore:
    """Keeps cases in one SQLite file.

    Args:
        path: the database file; created (with its schema) if missing.
        timeout: seconds a writer waits for another writer's lock before failing.
        synchronous: SQLite's durability setting. ``"FULL"`` (default) survives a
            power cut; ``"NORMAL"`` is faster and survives an application crash but
            may lose the last commits on power loss.

    Example::

        store = SQLiteStore("closeloop.db")
        loop = CloseLoop(store=store)
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        timeout: float = 30.0,
        synchronous: Synchronous = "FULL",
    ) -> None:
        if not isinstance(path, str | os.PathLike) or str(path) in ("", ":memory:"):
            raise InvalidInput(
                "path", path, "must be a file path (use MemoryStore for an in-memory store)"
            )
        if synchronous not in ("OFF", "NORMAL", "FULL", "EXTRA"):
            raise InvalidInput("synchronous", synchronous, "must be OFF, NORMAL, FULL or EXTRA")
        if isinstance(timeout, bool) or not isinstance(timeout, int | float) or timeout < 0:
            raise InvalidInput("timeout", timeout, "must be a non-negative number of seconds")
        self.path = Path(path)
        self.timeout = float(timeout)
        self.synchronous = synchronous
        self._local = threading.local()
        # (process id, owning thread, connection) for every connection opened.
        self._all: list[tuple[int, threading.Thread, sqlite3.Connection]] = []
        self._all_lock = threading.Lock()
        try:
            self._migrate()
        except BaseException:
            self.close()  # the caller never gets the store, so cannot close it
            raise

    # -- connections ----------------------------------------------------------------

    def _connection(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is not None and self._local.pid == os.getpid():
            return conn
        with _translated("opening the database"):
            conn = sqlite3.connect(
                self.path, timeout=self.timeout, isolation_level=None, check_same_thread=False
            )
            try:
                conn.execute(f"PRAGMA busy_timeout = {int(self.timeout * 1000)}")
                conn.execute(f"PRAGMA synchronous = {self.synchronous}")
                conn.execute("PRAGMA foreign_keys = ON")
            except BaseException:
                conn.close()
                raise
        self._local.conn = conn
        self._local.pid = pid = os.getpid()
        with self._all_lock:
            # A finished thread's connection is never used again: close it, so a
            # thread-per-request server does not pile up open files. Connections
            # inherited from a parent process are left alone (closing one in a
            # forked child is unsafe).
            kept = []
            for owner_pid, owner, old in self._all:
                if owner_pid == pid and not owner.is_alive():
                    old.close()
                else:
                    kept.append((owner_pid, owner, old))
            kept.append((pid, threading.current_thread(), conn))
            self._all = kept
        return conn

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        conn = self._connection()
        with _translated("writing"):
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
                conn.execute("COMMIT")
            except BaseException:
                # Some errors (disk full, I/O, RAISE(ROLLBACK)) have already rolled the
                # transaction back; a failed COMMIT has not. Never mask the real error.
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise

    def _migrate(self) -> None:
        with self._write() as conn:
            (version,) = conn.execute("PRAGMA user_version").fetchone()
            if version > len(MIGRATIONS):
                raise StoreError(
                    f"{self.path} has schema version {version}, newer than this closeloop "
                    f"understands ({len(MIGRATIONS)}); upgrade closeloop"
                )
            if version == 0:
                foreign = conn.execute(
                    "SELECT count(*) FROM sqlite_master WHERE name NOT LIKE 'sqlite_%'"
                ).fetchone()[0]
                if foreign:
                    raise StoreError(f"{self.path} is a database that closeloop did not create")
            for number in range(version, len(MIGRATIONS)):
                for statement in _statements(MIGRATIONS[number]):
                    conn.execute(statement)
                conn.execute(f"PRAGMA user_version = {number + 1}")
        # Only now that the file is known to be ours: WAL is a persistent property of
        # the file, so setting it on a database closeloop did not create would change it.
        with _translated("opening the database"):
            conn.execute("PRAGMA journal_mode = WAL")

    @property
    def schema_version(self) -> int:
        """The schema version of the file (``PRAGMA user_version``)."""
        with _translated("reading"):
            return int(self._connection().execute("PRAGMA user_version").fetchone()[0])

    def close(self) -> None:
        """Close every connection this store opened, in any thread."""
        with self._all_lock:
            connections, self._all = self._all, []
        for _, _, conn in connections:
            conn.close()
        self._local = threading.local()

    # -- writing --------------------------------------------------------------------

    def commit(self, change: Change) -> None:
        check_change(change)
        with self._write() as conn:
            self._apply(conn, change)

    def commit_many(
        self, changes: Sequence[Change], ignored: Sequence[ResponseRecord] = ()
    ) -> None:
        for change in changes:
            check_change(change)
        with self._write() as conn:
            for change in changes:
                self._apply(conn, change)
            if ignored:
                conn.executemany(
                    _INSERT_RESPONSE.replace("INSERT", "INSERT OR IGNORE", 1),
                    [_response_row(record) for record in ignored],
                )

    def _apply(self, conn: sqlite3.Connection, change: Change) -> None:
        case = change.case
        if change.sole_active_case:
            active = conn.execute(
                "SELECT id, version FROM cases WHERE customer_id = ? AND status != 'closed' "
                "LIMIT 1",
                (case.customer_id,),
            ).fetchone()
            if active is not None:
                raise ConcurrentUpdate(active[0], None, active[1])
        if change.expected_version is None:
            try:
                conn.execute(
                    f"INSERT INTO cases ({_CASE_COLUMNS}) VALUES "
                    "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    _case_row(case),
                )
            except sqlite3.IntegrityError:
                raise ConcurrentUpdate(case.id, None, self._version(conn, case.id)) from None
        else:
            row = _case_row(case)
            updated = conn.execute(
                # customer_id, opened_at and opened_by never change after opening;
                # leaving them out spares SQLite the customer index on every update.
                "UPDATE cases SET status = ?, assignee = ?, reasons = ?, response_ids = ?, "
                "priority = ?, due_at = ?, updated_at = ?, closed_at = ?, version = ? "
                "WHERE id = ? AND version = ?",
                (*row[2:8], row[9], row[10], row[12], case.id, change.expected_version),
            ).rowcount
            if updated != 1:
                actual = self._version(conn, case.id)
                if actual is None:
                    raise CaseNotFound(case.id)
                raise ConcurrentUpdate(case.id, change.expected_version, actual)
        conn.executemany(
            "INSERT INTO events (kind, case_id, actor, at, seq, comment, via, data) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [_event_row(event) for event in change.events],
        )
        conn.executemany(
            f"INSERT INTO outbox ({_NOTICE_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [_notice_row(notice) for notice in change.notices],
        )
        if change.responses:
            try:
                conn.executemany(_INSERT_RESPONSE, [_response_row(r) for r in change.responses])
            except sqlite3.IntegrityError:
                raise ConcurrentUpdate(case.id, change.expected_version, None) from None
        if change.consume_link is not None:
            try:
                conn.execute(
                    "INSERT INTO used_links (link_id, case_id) VALUES (?, ?)",
                    (change.consume_link, case.id),
                )
            except sqlite3.IntegrityError:
                raise TokenUsed() from None

    def escalation_candidates(
        self, *, now: datetime, untouched_before: datetime | None, quiet_since: datetime,
        limit: int,
    ) -> list[Case]:
        untouched = None if untouched_before is None else to_micros(untouched_before)
        with _translated("reading"):
            rows = (
                self._connection()
                .execute(
                    f"SELECT {_CASE_COLUMNS} FROM cases AS c WHERE status != 'closed' "
                    "AND (due_at <= ? OR updated_at <= ?) AND NOT EXISTS (SELECT 1 FROM events "
                    "AS e WHERE e.case_id = c.id AND e.kind = 'escalated' AND e.at >= ?) "
                    "ORDER BY opened_at, rowid LIMIT ?",
                    (to_micros(now), untouched, to_micros(quiet_since), limit),
                )
                .fetchall()
            )
        return [_case_from_row(row) for row in rows]

    def latest_cases(self, customer_ids: Sequence[str]) -> dict[str, Case]:
        latest: dict[str, Case] = {}
        ids = list(dict.fromkeys(customer_ids))
        with _translated("reading"):
            conn = self._connection()
            for start in range(0, len(ids), 500):  # stay under SQLite's parameter limit
                chunk = ids[start : start + 500]
                rows = conn.execute(
                    f"SELECT {_CASE_COLUMNS} FROM cases WHERE rowid IN (SELECT max(rowid) "
                    f"FROM cases WHERE customer_id IN ({', '.join('?' * len(chunk))}) "
                    "GROUP BY customer_id)",
                    chunk,
                ).fetchall()
                latest.update((row[1], _case_from_row(row)) for row in rows)
        return latest

    def report(self, query: ReportQuery) -> Report:
        # Imported here: sqlite_report builds on this module's time conversions.
        from closeloop.storage.sqlite_report import report_from_sqlite

        with _translated("reporting"):
            return report_from_sqlite(self._connection(), query)

    def link_used(self, link_id: str) -> bool:
        with _translated("reading"):
            row = (
                self._connection()
                .execute("SELECT 1 FROM used_links WHERE link_id = ?", (link_id,))
                .fetchone()
            )
        return row is not None

    def record_responses(self, records: Sequence[ResponseRecord]) -> None:
        with self._write() as conn:
            conn.executemany(
                _INSERT_RESPONSE.replace("INSERT", "INSERT OR IGNORE", 1),
                [_response_row(record) for record in records],
            )

    def responses(self, response_ids: Sequence[str]) -> dict[str, ResponseRecord]:
        found: dict[str, ResponseRecord] = {}
        ids = list(response_ids)
        with _translated("reading"):
            conn = self._connection()
            for start in range(0, len(ids), 500):  # stay under SQLite's parameter limit
                chunk = ids[start : start + 500]
                rows = conn.execute(
                    f"SELECT {_RESPONSE_COLUMNS} FROM responses WHERE response_id IN "
                    f"({', '.join('?' * len(chunk))})",
                    chunk,
                ).fetchall()
                found.update((row[0], _response_from_row(row)) for row in rows)
        return found

    def next_in_rotation(self, key: str, size: int) -> int:
        with self._write() as conn:
            (position,) = conn.execute(
                "INSERT INTO rotations (key, position) VALUES (?, 1) ON CONFLICT (key) "
                "DO UPDATE SET position = position + 1 RETURNING position",
                (key,),
            ).fetchone()
        return (int(position) - 1) % size

    @staticmethod
    def _version(conn: sqlite3.Connection, case_id: str) -> int | None:
        row = conn.execute("SELECT version FROM cases WHERE id = ?", (case_id,)).fetchone()
        return None if row is None else int(row[0])

    # -- reading --------------------------------------------------------------------

    def get(self, case_id: str) -> Case:
        with _translated("reading"):
            row = (
                self._connection()
                .execute(f"SELECT {_CASE_COLUMNS} FROM cases WHERE id = ?", (case_id,))
                .fetchone()
            )
        if row is None:
            raise CaseNotFound(case_id)
        return _case_from_row(row)

    def find(
        self,
        *,
        assignee: str | None = None,
        status: Status | None = None,
        customer_id: str | None = None,
        limit: int | None = None,
    ) -> list[Case]:
        clauses: list[str] = []
        params: list[Any] = []
        for column, value in (
            ("assignee", assignee),
            ("status", None if status is None else status.value),
            ("customer_id", customer_id),
        ):
            if value is not None:
                clauses.append(f"{column} = ?")
                params.append(value)
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        params.append(-1 if limit is None else limit)
        with _translated("reading"):
            rows = (
                self._connection()
                .execute(
                    f"SELECT {_CASE_COLUMNS} FROM cases {where} ORDER BY opened_at, rowid LIMIT ?",
                    params,
                )
                .fetchall()
            )
        return [_case_from_row(row) for row in rows]

    def history(self, case_id: str) -> list[Event]:
        with _translated("reading"):
            conn = self._connection()
            conn.execute("BEGIN")  # one snapshot for the existence check and the events
            try:
                exists = conn.execute("SELECT 1 FROM cases WHERE id = ?", (case_id,)).fetchone()
                rows = conn.execute(
                    "SELECT kind, case_id, actor, at, seq, comment, via, data FROM events "
                    "WHERE case_id = ? ORDER BY seq",
                    (case_id,),
                ).fetchall()
            finally:
                conn.execute("COMMIT")
        if exists is None:
            raise CaseNotFound(case_id)
        return [_event_from_row(row) for row in rows]

    # -- outbox ---------------------------------------------------------------------

    def claim_notices(
        self, *, now: datetime, lease: timedelta, limit: int = 100
    ) -> list[Notice]:
        with self._write() as conn:
            rows = conn.execute(
                f"SELECT {_NOTICE_COLUMNS} FROM outbox WHERE sent_at IS NULL "
                "AND next_attempt_at <= ? ORDER BY created_at, id LIMIT ?",
                (to_micros(now), limit),
            ).fetchall()
            until = to_micros(now + lease)
            conn.executemany(
                "UPDATE outbox SET next_attempt_at = ? WHERE id = ?",
                [(until, row[0]) for row in rows],
            )
        return [_notice_from_row((*row[:8], until, *row[9:])) for row in rows]

    def notices_sent(self, notice_ids: Sequence[str], *, at: datetime) -> None:
        with self._write() as conn:
            conn.executemany(
                "UPDATE outbox SET sent_at = ? WHERE id = ?",
                [(to_micros(at), notice_id) for notice_id in notice_ids],
            )

    def notice_failed(self, notice_id: str, *, error: str, retry_at: datetime) -> None:
        with self._write() as conn:
            conn.execute(
                "UPDATE outbox SET attempts = attempts + 1, last_error = ?, next_attempt_at = ? "
                "WHERE id = ?",
                (error, to_micros(retry_at), notice_id),
            )

    def pending_notices(self) -> list[Notice]:
        with _translated("reading"):
            rows = (
                self._connection()
                .execute(
                    f"SELECT {_NOTICE_COLUMNS} FROM outbox WHERE sent_at IS NULL "
                    "ORDER BY created_at, id"
                )
                .fetchall()
            )
        return [_notice_from_row(row) for row in rows]


# -- rows -------------------------------------------------------------------------------


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


@contextmanager
def _translated(doing: str) -> Iterator[None]:
    """Turn sqlite3's exceptions into StoreError; closeloop's own pass through."""
    try:
        yield
    except CloseLoopError:
        raise
    except sqlite3.Error as exc:
        raise StoreError(f"SQLite failed while {doing}: {exc}") from exc


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
