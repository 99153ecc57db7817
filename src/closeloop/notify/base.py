"""The notifier port: how a notice leaves closeloop (email, chat, a log line)."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from attrs import frozen

from closeloop.model import Notice
from closeloop.notify.content import Links, NoticeContent

__all__ = ["Message", "Notifier"]


@frozen(kw_only=True)
class Message:
    """One message to deliver: a rendered notice.

    Attributes:
        to: the recipient's user id (a notifier maps it to an address).
        subject: one line, never containing a line break.
        text: the plain-text body.
        html: the HTML body; every case field in it is already escaped.
        case_id: the case the message is about.
        kind: ``"assigned"``, ``"escalated"``, …
        notice_id: the outbox entry it comes from; the same id on every retry, so a
            notifier can de-duplicate (for SMTP it becomes the Message-ID, for a
            webhook the ``webhook-id``).
        content: what the notice is about, as data (case fields, actor, note,
            response, links), when the notice was written from structured facts;
            ``None`` for a message that has only its text. A notifier given
            templates renders its own text from it, in the recipient's language
            and time zone.
    """

    to: str
    subject: str
    text: str
    html: str
    case_id: str
    kind: str
    notice_id: str
    content: NoticeContent | None = None

    @property
    def links(self) -> Links:
        """The notice's links (one-touch Change, the app's case page); empty without content."""
        return self.content.links if self.content is not None else Links()

    @classmethod
    def from_content(
        cls, content: NoticeContent, *, to: str, notice_id: str, subject: str, text: str,
        html: str,
    ) -> Message:
        """A message carrying ``content`` and the text already rendered from it.

        Use :meth:`closeloop.notify.Templates.message` to render and build in one step.
        """
        return cls(
            to=to, subject=subject, text=text, html=html, case_id=content.case.id,
            kind=content.kind, notice_id=notice_id, content=content,
        )

    @classmethod
    def from_notice(cls, notice: Notice) -> Message:
        """The message a stored notice delivers."""
        return cls(
            to=notice.to,
            subject=notice.subject,
            text=notice.text,
            html=notice.html,
            case_id=notice.case_id,
            kind=notice.kind,
            notice_id=notice.id,
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
