"""The public store contract (closeloop.testing.StoreContract) against every bundled store."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from closeloop.storage import MemoryStore, SQLiteStore, Store
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
