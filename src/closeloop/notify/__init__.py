"""Notifiers: how notices (assignment, escalation) leave closeloop.

- :class:`MemoryNotifier`: keeps messages in a list (tests, demos).
- :class:`LogNotifier`: writes them to :mod:`logging`.
- :class:`SmtpNotifier`: sends email through an SMTP server.
"""

from closeloop.notify.base import Message, Notifier
from closeloop.notify.log import LogNotifier
from closeloop.notify.memory import MemoryNotifier
from closeloop.notify.smtp import SmtpNotifier

__all__ = ["LogNotifier", "MemoryNotifier", "Message", "Notifier", "SmtpNotifier"]
