"""Stores: where cases, their history and the outbox live.

- :class:`MemoryStore`: in-process, for tests and demos.
- :class:`SQLiteStore`: one file on disk, the embedded default.
- :class:`PostgresStore`: PostgreSQL, for many processes on many machines
  (``pip install "closeloop[postgres]"``). It is imported on first use, so
  ``import closeloop`` never loads psycopg.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from closeloop.storage.base import Change, Store
from closeloop.storage.memory import MemoryStore
from closeloop.storage.sqlite import SQLiteStore

if TYPE_CHECKING:
    from closeloop.storage.postgres import PostgresStore

__all__ = ["Change", "MemoryStore", "PostgresStore", "SQLiteStore", "Store"]


def __getattr__(name: str) -> Any:
    if name == "PostgresStore":
        from closeloop.storage.postgres import PostgresStore

        return PostgresStore
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
