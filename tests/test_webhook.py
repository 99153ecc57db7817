"""webhook_app over real HTTP: status codes and JSON bodies, and concurrent deliveries under gunicorn."""

from __future__ import annotations

import copy
import json
import os
import signal
import socket
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from waitress.server import create_server

from closeloop import CloseLoop, InvalidInput, SignatureInvalid
from closeloop.sources import webhook_app
from closeloop.storage import SQLiteStore
from test_sources import TYPEFORM, body
from webhook_apps import DB_VARIABLE, make_app, make_loop, sign, typeform_source

#: Only there so a broken server fails the test instead of hanging it.
HANG_GUARD = 60.0


class Served:
    """A WSGI app served by waitress on a free loopback port, in a thread."""

    def __init__(self, app: Any) -> None:
        self.server = create_server(app, host="127.0.0.1", port=0, threads=4)
        self.url = f"http://127.0.0.1:{self.server.effective_port}/hooks/typeform"
        self.closing = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self) -> None:
        """Serve until closed; the loop's select on the closed socket ends it."""
        try:
            self.server.run()
        except (OSError, ValueError):
            # waitress has no thread-safe stop: closing its socket under the running
            # select loop is how it ends, with EBADF. Anything before close() is real.
            if not self.closing.is_set():
                raise

    def close(self) -> None:
        self.closing.set()
        self.server.close()
        self.thread.join(HANG_GUARD)


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    """The Typeform endpoint over a SQLite file, served over HTTP."""
    server = Served(make_app(tmp_path / "closeloop.db", max_body=200_000))
    yield server
    server.close()


def post(url: str, data: bytes, signature: str | None) -> httpx.Response:
    """POST ``data`` as Typeform does, with ``signature`` in Typeform-Signature when given."""
    headers = {"Content-Type": "application/json"}
    if signature is not None:
        headers["Typeform-Signature"] = signature
    return httpx.post(url, content=data, headers=headers, timeout=HANG_GUARD)


class TestTypeformOverHTTP:
    def test_wrong_signature_is_401_and_writes_nothing(self, served: Served, tmp_path: Path) -> None:
        """A wrong Typeform-Signature is 401 with the closeloop message as JSON; nothing is stored."""
        raw = body(TYPEFORM)
        answer = post(served.url, raw, sign(raw, "not-the-secret"))
        assert answer.status_code == 401
        assert answer.headers["content-type"] == "application/json"
        assert answer.json() == {"error": "signature_invalid",
                                 "message": "webhook signature refused: the Typeform-Signature "
                                            "header does not match the body"}
        loop = make_loop(tmp_path / "closeloop.db")
        assert loop.cases() == [] and loop.store.responses([TYPEFORM["form_response"]["token"]]) == {}

    def test_malformed_is_400_naming_the_field(self, served: Served) -> None:
        """A signed payload with a score of 42 is 400: the JSON path and the message."""
        data = copy.deepcopy(TYPEFORM)
        data["form_response"]["answers"][3]["number"] = 42
        raw = body(data)
        answer = post(served.url, raw, sign(raw))
        assert answer.status_code == 400
        payload = answer.json()
        assert (payload["error"], payload["field"]) == ("invalid_input", "form_response.answers[3].number")
        with pytest.raises(InvalidInput) as info:
            typeform_source().parse(raw, {"Typeform-Signature": sign(raw)})
        assert payload["message"] == str(info.value)

    def test_signed_is_200_with_outcomes(self, served: Served, tmp_path: Path) -> None:
        """The right signature is 200 with the outcomes as JSON: opened, then duplicate."""
        raw = body(TYPEFORM)
        first = post(served.url, raw, sign(raw))
        again = post(served.url, raw, sign(raw))
        assert (first.status_code, again.status_code) == (200, 200)
        (opened,) = first.json()["outcomes"]
        (repeat,) = again.json()["outcomes"]
        loop = make_loop(tmp_path / "closeloop.db")
        (case,) = loop.cases()
        assert opened == {"response_id": "a3a12ec67a1365927098a606107fac15", "kind": "opened",
                          "case_id": case.id}
        assert repeat == {**opened, "kind": "duplicate"}
        assert case.customer_id == "abc123456" and case.reasons == ("detractor", "contact-request")

    def test_post_only(self, served: Served) -> None:
        """GET is 405 with Allow: POST."""
        answer = httpx.get(served.url, timeout=HANG_GUARD)
        assert answer.status_code == 405 and answer.headers["allow"] == "POST"
        assert answer.json()["error"] == "method_not_allowed"

    def test_body_over_the_limit_is_413(self, served: Served, tmp_path: Path) -> None:
        """A body over max_body is 413, refused before it is parsed or stored."""
        raw = json.dumps({**TYPEFORM, "padding": "x" * 300_000}).encode()
        answer = post(served.url, raw, sign(raw))
        assert answer.status_code == 413 and answer.json()["error"] == "too_large"
        assert make_loop(tmp_path / "closeloop.db").cases() == []


def test_typeform_signature_decides_before_anything_is_written(tmp_path: Path) -> None:
    """Without HTTP: a wrong signature raises SignatureInvalid and writes nothing; the right one opens.

    https://www.typeform.com/developers/webhooks/secure-your-webhooks/
    """
    loop = make_loop(tmp_path / "closeloop.db")
    raw = body(TYPEFORM)
    with pytest.raises(SignatureInvalid):
        typeform_source().parse(raw, {"Typeform-Signature": sign(raw, "wrong")})
    assert loop.cases() == []
    (response,) = typeform_source().parse(raw, {"Typeform-Signature": sign(raw)})
    assert loop.ingest_outcome(response).kind == "opened"


def test_store_failure_is_503_so_the_tool_retries(tmp_path: Path) -> None:
    """A closeloop store error answers 503 (retry later), not 200."""
    store = SQLiteStore(tmp_path / "closeloop.db")
    loop = CloseLoop(store=store, triggers=make_loop(tmp_path / "other.db").triggers)
    (tmp_path / "closeloop.db").unlink()
    os.mkdir(tmp_path / "closeloop.db")  # the file is gone and cannot be recreated
    store.close()
    server = Served(webhook_app(loop, typeform_source()))
    try:
        raw = body(TYPEFORM)
        answer = post(server.url, raw, sign(raw))
    finally:
        server.close()
    assert answer.status_code == 503 and answer.json()["error"] == "unavailable"


@pytest.mark.slow
def test_ten_concurrent_deliveries_under_gunicorn_open_one_case(tmp_path: Path) -> None:
    """Ten concurrent deliveries of one response to four gunicorn workers on one SQLite file:
    one case, one "opened", nine "duplicate"."""
    path = tmp_path / "closeloop.db"
    make_loop(path).store.close()  # create the schema once, before the workers race to
    listener = socket.create_server(("127.0.0.1", 0), backlog=64)
    port = listener.getsockname()[1]
    tests = Path(__file__).resolve().parent
    server = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "--workers", "4", "--bind", f"fd://{listener.fileno()}",
         "--log-level", "warning", "webhook_apps:app"],
        cwd=tests, pass_fds=[listener.fileno()],
        env={**os.environ, DB_VARIABLE: str(path), "PYTHONPATH": str(tests)},
    )
    listener.close()  # gunicorn holds it now; requests queue in its backlog until workers accept
    raw = body(TYPEFORM)
    start = threading.Barrier(10)
    answers: list[httpx.Response] = []

    def deliver() -> None:
        start.wait()
        answers.append(post(f"http://127.0.0.1:{port}/hooks/typeform", raw, sign(raw)))

    try:
        threads = [threading.Thread(target=deliver) for _ in range(10)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(HANG_GUARD)
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(HANG_GUARD)
    assert [a.status_code for a in answers] == [200] * 10
    kinds = Counter(outcome["kind"] for a in answers for outcome in a.json()["outcomes"])
    assert kinds == {"opened": 1, "duplicate": 9}
    loop = make_loop(path)
    (case,) = loop.cases()
    assert {o["case_id"] for a in answers for o in a.json()["outcomes"]} == {case.id}
