"""A real HTTP endpoint on 127.0.0.1 for webhook tests: records every POST, answers a set status.

Usage::

    with Endpoint() as endpoint:
        WebhookNotifier(endpoint.url, secret=SECRET).send(message)
        ((headers, body),) = endpoint.requests
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

__all__ = ["Endpoint"]


class Endpoint:
    """A local HTTP endpoint recording every POST; answers ``status`` (settable).

    Args:
        on_request: called with the request's number (1, 2, …) before it is
            answered, one request at a time; it may return a status that overrides
            ``status`` for that request (a test advances its clock here, or makes
            the endpoint fail).
    """

    def __init__(self, on_request: Callable[[int], int | None] | None = None) -> None:
        self.requests: list[tuple[dict[str, str], bytes]] = []
        #: Every answer given, in order (status codes), failed ones included.
        self.answers: list[int] = []
        self.status = 204
        self.hang = threading.Event()   # while set, requests wait (for the timeout test)
        self.release = threading.Event()
        self.on_request = on_request
        self._lock = threading.Lock()
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                if endpoint.hang.is_set():
                    endpoint.release.wait(10)
                status = endpoint.answer({k.lower(): v for k, v in self.headers.items()}, body)
                self.send_response(status)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                """Quiet: tests read endpoint.requests instead."""

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/closeloop"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def answer(self, headers: dict[str, str], body: bytes) -> int:
        """Record one request and decide its status (one request at a time)."""
        with self._lock:
            status = self.status
            if self.on_request is not None:
                status = self.on_request(len(self.answers) + 1) or status
            self.answers.append(status)
            if 200 <= status < 300:
                self.requests.append((headers, body))
            return status

    def __enter__(self) -> Endpoint:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()

    def payloads(self) -> list[Any]:
        """Each accepted request's body, parsed."""
        return [json.loads(body) for _, body in self.requests]
