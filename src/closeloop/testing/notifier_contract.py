"""The notifier contract as a pytest class: subclass it and provide two fixtures."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from closeloop.notify.base import Message, Notifier

__all__ = ["Delivered", "NotifierContract", "make_message"]

#: What arrived at the far end, as ``(recipient user id, subject, text)`` triples.
Delivered = Callable[[], list[tuple[str, str, str]]]


def make_message(**changes: str) -> Message:
    """A valid message, with any fields overridden."""
    fields = {
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
        """The notifier has the Notifier protocol's send method."""
        assert isinstance(notifier, Notifier)

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
