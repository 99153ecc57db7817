"""Stores: where cases, their history and the outbox live.

- :class:`MemoryStore`: in-process, for tests and demos.
- :class:`SQLiteStore`: one file on disk, the embedded default.
- :class:`PostgresStore`: PostgreSQL, for many processes on many machines
  (``pip install "closeloop[postgres]"``). It is imported on first use, so
  ``import closeloop`` never loads psycopg.
- :class:`BaseStore`: the base class for your own store (eight abstract methods);
  :class:`Store` and the narrow ports in :mod:`closeloop.storage.base` are the
  protocols it fulfils. :func:`check_change` is the numbering check the service
  applies to every :class:`Change`; :func:`check_batch` does a store's commit checks.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from closeloop.storage.base import (
    CaseLog,
    Change,
    LinkLedger,
    Outbox,
    ReportSource,
    ResponseLog,
    ResponseUpdate,
    Rotations,
    Store,
    check_change,
    counts_as_active,
)
from closeloop.storage.base_store import (
    BaseStore,
    StoredState,
    check_batch,
    select_escalation_candidates,
)
from closeloop.storage.memory import MemoryStore
from closeloop.storage.sqlite import SQLiteStore

if TYPE_CHECKING:
    from closeloop.storage.postgres import PostgresStore

__all__ = [
    "BaseStore",
    "CaseLog",
    "Change",
    "LinkLedger",
    "MemoryStore",
    "Outbox",
    "PostgresStore",
    "ReportSource",
    "ResponseLog",
    "ResponseUpdate",
    "Rotations",
    "SQLiteStore",
    "Store",
    "StoredState",
    "check_batch",
    "check_change",
    "counts_as_active",
    "select_escalation_candidates",
]


def __getattr__(name: str) -> Any:
    if name == "PostgresStore":
        from closeloop.storage.postgres import PostgresStore

        return PostgresStore
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
