"""A notifier that keeps what it sends in a list: for tests, demos and examples."""

from __future__ import annotations

import threading

from closeloop.errors import NotifierError
from closeloop.notify.base import Message

__all__ = ["MemoryNotifier"]


class MemoryNotifier:
    """Records every message in :attr:`sent`, oldest first.

    Set :attr:`fail` to make the next sends raise :class:`NotifierError`, to see
    how an application behaves while the mail server is down.

    Example::

        outbox = MemoryNotifier()
        loop = CloseLoop(notifier=outbox)
        loop.assign(case.id, to="alice", by="bob")
        assert outbox.sent[-1].to == "alice"
    """

    def __init__(self) -> None:
        self.sent: list[Message] = []
        self.fail = False
        self._lock = threading.Lock()

    def send(self, message: Message) -> None:
        """Record ``message``, or raise NotifierError while :attr:`fail` is set."""
        if self.fail:
            raise NotifierError("MemoryNotifier is set to fail")
        with self._lock:
            self.sent.append(message)
