"""PostgreSQL schema of :class:`~closeloop.storage.PostgresStore`, and its migrations.

Everything lives in one schema (``closeloop`` unless the store is told
otherwise), so closeloop's tables never mix with the application's. The schema's
own ``schema_migrations`` table lists the migrations applied to it.
:func:`migrate` brings a schema up to date inside one transaction that first
takes an advisory lock on the schema's name: processes that start at the same
moment wait for each other, and each migration runs exactly once.

Times are ``timestamptz``; reasons and response ids are ``text[]``; the fields
of an event that are specific to its kind are ``jsonb``. ``cases.created_seq``
and ``responses.recorded_seq`` record the order rows were written in, which
breaks ties between cases opened, or responses submitted, at the same instant.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from closeloop.errors import InvalidInput, StoreError

if TYPE_CHECKING:
    from psycopg import Connection

__all__ = ["MIGRATIONS", "check_schema_name", "migrate", "quoted", "schema_version"]

#: Migration ``n`` (0-based) takes a schema from version ``n`` to ``n + 1``.
#: ``{schema}`` is replaced by the quoted schema name.
MIGRATIONS: Sequence[str] = (
    """
    CREATE TABLE {schema}.cases (
        id text PRIMARY KEY,
        created_seq bigint GENERATED ALWAYS AS IDENTITY UNIQUE,
        customer_id text NOT NULL,
        status text NOT NULL CHECK (status IN ('open', 'progress', 'closed')),
        assignee text,
        reasons text[] NOT NULL,
        response_ids text[] NOT NULL,
        priority text NOT NULL,
        due_at timestamptz,
        opened_at timestamptz NOT NULL,
        updated_at timestamptz NOT NULL,
        closed_at timestamptz,
        opened_by text NOT NULL,
        version integer NOT NULL CHECK (version >= 1)
    );
    CREATE INDEX cases_by_assignee ON {schema}.cases (assignee, opened_at, created_seq);
    CREATE INDEX cases_by_customer ON {schema}.cases (customer_id, created_seq);
    CREATE INDEX cases_by_status ON {schema}.cases (status, opened_at, created_seq);
    CREATE INDEX cases_by_opened_at ON {schema}.cases (opened_at, created_seq);
    CREATE INDEX cases_active_due ON {schema}.cases (due_at) WHERE status <> 'closed';
    CREATE TABLE {schema}.events (
        case_id text NOT NULL REFERENCES {schema}.cases (id),
        seq integer NOT NULL,
        kind text NOT NULL,
        actor text NOT NULL,
        at timestamptz NOT NULL,
        comment text,
        via text,
        data jsonb NOT NULL,
        PRIMARY KEY (case_id, seq)
    );
    CREATE INDEX events_escalated ON {schema}.events (case_id, at) WHERE kind = 'escalated';
    CREATE TABLE {schema}.outbox (
        id text PRIMARY KEY,
        case_id text NOT NULL REFERENCES {schema}.cases (id),
        kind text NOT NULL,
        recipient text NOT NULL,
        subject text NOT NULL,
        text text NOT NULL,
        html text NOT NULL,
        created_at timestamptz NOT NULL,
        next_attempt_at timestamptz NOT NULL,
        attempts integer NOT NULL DEFAULT 0,
        last_error text,
        sent_at timestamptz
    );
    CREATE INDEX outbox_pending ON {schema}.outbox (next_attempt_at, created_at)
        WHERE sent_at IS NULL;
    CREATE INDEX outbox_by_case ON {schema}.outbox (case_id);
    CREATE TABLE {schema}.responses (
        response_id text PRIMARY KEY,
        recorded_seq bigint GENERATED ALWAYS AS IDENTITY,
        customer_id text NOT NULL,
        outcome text NOT NULL CHECK (outcome IN ('opened', 'attached', 'ignored')),
        case_id text REFERENCES {schema}.cases (id),
        score integer,
        submitted_at timestamptz NOT NULL,
        received_at timestamptz NOT NULL
    );
    CREATE INDEX responses_by_customer ON {schema}.responses
        (customer_id, submitted_at, recorded_seq);
    CREATE TABLE {schema}.rotations (
        key text PRIMARY KEY,
        position bigint NOT NULL
    );
    CREATE TABLE {schema}.used_links (
        link_id text PRIMARY KEY,
        case_id text NOT NULL REFERENCES {schema}.cases (id)
    );
    """,
    # Response updates: what a response said, so a repeat with other content is an update.
    """
    ALTER TABLE {schema}.responses ADD COLUMN content text;
    """,
    # Notices as data, one row per (notice, channel): a delivery. Rows written before
    # keep their rendered subject/text/html (content stays NULL) and go to the channel
    # "default"; a case event sent to a webhook has no recipient. `failed_at` ends a
    # delivery that cannot succeed.
    """
    ALTER TABLE {schema}.outbox
        ALTER COLUMN recipient DROP NOT NULL,
        ADD COLUMN channel text NOT NULL DEFAULT 'default',
        ADD COLUMN message_id text,
        ADD COLUMN content jsonb,
        ADD COLUMN failed_at timestamptz;
    UPDATE {schema}.outbox SET message_id = id;
    ALTER TABLE {schema}.outbox
        ALTER COLUMN message_id SET NOT NULL,
        ALTER COLUMN channel DROP DEFAULT;
    DROP INDEX {schema}.outbox_pending;
    CREATE INDEX outbox_pending ON {schema}.outbox (next_attempt_at, created_at)
        WHERE sent_at IS NULL AND failed_at IS NULL;
    """,
    # Case lists (see storage/sql_query.py): one index per order, and one more with the
    # assignee in front for the home page, so a page is an index range scan. The id
    # ends each, in code point order, as it ends each order.
    """
    CREATE INDEX cases_by_assignee_opened ON {schema}.cases (assignee, opened_at, id COLLATE "C");
    CREATE INDEX cases_by_opened ON {schema}.cases (opened_at, id COLLATE "C");
    CREATE INDEX cases_by_assignee_updated ON {schema}.cases (assignee, updated_at, id COLLATE "C");
    CREATE INDEX cases_by_updated ON {schema}.cases (updated_at, id COLLATE "C");
    CREATE INDEX cases_by_assignee_due ON {schema}.cases
        (assignee, coalesce(due_at, 'infinity'::timestamptz), opened_at, id COLLATE "C");
    CREATE INDEX cases_by_due ON {schema}.cases
        (coalesce(due_at, 'infinity'::timestamptz), opened_at, id COLLATE "C");
    CREATE INDEX cases_by_assignee_priority ON {schema}.cases (assignee, (CASE priority
        WHEN 'urgent' THEN 0 WHEN 'high' THEN 1 WHEN 'normal' THEN 2 WHEN 'low' THEN 3 END),
        opened_at, id COLLATE "C");
    CREATE INDEX cases_by_priority ON {schema}.cases ((CASE priority WHEN 'urgent' THEN 0
        WHEN 'high' THEN 1 WHEN 'normal' THEN 2 WHEN 'low' THEN 3 END), opened_at, id COLLATE "C");
    """,
    # Workflows: a team's own status name (NULL when it is the category's, as for every
    # case written before), the close reason, and when the SLA clock was paused.
    """
    ALTER TABLE {schema}.cases ADD COLUMN custom_status text,
        ADD COLUMN close_reason text, ADD COLUMN paused_at timestamptz;
    DROP INDEX {schema}.cases_active_due;
    CREATE INDEX cases_active_due ON {schema}.cases (due_at)
        WHERE status <> 'closed' AND paused_at IS NULL;
    """,
)

_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")


def check_schema_name(schema: Any) -> str:
    """Return ``schema`` if it is a plain lower-case SQL identifier, else raise InvalidInput."""
    if not isinstance(schema, str) or not _NAME.fullmatch(schema):
        raise InvalidInput(
            "schema", schema,
            "must be a lower-case SQL identifier: letters, digits and _, at most 63, "
            "not starting with a digit",
        )
    if schema.startswith("pg_"):
        raise InvalidInput("schema", schema, "names starting with pg_ are reserved by PostgreSQL")
    return schema


def quoted(schema: str) -> str:
    """The schema name as a quoted identifier (``check_schema_name`` has vetted it)."""
    return f'"{schema}"'


def schema_version(conn: Connection[Any], schema: str) -> int:
    """The schema's version: 0 when it has no ``schema_migrations`` table."""
    row = conn.execute(
        "SELECT to_regclass(%s) IS NOT NULL", (f"{quoted(schema)}.schema_migrations",)
    ).fetchone()
    if row is None or not row[0]:
        return 0
    (version,) = conn.execute(
        f"SELECT coalesce(max(version), 0) FROM {quoted(schema)}.schema_migrations"
    ).fetchone() or (0,)
    return int(version)


def migrate(conn: Connection[Any], schema: str) -> int:
    """Create or upgrade ``schema`` to the current version; return that version.

    Runs in one transaction on ``conn`` under an advisory lock keyed on the
    schema's name, so that concurrent callers run each migration once.

    Raises:
        StoreError: the schema is newer than this closeloop understands, or it
            holds tables that closeloop did not create.
    """
    name = quoted(schema)
    with conn.transaction():
        conn.execute(
            "SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", (f"closeloop.migrate.{schema}",)
        )
        exists = conn.execute(
            "SELECT 1 FROM pg_namespace WHERE nspname = %s", (schema,)
        ).fetchone() is not None
        version = schema_version(conn, schema) if exists else 0
        if version == len(MIGRATIONS):
            return version
        if version > len(MIGRATIONS):
            raise StoreError(
                f"schema {schema!r} has closeloop schema version {version}, newer than this "
                f"closeloop understands ({len(MIGRATIONS)}); upgrade closeloop"
            )
        if not exists:
            conn.execute(f"CREATE SCHEMA {name}")
        elif version == 0:
            (foreign,) = conn.execute(
                "SELECT count(*) FROM pg_class WHERE relnamespace = %s::regnamespace "
                "AND relkind IN ('r', 'p', 'v', 'm', 'f')",
                (name,),
            ).fetchone() or (0,)
            if foreign:
                raise StoreError(
                    f"schema {schema!r} holds tables that closeloop did not create; "
                    "choose another schema for closeloop"
                )
        conn.execute(
            f"CREATE TABLE IF NOT EXISTS {name}.schema_migrations ("
            "version integer PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
        )
        for number in range(version, len(MIGRATIONS)):
            conn.execute(MIGRATIONS[number].format(schema=name))
            conn.execute(
                f"INSERT INTO {name}.schema_migrations (version) VALUES (%s)", (number + 1,)
            )
    return len(MIGRATIONS)
