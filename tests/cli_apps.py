"""Host apps for ``closeloop --app tests.cli_apps:…`` in tests/test_cli.py.

Each function builds the CloseLoop a host would configure: a SQLite file named by
``CLOSELOOP_CLI_DB`` and a notifier that appends each delivered subject to the
file named by ``CLOSELOOP_CLI_SENT`` (a real file the test reads afterwards).
"""

from __future__ import annotations

import os
from pathlib import Path

from closeloop import CloseLoop
from closeloop.notify import Message
from closeloop.storage import SQLiteStore


class FileNotifier:
    """Delivers a message by appending ``to<TAB>subject`` to a file."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def send(self, message: Message) -> None:
        """Append one line for ``message``."""
        with self.path.open("a") as file:
            file.write(f"{message.to}\t{message.subject}\n")


class RefusingNotifier:
    """A mail server that is down: every delivery fails."""

    def send(self, message: Message) -> None:
        """Refuse ``message``."""
        raise ConnectionRefusedError("mail server down")


def make_loop() -> CloseLoop:
    """The host's loop: its SQLite file and its file notifier."""
    return CloseLoop(store=SQLiteStore(os.environ["CLOSELOOP_CLI_DB"]),
                     notifier=FileNotifier(Path(os.environ["CLOSELOOP_CLI_SENT"])),
                     deliver_notices=False)


def make_failing_loop() -> CloseLoop:
    """The host's loop while its mail server is down."""
    return CloseLoop(store=SQLiteStore(os.environ["CLOSELOOP_CLI_DB"]),
                     notifier=RefusingNotifier(), deliver_notices=False)


def not_a_loop() -> str:
    """A mistake: a factory that returns something else."""
    return "a string"
