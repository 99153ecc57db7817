"""One-touch per second: issue a link, open it, prepare and confirm a change vs raw itsdangerous.

The baseline is what one-touch is built on: one ``URLSafeSerializer.dumps`` and
one ``loads`` of a link-sized payload (HMAC-SHA256, as closeloop signs), done
by hand in the same run. Three rows compare against it:

- tokens only: ``OneTouch.sign_link`` + ``read_link`` – the token layer alone
  (payload checks, the strict signature-shape check), no clock or store.
- the whole cycle over a MemoryStore and over a SQLiteStore
  (``synchronous=FULL``, closeloop's default): ``loop.one_touch.link(case_id)``,
  ``open(token)``, ``prepare(token, status=…, comment=…)``, ``confirm(…)`` – two
  tokens signed, three verified, five case reads, three used-link checks, one
  history read and one committed status change with its event and the link's
  use. ``size`` cycles go round-robin over ``size // 4`` cases assigned to
  one user, each case going Open → Progress → Open …

A cycle does several signatures and a transaction, so its ratio to one
dumps + loads is expected to be well under 1; the rows show where the time goes.
"""

from __future__ import annotations

import hashlib
import itertools
import tempfile
from collections.abc import Callable
from datetime import UTC, datetime
from functools import partial
from pathlib import Path

from itsdangerous import URLSafeSerializer

from bench.common import Row, peak_traced_kib, rate
from bench.status_changes import target_for
from closeloop import CloseLoop
from closeloop.onetouch import OneTouch
from closeloop.onetouch.tokens import LinkClaims
from closeloop.storage import MemoryStore, SQLiteStore, Store

__all__ = ["run"]

#: Each side is timed this many times, taking turns; the best rate counts.
REPEATS = 3
SECRET = "benchmark secret for one-touch links, not for production"
BASE_URL = "https://crm.example/one-touch"
COMMENT = "benchmark change"
BASELINE = "raw itsdangerous URLSafeSerializer dumps + loads, link-sized payload, HMAC-SHA256"


def run(size: int) -> list[Row]:
    """Time ``size`` operations of each one-touch row and of the raw baseline."""
    with tempfile.TemporaryDirectory(prefix="closeloop-bench-") as tmp:
        files = (Path(tmp) / f"onetouch-{n}.db" for n in itertools.count())
        return [
            compare("one-touch tokens: sign_link + read_link", size, TokenSide),
            compare("one-touch cycle: link + open + prepare + confirm (MemoryStore)", size,
                    lambda: CycleSide(MemoryStore(), size)),
            compare("one-touch cycle: link + open + prepare + confirm (SQLite, FULL)", size,
                    lambda: CycleSide(SQLiteStore(next(files)), size)),
        ]


class Side:
    """One benchmarked side: build untimed, then ``work(n)`` is timed, then ``close``."""

    def work(self, operations: int) -> None:
        """Do ``operations`` operations."""
        raise NotImplementedError

    def close(self) -> None:
        """Release what the side holds."""


def compare(operation: str, size: int, make: Callable[[], Side]) -> Row:
    """Best-of-REPEATS rate of the closeloop side and of the raw baseline, interleaved."""
    best = best_raw = 0.0
    for _ in range(REPEATS):
        side = make()
        best = max(best, rate(size, partial(side.work, size)))
        side.close()
        raw = RawSide()
        best_raw = max(best_raw, rate(size, partial(raw.work, size)))
    traced = make()
    peak = peak_traced_kib(partial(traced.work, size))
    traced.close()
    return Row(operation=operation, closeloop_rate=best, baseline_rate=best_raw,
               baseline=BASELINE, peak_kib=peak)


class RawSide(Side):
    """The baseline: itsdangerous by hand, one dumps and one loads per operation."""

    def __init__(self) -> None:
        self.serializer = URLSafeSerializer(SECRET, salt="bench",
                                            signer_kwargs={"digest_method": hashlib.sha256})
        self.payload = {"i": "Xq3v9Rr1mZ0aLk2B", "c": "0f" * 16, "a": "alice", "t": 1_767_603_600}

    def work(self, operations: int) -> None:
        """Sign and verify the payload ``operations`` times."""
        dumps, loads, payload = self.serializer.dumps, self.serializer.loads, self.payload
        for _ in range(operations):
            loads(dumps(payload))


class TokenSide(Side):
    """closeloop's token layer alone."""

    def __init__(self) -> None:
        self.config = OneTouch(SECRET, base_url=BASE_URL)
        self.claims = LinkClaims(link_id="Xq3v9Rr1mZ0aLk2B", case_id="0f" * 16, assignee="alice",
                                 issued_at=datetime(2026, 1, 5, 9, tzinfo=UTC))

    def work(self, operations: int) -> None:
        """Sign and read a link token ``operations`` times."""
        sign, read, claims = self.config.sign_link, self.config.read_link, self.claims
        for _ in range(operations):
            read(sign(claims))


class CycleSide(Side):
    """A loop with one-touch over ``store`` and ``size // 4`` cases assigned to alice (untimed)."""

    def __init__(self, store: Store, size: int) -> None:
        self.store = store
        self.loop = CloseLoop(store=store, one_touch=OneTouch(SECRET, base_url=BASE_URL))
        self.case_ids = [
            self.loop.assign(self.loop.open_case(f"customer-{n}", by="bench").id, to="alice",
                             by="bench").id
            for n in range(max(1, size // 4))
        ]

    def work(self, operations: int) -> None:
        """Run ``operations`` full cycles, each changing one case once through a new link."""
        service, case_ids = self.loop.one_touch, self.case_ids
        cases = len(case_ids)
        for number in range(operations):
            link = service.link(case_ids[number % cases])
            token = link[link.index("token=") + len("token="):]
            service.open(token)
            pending = service.prepare(token, status=target_for(number, cases), comment=COMMENT)
            service.confirm(pending.token)

    def close(self) -> None:
        """Close the store."""
        self.store.close()
