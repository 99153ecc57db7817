"""The outbox: notices written with their change, delivered after it commits.

A notice is written in the same transaction as the case change it is about, so
a crash or a failing mail server can never lose one. Delivery happens after
the commit (by the process that made the change, or by whoever runs
:meth:`Outbox.deliver_pending`), and a failed delivery is retried with
back-off. A notifier failure never rolls back or hides a committed change.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Any

from attrs import evolve, frozen

from closeloop.model import Notice
from closeloop.notify.base import Message, Notifier
from closeloop.storage.base import Store

__all__ = ["DeliveryReport", "Outbox", "retry_delay"]

log = logging.getLogger("closeloop")

#: The share of a lease in which a deliverer starts sending notices it claimed;
#: the rest of the lease is room for the last send to finish (keep the notifier's
#: timeout below it, so a hung server cannot outlast the claim).
_LEASE_SHARE = 0.8


def retry_delay(attempts: int) -> timedelta:
    """How long a notice that has failed ``attempts`` times waits before the next try.

    The first retry may come at once (the next ``deliver_pending()``); then 1, 2, 4 …
    minutes, at most an hour. The back-off keeps notices that cannot be delivered
    (a user without an address) from filling every batch and starving new ones.
    """
    if attempts <= 1:
        return timedelta(0)
    return min(timedelta(minutes=2 ** min(attempts - 2, 10)), timedelta(hours=1))


@frozen
class DeliveryReport:
    """What :meth:`CloseLoop.deliver_pending <closeloop.CloseLoop.deliver_pending>` did."""

    sent: int
    failed: int
    #: The claim was full (``limit`` notices): more may be waiting.
    more: bool = False


class Outbox:
    """Delivers a store's pending notices through one notifier.

    Args:
        store: where the notices are kept.
        notifier: what sends them.
        clock: the loop's (checked) clock.
        lease: how long a deliverer holds a claimed notice before another may retry it.
    """

    def __init__(
        self, store: Store, notifier: Notifier, clock: Callable[[], datetime], lease: timedelta
    ) -> None:
        self.store = store
        self.notifier = notifier
        self.lease = lease
        self._clock = clock

    def deliver_pending(self, limit: int) -> DeliveryReport:
        """Claim up to ``limit`` due notices and deliver them; see the module docstring."""
        claimed_at = self._clock()
        notices = self.store.claim_notices(now=claimed_at, lease=self.lease, limit=limit)
        report = self._deliver(notices, claimed_at)
        return evolve(report, more=len(notices) >= limit)

    def deliver(self, notices: Sequence[Notice]) -> DeliveryReport:
        """Deliver notices this process holds the claim on (ones it just wrote).

        Their claim started when they were written (``created_at``).
        """
        if not notices:
            return DeliveryReport(sent=0, failed=0)
        return self._deliver(notices, min(notice.created_at for notice in notices))

    def _deliver(self, notices: Sequence[Notice], claimed_at: datetime) -> DeliveryReport:
        """Send each notice and record it at once, while the claim on them holds.

        Each delivered notice is marked delivered before the next one is sent, so
        a second deliverer that takes over never sends it again. Once the claim
        is about to run out (a slow server), the rest are left alone: their
        lease ends and the next claim, by any process, delivers them once.
        """
        deadline = claimed_at + self.lease * _LEASE_SHARE
        sent = failed = 0
        for notice in notices:
            if self._clock() >= deadline:
                break
            if self._send(notice):
                _safely(self.store.notices_sent, [notice.id], at=self._clock())
                sent += 1
            else:
                failed += 1
        return DeliveryReport(sent=sent, failed=failed)

    def _send(self, notice: Notice) -> bool:
        try:
            self.notifier.send(Message.from_notice(notice))
        except Exception as exc:  # any notifier failure leaves the notice pending
            log.warning("could not deliver notice %r for case %r: %r", notice.id,
                        notice.case_id, exc)
            retry_at = self._clock() + retry_delay(notice.attempts + 1)
            _safely(self.store.notice_failed, notice.id, error=repr(exc)[:1000],
                    retry_at=retry_at)
            return False
        return True


def _safely(record: Callable[..., None], notices: object, **kwargs: Any) -> None:
    # The case change is committed; a failure to book-keep delivery must not
    # look like a failed change. At worst the notice is delivered again.
    try:
        record(notices, **kwargs)
    except Exception:
        log.exception("could not record delivery state of notice(s) %r", notices)
