"""The public notifier contract (closeloop.testing.NotifierContract) against the bundled notifiers.

SmtpNotifier runs it against a real SMTP server in tests/test_smtp.py.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from closeloop.notify import LogNotifier, MemoryNotifier, Notifier
from closeloop.testing import NotifierContract
from closeloop.testing.notifier_contract import Delivered


class TestMemoryNotifier(NotifierContract):
    """MemoryNotifier keeps the notifier contract."""

    @pytest.fixture
    def memory(self) -> MemoryNotifier:
        """The notifier, shared by the two fixtures below."""
        return MemoryNotifier()

    @pytest.fixture
    def notifier(self, memory: MemoryNotifier) -> Iterator[Notifier]:
        """A MemoryNotifier."""
        yield memory

    @pytest.fixture
    def delivered(self, memory: MemoryNotifier) -> Delivered:
        """What it recorded in .sent."""
        return lambda: [(m.to, m.subject, m.text.strip()) for m in memory.sent]

    def test_failing_memory_notifier_raises(self) -> None:
        """MemoryNotifier with fail set raises instead of recording (the retry path's trigger)."""
        from closeloop import NotifierError
        from closeloop.testing.notifier_contract import make_message

        memory = MemoryNotifier()
        memory.fail = True
        with pytest.raises(NotifierError):
            memory.send(make_message())
        assert memory.sent == []


class TestLogNotifier(NotifierContract):
    """LogNotifier keeps the notifier contract: each message is one log record."""

    @pytest.fixture
    def notifier(self, caplog: pytest.LogCaptureFixture) -> Iterator[Notifier]:
        """A LogNotifier on its default logger, captured."""
        caplog.set_level(logging.INFO, logger="closeloop.notify")
        yield LogNotifier()

    @pytest.fixture
    def delivered(self, caplog: pytest.LogCaptureFixture) -> Delivered:
        """The messages found in the captured records."""

        def found() -> list[tuple[str, str, str]]:
            messages = [getattr(r, "closeloop_message", None) for r in caplog.records]
            return [(m.to, m.subject, m.text.strip()) for m in messages if m is not None]

        return found
