"""The notifier port: how a notice leaves closeloop (email, chat, a log line)."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from attrs import frozen

from closeloop.notify.content import Links, NoticeContent
from closeloop.notify.directory import User

__all__ = ["Message", "Notifier"]


@frozen(kw_only=True)
class Message:
    """One message to deliver: a notice, rendered for its recipient.

    Attributes:
        to: the recipient's user id; ``None`` for a case event sent to a channel
            that needs no recipient (a webhook).
        subject: one line, never containing a line break.
        text: the plain-text body.
        html: the HTML body; every case field in it is already escaped.
        case_id: the case the message is about.
        kind: ``"assigned"``, ``"escalated"``, or a case-event kind (``"opened"``…).
        notice_id: the notice's message id: the same on every retry and on every
            channel the notice goes to, so a receiver can drop a repeat (for SMTP it
            becomes the Message-ID, for a webhook the ``webhook-id``).
        content: what the notice is about, as data (case fields, actor, note,
            response, links); ``None`` for a notice an older closeloop stored as
            text only.
        recipient: what the loop's user directory says about ``to`` (address, name,
            time zone, locale), or ``None`` when it has no directory or does not
            know them. :class:`~closeloop.notify.SmtpNotifier` takes the address
            from here unless it has a directory of its own.
        channel: the name of the channel delivering it.
    """

    to: str | None
    subject: str
    text: str
    html: str
    case_id: str
    kind: str
    notice_id: str
    content: NoticeContent | None = None
    recipient: User | None = None
    channel: str = "default"

    @property
    def links(self) -> Links:
        """The notice's links (one-touch Change, the app's case page); empty without content."""
        return self.content.links if self.content is not None else Links()

    @classmethod
    def from_content(
        cls, content: NoticeContent, *, to: str | None, notice_id: str, subject: str, text: str,
        html: str, recipient: User | None = None, channel: str = "default",
    ) -> Message:
        """A message carrying ``content`` and the text already rendered from it.

        Use :meth:`closeloop.notify.Templates.message` to render and build in one step.
        """
        return cls(
            to=to, subject=subject, text=text, html=html, case_id=content.case.id,
            kind=content.kind, notice_id=notice_id, content=content, recipient=recipient,
            channel=channel,
        )


@runtime_checkable
class Notifier(Protocol):
    """Protocol: delivers messages. One method.

    ``send`` either delivers the message or raises. Any exception counts as a failed
    delivery: the notice stays in the outbox and ``CloseLoop.deliver_pending()``
    retries it later, so a notifier needs no retry logic of its own. It is never
    called inside a store transaction, so a slow mail server never holds a lock.

    Example, a notifier that posts to a chat webhook (closeloop ships a complete
    one, :class:`~closeloop.notify.WebhookNotifier`)::

        class ChatNotifier:
            def send(self, message: Message) -> None:
                link = message.links.change or message.links.case_page
                httpx.post(WEBHOOK, json={"text": f"{message.subject} {link or ''}"}, timeout=5)
    """

    def send(self, message: Message) -> None:
        """Deliver ``message`` or raise."""
        ...
