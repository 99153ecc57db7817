"""Every fenced Python block in README.md and docs/*.md runs as a reader would paste it.

A block runs on its own, in a fresh namespace, in an empty temporary directory.
An HTML comment on the line just before the fence (invisible on GitHub) changes that:

- ``<!-- snippet: continue -->``: the block continues the previous block of the same
  page, in its namespace (a fragment of a longer example).
- ``<!-- snippet: file=PATH -->``: the block is a module of the reader's app: it is
  written to PATH in the working directory (importable from there) and also run.
- ``<!-- snippet: pytest -->``: the block is a test file: it is written to the working
  directory and run with pytest in a subprocess, which must pass with tests collected
  (``continue, pytest`` tests the app modules the page's earlier blocks wrote).
- ``<!-- snippet: setup=NAME -->``: the names of a setup below are defined first:

  - ``loop``: ``loop`` (a CloseLoop on a MemoryStore, one-touch on), ``outbox`` (its
    MemoryNotifier), ``clock`` (a FixedClock), ``case`` (opened for customer
    ``c-42`` and assigned to ``alice``), ``token`` (a one-touch token for alice's
    link) and ``Status``;
  - ``flask``: the ``loop`` names plus ``app``, a Flask application;
  - ``fastapi``: the ``loop`` names plus ``app``, a FastAPI application;
  - ``django``: the ``loop`` names, with Django settings configured;
  - ``myapp``: the ``loop`` names, also importable as ``from myapp import loop, store``;
  - ``sqlite``: a ``closeloop.db`` in the working directory with two cases, one closed
    three hours after it was opened;
  - ``postgres``: ``DATABASE_URL`` in the environment names a real, empty PostgreSQL
    database (the suite's server).

``CLOSELOOP_ONE_TOUCH_KEY`` is always set. Blocks that are not Python (shell, TOML,
SQL) are not run here; the README's commands are checked by tests/test_docs.py.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import types
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
BLOCK = re.compile(
    r"(?:^<!--\s*snippet:\s*(?P<marks>[^>]*?)\s*-->\n)?^```python\n(?P<code>.*?)^```", re.S | re.M
)
KEY = "snippet-test-key-0123456789abcdefghijklmnopqrstuvwxyz"


class Snippet:
    """One fenced block: where it is, its code, and its marks."""

    def __init__(self, page: Path, line: int, code: str, marks: str) -> None:
        self.page, self.line, self.code = page, line, code
        tokens = [token.strip() for token in marks.split(",") if token.strip()]
        self.continues = "continue" in tokens
        self.pytest = "pytest" in tokens
        values = dict(token.split("=", 1) for token in tokens if "=" in token)
        self.setup = values.get("setup")
        self.file = values.get("file")
        unknown = [t for t in tokens if t not in ("continue", "pytest")
                   and t.split("=", 1)[0] not in ("setup", "file")]
        assert not unknown, f"{self.where}: unknown snippet mark {unknown}"

    @property
    def where(self) -> str:
        """``page:line``, as an editor opens it."""
        return f"{self.page.relative_to(ROOT)}:{self.line}"


def _snippets() -> list[list[Snippet]]:
    """The blocks of every page, grouped into runs: a block and the blocks that continue it."""
    runs: list[list[Snippet]] = []
    for page in PAGES:
        text = page.read_text(encoding="utf-8")
        for match in BLOCK.finditer(text):
            line = text[: match.start("code")].count("\n")
            snippet = Snippet(page, line, match["code"], match["marks"] or "")
            if snippet.continues:
                assert runs and runs[-1][0].page == page, f"{snippet.where}: nothing to continue"
                runs[-1].append(snippet)
            else:
                runs.append([snippet])
    return runs


def _loop_names() -> dict[str, Any]:
    from datetime import timedelta

    from closeloop import CloseLoop, Status
    from closeloop.notify import MemoryNotifier
    from closeloop.onetouch import OneTouch
    from closeloop.storage import MemoryStore
    from closeloop.testing import FixedClock

    clock, outbox, store = FixedClock(), MemoryNotifier(), MemoryStore()
    loop = CloseLoop(store=store, notifier=outbox, clock=clock, one_touch=OneTouch(
        secret_key=KEY, base_url="https://crm.example/one-touch", max_age=timedelta(hours=24)))
    case = loop.open_case("c-42", by="agent-1", comment="Called in upset")
    case = loop.assign(case.id, to="alice", by="bob")
    token = parse_qs(urlsplit(loop.one_touch.link(case.id)).query)["token"][0]
    return {"loop": loop, "outbox": outbox, "clock": clock, "case": case, "token": token,
            "store": store, "Status": Status}


def _flask(_: pytest.MonkeyPatch) -> dict[str, Any]:
    from flask import Flask

    return {**_loop_names(), "app": Flask("snippet")}


def _fastapi(_: pytest.MonkeyPatch) -> dict[str, Any]:
    from fastapi import FastAPI

    return {**_loop_names(), "app": FastAPI()}


def _django(_: pytest.MonkeyPatch) -> dict[str, Any]:
    import django
    from django.conf import settings

    if not settings.configured:
        settings.configure(DEBUG=False, SECRET_KEY=KEY, ROOT_URLCONF=__name__,
                           ALLOWED_HOSTS=["*"], INSTALLED_APPS=[])
        django.setup()
    return _loop_names()


def _myapp(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    names = _loop_names()
    module = types.ModuleType("myapp")
    module.__dict__.update(names)
    monkeypatch.setitem(sys.modules, "myapp", module)
    return names


def _sqlite(_: pytest.MonkeyPatch) -> dict[str, Any]:
    from closeloop import CloseLoop, Status
    from closeloop.storage import SQLiteStore
    from closeloop.testing import FixedClock

    clock = FixedClock()
    store = SQLiteStore("closeloop.db")
    loop = CloseLoop(store=store, clock=clock, deliver_notices=False)
    done = loop.open_case("c-1", by="agent")
    loop.open_case("c-2", by="agent")
    clock.advance(hours=3)
    loop.set_status(done.id, Status.CLOSED, by="alice", comment="called back")
    store.close()
    return {}


_CLEANUPS: list[Callable[[], None]] = []


def _postgres(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    import secrets

    import psycopg
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    import postgres_server

    server = os.environ[postgres_server.DSN_VARIABLE]
    name = f"snippet_{secrets.token_hex(4)}"
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")

    def drop() -> None:
        with psycopg.connect(server, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")

    _CLEANUPS.append(drop)
    monkeypatch.setenv("DATABASE_URL", make_conninfo(**{**conninfo_to_dict(server), "dbname": name}))
    return {}


SETUPS: dict[str, Callable[[pytest.MonkeyPatch], dict[str, Any]]] = {
    "loop": lambda _: _loop_names(), "flask": _flask, "fastapi": _fastapi, "django": _django,
    "myapp": _myapp, "sqlite": _sqlite, "postgres": _postgres,
}
RUNS = _snippets()


@pytest.fixture
def sandbox(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    """An empty working directory and the environment a reader's shell would have."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CLOSELOOP_ONE_TOUCH_KEY", KEY)
    yield monkeypatch
    while _CLEANUPS:
        _CLEANUPS.pop()()


@pytest.mark.parametrize("run", RUNS, ids=[run[0].where for run in RUNS])
def test_snippet_runs(run: list[Snippet], sandbox: pytest.MonkeyPatch) -> None:
    """The block (and the blocks that continue it) runs without an exception."""
    first = run[0]
    namespace: dict[str, Any] = {"__name__": "__snippet__"}
    if first.setup is not None:
        assert first.setup in SETUPS, f"{first.where}: unknown setup {first.setup!r}"
        namespace.update(SETUPS[first.setup](sandbox))
    for snippet in run:
        if snippet.pytest:
            _run_as_test_file(snippet)
            continue
        if snippet.file is not None:
            target = Path.cwd() / snippet.file
            target.parent.mkdir(parents=True, exist_ok=True)
            for package in list(target.relative_to(Path.cwd()).parents)[:-1]:
                (Path.cwd() / package / "__init__.py").touch()
            target.write_text(snippet.code, encoding="utf-8")
            sandbox.syspath_prepend(str(Path.cwd()))
        code = compile("\n" * (snippet.line) + snippet.code, str(snippet.page), "exec")
        exec(code, namespace)  # noqa: S102 - running the documentation is the point


def _run_as_test_file(snippet: Snippet) -> None:
    """Write the block to a test file next to the app modules written before it; run pytest."""
    name = f"test_snippet_{snippet.page.stem.replace('-', '_')}_{snippet.line}.py"
    (Path.cwd() / name).write_text(snippet.code, encoding="utf-8")
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", name], cwd=Path.cwd(),
        capture_output=True, text=True, timeout=600, check=False,
        env={**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(Path.cwd())])},
    )
    assert result.returncode == 0, f"{snippet.where}:\n{result.stdout[-4000:]}{result.stderr[-2000:]}"


def test_every_page_with_python_has_snippets_collected() -> None:
    """The collector finds the blocks (a broken pattern would make every test vanish)."""
    assert len(RUNS) >= 30
    assert {run[0].page.name for run in RUNS} >= {"README.md", "one-touch.md", "storage.md"}
