"""A host application's loop factory, as ``--app tests.apps:make_loop`` names it.

The CLI and worker tests point closeloop at this, the way a host points it at
its own ``myapp.closeloop:make_loop``: a SQLite file named by
``CLOSELOOP_TEST_DB``, one-touch links, the app's case page, delivery left to
a worker.
"""

from __future__ import annotations

import os
from datetime import timedelta

from closeloop import CloseLoop, EscalationPolicy
from closeloop.onetouch import OneTouch
from closeloop.storage import SQLiteStore

SECRET = "tests-apps-secret-key-that-is-long-enough-0123456789"
BASE_URL = "https://crm.example/one-touch"
CASE_URL = "https://crm.example/cases/{case_id}"


def make_loop() -> CloseLoop:
    """The host's configured loop: SQLite file, one-touch, case_url, worker delivery."""
    return CloseLoop(
        store=SQLiteStore(os.environ["CLOSELOOP_TEST_DB"]),
        one_touch=OneTouch(secret_key=SECRET, base_url=BASE_URL, max_age=timedelta(hours=24)),
        case_url=CASE_URL,
        escalation=EscalationPolicy(untouched_for=timedelta(hours=1)),
        deliver_notices=False,
    )


def not_a_loop() -> str:
    """A factory that returns the wrong thing (the CLI must say so)."""
    return "not a loop"
