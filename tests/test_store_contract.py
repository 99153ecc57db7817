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
