"""A notifier that writes each message to the standard ``logging`` module."""

from __future__ import annotations

import logging

from closeloop.notify.base import Message

__all__ = ["LogNotifier"]


class LogNotifier:
    """Logs every message at ``level`` on ``logger`` (default ``"closeloop.notify"``).

    Useful while wiring closeloop into an app, before a mailer is chosen.
    """

    def __init__(
        self, logger: logging.Logger | str = "closeloop.notify", *, level: int = logging.INFO
    ) -> None:
        self.logger = logging.getLogger(logger) if isinstance(logger, str) else logger
        self.level = level

    def send(self, message: Message) -> None:
        """Log the message's recipient, subject and text."""
        self.logger.log(
            self.level,
            "notice %s to %s about case %s: %s\n%s",
            message.kind,
            message.to,
            message.case_id,
            message.subject,
            message.text,
            extra={"closeloop_message": message},
        )
