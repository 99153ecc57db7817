"""Reading the command line's values: each refusal names the option and echoes the value as typed.

Each ``parse_*`` function is an argparse ``type=``: it raises
:class:`argparse.ArgumentTypeError`, which argparse prints as ``argument
--until: …`` with exit code 2. :class:`UsageError` is for what only shows when
options are read together (``--until`` before ``--since``, a bad ``--app``).
"""

from __future__ import annotations

import argparse
import importlib
import os
import re
import sqlite3
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import quote

import attrs

from closeloop.errors import CloseLoopError, InvalidInput, StoreError
from closeloop.loop import CloseLoop
from closeloop.model import Status
from closeloop.rules import parse_duration
from closeloop.validate import check_status_name

__all__ = [
    "Instant",
    "UsageError",
    "check_database",
    "load_app",
    "parse_duration_option",
    "parse_instant",
    "parse_limit",
    "parse_name",
    "parse_status",
]

_SQLITE_HEADER = b"SQLite format 3\x00"


class UsageError(Exception):
    """The options, read together, make no sense: exit code 2."""


@attrs.frozen
class Instant:
    """A date/time option: the moment, and the text the user typed for it (for messages)."""

    at: datetime
    text: str


def parse_instant(text: str) -> Instant:
    """An ISO 8601 date or date-time; without an offset it means UTC."""
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text} is not an ISO 8601 date or date-time (such as 2026-12-01 or "
            "2026-12-01T09:00+01:00)") from None
    return Instant(parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC), text)


def parse_duration_option(text: str) -> timedelta:
    """An ISO 8601 duration (``PT1H``, ``P2D``, ``P1DT12H``) or a number of seconds (``90.5``)."""
    seconds = text.strip()
    if re.fullmatch(r"[0-9]+\.[0-9]+", seconds) and float(seconds) > 0:
        return timedelta(seconds=float(seconds))
    try:
        return parse_duration(int(seconds) if seconds.isdigit() else text, "duration")
    except InvalidInput as exc:
        raise argparse.ArgumentTypeError(
            f"{text} is not a duration: {exc.reason}") from None


def parse_status(text: str) -> Status | str:
    """A status by value or display name, in any case: ``closed``, ``Closed``, ``CLOSED``;
    or a workflow's own status name (``waiting``), which the app's loop then checks."""
    try:
        return Status.parse(text.strip())
    except InvalidInput:
        pass
    try:
        return check_status_name("status", text.strip().lower())
    except InvalidInput:
        names = ", ".join(s.value for s in Status)
        raise argparse.ArgumentTypeError(
            f"{text} is not a status; choose from {names} (any case) or your workflow's "
            "status names") from None


def parse_name(text: str) -> str:
    """A user, customer, reason or other name: not empty."""
    if not text.strip():
        raise argparse.ArgumentTypeError("must not be empty")
    return text


def parse_limit(text: str) -> int:
    """A positive whole number."""
    if not re.fullmatch(r"\s*\d+\s*", text) or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text} is not a positive whole number")
    return int(text)


def check_database(path: Path, *, read_only: bool) -> None:
    """Refuse, before closeloop opens it, a file that is not a closeloop database.

    A missing file is a usage error; an empty, non-SQLite or foreign file a
    :class:`StoreError` (exit 1). For ``read_only`` commands a file of an older
    schema is refused too, because opening it with :class:`SQLiteStore` would
    migrate it: a read-only command never writes.
    """
    if not path.is_file():
        raise UsageError(f"--db: no database file at {path} (closeloop creates it when your app "
                         "first opens a SQLiteStore there)")
    with path.open("rb") as file:
        header = file.read(len(_SQLITE_HEADER))
    if not header:
        raise StoreError(f"{path} is empty (0 bytes), not a closeloop database; nothing was written")
    if header != _SQLITE_HEADER:
        raise StoreError(f"{path} is not a SQLite database; nothing was written")
    try:
        with sqlite3.connect(f"file:{quote(str(path.resolve()))}?mode=ro", uri=True) as conn:
            (version,) = conn.execute("PRAGMA user_version").fetchone()
        conn.close()
    except sqlite3.Error as exc:
        raise StoreError(f"{path} cannot be read: {exc}") from None
    if version == 0:
        raise StoreError(f"{path} is a database that closeloop did not create; nothing was written")
    if read_only and version < _current_schema_version():
        raise StoreError(
            f"{path} has schema version {version}, older than this closeloop's; open it once with "
            "your app (or run closeloop escalate) to upgrade it. A read-only command never writes.")


def _current_schema_version() -> int:
    from closeloop.storage import sqlite  # its migrations say which version is current

    return len(sqlite.MIGRATIONS)


def load_app(spec: str) -> CloseLoop:
    """Import ``module:function``, call the function, and return the CloseLoop it builds.

    The current directory is importable, as with ``python -m``.

    Raises:
        UsageError: the spec is malformed, the module or function is missing, or
            the function returns something other than a CloseLoop.
    """
    module_name, colon, function_name = spec.partition(":")
    if not colon or not module_name or not function_name.isidentifier():
        raise UsageError(f"--app: {spec} is not module:function (such as myapp.feedback:make_loop)")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise UsageError(f"--app: cannot import {module_name}: {exc}") from None
    factory = getattr(module, function_name, None)
    if not callable(factory):
        raise UsageError(f"--app: {module_name} has no function {function_name}")
    try:
        loop = factory()
    except CloseLoopError:
        raise
    except Exception as exc:  # the host's own code failed: say where, without a traceback
        raise StoreError(f"--app: {spec}() raised {type(exc).__name__}: {exc}") from None
    if not isinstance(loop, CloseLoop):
        raise UsageError(f"--app: {spec}() returned a {type(loop).__name__}, not a CloseLoop")
    return loop
