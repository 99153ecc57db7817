"""A host application's loop factory, as ``--app tests.apps:make_loop`` names it.

The CLI and worker tests point closeloop at this, the way a host points it at
its own ``myapp.closeloop:make_loop``: a SQLite file named by
``CLOSELOOP_TEST_DB``, one-touch links, the app's case page, delivery left to
a worker. With ``CLOSELOOP_TEST_SENT`` set, its email channel appends each
delivered message to that file as one JSON line (a real file the test reads).
"""

from __future__ import annotations

import json
import os
from datetime import timedelta
from pathlib import Path

from closeloop import CloseLoop, EscalationPolicy
from closeloop.notify import Message, Notifier
from closeloop.onetouch import OneTouch
from closeloop.storage import SQLiteStore

SECRET = "tests-apps-secret-key-that-is-long-enough-0123456789"
BASE_URL = "https://crm.example/one-touch"
CASE_URL = "https://crm.example/cases/{case_id}"


class FileNotifier:
    """Delivers a message by appending it to a file as one JSON line."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def send(self, message: Message) -> None:
        """Append ``message``'s recipient, kind, subject and links."""
        with self.path.open("a", encoding="utf-8") as file:
            file.write(json.dumps({"to": message.to, "kind": message.kind,
                                   "subject": message.subject, "change": message.links.change,
                                   "case_page": message.links.case_page}) + "\n")


def make_loop() -> CloseLoop:
    """The host's configured loop: SQLite file, one-touch, case_url, worker delivery."""
    sent = os.environ.get("CLOSELOOP_TEST_SENT")
    notifiers: dict[str, Notifier] | None = None if sent is None else {"email": FileNotifier(Path(sent))}
    return CloseLoop(
        store=SQLiteStore(os.environ["CLOSELOOP_TEST_DB"]),
        notifiers=notifiers,
        one_touch=OneTouch(secret_key=SECRET, base_url=BASE_URL, max_age=timedelta(hours=24)),
        case_url=CASE_URL,
        escalation=EscalationPolicy(untouched_for=timedelta(hours=1)),
        deliver_notices=False,
    )


def not_a_loop() -> str:
    """A factory that returns the wrong thing (the CLI must say so)."""
    return "not a loop"
