"""Delivery that does not repeat itself: racing deliverers, slow and hanging servers.

The receivers are real: an SMTP server (aiosmtpd) and an HTTP endpoint on
loopback. Time is simulated: each message the receiver accepts advances a shared
clock by its delivery time, so a 0.4 s delivery against a 2 s lease is exact and
nothing sleeps.
"""

from __future__ import annotations

import os
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path

import pytest

from closeloop import CloseLoop
from closeloop.notify import Notifier, SmtpNotifier, WebhookNotifier
from closeloop.storage import MemoryStore, SQLiteStore, Store
from closeloop.testing import FixedClock
from http_endpoint import Endpoint
from smtp_server import HOST, SmtpServer

LEASE = timedelta(seconds=2)
DELIVERY = timedelta(seconds=0.4)
KINDS = ["sqlite"] + (["postgres"] if os.environ.get("CLOSELOOP_TEST_POSTGRES_DSN") else [])
RECEIVERS = ["smtp", "webhook"]


class Receiver:
    """A real server and a notifier pointed at it; ``accepted()`` lists message ids in arrival order."""

    def __init__(self, notifier: Notifier, accepted: Callable[[], list[str]]) -> None:
        self.notifier = notifier
        self.accepted = accepted


def slow(clock: FixedClock, hang_on: int | None = None,
         hang: timedelta = timedelta(0)) -> Callable[[int], None]:
    """Each accepted message takes ``DELIVERY`` of the clock's time; message ``hang_on`` takes ``hang``."""

    def take_time(number: int) -> None:
        clock.advance(hang if number == hang_on else DELIVERY)

    return take_time


@contextmanager
def receiver(kind: str, on_message: Callable[[int], None]) -> Iterator[Receiver]:
    """A running SMTP server or HTTP endpoint calling ``on_message`` per accepted message."""
    if kind == "smtp":
        with SmtpServer(on_message=on_message) as server:
            notifier = SmtpNotifier(HOST, server.port, sender="care@example.test", timeout=10,
                                    address_of=lambda user: f"{user}@example.test")
            yield Receiver(notifier, lambda: [
                str(received.parsed()["Message-ID"]).strip("<>").split("@")[0]
                for received in server.received
            ])
        return

    def on_request(number: int) -> None:
        on_message(number)

    with Endpoint(on_request=on_request) as endpoint:
        yield Receiver(WebhookNotifier(endpoint.url, timeout=10),
                       lambda: [payload["data"]["notice_id"] for payload in endpoint.payloads()])


@pytest.fixture(params=KINDS)
def two_stores(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Store, Store]]:
    """Two store objects (two connections, as two processes would have) on one database."""
    if request.param == "sqlite":
        first: Store = SQLiteStore(tmp_path / "outbox.db")
        second: Store = SQLiteStore(tmp_path / "outbox.db")
        yield first, second
        second.close()
        first.close()
        return
    from closeloop.storage import PostgresStore
    from postgres_workers import ScratchPostgresStore

    dsn = os.environ["CLOSELOOP_TEST_POSTGRES_DSN"]
    scratch = ScratchPostgresStore(dsn)
    other = PostgresStore(dsn, schema=scratch.schema)
    yield scratch, other
    other.close()
    scratch.close()


def _queue(store: Store, clock: FixedClock, count: int) -> None:
    """Write ``count`` assignment notices that nobody has delivered yet."""
    loop = CloseLoop(store=store, clock=clock, deliver_notices=False)
    for number in range(count):
        case = loop.open_case(f"cust-{number}", by="agent")
        loop.assign(case.id, to=f"user-{number}", by="lead")


def _race(deliverers: list[Callable[[], object]], store: Store, clock: FixedClock) -> None:
    """Run every deliverer in its own thread until the outbox is empty (bounded).

    Simulated time moves by deliveries, and by a 100 ms poll interval only while no
    deliverer is inside a call: a thread that finds nothing to do must not make the
    clock race ahead of another thread's delivery in progress (that would depend on
    how the OS schedules the threads, not on closeloop).
    """
    busy = [0]
    lock = threading.Lock()
    idle = threading.Event()

    def work(deliver: Callable[[], object]) -> None:
        for _ in range(400):
            if not store.pending_notices():
                return
            with lock:
                busy[0] += 1
            try:
                deliver()
            finally:
                with lock:
                    busy[0] -= 1
                    if busy[0] == 0:
                        clock.advance(timedelta(milliseconds=100))  # the worker's poll interval
            idle.wait(0.001)  # let the other deliverer run

    threads = [threading.Thread(target=work, args=(deliver,)) for deliver in deliverers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not store.pending_notices()


@pytest.mark.parametrize("kind", RECEIVERS)
def test_two_racing_deliverers_send_each_notice_once(
    two_stores: tuple[Store, Store], kind: str,
) -> None:
    """Two deliverers on one outbox, 0.4 s per delivery and a 2 s lease: every notice once."""
    first, second = two_stores
    clock = FixedClock()
    _queue(first, clock, 10)
    with receiver(kind, slow(clock)) as server:
        loops = [CloseLoop(store=store, notifier=server.notifier, clock=clock,
                           delivery_lease=LEASE) for store in (first, second)]
        _race([lambda loop=loop: loop.deliver_pending(limit=10) for loop in loops], first, clock)
        counts = Counter(server.accepted())
    assert len(counts) == 10
    assert set(counts.values()) == {1}


@pytest.mark.parametrize("kind", RECEIVERS)
def test_a_server_that_hangs_mid_batch_gets_no_duplicate_of_what_it_accepted(
    two_stores: tuple[Store, Store], kind: str,
) -> None:
    """A server that hangs past the lease on the 4th message is not sent the first three again."""
    first, second = two_stores
    clock = FixedClock()
    _queue(first, clock, 8)
    with receiver(kind, slow(clock, hang_on=4, hang=LEASE * 2)) as server:
        loops = [CloseLoop(store=store, notifier=server.notifier, clock=clock,
                           delivery_lease=LEASE) for store in (first, second)]
        _race([lambda loop=loop: loop.deliver_pending(limit=8) for loop in loops], first, clock)
        accepted = server.accepted()
    counts = Counter(accepted)
    assert len(counts) == 8
    assert all(counts[notice_id] == 1 for notice_id in accepted[:3])
    # Only the message in flight while the lease ran out may arrive twice (at-least-once),
    # and then with the same id, so the receiver can drop it.
    assert sum(counts.values()) <= 9


def test_a_long_batch_stops_before_its_claim_runs_out() -> None:
    """A deliverer leaves notices it can no longer send within its lease for the next claim."""
    clock = FixedClock()
    memory = MemoryStore()
    _queue(memory, clock, 10)
    with receiver("smtp", slow(clock)) as server:
        loop = CloseLoop(store=memory, notifier=server.notifier, clock=clock, delivery_lease=LEASE)
        report = loop.deliver_pending(limit=10)
        assert report.sent == 4  # 0.4 s each within 80 % of a 2 s lease
        assert len(memory.pending_notices()) == 6
        clock.advance(LEASE)
        assert loop.deliver_pending(limit=10).sent == 4
