"""One-touch: serve the phone pages, open and assign a case, print the email with its Change link.

How to run:  python examples/onetouch_server.py [--port 8080] [--db closeloop-onetouch.db]
then open the printed Change link in a browser (Ctrl+C stops the server).

It serves the one-touch pages with the standard library's wsgiref on
127.0.0.1 under /one-touch, over a SQLite file (default
./closeloop-onetouch.db). Each run opens one more case for customer c-42,
assigns it to alice and prints the email she would get; its Change link leads
to the update page, the confirm page and the done page. ``--port 0`` picks a
free port. Set ONE_TOUCH_SECRET to your own secret (32+ bytes); the
placeholder below is for this demo only.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from collections.abc import Iterable
from pathlib import Path
from socketserver import ThreadingMixIn
from types import FrameType
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server
from wsgiref.types import StartResponse, WSGIApplication, WSGIEnvironment
from wsgiref.util import shift_path_info

from closeloop import CloseLoop
from closeloop.notify import MemoryNotifier
from closeloop.onetouch import OneTouch, wsgi_app
from closeloop.storage import SQLiteStore

DEMO_SECRET = "demo secret: replace me with secrets.token_urlsafe(48)"
MOUNT = "one-touch"


class ThreadingServer(ThreadingMixIn, WSGIServer):
    """wsgiref's server, one thread per connection (a browser opens several)."""

    daemon_threads = True
    # A browser opens several connections at once; socketserver's default backlog of 5
    # can refuse one on a busy machine before serve_forever() gets to accept them.
    request_queue_size = 64


class QuietHandler(WSGIRequestHandler):
    """Logs requests without their query string: it holds the token."""

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        path = self.path.split("?", 1)[0]
        sys.stderr.write(f"{self.command} {path} {code}\n")


def mount(prefix: str, app: WSGIApplication) -> WSGIApplication:
    """Serve ``app`` under ``/prefix`` (as a framework's router would); 404 elsewhere."""

    def dispatch(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        if shift_path_info(environ) != prefix:
            start_response("404 Not Found", [("Content-Type", "text/plain; charset=utf-8")])
            return [b"Not found\n"]
        return app(environ, start_response)

    return dispatch


def stop(signum: int, frame: FrameType | None) -> None:
    """Turn SIGTERM into a clean shutdown, like Ctrl+C."""
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> None:
    """Start the server, open and assign a case, print the email, serve until stopped."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8080, help="0 picks a free port")
    parser.add_argument("--db", type=Path, default=Path("closeloop-onetouch.db"))
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, stop)  # before anything is printed: a reader may stop us then

    # Bind first, so the links name the real port even with --port 0.
    server = make_server("127.0.0.1", args.port, lambda environ, start: [],
                         server_class=ThreadingServer, handler_class=QuietHandler)
    base_url = f"http://127.0.0.1:{server.server_port}/{MOUNT}"

    outbox = MemoryNotifier()  # swap for SmtpNotifier(...) to send real email
    loop = CloseLoop(
        store=SQLiteStore(args.db),
        notifier=outbox,
        one_touch=OneTouch(os.environ.get("ONE_TOUCH_SECRET", DEMO_SECRET), base_url=base_url),
    )
    server.set_app(mount(MOUNT, wsgi_app(loop)))

    try:
        case = loop.open_case(
            "c-42", by="survey",
            comment='Customer wrote: "The parcel arrived broken <script>alert(1)</script>"',
            reasons=["detractor"],
        )
        loop.assign(case.id, to="alice", by="bob")
        email = outbox.sent[-1]
        print(f"Serving the one-touch pages on {base_url} (Ctrl+C to stop)")
        print(f"Case {case.id} opened and assigned to alice. The email she gets:\n")
        print(f"To: {email.to}\nSubject: {email.subject}\n\n{email.text}", flush=True)
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        loop.store.close()


if __name__ == "__main__":
    main()
