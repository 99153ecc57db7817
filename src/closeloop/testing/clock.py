"""A clock for tests: it tells the time you set, and moves only when told."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

from closeloop.validate import aware_datetime

__all__ = ["START", "FixedClock"]

#: Where a :class:`FixedClock` starts unless told otherwise: a Monday morning, UTC.
START = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)


class FixedClock:
    """A callable clock, settable and advanceable, safe to share between threads.

    Example::

        clock = FixedClock(datetime(2026, 1, 5, 9, 0, tzinfo=timezone.utc))
        loop = CloseLoop(clock=clock)
        clock.advance(hours=25)
    """

    def __init__(self, start: datetime | None = None) -> None:
        self._now = aware_datetime(
            "start", START if start is None else start
        )
        self._lock = threading.Lock()

    def __call__(self) -> datetime:
        """The current (fixed) time."""
        return self._now

    def set(self, now: datetime) -> None:
        """Jump to ``now`` (aware)."""
        with self._lock:
            self._now = aware_datetime("now", now)

    def advance(self, delta: timedelta | None = None, **kwargs: float) -> datetime:
        """Move forward by ``delta`` or by ``timedelta(**kwargs)``; returns the new time."""
        step = delta if delta is not None else timedelta(**kwargs)
        with self._lock:
            self._now += step
            return self._now
