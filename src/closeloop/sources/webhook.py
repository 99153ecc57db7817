"""webhook_app: any source as a framework-agnostic WSGI endpoint that ingests what it parses.

Status codes, each with a JSON body:

=====  ==================================================================
200    ``{"outcomes": [{"response_id", "kind", "case_id"}, ...]}``
400    malformed payload: ``{"error": "invalid_input", "field", "message"}``
401    signature refused: ``{"error": "signature_invalid", "message"}``
405    not a POST (``Allow: POST``)
413    body larger than ``max_body`` bytes
503    the store failed (a closeloop error): the tool should retry
500    anything else (logged; the message is not shown)
=====  ==================================================================

Mount it in any WSGI server or framework; for ASGI (FastAPI, Starlette) wrap it
with ``a2wsgi.WSGIMiddleware``. ``docs/sources.md`` has recipes.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Protocol

from closeloop.errors import CloseLoopError, InvalidInput, SignatureInvalid
from closeloop.model import Case, SurveyResponse
from closeloop.sources.base import MAX_BODY_BYTES, Source
from closeloop.validate import check_positive_int

__all__ = ["Ingests", "webhook_app"]

_log = logging.getLogger("closeloop.sources.webhook")

StartResponse = Callable[..., Any]
WSGIApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]

_REASONS = {200: "OK", 400: "Bad Request", 401: "Unauthorized", 405: "Method Not Allowed",
            413: "Content Too Large", 500: "Internal Server Error", 503: "Service Unavailable"}


class _Outcome(Protocol):
    @property
    def kind(self) -> str: ...

    @property
    def case(self) -> Case | None: ...

    @property
    def response_id(self) -> str: ...


class Ingests(Protocol):
    """Protocol: what ``webhook_app`` needs of the loop, ``CloseLoop.ingest_outcome``.

    It ingests one response and says, decided in the store's transaction, what
    happened: ``kind`` is ``"opened"``, ``"joined"``, ``"updated"``,
    ``"duplicate"`` or ``"ignored"``, with the ``case`` (or ``None``).
    """

    def ingest_outcome(self, response: SurveyResponse) -> _Outcome:
        """Ingest ``response`` and say what happened."""
        ...


def webhook_app(loop: Ingests, source: Source, *, max_body: int = MAX_BODY_BYTES) -> WSGIApp:
    """A WSGI application that parses each POST with ``source`` and ingests the responses.

    Args:
        loop: the :class:`~closeloop.CloseLoop` (anything with ``ingest_outcome``).
        source: an adapter from :mod:`closeloop.sources`.
        max_body: the largest body accepted, in bytes; more is answered 413 unread.

    Example::

        from waitress import serve
        serve(webhook_app(loop, Delighted(secret)), host="127.0.0.1", port=8080)
    """
    if not hasattr(loop, "ingest_outcome"):
        raise InvalidInput("loop", loop, "must be a CloseLoop (it needs ingest_outcome)")
    if not callable(getattr(source, "parse", None)):
        raise InvalidInput("source", source, "must have parse(body, headers)")
    check_positive_int("max_body", max_body)  # bytes

    def app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        if environ.get("REQUEST_METHOD") != "POST":
            return _answer(start_response, 405, {"error": "method_not_allowed",
                                                 "message": "use POST"}, [("Allow", "POST")])
        body = _read(environ, max_body)
        if body is None:
            return _answer(start_response, 413, {"error": "too_large",
                                                 "message": f"the body must be at most {max_body} bytes"})
        try:
            responses = source.parse(body, _headers(environ))
            outcomes = [loop.ingest_outcome(response) for response in responses]
        except SignatureInvalid as exc:
            return _answer(start_response, 401, {"error": "signature_invalid", "message": str(exc)})
        except InvalidInput as exc:
            return _answer(start_response, 400, {"error": "invalid_input", "field": exc.field,
                                                 "message": str(exc)})
        except CloseLoopError as exc:
            _log.warning("webhook could not be ingested: %s", exc)
            return _answer(start_response, 503, {"error": "unavailable", "message": str(exc)})
        except Exception:
            _log.exception("webhook failed")
            return _answer(start_response, 500, {"error": "internal", "message": "internal error"})
        return _answer(start_response, 200, {"outcomes": [
            {"response_id": o.response_id, "kind": o.kind,
             "case_id": None if o.case is None else o.case.id} for o in outcomes
        ]})

    return app


def _read(environ: Mapping[str, Any], max_body: int) -> bytes | None:
    """The body, or None when it is larger than ``max_body``."""
    try:
        length = int(environ.get("CONTENT_LENGTH") or -1)
    except ValueError:
        length = -1
    if length > max_body:
        return None
    stream = environ["wsgi.input"]
    data = stream.read(length) if length >= 0 else stream.read(max_body + 1)
    return None if len(data) > max_body else bytes(data)


def _headers(environ: Mapping[str, Any]) -> dict[str, str]:
    headers: dict[str, str] = {}
    for key, value in environ.items():
        if key.startswith("HTTP_"):
            headers[key[5:].replace("_", "-").title()] = value
        elif key in ("CONTENT_TYPE", "CONTENT_LENGTH") and value:
            headers[key.replace("_", "-").title()] = value
    return headers


def _answer(start_response: StartResponse, status: int, payload: Any,
            extra: list[tuple[str, str]] | None = None) -> list[bytes]:
    data = json.dumps(payload).encode()
    start_response(f"{status} {_REASONS[status]}", [
        ("Content-Type", "application/json"), ("Content-Length", str(len(data))), *(extra or []),
    ])
    return [data]
