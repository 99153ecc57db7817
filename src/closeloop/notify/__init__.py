"""Notifiers: how notices (assignment, escalation, case events) leave closeloop.

Channels:

- :class:`MemoryNotifier`: keeps messages in a list (tests, demos).
- :class:`LogNotifier`: writes them to :mod:`logging`.
- :class:`SmtpNotifier`: sends email through an SMTP server.
- :class:`WebhookNotifier`: POSTs JSON over HTTP, signed the Standard Webhooks way.

Where messages go: :class:`Channel` (a notifier, and which notices it takes:
those addressed to people, and the case events it subscribes to).

What a notice says:

- :class:`NoticeContent` (with :class:`CaseFacts`, :class:`Note`,
  :class:`ResponseFacts`, :class:`Links`): the facts, stored as data.
- :class:`Templates`: renders them into subject, text and HTML (Jinja2).
- :class:`CustomerDirectory` and :class:`UserDirectory`: the host's records of
  customers (names) and users (addresses, time zones, locales).
"""

from closeloop.errors import RecipientUnknown
from closeloop.notify.base import Message, Notifier
from closeloop.notify.channel import Channel
from closeloop.notify.content import (
    CASE_EVENTS,
    NOTICE_KINDS,
    CaseFacts,
    Links,
    Note,
    NoticeContent,
    ResponseFacts,
)
from closeloop.notify.directory import (
    AddressBookDirectory,
    Customer,
    CustomerDirectory,
    NoCustomers,
    StaticUserDirectory,
    User,
    UserDirectory,
)
from closeloop.notify.log import LogNotifier
from closeloop.notify.memory import MemoryNotifier
from closeloop.notify.smtp import SmtpNotifier
from closeloop.notify.templates import Rendered, Templates
from closeloop.notify.webhook import WebhookNotifier

__all__ = [
    "CASE_EVENTS",
    "NOTICE_KINDS",
    "AddressBookDirectory",
    "CaseFacts",
    "Channel",
    "Customer",
    "CustomerDirectory",
    "Links",
    "LogNotifier",
    "MemoryNotifier",
    "Message",
    "NoCustomers",
    "Note",
    "NoticeContent",
    "Notifier",
    "RecipientUnknown",
    "Rendered",
    "ResponseFacts",
    "SmtpNotifier",
    "StaticUserDirectory",
    "Templates",
    "User",
    "UserDirectory",
    "WebhookNotifier",
]
