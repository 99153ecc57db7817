"""The public store contract (closeloop.testing.StoreContract) against every bundled store."""

from __future__ import annotations

import importlib.util
import sqlite3
import sys
import threading
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from closeloop.storage import BaseStore, MemoryStore, SQLiteStore, Store, sqlite_report
from closeloop.storage.sqlite import to_micros
from closeloop.testing import CorruptedRowContract, ReportContract, StoreContract

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def _custom_store_example() -> ModuleType:
    """examples/custom_store.py, imported as the module ``custom_store``."""
    spec = importlib.util.spec_from_file_location("custom_store", EXAMPLES / "custom_store.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("custom_store", module)
    spec.loader.exec_module(module)
    return module


custom_store = _custom_store_example()


class TestMemoryStore(StoreContract):
    """MemoryStore keeps the store contract."""

    @pytest.fixture
    def store(self) -> Iterator[Store]:
        """A fresh MemoryStore."""
        yield MemoryStore()


class TestSQLiteStore(StoreContract, CorruptedRowContract):
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


class TestSQLiteStoreTwoThreadReport(ReportContract):
    """SQLiteStore's report on two connections and threads (a large store's) keeps the report rules."""

    @pytest.fixture
    def store(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Store]:
        """A fresh SQLiteStore whose every report splits across two connections."""
        monkeypatch.setattr(sqlite_report, "PARALLEL_FROM", 0)
        store = SQLiteStore(tmp_path / "contract.db")
        yield store
        store.close()


class TestCustomStoreExample(StoreContract):
    """examples/custom_store.py (BaseStore's abstract methods only, on a journal) keeps the contract."""

    @pytest.fixture
    def store(self, tmp_path: Path) -> Iterator[Store]:
        """A fresh FileStore on a new journal."""
        store = custom_store.FileStore(tmp_path / "journal.jsonl")
        yield store
        store.close()


def test_base_store_has_at_most_eight_abstract_methods() -> None:
    """A store author writes at most eight methods; everything else has a default."""
    assert len(BaseStore.__abstractmethods__) <= 8


def test_the_custom_store_example_implements_only_the_abstract_methods() -> None:
    """FileStore overrides no default of BaseStore: the contract tests the defaults through it."""
    defaults = {name for name, value in vars(BaseStore).items()
                if callable(value) and not name.startswith("_")} - BaseStore.__abstractmethods__
    assert defaults  # the check below would pass on nothing
    assert defaults.isdisjoint(vars(custom_store.FileStore))
    assert BaseStore.__abstractmethods__ <= set(vars(custom_store.FileStore))


def test_two_custom_stores_on_one_journal_share_it(tmp_path: Path) -> None:
    """Two FileStores on one journal (two processes) share writes; rotations and claims never overlap."""
    from datetime import timedelta

    from closeloop import ConcurrentUpdate
    from closeloop.testing import make_case, make_notice, opened_change

    path = tmp_path / "journal.jsonl"
    stores = [custom_store.FileStore(path), custom_store.FileStore(path)]
    case = make_case("a")
    stores[0].commit(opened_change(case, *[make_notice("a", f"n-{i:02}") for i in range(40)]))
    assert stores[1].get("a") == case
    with pytest.raises(ConcurrentUpdate):
        stores[1].commit(opened_change(case))
    turns: list[int] = []
    claimed: list[str] = []
    lock = threading.Lock()

    def work(store: Store) -> None:
        for _ in range(20):
            turn = store.next_in_rotation("team", 4)
            batch = store.claim_notices(now=case.opened_at, lease=timedelta(hours=1), limit=1)
            with lock:
                turns.append(turn)
                claimed.extend(notice.id for notice in batch)

    threads = [threading.Thread(target=work, args=(stores[n % 2],)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(turns.count(position) for position in range(4)) == [20, 20, 20, 20]
    assert sorted(claimed) == [f"n-{i:02}" for i in range(40)]


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
