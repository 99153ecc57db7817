"""The outbox: notices written with their change, delivered after it commits.

A notice is written in the same transaction as the case change it is about, as
one delivery per channel that takes it (:mod:`closeloop.notices`), so a crash or
a failing mail server can never lose one. Delivery happens after the commit (by
the process that made the change, or by whoever runs
:meth:`Outbox.deliver_pending`): the notice is rendered by the templates for
its recipient, sent through its channel's notifier, and recorded at once.

- A delivery that fails is retried with back-off (:func:`retry_delay`); each
  channel's delivery has its own attempts, so a failing webhook never makes the
  email go out again.
- A delivered notice is marked delivered before the next one is sent, and a
  deliverer stops starting sends once its claim is nearly used up: a second
  deliverer never sends what the first delivered. Only a crash between sending
  and recording repeats a message, with the same message id.
- A recipient the notifier cannot reach (:class:`~closeloop.errors.RecipientUnknown`)
  is not retried: the delivery is abandoned and the case's history gets a
  ``notice_failed`` event.

A notifier failure never rolls back or hides a committed change.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, Literal

from attrs import evolve, frozen

from closeloop.errors import NotifierError, RecipientUnknown
from closeloop.model import Notice
from closeloop.notify.base import Message
from closeloop.notify.channel import DEFAULT_CHANNEL, Channel
from closeloop.notify.content import NoticeContent
from closeloop.notify.directory import CustomerDirectory, User, UserDirectory
from closeloop.notify.templates import Templates
from closeloop.storage.base import Outbox as NoticeLog
from closeloop.validate import thaw

__all__ = ["DeliveryReport", "Outbox", "retry_delay"]

log = logging.getLogger("closeloop")

#: The share of a lease in which a deliverer starts sending notices it claimed;
#: the rest of the lease is room for the last send to finish (keep the notifier's
#: timeout below it, so a hung server cannot outlast the claim).
_LEASE_SHARE = 0.8

Outcome = Literal["sent", "failed", "abandoned"]


def retry_delay(attempts: int) -> timedelta:
    """How long a notice that has failed ``attempts`` times waits before the next try.

    The first retry may come at once (the next ``deliver_pending()``); then 1, 2, 4 …
    minutes, at most an hour. The back-off keeps notices that keep failing (a
    server that refuses them, a broken template) from filling every batch and
    starving new ones.
    """
    if attempts <= 1:
        return timedelta(0)
    return min(timedelta(minutes=2 ** min(attempts - 2, 10)), timedelta(hours=1))


@frozen
class DeliveryReport:
    """What :meth:`CloseLoop.deliver_pending <closeloop.CloseLoop.deliver_pending>` did.

    Attributes:
        sent: deliveries that succeeded.
        failed: deliveries that failed and wait for a retry.
        abandoned: deliveries given up because the recipient is unknown (each
            recorded in the case's history as ``notice_failed``).
        more: the claim was full (``limit`` deliveries): more may be waiting.
    """

    sent: int
    failed: int
    abandoned: int = 0
    more: bool = False


class Outbox:
    """Delivers a store's pending notices through a loop's channels.

    Args:
        store: where the notices are kept: any store, which needs only the outbox
            port (:class:`closeloop.storage.base.Outbox`).
        channels: the loop's channels by name.
        clock: the loop's (checked) clock.
        lease: how long a deliverer holds a claimed notice before another may retry it.
        templates: renders notices (a channel may have its own).
        users: the host's user directory (recipients' addresses, names, zones,
            locales), or ``None``.
        customers: the host's customer directory (names shown in notices), or ``None``.
        on_abandoned: called with a notice and the reason when its recipient is
            unknown, before the delivery is abandoned (the loop records it in the
            case's history).
    """

    def __init__(
        self,
        store: NoticeLog,
        channels: Mapping[str, Channel],
        clock: Callable[[], datetime],
        lease: timedelta,
        *,
        templates: Templates,
        users: UserDirectory | None = None,
        customers: CustomerDirectory | None = None,
        on_abandoned: Callable[[Notice, str], None] | None = None,
    ) -> None:
        self.store = store
        self.channels = dict(channels)
        self.lease = lease
        self.templates = templates
        self.users = users
        self.customers = customers
        self.on_abandoned = on_abandoned
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

    def channel_of(self, notice: Notice) -> Channel:
        """The channel that delivers ``notice``.

        A notice on the channel ``"default"`` (a loop made with ``notifier=``, or a
        notice an older closeloop wrote) goes through the first channel that takes
        notices for people when the loop has no channel of that name.

        Raises:
            NotifierError: this loop has no such channel (another process may).
        """
        channel = self.channels.get(notice.channel)
        if channel is None and notice.channel == DEFAULT_CHANNEL:
            channel = next((c for c in self.channels.values() if c.people), None)
        if channel is None:
            raise NotifierError(
                f"this loop has no channel {notice.channel!r} (it has "
                f"{', '.join(map(repr, self.channels)) or 'none'}); the notice waits for a "
                "deliverer configured with it"
            )
        return channel

    def message(self, notice: Notice) -> Message:
        """The message ``notice`` is delivered as: rendered for its recipient, now.

        Useful to preview what a pending notice will say. A notice an older
        closeloop stored as text is sent as it was stored.

        Raises:
            NotifierError: the notice's channel is unknown or a template failed.
            InvalidInput: the stored content is not a notice content.
        """
        channel = self.channel_of(notice)
        recipient = self._recipient(notice.to)
        if notice.content is None:
            return Message(to=notice.to, subject=notice.subject, text=notice.text,
                           html=notice.html, case_id=notice.case_id, kind=notice.kind,
                           notice_id=notice.message_id, recipient=recipient,
                           channel=notice.channel)
        content = NoticeContent.from_dict(thaw(notice.content))
        templates = channel.templates or self.templates
        return templates.message(content, to=notice.to, notice_id=notice.message_id,
                                 recipient=recipient, users=self.users,
                                 customers=self.customers, channel=notice.channel)

    def _recipient(self, user_id: str | None) -> User | None:
        if user_id is None or self.users is None:
            return None
        found = self.users.lookup(user_id)
        return found if isinstance(found, User) else None

    def _deliver(self, notices: Sequence[Notice], claimed_at: datetime) -> DeliveryReport:
        """Send each notice and record it at once, while the claim on them holds.

        Each delivered notice is marked delivered before the next one is sent, so
        a second deliverer that takes over never sends it again. Once the claim
        is about to run out (a slow server), the rest are left alone: their
        lease ends and the next claim, by any process, delivers them once.
        """
        deadline = claimed_at + self.lease * _LEASE_SHARE
        outcomes: list[Outcome] = []
        for notice in notices:
            if self._clock() >= deadline:
                break
            outcomes.append(self._attempt(notice))
        return DeliveryReport(sent=outcomes.count("sent"), failed=outcomes.count("failed"),
                              abandoned=outcomes.count("abandoned"))

    def _attempt(self, notice: Notice) -> Outcome:
        try:
            self.channel_of(notice).notifier.send(self.message(notice))
        except RecipientUnknown as exc:
            self._abandon(notice, exc)
            return "abandoned"
        except Exception as exc:  # any other failure leaves the notice pending
            log.warning("could not deliver notice %r (%s, channel %r) for case %r: %r",
                        notice.id, notice.kind, notice.channel, notice.case_id, exc)
            retry_at = self._clock() + retry_delay(notice.attempts + 1)
            _safely(self.store.notice_failed, notice.id, error=repr(exc)[:1000],
                    retry_at=retry_at)
            return "failed"
        _safely(self.store.notices_sent, [notice.id], at=self._clock())
        return "sent"

    def _abandon(self, notice: Notice, exc: RecipientUnknown) -> None:
        """Give the delivery up; the history says so first (a crash then repeats, never loses it)."""
        log.error("giving up notice %r (%s, channel %r) for case %r: %s", notice.id,
                  notice.kind, notice.channel, notice.case_id, exc)
        if self.on_abandoned is not None:
            try:
                self.on_abandoned(notice, str(exc))
            except Exception:
                log.exception("could not record the failed notice %r in case %r's history",
                              notice.id, notice.case_id)
        _safely(self.store.notice_abandoned, notice.id, error=repr(exc)[:1000], at=self._clock())


def _safely(record: Callable[..., None], notices: object, **kwargs: Any) -> None:
    # The case change is committed; a failure to book-keep delivery must not
    # look like a failed change. At worst the notice is delivered again.
    try:
        record(notices, **kwargs)
    except Exception:
        log.exception("could not record delivery state of notice(s) %r", notices)
