"""The store for many processes on many machines: PostgreSQL through psycopg 3.

Install it with ``pip install "closeloop[postgres]"`` (psycopg and psycopg_pool).
Importing this module without them works; building a :class:`PostgresStore`
then raises :class:`~closeloop.errors.StoreError` saying what to install.

How it keeps the :class:`~closeloop.storage.Store` contract:

- every write is one transaction at READ COMMITTED; a case row is updated only
  ``WHERE id = … AND version = …``, so a stale write changes no row and raises
  :class:`~closeloop.errors.ConcurrentUpdate`;
- a transaction that writes a new case, or reopens a Closed one, first takes a
  transaction-scoped advisory lock on the customer id. The
  ``sole_active_case`` check runs under that lock, so two processes opening a
  case for the same customer at once are serialised and the second sees the
  first's case;
- a batch takes its customer locks, then its case rows, up front and in a fixed
  order, so two batches never deadlock over cases; if the server still aborts
  a transaction as a deadlock (say, two batches recording the same responses in
  different orders) or a serialisation failure, nothing was written and it is
  raised as ConcurrentUpdate;
- response ids, used links and notice ids are primary keys, so the database
  itself refuses a second ingest of a response or a second use of a link;
- outbox claims use ``FOR UPDATE SKIP LOCKED``, so several deliverers share the
  notices without waiting for each other and never get the same one;
- the schema is created and migrated on construction (see
  :mod:`closeloop.storage.postgres_schema`);
- a page of a case list (``find_page``) is one statement walking the index of its
  order from the cursor; its ``text`` filter reads the events of each case that
  passes the other filters (an index lookup per case), so it is cheap next to an
  assignee or status filter and slower alone over many cases (no full-text index).
"""

from __future__ import annotations

import os
import threading
import weakref
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from time import monotonic
from typing import TYPE_CHECKING, Any, TypeVar

from closeloop.errors import (
    CaseNotFound,
    CloseLoopError,
    ConcurrentUpdate,
    InvalidInput,
    StoreError,
    TokenUsed,
)
from closeloop.model import Case, Event, Notice, ResponseRecord, Status, StatusChanged
from closeloop.query import CaseCounts, CaseQuery, Position
from closeloop.reporting import Report, ReportQuery
from closeloop.storage.base import Change, ResponseUpdate, counts_as_active
from closeloop.storage.base_store import BaseStore
from closeloop.storage.postgres_report import report_from_postgres
from closeloop.storage.postgres_schema import check_schema_name, migrate, quoted, schema_version
from closeloop.storage.rows import (
    CASE_COLUMNS,
    CASE_PLACEHOLDERS,
    CASE_UPDATE_COLUMNS,
    EVENT_COLUMNS,
    NOTICE_COLUMNS,
    RESPONSE_COLUMNS,
    RowCodec,
    case_filters,
    update_columns,
)
from closeloop.storage.sql_query import (
    URGENCY_SQL,
    Dialect,
    count_statement,
    overdue_sql,
    page_statement,
    status_of,
)
from closeloop.validate import check_positive_int, check_seconds

try:
    import psycopg
    from psycopg.types.json import Jsonb
    from psycopg_pool import ConnectionPool
except ImportError as exc:  # the extra is not installed: PostgresStore() says so
    _DRIVER_MISSING: ImportError | None = exc
else:
    _DRIVER_MISSING = None

if TYPE_CHECKING:
    from psycopg import Connection

__all__ = ["INSTALL_HINT", "PostgresStore"]

INSTALL_HINT = 'PostgresStore needs psycopg 3 and psycopg_pool: pip install "closeloop[postgres]"'

_T = TypeVar("_T")

#: Seconds after its last use during which a pooled connection is trusted without a check.
FRESH_FOR = 1.0


class _Freshness:
    """The pool's ``check`` and ``reset``: check a connection only if it idled a while."""

    def __init__(self) -> None:
        self._returned: weakref.WeakKeyDictionary[Any, float] = weakref.WeakKeyDictionary()

    def returned(self, conn: Connection[Any]) -> None:
        self._returned[conn] = monotonic()

    def check(self, conn: Connection[Any]) -> None:
        at = self._returned.get(conn)
        if at is None or monotonic() - at >= FRESH_FOR:
            ConnectionPool.check_connection(conn)


#: Which cases are due for escalation (see Store.escalation_candidates).
_DUE = (
    f"c.status <> 'closed' AND ({overdue_sql('%(now)s')} OR c.updated_at <= %(untouched_before)s) "
    "AND NOT EXISTS (SELECT 1 FROM {s}.events AS e WHERE e.case_id = c.id "
    "AND e.kind = 'escalated' AND e.at >= %(quiet_since)s)"
)

#: Statement templates; ``{s}`` is the quoted schema name.
_SQL = {
    "lock_customers": (
        "SELECT pg_advisory_xact_lock(hashtext(%s), key) FROM (SELECT DISTINCT hashtext(c) AS key "
        "FROM unnest(%s::text[]) AS c) AS keys ORDER BY key"
    ),
    "lock_cases": "SELECT id, version FROM {s}.cases WHERE id = ANY(%s) ORDER BY id "
                  "FOR NO KEY UPDATE",
    "active_cases": "SELECT customer_id, id, version FROM {s}.cases WHERE customer_id = ANY(%s) "
                    "AND status <> 'closed' ORDER BY created_seq",
    "insert_case": f"INSERT INTO {{s}}.cases ({CASE_COLUMNS}) VALUES "
                   f"({CASE_PLACEHOLDERS.replace('?', '%s')}) "
                   "ON CONFLICT (id) DO NOTHING RETURNING id",
    # customer_id, opened_at and opened_by never change after opening (see Change).
    "update_case": "UPDATE {s}.cases SET "
                   f"{', '.join(f'{column} = %s' for column in CASE_UPDATE_COLUMNS)} "
                   "WHERE id = %s AND version = %s RETURNING id",
    "version": "SELECT version FROM {s}.cases WHERE id = %s",
    "insert_event": f"INSERT INTO {{s}}.events ({EVENT_COLUMNS}) "
                    "VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
    "insert_notice": f"INSERT INTO {{s}}.outbox ({NOTICE_COLUMNS}) VALUES "
                     f"({', '.join(['%s'] * 16)})",
    "insert_response": f"INSERT INTO {{s}}.responses ({RESPONSE_COLUMNS}) VALUES "
                       "(%s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT (response_id) DO NOTHING "
                       "RETURNING response_id",
    "update_response": "UPDATE {s}.responses SET outcome = %s, case_id = %s, score = %s, "
                       "content = %s, customer_id = %s WHERE response_id = %s "
                       "AND content IS NOT DISTINCT FROM %s AND outcome = %s "
                       "AND case_id IS NOT DISTINCT FROM %s AND customer_id = %s "
                       "RETURNING response_id",
    # An erasure (Change.redacts): the whole row, the history in place, notices replaced.
    "redact_case": "UPDATE {s}.cases SET "
                   f"{', '.join(f'{column} = %s' for column in CASE_COLUMNS.split(', ')[1:])} "
                   "WHERE id = %s AND version = %s RETURNING id",
    "redact_event": "UPDATE {s}.events SET kind = %s, actor = %s, at = %s, comment = %s, "
                    "via = %s, data = %s WHERE case_id = %s AND seq = %s",
    "upsert_notice": f"INSERT INTO {{s}}.outbox ({NOTICE_COLUMNS}) VALUES "
                     f"({', '.join(['%s'] * 16)}) ON CONFLICT (id) DO UPDATE SET "
                     + ", ".join(f"{c} = EXCLUDED.{c}" for c in NOTICE_COLUMNS.split(", ")[1:]),
    "find_notices": f"SELECT {NOTICE_COLUMNS} FROM {{s}}.outbox "
                    "WHERE (%(cases)s::text[] IS NULL OR case_id = ANY(%(cases)s)) "
                    "AND (NOT %(pending)s OR (sent_at IS NULL AND failed_at IS NULL)) "
                    'ORDER BY created_at, id COLLATE "C"',
    # The retention rule (closeloop.retention): see sqlite_rows.PURGE_CANDIDATES.
    "purge_candidates": """
        WITH case_facts AS (
            SELECT c.customer_id,
                bool_and(c.closed_at IS NOT NULL AND c.closed_at < %(before)s) AS aged,
                count(*) FILTER (WHERE e.kind IS DISTINCT FROM 'erased') AS open_to_erase
            FROM {s}.cases AS c LEFT JOIN {s}.events AS e ON e.case_id = c.id AND e.seq = c.version
            GROUP BY c.customer_id
        ), response_facts AS (
            SELECT customer_id, max(received_at) < %(before)s AS aged,
                count(content) AS open_to_erase
            FROM {s}.responses GROUP BY customer_id
        )
        SELECT customer_id FROM case_facts FULL JOIN response_facts USING (customer_id)
        WHERE coalesce(case_facts.aged, true) AND coalesce(response_facts.aged, true)
            AND (left(customer_id, 7) <> 'erased-'
                 OR coalesce(case_facts.open_to_erase, 0)
                    + coalesce(response_facts.open_to_erase, 0) > 0)
        ORDER BY customer_id COLLATE "C"
    """,
    "use_link": "INSERT INTO {s}.used_links (link_id, case_id) VALUES (%s, %s) "
                "ON CONFLICT (link_id) DO NOTHING RETURNING link_id",
    "responses": f"SELECT {RESPONSE_COLUMNS} FROM {{s}}.responses WHERE response_id = ANY(%s)",
    "latest_cases": f"SELECT DISTINCT ON (customer_id) {CASE_COLUMNS} FROM {{s}}.cases "
                    "WHERE customer_id = ANY(%s) ORDER BY customer_id, created_seq DESC",
    "lock_due_cases": (
        f"SELECT c.id FROM {{s}}.cases AS c WHERE {_DUE} "
        "ORDER BY opened_at, created_seq LIMIT %(limit)s FOR NO KEY UPDATE OF c SKIP LOCKED"
    ),
    "due_cases": (
        f"SELECT {CASE_COLUMNS} FROM {{s}}.cases AS c WHERE c.id = ANY(%(ids)s) AND {_DUE} "
        "ORDER BY opened_at, created_seq"
    ),
    "link_used": "SELECT 1 FROM {s}.used_links WHERE link_id = %s",
    "rotate": "INSERT INTO {s}.rotations AS r (key, position) VALUES (%s, 1) ON CONFLICT (key) "
              "DO UPDATE SET position = r.position + 1 RETURNING position",
    "get": f"SELECT {CASE_COLUMNS} FROM {{s}}.cases WHERE id = %s",
    "history": "SELECT e.kind, e.case_id, e.actor, e.at, e.seq, e.comment, e.via, e.data "
               "FROM {s}.cases AS c LEFT JOIN {s}.events AS e ON e.case_id = c.id "
               "WHERE c.id = %s ORDER BY e.seq",
    "claim_notices": (
        f"UPDATE {{s}}.outbox SET next_attempt_at = %s WHERE id IN (SELECT id FROM {{s}}.outbox "
        "WHERE sent_at IS NULL AND failed_at IS NULL AND next_attempt_at <= %s "
        'ORDER BY created_at, id COLLATE "C" LIMIT %s FOR UPDATE SKIP LOCKED) '
        f"RETURNING {NOTICE_COLUMNS}"
    ),
    "notice_sent": "UPDATE {s}.outbox SET sent_at = %s WHERE id = %s AND sent_at IS NULL",
    "notice_failed": "UPDATE {s}.outbox SET attempts = attempts + 1, last_error = %s, "
                     "next_attempt_at = %s WHERE id = %s",
    "notice_abandoned": "UPDATE {s}.outbox SET attempts = attempts + 1, last_error = %s, "
                        "failed_at = %s WHERE id = %s AND sent_at IS NULL",
    "pending_notices": f"SELECT {NOTICE_COLUMNS} FROM {{s}}.outbox WHERE sent_at IS NULL "
                       "AND failed_at IS NULL "
                       'ORDER BY created_at, id COLLATE "C"',
}


def _dialect(schema: str) -> Dialect:
    """How PostgreSQL says the parts of a case query (see storage/sql_query.py).

    Ids sort in code point order (``COLLATE "C"``) whatever the database's locale;
    comments are lowered with ``translate`` for ASCII letters only, as everywhere.
    """
    return Dialect(
        cases=f"{schema}.cases", events=f"{schema}.events", placeholder="%s", time=_same,
        id_key='id COLLATE "C"',
        due_key="coalesce(due_at, 'infinity'::timestamptz)",
        due_position="coalesce(%s::timestamptz, 'infinity'::timestamptz)",
        due_param=lambda due: due,
        urgency_key=URGENCY_SQL,
        has_reason="%s = ANY(c.reasons)",
        comment_contains="strpos(translate(e.comment, 'ABCDEFGHIJKLMNOPQRSTUVWXYZ', "
                         "'abcdefghijklmnopqrstuvwxyz'), %s) > 0",
    )


def _require_driver() -> None:
    if _DRIVER_MISSING is not None:
        raise StoreError(INSTALL_HINT) from _DRIVER_MISSING


class PostgresStore(BaseStore):
    """Keeps cases in PostgreSQL, for apps that run many processes on many machines.

    Args:
        dsn_or_pool: a libpq connection string (``"postgresql://app@db/crm"``), for
            which the store opens and owns a pool; or a
            ``psycopg_pool.ConnectionPool`` you own (the store borrows it and never
            closes it).
        schema: the PostgreSQL schema for closeloop's tables, created and
            migrated on construction.
        pool_size: most connections the store's own pool opens (DSN only).
        timeout: seconds to wait for a free pool connection, or for the server
            at start-up, before raising StoreError.

    Example::

        store = PostgresStore("postgresql://app@db.internal/crm", pool_size=8)
        loop = CloseLoop(store=store)

    Raises:
        StoreError: psycopg is not installed, the server cannot be reached, or the
            schema belongs to a newer closeloop or to something else.
        InvalidInput: an argument is of the wrong kind.
    """

    def __init__(
        self,
        dsn_or_pool: str | ConnectionPool[Any],
        *,
        schema: str = "closeloop",
        pool_size: int = 10,
        timeout: float = 30.0,
    ) -> None:
        _require_driver()
        self.schema = check_schema_name(schema)
        self.pool_size = check_positive_int("pool_size", pool_size)
        self.timeout = check_seconds("timeout", timeout)
        self._sql = {name: sql.format(s=quoted(schema)) for name, sql in _SQL.items()}
        self._dialect = _dialect(quoted(schema))
        #: The one-statement update of _commit_update, by (Change.fields, number of events).
        self._update_statements: dict[tuple[frozenset[str] | None, int],
                                      tuple[str, tuple[str, ...]]] = {}
        self._lock = threading.Lock()
        self._freshness = _Freshness()
        self._inherited: list[ConnectionPool[Any]] = []
        self._pid = os.getpid()
        if isinstance(dsn_or_pool, ConnectionPool):
            self._dsn: str | None = None
            self._pool: ConnectionPool[Any] = dsn_or_pool
            with self._translated("creating the schema"), self._connection() as conn:
                migrate(conn, schema)
        elif isinstance(dsn_or_pool, str):
            self._dsn = dsn_or_pool
            # Migrate on a connection of its own: a wrong DSN fails at once with the
            # server's reason, instead of after the pool has retried for `timeout`.
            with self._translated("connecting to create the schema"), psycopg.connect(
                dsn_or_pool, autocommit=True, connect_timeout=max(1, round(self.timeout))
            ) as conn:
                migrate(conn, schema)
            self._pool = self._new_pool()
        else:
            raise InvalidInput(
                "dsn_or_pool", dsn_or_pool,
                "must be a connection string or a psycopg_pool.ConnectionPool",
            )

    # -- connections ----------------------------------------------------------------

    def _new_pool(self) -> ConnectionPool[Any]:
        assert self._dsn is not None
        pool: ConnectionPool[Any] = ConnectionPool(
            self._dsn,
            min_size=1,
            max_size=self.pool_size,
            timeout=self.timeout,
            kwargs={"autocommit": True},
            # A connection idle for a while is checked (one empty round trip) before it is
            # handed out, and replaced if the server dropped it; one back from work a
            # moment ago is not: a change then costs one round trip, not two. Should that
            # one be dead after all, the statement is retried once (see _live).
            check=self._freshness.check,
            reset=self._freshness.returned,
            name=f"closeloop-{self.schema}",
            open=True,
        )
        # Wait for the first connection here: otherwise the first caller waits for it,
        # and the pool, seeing a waiting caller, opens a second connection in the
        # background at some later moment (with a draw from the `random` module, which
        # property-based tests running alongside must not see).
        with self._translated("opening the connection pool"):
            pool.wait(self.timeout)
        return pool

    def _live(self, doing: str, work: Callable[[Connection[Any]], _T]) -> _T:
        """``work`` on a pooled connection; again on another if that one proved dead.

        A connection the server dropped (a restart, an idle timeout) fails at its first
        statement, before the server could run it: the statement did not happen, and
        ``work`` runs once more on a fresh connection. Only ``work`` that is safe to
        run twice is given here (reads, and :meth:`_commit_update`, which checks).
        """
        with self._translated(doing):
            used: list[Connection[Any]] = []
            try:
                with self._connection() as conn:
                    used.append(conn)
                    return work(conn)
            except psycopg.OperationalError:
                if not used or not used[0].broken:
                    raise
            with self._connection() as conn:
                return work(conn)

    def _pool_here(self) -> ConnectionPool[Any]:
        if self._pid == os.getpid() or self._dsn is None:
            return self._pool
        with self._lock:
            if self._pid != os.getpid():
                # A forked child must not talk over its parent's sockets. The old pool
                # is kept referenced, never closed: closing would end the parent's
                # sessions.
                self._inherited.append(self._pool)
                self._pool = self._new_pool()
                self._pid = os.getpid()
            return self._pool

    @contextmanager
    def _connection(self) -> Iterator[Connection[Any]]:
        with self._pool_here().connection() as conn:
            yield conn

    @contextmanager
    def _translated(self, doing: str) -> Iterator[None]:
        """Turn psycopg's exceptions into StoreError; closeloop's own pass through."""
        try:
            yield
        except CloseLoopError:
            raise
        except psycopg.Error as exc:
            raise StoreError(f"PostgreSQL failed while {doing}: {type(exc).__name__}: {exc}") from exc
        except (OverflowError, UnicodeError, ValueError) as exc:
            # A value psycopg or the row codec could not convert.
            raise StoreError(f"PostgreSQL could not convert a value while {doing}: "
                             f"{type(exc).__name__}: {exc}") from exc

    @contextmanager
    def _transaction(self, doing: str) -> Iterator[Connection[Any]]:
        """One transaction on a pooled connection; psycopg errors come out translated.

        A connection lost before the COMMIT leaves nothing written: the server
        rolls back a transaction whose client went away. A connection lost while
        the COMMIT itself is under way is the one case in which the outcome is
        unknown, and the error says so.
        """
        committing = False
        try:
            with self._connection() as conn, conn.transaction():
                yield conn
                committing = True
        except CloseLoopError:
            raise
        except psycopg.OperationalError as exc:
            if _rolled_back(exc):
                raise StoreError(
                    f"PostgreSQL rolled the transaction back while {doing} ({exc}); nothing "
                    "was written"
                ) from exc
            if committing:
                raise StoreError(
                    f"PostgreSQL connection failed while committing ({type(exc).__name__}: "
                    f"{exc}); the change may or may not have been written: read it back "
                    "before retrying"
                ) from exc
            raise StoreError(
                f"PostgreSQL failed while {doing} ({type(exc).__name__}: {exc}); the "
                "transaction was rolled back, nothing was written"
            ) from exc
        except psycopg.Error as exc:
            raise StoreError(
                f"PostgreSQL failed while {doing} ({type(exc).__name__}: {exc}); nothing was written"
            ) from exc
        except (OverflowError, UnicodeError, ValueError) as exc:
            raise StoreError(
                f"PostgreSQL could not convert a value while {doing} ({type(exc).__name__}: "
                f"{exc}); nothing was written"
            ) from exc

    @property
    def schema_version(self) -> int:
        """The version of closeloop's schema in the database."""
        with self._translated("reading"), self._connection() as conn:
            return schema_version(conn, self.schema)

    def close(self) -> None:
        """Close the store's own pool; a pool passed in is left open for its owner."""
        if self._dsn is not None:
            self._pool.close()

    # -- writing --------------------------------------------------------------------

    def commit(self, change: Change) -> None:
        if _is_plain_update(change):
            self._commit_update(change)
            return
        self.commit_many([change])

    def _commit_update(self, change: Change) -> None:
        """An existing case and its events in one statement: one round trip, atomic by itself.

        The common change (a status change, a comment) needs none of the batch
        machinery: no customer lock, no other row. A data-modifying CTE updates the
        case guarded by its version and inserts the events only if the update
        matched, so a lost race writes nothing.
        """
        case = change.case
        key = (change.fields, len(change.events))
        known = self._update_statements.get(key)
        if known is None:
            columns = update_columns(change.fields)
            update_case = (f"UPDATE {quoted(self.schema)}.cases SET "
                           f"{', '.join(f'{column} = %s' for column in columns)} "
                           "WHERE id = %s AND version = %s RETURNING id")
            known = self._update_statements[key] = (
                _update_statement(update_case, quoted(self.schema), len(change.events)), columns)
        statement, columns = known
        params: list[Any] = [*_CODEC.case_update_values(case, columns), case.id,
                             change.expected_version]
        for event in change.events:
            params.extend(_CODEC.event_row(event))
        attempts: list[None] = []

        def update(conn: Connection[Any]) -> tuple[bool, int | None]:
            attempts.append(None)
            row = conn.execute(statement, params).fetchone()
            if row is not None and row[0] == 1:
                return True, None
            return False, self._version(conn, case.id)

        written, actual = self._live("writing", update)
        if written:
            return
        if len(attempts) == 2 and actual == case.version and self.get(case.id) == case:
            return  # the first attempt's connection died after the server committed it
        if actual is None:
            raise CaseNotFound(case.id)
        raise ConcurrentUpdate(case.id, change.expected_version, actual)

    def commit_many(
        self,
        changes: Sequence[Change],
        ignored: Sequence[ResponseRecord] = (),
        updated: Sequence[ResponseUpdate] = (),
    ) -> None:
        if not changes and not ignored and not updated:
            return
        try:
            with self._transaction("writing") as conn:
                if changes:
                    self._apply(conn, changes)
                if ignored:
                    recorded = _returned(conn, self._sql["insert_response"],
                                         [_CODEC.response_row(record) for record in ignored])
                    if len(recorded) != len(ignored):
                        seen: set[str] = set()
                        for record in ignored:  # the first one known before, or given twice
                            if record.response_id not in recorded or record.response_id in seen:
                                raise ConcurrentUpdate(None, None, None,
                                                       response_id=record.response_id)
                            seen.add(record.response_id)
                for update in updated:  # one by one, to name the one that changed meanwhile
                    row = conn.execute(self._sql["update_response"],
                                       _CODEC.response_update_row(update.old, update.new)).fetchone()
                    if row is None:
                        raise ConcurrentUpdate(update.old.case_id, None, None,
                                               response_id=update.old.response_id)
        except StoreError as exc:
            if isinstance(exc.__cause__, psycopg.Error) and _rolled_back(exc.__cause__):
                # Deadlock or serialisation failure: the server rolled everything back.
                if changes:
                    first = changes[0]
                    raise ConcurrentUpdate(first.case.id, first.expected_version, None) from exc
                record = ignored[0] if ignored else updated[0].old
                raise ConcurrentUpdate(record.case_id, None, None,
                                       response_id=record.response_id) from exc
            raise

    def _apply(self, conn: Connection[Any], changes: Sequence[Change]) -> None:
        """Check and write a batch: locks first, then checks in order, then the writes."""
        customers = sorted({
            change.case.customer_id for change in changes
            if change.expected_version is None or _reopens(change)
        })
        if customers:
            conn.execute(self._sql["lock_customers"], (self.schema, customers))
        ids = list(dict.fromkeys(change.case.id for change in changes))
        stored: dict[str, int] | None = None
        if len(ids) > 1:
            # Lock every row the batch touches in one order, so batches never deadlock.
            rows = conn.execute(self._sql["lock_cases"], (ids,)).fetchall()
            stored = {row[0]: row[1] for row in rows}
        flagged = sorted({c.case.customer_id for c in changes if c.sole_active_case})
        active: dict[str, list[tuple[str, int]]] = {}
        if flagged:
            for customer, case_id, version in conn.execute(
                self._sql["active_cases"], (flagged,)
            ).fetchall():
                active.setdefault(customer, []).append((case_id, version))
        pending: dict[str, Case] = {}
        first_expected: dict[str, int | None] = {}
        for change in changes:
            self._check(change, pending, first_expected, stored, active)
            pending[change.case.id] = change.case
        redacted = {change.case.id for change in changes if change.redacts}
        self._write_cases(conn, {i: c for i, c in pending.items() if i not in redacted},
                          first_expected)
        self._write_cases(conn, {i: c for i, c in pending.items() if i in redacted},
                          first_expected, statement=self._sql["redact_case"])
        self._write_rest(conn, [change for change in changes if not change.redacts])
        for change in changes:
            if change.redacts:
                self._write_redaction(conn, change)

    @staticmethod
    def _check(
        change: Change,
        pending: dict[str, Case],
        first_expected: dict[str, int | None],
        stored: dict[str, int] | None,
        active: dict[str, list[tuple[str, int]]],
    ) -> None:
        case = change.case
        earlier = pending.get(case.id)
        if earlier is not None:  # built on a change earlier in this batch
            if change.expected_version != earlier.version:
                raise ConcurrentUpdate(case.id, change.expected_version, earlier.version)
        else:
            first_expected[case.id] = change.expected_version
            if stored is not None:
                actual = stored.get(case.id)
                if change.expected_version is not None and actual is None:
                    raise CaseNotFound(case.id)
                if actual != change.expected_version:
                    raise ConcurrentUpdate(case.id, change.expected_version, actual)
        if change.sole_active_case:
            for other_id, version in active.get(case.customer_id, ()):
                if other_id not in pending:
                    raise ConcurrentUpdate(other_id, None, version)
            for other in pending.values():
                if other.customer_id == case.customer_id and counts_as_active(other):
                    raise ConcurrentUpdate(other.id, None, other.version)

    def _write_cases(
        self, conn: Connection[Any], cases: dict[str, Case], first_expected: dict[str, int | None],
        *, statement: str | None = None,
    ) -> None:
        """Write each case's final state, guarded by the version the batch started from.

        ``statement`` updates the whole row (``redact_case``, customer_id included)
        instead of the columns that may change.
        """
        new = [case for case in cases.values() if first_expected[case.id] is None]
        inserted = _returned(conn, self._sql["insert_case"], [_CODEC.case_row(case) for case in new])
        for case in new:
            if case.id not in inserted:  # created meanwhile by another transaction
                raise ConcurrentUpdate(case.id, None, self._version(conn, case.id))
        old = [case for case in cases.values() if first_expected[case.id] is not None]
        values = (_CODEC.case_update_row if statement is None
                  else lambda case: _CODEC.case_row(case)[1:])
        updated = _returned(conn, statement or self._sql["update_case"], [
            (*values(case), case.id, first_expected[case.id]) for case in old
        ])
        for case in old:
            if case.id not in updated:
                actual = self._version(conn, case.id)
                if actual is None:
                    raise CaseNotFound(case.id)
                raise ConcurrentUpdate(case.id, first_expected[case.id], actual)

    def _version(self, conn: Connection[Any], case_id: str) -> int | None:
        row = conn.execute(self._sql["version"], (case_id,)).fetchone()
        return None if row is None else int(row[0])

    def _write_rest(self, conn: Connection[Any], changes: Sequence[Change]) -> None:
        events = [_CODEC.event_row(event) for change in changes for event in change.events]
        _execute(conn, self._sql["insert_event"], events)
        notices = [_CODEC.notice_row(notice) for change in changes for notice in change.notices]
        _execute(conn, self._sql["insert_notice"], notices)
        # In the order given: recorded_seq keeps it, and reports break ties by it.
        owner = {r.response_id: c for c in changes for r in c.responses}
        records = [r for c in changes for r in c.responses]
        recorded = _returned(conn, self._sql["insert_response"], [_CODEC.response_row(r) for r in records])
        if len(recorded) != len(records):
            lost = next(r.response_id for r in records if r.response_id not in recorded)
            change = owner[lost]
            raise ConcurrentUpdate(change.case.id, change.expected_version, None, response_id=lost)
        links = sorted((c.consume_link, c.case.id) for c in changes if c.consume_link is not None)
        if len(_returned(conn, self._sql["use_link"], links)) != len(links):
            raise TokenUsed()

    def _write_redaction(self, conn: Connection[Any], change: Change) -> None:
        """An erasure's history (updated in place, then the new events) and its notices."""
        kept = change.expected_version or 0
        rows = [_CODEC.event_row(event) for event in change.events]
        # event_row is (kind, case_id, actor, at, seq, comment, via, data)
        _execute(conn, self._sql["redact_event"], [
            (kind, actor, at, comment, via, data, case_id, seq)
            for kind, case_id, actor, at, seq, comment, via, data in rows[:kept]])
        _execute(conn, self._sql["insert_event"], rows[kept:])
        _execute(conn, self._sql["upsert_notice"],
                 [_CODEC.notice_row(notice) for notice in change.notices])

    def record_responses(self, records: Sequence[ResponseRecord]) -> None:
        rows = [_CODEC.response_row(record) for record in records]
        if not rows:
            return
        with self._transaction("writing") as conn:
            _execute(conn, self._sql["insert_response"], rows)

    def next_in_rotation(self, key: str, size: int) -> int:
        with self._translated("taking a turn in a rotation"), self._connection() as conn:
            row = conn.execute(self._sql["rotate"], (key,)).fetchone()
        assert row is not None
        return (int(row[0]) - 1) % size

    # -- reading --------------------------------------------------------------------

    def responses(self, response_ids: Sequence[str]) -> dict[str, ResponseRecord]:
        if not response_ids:
            return {}
        rows = self._fetch(self._sql["responses"], (list(response_ids),))
        return {row[0]: _CODEC.response_from_row(row) for row in rows}

    def latest_cases(self, customer_ids: Sequence[str]) -> dict[str, Case]:
        if not customer_ids:
            return {}
        rows = self._fetch(self._sql["latest_cases"], (list(dict.fromkeys(customer_ids)),))
        return {row[1]: _CODEC.case_from_row(row) for row in rows}

    def escalation_candidates(
        self, *, now: datetime, untouched_before: datetime | None, quiet_since: datetime,
        limit: int,
    ) -> list[Case]:
        """Cases due for escalation, oldest opened first (see the Store protocol).

        One short READ COMMITTED transaction: the first statement locks up to
        ``limit`` due cases ``FOR NO KEY UPDATE SKIP LOCKED``; the second reads
        those locked cases afresh and keeps the ones still due.

        Skipping locked rows passes over cases that another worker is changing at
        this moment (typically committing its escalation of them), so workers
        running at once spread over different cases instead of all trying the
        same ones. The second read is needed because a locking read that waits
        for, or follows, another transaction's update returns the row as that
        update left it but judges the ``NOT EXISTS (escalated event)`` part
        against its older snapshot; it would offer a case that was escalated a
        moment ago, at its new version. Under the lock, a fresh statement sees
        the committed escalation and drops the case.

        The locks end when this returns and nothing relies on them: the caller
        commits each escalation against the version it read, so if two workers
        still pick the same case, exactly one commit succeeds and the other gets
        ConcurrentUpdate. No case is escalated twice.
        """
        params = {"now": now, "untouched_before": untouched_before, "quiet_since": quiet_since,
                  "limit": limit}
        with self._transaction("reading") as conn:
            conn.execute("SET TRANSACTION ISOLATION LEVEL READ COMMITTED")
            ids = [row[0] for row in conn.execute(self._sql["lock_due_cases"], params)]
            rows = conn.execute(self._sql["due_cases"], {**params, "ids": ids}).fetchall()
        return [_CODEC.case_from_row(row) for row in rows]

    def link_used(self, link_id: str) -> bool:
        return bool(self._fetch(self._sql["link_used"], (link_id,)))

    def get(self, case_id: str) -> Case:
        rows = self._fetch(self._sql["get"], (case_id,))
        if not rows:
            raise CaseNotFound(case_id)
        return _CODEC.case_from_row(rows[0])

    def find(
        self,
        *,
        assignee: str | None = None,
        status: Status | None = None,
        customer_id: str | None = None,
        limit: int | None = None,
    ) -> list[Case]:
        where, params = case_filters(
            "%s", assignee=assignee, status=status, customer_id=customer_id
        )
        params.append(limit)
        rows = self._fetch(
            f"SELECT {CASE_COLUMNS} FROM {quoted(self.schema)}.cases {where} "
            "ORDER BY opened_at, created_seq LIMIT %s",
            params,
        )
        return [_CODEC.case_from_row(row) for row in rows]

    def find_page(
        self, query: CaseQuery, *, now: datetime, after: Position | None, limit: int
    ) -> list[Case]:
        """A page in one indexed statement; ``text`` scans each candidate case's events."""
        statement, params = page_statement(query, now=now, after=after, limit=limit,
                                           dialect=self._dialect)
        return [_CODEC.case_from_row(row) for row in self._fetch(statement, params)]

    def count_cases(self, query: CaseQuery, *, now: datetime, by_assignee: bool) -> CaseCounts:
        statement, params = count_statement(query, now=now, by_assignee=by_assignee,
                                            dialect=self._dialect)
        groups = status_of(self._fetch(statement, params))
        return CaseCounts.from_groups(groups, by_assignee=by_assignee)

    def history(self, case_id: str) -> list[Event]:
        # One statement: the existence check and the events share one snapshot.
        rows = self._fetch(self._sql["history"], (case_id,))
        if not rows:
            raise CaseNotFound(case_id)
        return [_CODEC.event_from_row(row) for row in rows if row[0] is not None]

    def query_cases(
        self, *, case_ids: Sequence[str] | None = None, customer_ids: Sequence[str] | None = None
    ) -> list[Case]:
        clauses, params = _any_of(("id", case_ids), ("customer_id", customer_ids))
        rows = self._fetch(
            f"SELECT {CASE_COLUMNS} FROM {quoted(self.schema)}.cases {clauses} "
            "ORDER BY created_seq",
            params,
        )
        return [_CODEC.case_from_row(row) for row in rows]

    def find_responses(
        self,
        *,
        response_ids: Sequence[str] | None = None,
        customer_ids: Sequence[str] | None = None,
    ) -> list[ResponseRecord]:
        clauses, params = _any_of(("response_id", response_ids), ("customer_id", customer_ids))
        rows = self._fetch(
            f"SELECT {RESPONSE_COLUMNS} FROM {quoted(self.schema)}.responses {clauses} "
            "ORDER BY recorded_seq",
            params,
        )
        return [_CODEC.response_from_row(row) for row in rows]

    def report(self, query: ReportQuery) -> Report:
        with self._transaction("reporting") as conn:
            return report_from_postgres(conn, quoted(self.schema), query)

    def _fetch(self, statement: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        return self._live("reading", lambda conn: conn.execute(statement, params).fetchall())

    # -- outbox ---------------------------------------------------------------------

    def claim_notices(
        self, *, now: datetime, lease: timedelta, limit: int = 100
    ) -> list[Notice]:
        with self._transaction("claiming notices") as conn:
            rows = conn.execute(self._sql["claim_notices"], (now + lease, now, limit)).fetchall()
        notices = [_CODEC.notice_from_row(row) for row in rows]
        notices.sort(key=lambda notice: (notice.created_at, notice.id))  # RETURNING has no order
        return notices

    def notices_sent(self, notice_ids: Sequence[str], *, at: datetime) -> None:
        if not notice_ids:
            return
        with self._transaction("writing") as conn:
            _execute(conn, self._sql["notice_sent"], [(at, notice_id) for notice_id in notice_ids])

    def notice_failed(self, notice_id: str, *, error: str, retry_at: datetime) -> None:
        with self._transaction("writing") as conn:
            conn.execute(self._sql["notice_failed"], (error, retry_at, notice_id))

    def notice_abandoned(self, notice_id: str, *, error: str, at: datetime) -> None:
        with self._transaction("writing") as conn:
            conn.execute(self._sql["notice_abandoned"], (error, at, notice_id))

    def swap_notices(self, swaps: Sequence[tuple[Notice, Notice]]) -> list[str]:
        if not swaps:
            return []
        swapped = []
        with self._transaction("writing") as conn:
            rows = conn.execute(
                f"SELECT {NOTICE_COLUMNS} FROM {quoted(self.schema)}.outbox "
                "WHERE id = ANY(%s) ORDER BY id FOR UPDATE",
                (sorted({old.id for old, _ in swaps}),),
            ).fetchall()
            stored = {row[0]: _CODEC.notice_from_row(row) for row in rows}
            for old, new in swaps:
                if stored.get(old.id) != old:
                    continue
                conn.execute(
                    f"UPDATE {quoted(self.schema)}.outbox SET next_attempt_at = %s, "
                    "attempts = %s, last_error = %s, sent_at = %s, failed_at = %s WHERE id = %s",
                    (new.next_attempt_at, new.attempts, new.last_error, new.sent_at,
                     new.failed_at, old.id),
                )
                stored[old.id] = new
                swapped.append(old.id)
        return swapped

    def pending_notices(self) -> list[Notice]:
        return [_CODEC.notice_from_row(row) for row in self._fetch(self._sql["pending_notices"], ())]

    def find_notices(
        self, *, case_ids: Sequence[str] | None = None, pending_only: bool = False
    ) -> list[Notice]:
        params = {"cases": None if case_ids is None else list(case_ids), "pending": pending_only}
        return [_CODEC.notice_from_row(row)
                for row in self._fetch_named(self._sql["find_notices"], params)]

    def customers_to_purge(self, *, closed_before: datetime) -> list[str]:
        """The retention rule in one statement (see closeloop.retention)."""
        rows = self._fetch_named(self._sql["purge_candidates"], {"before": closed_before})
        return [row[0] for row in rows]

    def _fetch_named(self, statement: str, params: dict[str, Any]) -> list[tuple[Any, ...]]:
        return self._live("reading", lambda conn: conn.execute(statement, params).fetchall())


# -- statements ------------------------------------------------------------------------


def _any_of(*filters: tuple[str, Sequence[str] | None]) -> tuple[str, list[Any]]:
    """A WHERE clause keeping rows whose column is among the values, for each filter given."""
    clauses, params = [], []
    for column, values in filters:
        if values is not None:
            clauses.append(f"{column} = ANY(%s)")
            params.append(list(values))
    return (f"WHERE {' AND '.join(clauses)}" if clauses else ""), params


def _execute(conn: Connection[Any], statement: str, rows: Sequence[Sequence[Any]]) -> None:
    if len(rows) == 1:
        conn.execute(statement, rows[0])
    elif rows:
        with conn.cursor() as cursor:
            cursor.executemany(statement, rows)  # pipelined: one round trip


def _returned(conn: Connection[Any], statement: str, rows: Sequence[Sequence[Any]]) -> set[Any]:
    """Run ``statement`` (``… RETURNING key``) once per row; the keys it returned."""
    if not rows:
        return set()
    if len(rows) == 1:
        row = conn.execute(statement, rows[0]).fetchone()
        return set() if row is None else {row[0]}
    with conn.cursor() as cursor:
        cursor.executemany(statement, rows, returning=True)
        return {row[0] for result in cursor.results() for row in result.fetchall()}


def _rolled_back(exc: psycopg.Error) -> bool:
    """Whether the server aborted the transaction (SQLSTATE class 40: deadlock, serialisation)."""
    return (exc.sqlstate or "").startswith("40")


def _is_plain_update(change: Change) -> bool:
    """Whether ``change`` only updates an existing case and adds its events."""
    return (change.expected_version is not None and bool(change.events) and not change.notices
            and not change.responses and change.consume_link is None
            and not change.sole_active_case and not change.redacts and not _reopens(change))


#: The event columns' types, so that a VALUES list of parameters needs no inference.
_EVENT_TYPES = ("text", "text", "text", "timestamptz", "integer", "text", "text", "jsonb")


def _update_statement(update_case: str, schema: str, events: int) -> str:
    """The one statement of :meth:`PostgresStore._commit_update` for ``events`` events."""
    row = "(" + ", ".join(f"%s::{kind}" for kind in _EVENT_TYPES) + ")"
    return (
        f"WITH updated AS ({update_case}), inserted AS ("
        f"INSERT INTO {schema}.events ({EVENT_COLUMNS}) "
        f"SELECT * FROM (VALUES {', '.join([row] * events)}) AS new "
        "WHERE EXISTS (SELECT FROM updated) RETURNING 1) "
        "SELECT (SELECT count(*) FROM updated), (SELECT count(*) FROM inserted)"
    )


def _reopens(change: Change) -> bool:
    """Whether the change moves a Closed case back to an active status.

    An erasure's events are the case's past: they reopen nothing now.
    """
    return not change.redacts and any(
        isinstance(event, StatusChanged) and event.from_status is Status.CLOSED
        for event in change.events
    )


# -- rows -------------------------------------------------------------------------------


def _utc(value: datetime) -> datetime:
    return value.astimezone(UTC)


def _jsonb(value: dict[str, Any]) -> Any:
    return Jsonb(value)


def _id_list(value: tuple[str, ...]) -> list[str]:
    return list(value)


def _same(value: datetime) -> datetime:
    return value


#: PostgreSQL's row conversions: timestamptz (read back in UTC), text[] and jsonb.
_CODEC = RowCodec(time_out=_same, time_in=_utc, ids_out=_id_list, data_out=_jsonb)
