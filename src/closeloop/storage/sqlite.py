"""The embedded default store: one SQLite file, safe for several threads and processes.

How it keeps the :class:`~closeloop.storage.Store` contract:

- every write is one ``BEGIN IMMEDIATE`` transaction (the write lock is taken up
  front, so two writers never deadlock upgrading a read lock);
- the case row is updated only ``WHERE version = expected``: a stale write
  changes no row and raises :class:`~closeloop.errors.ConcurrentUpdate`;
- WAL journal, so readers never block the writer; ``busy_timeout`` makes a
  writer wait for the lock instead of failing at once;
- each thread gets its own connection (and a forked child opens fresh ones);
- the schema is versioned with ``PRAGMA user_version`` and migrated on open;
- a page of a case list (``find_page``) is one statement walking the index of its
  order from the cursor; its ``text`` filter reads the events of each case that
  passes the other filters (through their primary key), so it is cheap with an
  assignee or status filter and slower alone over many cases (no full-text index).

Times are stored as integer microseconds since the Unix epoch (UTC), so SQL can
compute with them.
"""

from __future__ import annotations

import functools
import json
import os
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

from closeloop.errors import (
    CaseNotFound,
    CloseLoopError,
    ConcurrentUpdate,
    InvalidInput,
    StoreError,
    TokenUsed,
)
from closeloop.model import Case, Event, Notice, ResponseRecord, Status
from closeloop.query import CaseCounts, CaseQuery, Position, ascii_lower
from closeloop.reporting import Report, ReportQuery
from closeloop.storage.base import Change, ResponseUpdate
from closeloop.storage.base_store import BaseStore
from closeloop.storage.rows import (
    CASE_COLUMNS,
    CASE_PLACEHOLDERS,
    CASE_UPDATE_COLUMNS,
    EVENT_COLUMNS,
    NOTICE_COLUMNS,
    case_filters,
    update_columns,
)
from closeloop.storage.rows import RESPONSE_COLUMNS as _RESPONSE_COLUMNS
from closeloop.storage.sql_query import (
    Dialect,
    count_statement,
    overdue_sql,
    page_statement,
    status_of,
)
from closeloop.storage.sqlite_report import report_from_sqlite
from closeloop.storage.sqlite_rows import (
    CODEC,
    INSERT_RESPONSE,
    MIGRATIONS,
    PURGE_CANDIDATES,
    UPDATE_RESPONSE,
    from_micros,
    split_statements,
    to_micros,
)
from closeloop.validate import check_seconds

__all__ = ["MIGRATIONS", "SQLiteStore", "Synchronous", "from_micros", "to_micros"]

_UPDATE_CASE = (
    f"UPDATE cases SET {', '.join(f'{column} = ?' for column in CASE_UPDATE_COLUMNS)} "
    "WHERE id = ? AND version = ?"
)


@functools.lru_cache(maxsize=256)
def _narrow_update(fields: frozenset[str]) -> tuple[str, tuple[str, ...]]:
    """The UPDATE for the columns ``fields`` names (see :func:`update_columns`), and
    those columns, in the statement's order."""
    columns = update_columns(fields)
    assignments = ", ".join(f"{column} = ?" for column in columns)
    return f"UPDATE cases SET {assignments} WHERE id = ? AND version = ?", columns

#: An erasure's case row: every column, customer_id, opened_at and opened_by too.
_REDACT_CASE = (
    f"UPDATE cases SET {', '.join(f'{column} = ?' for column in CASE_COLUMNS.split(', ')[1:])} "
    "WHERE id = ? AND version = ?"
)
#: An erasure's event, in place (parameters from :func:`_redacted_event`).
_REDACT_EVENT = (
    "UPDATE events SET kind = ?, actor = ?, at = ?, comment = ?, via = ?, data = ? "
    "WHERE case_id = ? AND seq = ?"
)
#: An erasure's notice: it replaces the stored one with its id (or is written).
_UPSERT_NOTICE = (
    f"INSERT INTO outbox ({NOTICE_COLUMNS}) VALUES ({', '.join('?' * 16)}) ON CONFLICT (id) "
    f"DO UPDATE SET {', '.join(f'{c} = excluded.{c}' for c in NOTICE_COLUMNS.split(', ')[1:])}"
)

Synchronous = Literal["OFF", "NORMAL", "FULL", "EXTRA"]

#: Where ``due_order`` puts a case without a due date: after every real one.
_NO_DUE_DATE = 2**63 - 1
#: How SQLite says the parts of a case query (see storage/sql_query.py). The due and
#: priority orders use the generated columns due_order and urgency; the updated order
#: has no index (see the migration) and is sorted; comments are lowered by a Python
#: function (SQLite's own lower() changes with an ICU build); a unary + keeps a status
#: list from choosing the index over the order's (SQLite keeps no statistics).
_DIALECT = Dialect(
    cases="cases", events="events", placeholder="?", time=to_micros, id_key="id",
    due_key="due_order", due_position="?",
    due_param=lambda due: _NO_DUE_DATE if due is None else to_micros(due),
    urgency_key="urgency",
    has_reason="EXISTS (SELECT 1 FROM json_each(c.reasons) WHERE value = ?)",
    comment_contains="instr(closeloop_ascii_lower(e.comment), ?) > 0",
    not_leading="+{}", sorted_orders=frozenset({"updated"}),
)


def _ascii_lower(text: str | None) -> str | None:
    return None if text is None else ascii_lower(text)


class SQLiteStore(BaseStore):
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
        self.timeout = check_seconds("timeout", timeout, allow_zero=True)
        self.path = Path(path)
        self.synchronous = synchronous
        self._local = threading.local()
        # (process id, owning thread, connection) for every connection opened.
        self._all: list[tuple[int, threading.Thread, sqlite3.Connection]] = []
        self._all_lock = threading.Lock()
        # Connections lent by _spare (no thread owns them), and the process they are of.
        self._spares: list[sqlite3.Connection] = []
        self._spares_pid = os.getpid()
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
        conn = self._open()
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

    def _open(self) -> sqlite3.Connection:
        """A new connection to the file, set up as every connection of this store is."""
        with _translated("opening the database"):
            conn = sqlite3.connect(
                self.path, timeout=self.timeout, isolation_level=None, check_same_thread=False
            )
            try:
                conn.execute(f"PRAGMA busy_timeout = {int(self.timeout * 1000)}")
                conn.execute(f"PRAGMA synchronous = {self.synchronous}")
                conn.execute("PRAGMA foreign_keys = ON")
                conn.create_function("closeloop_ascii_lower", 1, _ascii_lower, deterministic=True)
            except BaseException:
                conn.close()
                raise
        return conn

    @contextmanager
    def _spare(self) -> Iterator[sqlite3.Connection]:
        """Lend a connection no thread owns (a report's second one), kept for the next use.

        A connection that saw an error is closed, not kept; the ones kept are closed
        by :meth:`close`. After a fork, the parent's are left alone (never closed in
        the child) and the child opens its own.
        """
        pid = os.getpid()
        with self._all_lock:
            if self._spares_pid != pid:
                self._spares, self._spares_pid = [], pid
            conn = self._spares.pop() if self._spares else None
        if conn is None:
            conn = self._open()
        try:
            yield conn
        except BaseException:
            conn.close()
            raise
        with self._all_lock:
            self._spares.append(conn)

    def _write(self) -> _Writing:
        """``with self._write() as conn:`` one ``BEGIN IMMEDIATE`` transaction, committed
        at the end of the block and rolled back if it raises."""
        return _Writing(self._connection())

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
                for statement in split_statements(MIGRATIONS[number]):
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
            spares, self._spares = self._spares, []
        for _, _, conn in connections:
            conn.close()
        if self._spares_pid == os.getpid():
            for conn in spares:
                conn.close()
        self._local = threading.local()

    def vacuum(self) -> None:
        """Rewrite the database file without its free pages, then empty the WAL.

        Run it after :meth:`CloseLoop.erase_customer <closeloop.CloseLoop.erase_customer>`
        or :meth:`~closeloop.CloseLoop.purge` (``closeloop erase --vacuum``): pages that
        rows left behind when they were rewritten *before* the erasure may still hold
        the erased text until then (see docs/security.md, "Personal data"). It takes the
        write lock for as long as copying the file takes, and needs that much free disk.

        Raises:
            StoreError: the database is busy or the disk is full; nothing is lost.
        """
        conn = self._connection()
        with _translated("vacuuming"):
            conn.execute("VACUUM")
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()

    # -- writing --------------------------------------------------------------------

    def commit(self, change: Change) -> None:
        if change.redacts:
            self.commit_many([change])
            return
        with self._write() as conn:
            self._apply(conn, change)

    def commit_many(
        self,
        changes: Sequence[Change],
        ignored: Sequence[ResponseRecord] = (),
        updated: Sequence[ResponseUpdate] = (),
    ) -> None:
        """Write the batch in one transaction; an erasure also leaves no trace in the file.

        A batch that redacts (an erasure of personal data) runs with
        ``PRAGMA secure_delete = ON``, so SQLite overwrites with zeros every cell
        and page it frees, and is followed by a ``wal_checkpoint(TRUNCATE)``, so the
        WAL's older copies of the pages go. Free space that earlier writes left
        holding the data (before the erasure, when a row was rewritten) goes only
        with ``VACUUM``: see docs/security.md.

        A plain batch of several changes (an ingest) is first written with one
        statement per kind of row; anything irregular in it (a taken id, a case
        changed meanwhile) rolls that back, and the batch is written change by change,
        which raises the precise error.
        """
        erasing = any(change.redacts for change in changes) or any(
            update.new.customer_id != update.old.customer_id for update in updated)
        if not erasing and len(changes) > 1 and all(
            change.consume_link is None for change in changes
        ):
            try:
                with self._write() as conn:
                    _apply_batch(conn, changes)
                    self._record_responses(conn, changes, ignored, updated)
                return
            except _Irregular:
                pass  # rolled back: write it change by change, which says what went wrong
        with self._write() as conn:
            previous = _secure_delete(conn, True) if erasing else None
            try:
                for change in changes:
                    self._apply(conn, change)
                self._record_responses(conn, changes, ignored, updated)
            finally:
                if previous is not None:
                    _secure_delete(conn, previous)
        if erasing:
            with _translated("checkpointing the erasure"):
                # Busy (a reader holds an old snapshot) leaves frames for the next checkpoint.
                conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()

    @staticmethod
    def _record_responses(
        conn: sqlite3.Connection,
        changes: Sequence[Change],
        ignored: Sequence[ResponseRecord],
        updated: Sequence[ResponseUpdate],
    ) -> None:
        """The batch's ignored responses and response updates, after its changes."""
        if ignored:
            _record_ignored(conn, ignored, {r.response_id for c in changes for r in c.responses})
        for update in updated:  # one by one, to name the one that changed meanwhile
            row = CODEC.response_update_row(update.old, update.new)
            if conn.execute(UPDATE_RESPONSE, row).rowcount != 1:
                raise ConcurrentUpdate(update.old.case_id, None, None,
                                       response_id=update.old.response_id)

    def _apply(self, conn: sqlite3.Connection, change: Change) -> None:
        if change.redacts:
            self._apply_redaction(conn, change)
            return
        case = change.case
        if change.sole_active_case:  # counts_as_active: any status but Closed
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
                    f"INSERT INTO cases ({CASE_COLUMNS}) VALUES ({CASE_PLACEHOLDERS})",
                    CODEC.case_row(case),
                )
            except sqlite3.IntegrityError:
                raise ConcurrentUpdate(case.id, None, self._version(conn, case.id)) from None
        else:
            # customer_id, opened_at and opened_by never change after opening;
            # leaving them out spares SQLite the customer index on every update.
            if change.fields is None:
                statement, values = _UPDATE_CASE, CODEC.case_update_row(case)
            else:
                statement, columns = _narrow_update(change.fields)
                values = CODEC.case_update_values(case, columns)
            updated = conn.execute(
                statement, (*values, case.id, change.expected_version)
            ).rowcount
            if updated != 1:
                actual = self._version(conn, case.id)
                if actual is None:
                    raise CaseNotFound(case.id)
                raise ConcurrentUpdate(case.id, change.expected_version, actual)
        if len(change.events) == 1:  # the usual change: execute is cheaper than executemany
            conn.execute(_INSERT_EVENT, CODEC.event_row(change.events[0]))
        else:
            conn.executemany(_INSERT_EVENT, [CODEC.event_row(event) for event in change.events])
        if change.notices:  # most changes have none: spare the call
            conn.executemany(
                f"INSERT INTO outbox ({NOTICE_COLUMNS}) VALUES ({', '.join('?' * 16)})",
                [CODEC.notice_row(notice) for notice in change.notices],
            )
        if change.responses:
            for record in change.responses:  # one by one, to name the one already taken
                try:
                    conn.execute(INSERT_RESPONSE, CODEC.response_row(record))
                except sqlite3.IntegrityError:
                    raise ConcurrentUpdate(
                        case.id, change.expected_version, None, response_id=record.response_id
                    ) from None
        if change.consume_link is not None:
            try:
                conn.execute(
                    "INSERT INTO used_links (link_id, case_id) VALUES (?, ?)",
                    (change.consume_link, case.id),
                )
            except sqlite3.IntegrityError:
                raise TokenUsed() from None

    def _apply_redaction(self, conn: sqlite3.Connection, change: Change) -> None:
        """Replace a case's row, history and notices by their redacted versions (an erasure).

        The events are updated in place (inserting them again would fire the
        triggers that derive first actions and status stints, which stay as they are).
        """
        case = change.case
        updated = conn.execute(_REDACT_CASE, (*CODEC.case_row(case)[1:], case.id,
                                              change.expected_version)).rowcount
        if updated != 1:
            actual = self._version(conn, case.id)
            if actual is None:
                raise CaseNotFound(case.id)
            raise ConcurrentUpdate(case.id, change.expected_version, actual)
        kept = change.expected_version or 0
        rows = [CODEC.event_row(event) for event in change.events]
        # event_row is (kind, case_id, actor, at, seq, comment, via, data)
        before = conn.total_changes
        conn.executemany(_REDACT_EVENT, [(kind, actor, at, comment, via, data, case_id, seq)
                                         for kind, case_id, actor, at, seq, comment, via, data
                                         in rows[:kept]])
        if conn.total_changes - before != kept:
            raise StoreError(f"case {case.id!r} has fewer stored events than its version")
        conn.executemany(
            f"INSERT INTO events ({EVENT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)", rows[kept:])
        conn.executemany(_UPSERT_NOTICE, [CODEC.notice_row(notice) for notice in change.notices])

    def escalation_candidates(
        self, *, now: datetime, untouched_before: datetime | None, quiet_since: datetime,
        limit: int,
    ) -> list[Case]:
        untouched = None if untouched_before is None else to_micros(untouched_before)
        with _translated("reading"):
            rows = (
                self._connection()
                .execute(
                    f"SELECT {CASE_COLUMNS} FROM cases AS c WHERE status != 'closed' "
                    f"AND ({overdue_sql('?')} OR updated_at <= ?) AND NOT EXISTS (SELECT 1 FROM events "
                    "AS e WHERE e.case_id = c.id AND e.kind = 'escalated' AND e.at >= ?) "
                    "ORDER BY opened_at, rowid LIMIT ?",
                    (to_micros(now), untouched, to_micros(quiet_since), limit),
                )
                .fetchall()
            )
        return [CODEC.case_from_row(row) for row in rows]

    def latest_cases(self, customer_ids: Sequence[str]) -> dict[str, Case]:
        latest: dict[str, Case] = {}
        ids = list(dict.fromkeys(customer_ids))
        with _translated("reading"):
            conn = self._connection()
            for start in range(0, len(ids), 500):  # stay under SQLite's parameter limit
                chunk = ids[start : start + 500]
                rows = conn.execute(
                    f"SELECT {CASE_COLUMNS} FROM cases WHERE rowid IN (SELECT max(rowid) "
                    f"FROM cases WHERE customer_id IN ({', '.join('?' * len(chunk))}) "
                    "GROUP BY customer_id)",
                    chunk,
                ).fetchall()
                latest.update((row[1], CODEC.case_from_row(row)) for row in rows)
        return latest

    def report(self, query: ReportQuery) -> Report:
        with _translated("reporting"):
            return report_from_sqlite(self._connection(), query, self._spare)

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
                INSERT_RESPONSE.replace("INSERT", "INSERT OR IGNORE", 1),
                [CODEC.response_row(record) for record in records],
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
                found.update((row[0], CODEC.response_from_row(row)) for row in rows)
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
                .execute(f"SELECT {CASE_COLUMNS} FROM cases WHERE id = ?", (case_id,))
                .fetchone()
            )
        if row is None:
            raise CaseNotFound(case_id)
        return CODEC.case_from_row(row)

    def find(
        self,
        *,
        assignee: str | None = None,
        status: Status | None = None,
        customer_id: str | None = None,
        limit: int | None = None,
    ) -> list[Case]:
        where, params = case_filters(
            "?", assignee=assignee, status=status, customer_id=customer_id
        )
        params.append(-1 if limit is None else limit)
        with _translated("reading"):
            rows = (
                self._connection()
                .execute(
                    f"SELECT {CASE_COLUMNS} FROM cases {where} ORDER BY opened_at, rowid LIMIT ?",
                    params,
                )
                .fetchall()
            )
        return [CODEC.case_from_row(row) for row in rows]

    def find_page(
        self, query: CaseQuery, *, now: datetime, after: Position | None, limit: int
    ) -> list[Case]:
        """A page in one indexed statement; ``text`` scans each candidate case's events."""
        statement, params = page_statement(query, now=now, after=after, limit=limit,
                                           dialect=_DIALECT)
        with _translated("reading"):
            rows = self._connection().execute(statement, params).fetchall()
        return [CODEC.case_from_row(row) for row in rows]

    def count_cases(self, query: CaseQuery, *, now: datetime, by_assignee: bool) -> CaseCounts:
        statement, params = count_statement(query, now=now, by_assignee=by_assignee,
                                            dialect=_DIALECT)
        with _translated("counting"):
            rows = self._connection().execute(statement, params).fetchall()
        return CaseCounts.from_groups(status_of(rows), by_assignee=by_assignee)

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
        return [CODEC.event_from_row(row) for row in rows]

    def query_cases(
        self, *, case_ids: Sequence[str] | None = None, customer_ids: Sequence[str] | None = None
    ) -> list[Case]:
        clauses, params = [], []
        for column, values in (("id", case_ids), ("customer_id", customer_ids)):
            if values is not None:
                clauses.append(f"{column} IN (SELECT value FROM json_each(?))")
                params.append(json.dumps(list(values)))
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        with _translated("reading"):
            rows = self._connection().execute(
                f"SELECT {CASE_COLUMNS} FROM cases {where} ORDER BY rowid", params
            ).fetchall()
        return [CODEC.case_from_row(row) for row in rows]

    def find_responses(
        self,
        *,
        response_ids: Sequence[str] | None = None,
        customer_ids: Sequence[str] | None = None,
    ) -> list[ResponseRecord]:
        clauses, params = [], []
        for column, values in (("response_id", response_ids), ("customer_id", customer_ids)):
            if values is not None:
                clauses.append(f"{column} IN (SELECT value FROM json_each(?))")
                params.append(json.dumps(list(values)))
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        with _translated("reading"):
            rows = self._connection().execute(
                f"SELECT {_RESPONSE_COLUMNS} FROM responses {where} ORDER BY rowid", params
            ).fetchall()
        return [CODEC.response_from_row(row) for row in rows]

    # -- outbox ---------------------------------------------------------------------

    def swap_notices(self, swaps: Sequence[tuple[Notice, Notice]]) -> list[str]:
        swapped = []
        with self._write() as conn:
            for old, new in swaps:
                row = conn.execute(
                    f"SELECT {NOTICE_COLUMNS} FROM outbox WHERE id = ?", (old.id,)
                ).fetchone()
                if row is None or CODEC.notice_from_row(row) != old:
                    continue
                conn.execute(
                    "UPDATE outbox SET next_attempt_at = ?, attempts = ?, last_error = ?, "
                    "sent_at = ?, failed_at = ? WHERE id = ?",
                    (to_micros(new.next_attempt_at), new.attempts, new.last_error,
                     None if new.sent_at is None else to_micros(new.sent_at),
                     None if new.failed_at is None else to_micros(new.failed_at), old.id),
                )
                swapped.append(old.id)
        return swapped

    def claim_notices(
        self, *, now: datetime, lease: timedelta, limit: int = 100
    ) -> list[Notice]:
        with self._write() as conn:
            rows = conn.execute(
                f"SELECT {NOTICE_COLUMNS} FROM outbox WHERE sent_at IS NULL "
                "AND failed_at IS NULL AND next_attempt_at <= ? ORDER BY created_at, id LIMIT ?",
                (to_micros(now), limit),
            ).fetchall()
            until = to_micros(now + lease)
            conn.executemany(
                "UPDATE outbox SET next_attempt_at = ? WHERE id = ?",
                [(until, row[0]) for row in rows],
            )
        return [CODEC.notice_from_row((*row[:8], until, *row[9:])) for row in rows]

    def notices_sent(self, notice_ids: Sequence[str], *, at: datetime) -> None:
        with self._write() as conn:
            conn.executemany(
                "UPDATE outbox SET sent_at = ? WHERE id = ? AND sent_at IS NULL",
                [(to_micros(at), notice_id) for notice_id in notice_ids],
            )

    def notice_failed(self, notice_id: str, *, error: str, retry_at: datetime) -> None:
        with self._write() as conn:
            conn.execute(
                "UPDATE outbox SET attempts = attempts + 1, last_error = ?, next_attempt_at = ? "
                "WHERE id = ?",
                (error, to_micros(retry_at), notice_id),
            )

    def notice_abandoned(self, notice_id: str, *, error: str, at: datetime) -> None:
        with self._write() as conn:
            conn.execute(
                "UPDATE outbox SET attempts = attempts + 1, last_error = ?, failed_at = ? "
                "WHERE id = ? AND sent_at IS NULL",
                (error, to_micros(at), notice_id),
            )

    def pending_notices(self) -> list[Notice]:
        return self.find_notices(pending_only=True)

    def find_notices(
        self, *, case_ids: Sequence[str] | None = None, pending_only: bool = False
    ) -> list[Notice]:
        clauses, params = [], []
        if case_ids is not None:
            clauses.append("case_id IN (SELECT value FROM json_each(?))")
            params.append(json.dumps(list(case_ids)))
        if pending_only:
            clauses.append("sent_at IS NULL AND failed_at IS NULL")
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        with _translated("reading"):
            rows = self._connection().execute(
                f"SELECT {NOTICE_COLUMNS} FROM outbox {where} ORDER BY created_at, id", params
            ).fetchall()
        return [CODEC.notice_from_row(row) for row in rows]

    def customers_to_purge(self, *, closed_before: datetime) -> list[str]:
        """The retention rule in one statement (see :data:`PURGE_CANDIDATES`)."""
        with _translated("reading"):
            rows = self._connection().execute(
                PURGE_CANDIDATES, {"before": to_micros(closed_before)}).fetchall()
        return [row[0] for row in rows]


# -- rows -------------------------------------------------------------------------------


class _Irregular(Exception):
    """The batched write met something to report precisely (a taken id, a lost race)."""


_INSERT_CASE = f"INSERT INTO cases ({CASE_COLUMNS}) VALUES ({CASE_PLACEHOLDERS})"
_INSERT_EVENT = f"INSERT INTO events ({EVENT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
_INSERT_NOTICE = f"INSERT INTO outbox ({NOTICE_COLUMNS}) VALUES ({', '.join('?' * 16)})"


def _apply_batch(conn: sqlite3.Connection, changes: Sequence[Change]) -> None:
    """Write a batch with one statement per kind of row (an ingest of 500 responses).

    The rules of :meth:`SQLiteStore._apply` hold for the whole batch, checked in bulk:
    the sole-open-case rule against the stored cases and the batch's own, in order;
    new cases, events, notices and response records inserted with ``executemany``
    (any id already taken is an IntegrityError); updates in the batch's order, runs of
    the same statement together, every one of them required to hit its row. Anything
    irregular raises :class:`_Irregular`, and the caller rolls back and writes the
    batch change by change, which raises the precise error.
    """
    _check_sole_active(conn, changes)
    new = [change.case for change in changes if change.expected_version is None]
    try:
        if new:
            conn.executemany(_INSERT_CASE, [CODEC.case_row(case) for case in new])
        run: list[tuple[Any, ...]] = []
        statement = ""
        for change in changes:
            if change.expected_version is None:
                continue
            case = change.case
            if change.fields is None:
                this, values = _UPDATE_CASE, CODEC.case_update_row(case)
            else:
                this, columns = _narrow_update(change.fields)
                values = CODEC.case_update_values(case, columns)
            if this != statement and run:
                _update_all(conn, statement, run)
                run = []
            statement = this
            run.append((*values, case.id, change.expected_version))
        if run:
            _update_all(conn, statement, run)
        conn.executemany(_INSERT_EVENT, [CODEC.event_row(event) for change in changes
                                         for event in change.events])
        notices = [CODEC.notice_row(notice) for change in changes for notice in change.notices]
        if notices:
            conn.executemany(_INSERT_NOTICE, notices)
        records = [CODEC.response_row(record) for change in changes for record in change.responses]
        if records:
            conn.executemany(INSERT_RESPONSE, records)
    except sqlite3.IntegrityError:
        raise _Irregular from None


def _update_all(conn: sqlite3.Connection, statement: str, rows: list[tuple[Any, ...]]) -> None:
    if conn.executemany(statement, rows).rowcount != len(rows):
        raise _Irregular  # a case changed (or vanished) since it was read


def _check_sole_active(conn: sqlite3.Connection, changes: Sequence[Change]) -> None:
    """The sole-open-case rule for every new case of the batch that asks for it, at once."""
    customers = {c.case.customer_id for c in changes if c.sole_active_case}
    if not customers:
        return
    active: dict[str, set[str]] = {}  # customer -> their cases not Closed, as the batch goes
    wanted = sorted(customers)
    for start in range(0, len(wanted), 500):  # stay under SQLite's parameter limit
        chunk = wanted[start : start + 500]
        for customer, case_id in conn.execute(
            "SELECT customer_id, id FROM cases WHERE status != 'closed' AND customer_id IN "
            f"({', '.join('?' * len(chunk))})", chunk,
        ):
            active.setdefault(customer, set()).add(case_id)
    for change in changes:
        case = change.case
        held = active.setdefault(case.customer_id, set())
        if change.sole_active_case and held - {case.id}:
            raise _Irregular  # the slow path names the case that holds the customer
        if case.status is Status.CLOSED:
            held.discard(case.id)
        else:
            held.add(case.id)


def _record_ignored(
    conn: sqlite3.Connection, records: Sequence[ResponseRecord], batch_ids: set[str]
) -> None:
    """Insert response records; ConcurrentUpdate (rolling the batch back) if one is known.

    ``batch_ids`` are the response ids the batch's changes recorded just before.
    """
    (top,) = conn.execute("SELECT coalesce(max(rowid), 0) FROM responses").fetchone()
    before = conn.total_changes
    conn.executemany(
        INSERT_RESPONSE.replace("INSERT", "INSERT OR IGNORE", 1),
        [CODEC.response_row(record) for record in records],
    )
    if conn.total_changes - before == len(records):
        return
    # Rare: name the first id that was recorded before this batch, or given twice.
    seen = set(batch_ids)
    for record in records:
        known = conn.execute(
            "SELECT 1 FROM responses WHERE response_id = ? AND rowid <= ?",
            (record.response_id, top),
        ).fetchone()
        if known is not None or record.response_id in seen:
            raise ConcurrentUpdate(None, None, None, response_id=record.response_id)
        seen.add(record.response_id)
    raise StoreError("fewer response records were written than given")  # pragma: no cover


def _secure_delete(conn: sqlite3.Connection, on: bool) -> bool:
    """Set ``PRAGMA secure_delete``; return what it was."""
    (previous,) = conn.execute("PRAGMA secure_delete").fetchone()
    conn.execute(f"PRAGMA secure_delete = {'ON' if on else 'OFF'}")
    return bool(previous)


class _Writing:
    """The transaction of :meth:`SQLiteStore._write` (a class: it runs on every write)."""

    __slots__ = ("conn",)

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def __enter__(self) -> sqlite3.Connection:
        with _translated("writing"):
            self.conn.execute("BEGIN IMMEDIATE")
        return self.conn

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 traceback: TracebackType | None) -> None:
        conn = self.conn
        with _translated("writing"):
            if exc is None:
                try:
                    conn.execute("COMMIT")
                except BaseException:
                    if conn.in_transaction:
                        conn.execute("ROLLBACK")
                    raise
                return
            # Some errors (disk full, I/O, RAISE(ROLLBACK)) have already rolled the
            # transaction back; a failed COMMIT has not. Never mask the real error.
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            if not isinstance(exc, Exception):
                return
            _translated("writing").__exit__(kind, exc, traceback)  # raises StoreError for a driver error


class _translated:
    """Turn sqlite3's exceptions into StoreError; closeloop's own pass through.

    A class, not a ``@contextmanager`` generator: it wraps every statement, and a
    generator-based context manager costs several microseconds more per use.
    """

    __slots__ = ("doing",)

    def __init__(self, doing: str) -> None:
        self.doing = doing

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 traceback: TracebackType | None) -> None:
        if exc is None or isinstance(exc, CloseLoopError):
            return
        if isinstance(exc, sqlite3.Error):
            raise StoreError(f"SQLite failed while {self.doing}: {exc}") from exc
        if isinstance(exc, OverflowError | UnicodeError | ValueError):
            # A value the driver or the row codec could not convert (a datetime out of
            # range, undecodable text, malformed JSON in a damaged row).
            raise StoreError(f"SQLite could not convert a value while {self.doing}: "
                             f"{type(exc).__name__}: {exc}") from exc
