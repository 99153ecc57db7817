"""WSGI middleware that keeps one-touch tokens out of access logs.

The emailed link carries its token in the query (``?token=…``), and the URL
of a request is what every access log writes. :class:`TokenRedactingMiddleware`
takes the token out of the request before any layer inside it, or any server
that reads the environ after the response, can log it:

1. it captures the token into ``environ["closeloop.onetouch.token"]``, where
   :class:`~closeloop.onetouch.pages.OneTouchPages` reads it;
2. it rewrites ``QUERY_STRING``, ``RAW_URI`` (gunicorn), ``REQUEST_URI``
   (uWSGI, mod_wsgi) and ``HTTP_REFERER`` in place, so that ``token=…`` reads
   ``token=REDACTED``.

What this reaches, and what it cannot: gunicorn's access log formats the
environ *after* the app returned, so it logs the rewritten values. A logging
middleware (paste's ``TransLogger``, werkzeug's dev server logs its own
request line) must sit *inside* this one. A proxy in front (nginx, a load
balancer) and a server that logs its own request line (``wsgiref``, uWSGI's
``%(uri)``) log before the app is called: no middleware can change that, and
docs/security.md gives their log-format recipes.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from typing import TYPE_CHECKING
from urllib.parse import unquote_plus

if TYPE_CHECKING:
    from wsgiref.types import StartResponse, WSGIApplication, WSGIEnvironment

__all__ = ["REDACTED", "TOKEN_ENVIRON_KEY", "TokenRedactingMiddleware", "redact_tokens"]

#: The environ key holding the token the middleware took out of the query.
TOKEN_ENVIRON_KEY = "closeloop.onetouch.token"  # noqa: S105 (a key name, not a secret)
#: What a redacted parameter's value reads in the rewritten URL.
REDACTED = "REDACTED"
#: Environ keys holding a URL (or a query) that loggers print.
_URL_KEYS = ("RAW_URI", "REQUEST_URI", "HTTP_REFERER")


class TokenRedactingMiddleware:
    """Wrap a WSGI app so that ``token=`` never reaches a log in the request's URL.

    Build it with :func:`redact_tokens`.

    Args:
        app: the WSGI app to call (the one-touch pages, or a dispatcher in front of them).
        params: the query parameters to take out; ``token`` by default.
        paths: if given, only requests whose path (``SCRIPT_NAME`` + ``PATH_INFO``)
            is one of these are rewritten; others pass unchanged (so another route's
            own ``?token=`` still reaches it).
    """

    def __init__(self, app: WSGIApplication, *, params: Collection[str] = ("token",),
                 paths: Collection[str] | None = None) -> None:
        self.app = app
        self.params = frozenset(params)
        self.paths = None if paths is None else frozenset(paths)

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        """Rewrite the request's URLs in place, then call the app."""
        path = environ.get("SCRIPT_NAME", "") + environ.get("PATH_INFO", "")
        if self.paths is None or path in self.paths:
            self.redact(environ)
        return self.app(environ, start_response)

    def redact(self, environ: WSGIEnvironment) -> None:
        """Take the parameters out of ``environ`` (in place); keep the token for the pages."""
        query, captured = _redact_query(environ.get("QUERY_STRING", ""), self.params)
        if captured:
            environ["QUERY_STRING"] = query
            # More than one token is ambiguous: keep none, and let the page refuse it.
            if len(captured) == 1:
                environ[TOKEN_ENVIRON_KEY] = captured[0]
        for key in _URL_KEYS:
            url = environ.get(key)
            if isinstance(url, str) and "?" in url:
                head, _, tail = url.partition("?")
                tail, fragment_sep, fragment = tail.partition("#")
                redacted, found = _redact_query(tail, self.params)
                if found:
                    environ[key] = f"{head}?{redacted}{fragment_sep}{fragment}"


def redact_tokens(app: WSGIApplication, *, params: Collection[str] = ("token",),
                  paths: Collection[str] | None = None) -> TokenRedactingMiddleware:
    """``app`` wrapped so that one-touch tokens stay out of access logs.

    Put it outermost (outside any logging middleware). See
    :class:`TokenRedactingMiddleware` for what it reaches and docs/security.md
    for the server recipes.

    Example::

        from closeloop.onetouch import redact_tokens, wsgi_app
        application = redact_tokens(wsgi_app(loop))     # gunicorn module:application
    """
    return TokenRedactingMiddleware(app, params=params, paths=paths)


def _redact_query(query: str, params: frozenset[str]) -> tuple[str, list[str]]:
    """``query`` with the values of ``params`` replaced, and the values taken out."""
    captured: list[str] = []
    pairs = query.split("&")
    for index, pair in enumerate(pairs):
        name, sep, value = pair.partition("=")
        try:
            decoded = unquote_plus(name, errors="strict")
        except UnicodeDecodeError:
            continue
        if decoded in params:
            # WSGI strings are bytes as latin-1; the token itself is URL-safe ASCII.
            captured.append(unquote_plus(value))
            pairs[index] = f"{name}={REDACTED}" if sep else name
    return "&".join(pairs), captured
