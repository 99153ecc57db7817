"""Survey webhook: Delighted posts responses to closeloop over HTTP; a late comment updates the case.

The triggers come from examples/rules.toml. The script serves ``webhook_app`` with
waitress on a free local port, then plays Delighted: it posts a signed
``survey_response.created`` (a detractor's score), the ``.updated`` event that
carries the comment minutes later, and the same event again (a retry). It prints
what the endpoint answered and the case's history.

How to run:  python examples/survey_webhook.py [--serve PORT]
(with --serve it keeps serving on 127.0.0.1:PORT instead of playing Delighted; needs waitress)
"""

from __future__ import annotations

import hashlib
import hmac
import json
import sys
import threading
import tomllib
from pathlib import Path
from typing import Any

import httpx
from waitress.server import create_server

from closeloop import CloseLoop
from closeloop.rules import load_triggers
from closeloop.sources import Delighted, webhook_app
from closeloop.storage import MemoryStore

SECRET = "replace-with-your-delighted-webhook-secret"
RULES = Path(__file__).with_name("rules.toml")


def make_loop() -> CloseLoop:
    """A loop with the triggers of rules.toml (a real app passes its SQLiteStore/PostgresStore)."""
    return CloseLoop(store=MemoryStore(), triggers=load_triggers(tomllib.loads(RULES.read_text())))


def delighted_event(event_type: str, comment: str | None) -> bytes:
    """A Delighted webhook body, shaped like the example in Delighted's webhook docs."""
    return json.dumps({
        "event_type": event_type,
        "event_id": f"evt-{event_type}",
        "event_data": {
            "id": "5435", "survey_type": "nps", "score": 4, "comment": comment,
            "person": {"id": "5975", "email": "charlie_gravis@example.com", "name": "Charlie Gravis"},
            "created_at": 1732186844, "person_properties": {"plan": "Business"},
            "additional_answers": [],
        },
    }).encode()


def post(url: str, body: bytes) -> tuple[int, Any]:
    """POST a body signed as Delighted signs it; return the status and the JSON answer."""
    signature = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    answer = httpx.post(url, content=body, timeout=30, headers={
        "Content-Type": "application/json", "X-Delighted-Webhook-Signature": signature})
    return answer.status_code, answer.json()


def main() -> None:
    loop = make_loop()
    app = webhook_app(loop, Delighted(SECRET))
    if sys.argv[1:2] == ["--serve"]:
        port = int(sys.argv[2]) if len(sys.argv) > 2 else 8080
        print(f"serving the Delighted webhook on http://127.0.0.1:{port}/ (Ctrl-C stops)")
        create_server(app, host="127.0.0.1", port=port).run()
        return
    server = create_server(app, host="127.0.0.1", port=0)
    threading.Thread(target=server.run, daemon=True).start()
    url = f"http://127.0.0.1:{server.effective_port}/hooks/delighted"
    try:
        for label, body in (
            ("created (score 4)", delighted_event("survey_response.created", None)),
            ("updated (comment)", delighted_event("survey_response.updated",
                                                  "Billing is a mess, I will switch provider")),
            ("updated again (a retry)", delighted_event("survey_response.updated",
                                                        "Billing is a mess, I will switch provider")),
        ):
            status, answer = post(url, body)
            (outcome,) = answer["outcomes"]
            print(f"{label:<24} -> {status} {outcome['kind']}")
    finally:
        server.close()
    (case,) = loop.cases()
    print(f"\ncase for customer {case.customer_id}: assigned to {case.assignee}, "
          f"reasons {', '.join(case.reasons)}")
    for event in loop.history(case.id):
        print(f"  {event.kind:<17} by {event.actor:<10} {event.comment or ''}".rstrip())


if __name__ == "__main__":
    main()
