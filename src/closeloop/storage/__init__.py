"""Stores: where cases, their history and the outbox live.

- :class:`MemoryStore`: in-process, for tests and demos.
- :class:`SQLiteStore`: one file on disk, the embedded default.
"""

from closeloop.storage.base import Change, Store
from closeloop.storage.memory import MemoryStore
from closeloop.storage.sqlite import SQLiteStore

__all__ = ["Change", "MemoryStore", "SQLiteStore", "Store"]
