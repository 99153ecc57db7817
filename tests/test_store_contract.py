"""The public store contract (closeloop.testing.StoreContract) against every bundled store."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from closeloop.storage import MemoryStore, SQLiteStore, Store
from closeloop.storage.sqlite import to_micros
from closeloop.testing import StoreContract


class TestMemoryStore(StoreContract):
    """MemoryStore keeps the store contract."""

    @pytest.fixture
    def store(self) -> Iterator[Store]:
        """A fresh MemoryStore."""
        yield MemoryStore()


class TestSQLiteStore(StoreContract):
    """SQLiteStore keeps the store contract."""

    @pytest.fixture
    def store(self, tmp_path: Path) -> Iterator[Store]:
        """A fresh SQLiteStore on a file."""
        store = SQLiteStore(tmp_path / "contract.db")
        yield store
        store.close()

    @pytest.fixture
    def corrupt_case(self, tmp_path: Path) -> Callable[[Store, str, str, Any], bool]:
        """Writes a raw value into the file as another program (or damage) would, CHECKs off."""
        def corrupt(store: Store, case_id: str, field: str, value: Any) -> bool:
            raw = to_micros(value) if isinstance(value, datetime) else value
            with sqlite3.connect(tmp_path / "contract.db", isolation_level=None) as conn:
                conn.execute("PRAGMA ignore_check_constraints = ON")
                try:
                    conn.execute(f"UPDATE cases SET {field} = ? WHERE id = ?", (raw, case_id))
                except (sqlite3.Error, OverflowError):
                    return False
            conn.close()
            return True

        return corrupt


def test_event_extra_matches_cattrs() -> None:
    """The fast event serialisation stores exactly what cattrs would, for every kind."""
    from datetime import UTC, datetime

    from closeloop.convert import event_extra, unstructure
    from closeloop.model import (
        Assigned,
        Commented,
        Escalated,
        Opened,
        ResponseAttached,
        Status,
        StatusChanged,
    )

    at = datetime(2026, 1, 1, tzinfo=UTC)
    common = {"case_id": "c", "actor": "a", "at": at, "seq": 2}
    events = [
        Opened(**common), Assigned(**common, assignee="x", previous="y"),
        StatusChanged(**common, from_status=Status.OPEN, to_status=Status.CLOSED),
        Commented(**common, comment="hi"), ResponseAttached(**common, response_id="r", reasons=("d",)),
        Escalated(**common, notified="m", why="untouched"),
    ]
    for event in events:
        expected = {k: v for k, v in unstructure(event).items()
                    if k not in ("kind", "case_id", "actor", "at", "seq", "comment", "via")}
        assert event_extra(event) == expected


def test_narrow_update_values_match_the_full_row() -> None:
    """The values an update writes for some columns are those of the full update row."""
    from datetime import UTC, datetime

    from closeloop.model import Case, Priority, Status
    from closeloop.storage.rows import CASE_UPDATE_COLUMNS
    from closeloop.storage.sqlite_rows import CODEC

    at = datetime(2026, 1, 1, tzinfo=UTC)
    case = Case(id="c", customer_id="k", status=Status.CLOSED, opened_at=at, updated_at=at,
                opened_by="a", version=3, assignee="x", reasons=("r",), response_ids=("p", "q"),
                priority=Priority.HIGH, due_at=at, closed_at=at)
    assert CODEC.case_update_values(case, CASE_UPDATE_COLUMNS) == CODEC.case_update_row(case)
    assert CODEC.case_update_values(case, ("version", "status")) == (3, "closed")
