"""The notifier contract as a pytest class: subclass it and provide two fixtures."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from closeloop.notify.base import Message, Notifier
from closeloop.notify.content import CaseFacts, Links, Note, NoticeContent
from closeloop.protocol_check import protocol_problems

__all__ = ["Delivered", "NotifierContract", "make_content", "make_message"]

#: What arrived at the far end, as ``(recipient user id, subject, text)`` triples.
Delivered = Callable[[], list[tuple[str, str, str]]]


def make_content(**changes: Any) -> NoticeContent:
    """A valid ``assigned`` notice content for case ``case-1``, with any fields overridden."""
    at = datetime(2026, 1, 7, 9, 0, tzinfo=UTC)
    fields: dict[str, Any] = {
        "kind": "assigned",
        "case": CaseFacts(id="case-1", customer_id="c-42", status="open", opened_at=at,
                          priority="high", reasons=("detractor",)),
        "actor": "bob",
        "created_at": at,
        "note": Note(text="Please call them today", by="bob"),
        "links": Links(change="https://crm.example.test/one-touch?token=t",
                       case_page="https://crm.example.test/cases/case-1"),
    }
    fields.update(changes)
    return NoticeContent(**fields)


def make_message(**changes: Any) -> Message:
    """A valid message, with any fields overridden."""
    fields: dict[str, Any] = {
        "to": "alice",
        "subject": "Case case-1 for customer c-42 assigned to you",
        "text": "bob assigned you a case for customer c-42.\n",
        "html": "<p>bob assigned you a case for customer c-42.</p>",
        "case_id": "case-1",
        "kind": "assigned",
        "notice_id": "notice-1",
    }
    fields.update(changes)
    return Message(**fields)


class NotifierContract:
    """Behaviour every :class:`~closeloop.notify.Notifier` must have.

    Provide two fixtures: ``notifier`` (the notifier under test, delivering to
    something the test can see) and ``delivered`` (a callable returning what arrived,
    as ``(user id, subject, text)`` triples, oldest first).
    """

    @pytest.fixture
    def notifier(self) -> Iterator[Notifier]:
        """Override: the notifier under test."""
        raise NotImplementedError("provide a `notifier` fixture")

    @pytest.fixture
    def delivered(self) -> Delivered:
        """Override: what has arrived so far."""
        raise NotImplementedError("provide a `delivered` fixture")

    def test_satisfies_protocol(self, notifier: Notifier) -> None:
        """The notifier has the Notifier protocol's methods, each callable as closeloop calls it."""
        assert protocol_problems(notifier, Notifier) == []

    def test_delivers_recipient_subject_and_text(
        self, notifier: Notifier, delivered: Delivered
    ) -> None:
        """A sent message arrives once, for its recipient, with subject and text intact."""
        notifier.send(make_message())
        assert delivered() == [
            ("alice", make_message().subject, make_message().text.strip()),
        ]

    def test_keeps_unicode(self, notifier: Notifier, delivered: Delivered) -> None:
        """Non-ASCII subjects and bodies arrive unchanged."""
        message = make_message(subject="Kunde Jürgen: Beschwerde ✓", text="Grüße, 日本語\n")
        notifier.send(message)
        assert delivered() == [("alice", message.subject, message.text.strip())]

    def test_delivers_in_order(self, notifier: Notifier, delivered: Delivered) -> None:
        """Several messages arrive in the order they were sent."""
        for index in range(3):
            notifier.send(make_message(subject=f"message {index}", notice_id=f"n-{index}",
                                       to="bob"))
        assert [subject for _, subject, _ in delivered()] == [
            "message 0", "message 1", "message 2",
        ]

    def test_delivers_a_message_with_structured_content(
        self, notifier: Notifier, delivered: Delivered
    ) -> None:
        """A message carrying NoticeContent (links, case fields) arrives like any other."""
        message = make_message(content=make_content(), notice_id="n-content")
        notifier.send(message)
        assert [to for to, _, _ in delivered()] == ["alice"]
