"""The webhook endpoint the HTTP tests serve: Typeform deliveries into a SQLite loop.

Importable by a server process (gunicorn ``webhook_apps:app``): the database path comes
from ``CLOSELOOP_WEBHOOK_DB``, so every worker process opens the same file.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
from pathlib import Path
from typing import Any

from closeloop import CloseLoop
from closeloop.sources import Typeform, webhook_app
from closeloop.storage import SQLiteStore
from closeloop.triggers import Trigger, contact_requested, nps_between

SECRET = "typeform-webhook-secret"
DB_VARIABLE = "CLOSELOOP_WEBHOOK_DB"


def make_loop(path: str | Path) -> CloseLoop:
    """A loop over the SQLite file at ``path`` with the example form's triggers."""
    return CloseLoop(store=SQLiteStore(path), triggers=[
        Trigger("detractor", nps_between(0, 6)),
        Trigger("contact-request", contact_requested()),
    ])


def typeform_source() -> Typeform:
    """The Typeform adapter for Typeform's documented example form, checking signatures."""
    return Typeform(SECRET, score_ref="readable_ref_opinion_scale",
                    comment_ref="readable_ref_long_text", contact_ref="readable_ref_yes_no",
                    customer_field="user_id")


def make_app(path: str | Path, **options: Any) -> Any:
    """The WSGI endpoint over the SQLite file at ``path``."""
    return webhook_app(make_loop(path), typeform_source(), **options)


def sign(body: bytes, secret: str = SECRET) -> str:
    """Typeform's ``Typeform-Signature`` for ``body``."""
    digest = hmac.new(secret.encode(), body, hashlib.sha256).digest()
    return "sha256=" + base64.b64encode(digest).decode()


def __getattr__(name: str) -> Any:
    # ``app`` is built on first use, in the server's worker process, from the environment.
    if name == "app":
        return make_app(os.environ[DB_VARIABLE])
    raise AttributeError(name)
