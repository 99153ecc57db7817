"""Functions run in child processes by tests/test_escalation.py (importable by spawn)."""

from __future__ import annotations

from datetime import datetime

from closeloop import CloseLoop
from closeloop.notify import MemoryNotifier
from closeloop.storage import SQLiteStore
from closeloop.testing import FixedClock


def escalate_once(path: str, now_iso: str, barrier: object) -> list[tuple[str, str]]:
    """Wait for the other process, escalate, and return (case id, recipient) of what was sent."""
    outbox = MemoryNotifier()
    loop = CloseLoop(store=SQLiteStore(path), notifier=outbox,
                     clock=FixedClock(datetime.fromisoformat(now_iso)))
    barrier.wait()  # type: ignore[attr-defined]
    loop.escalate()
    loop.store.close()
    return [(message.case_id, message.to) for message in outbox.sent]
