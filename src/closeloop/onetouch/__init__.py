"""One-touch: signed single-use links that change a case's status from a phone.

An assignment or escalation email carries a "Change" link. It opens an update
page (choose a status, write a comment), then a confirm page; only the
confirmation changes the case. A link works for ``max_age`` (24 hours by
default, judged by the loop's clock), changes the case once, stops working
when the case is reassigned, and can never reassign it.

- :class:`OneTouch`: the configuration (keys, base URL, lifetimes); pass it as
  ``CloseLoop(one_touch=...)``.
- :class:`OneTouchService`: the protocol, as ``loop.one_touch``: ``link``,
  ``open`` → :class:`LinkView`, ``prepare`` → :class:`PendingChange`, ``confirm``.
- :func:`wsgi_app`: the pages, as a standard-library WSGI app.
- :func:`redact_tokens`: WSGI middleware that keeps tokens out of access logs.

See docs/one-touch.md for mounting the pages in Flask, Django or FastAPI.
"""

from closeloop.onetouch.pages import OneTouchPages, wsgi_app
from closeloop.onetouch.redact import TokenRedactingMiddleware, redact_tokens
from closeloop.onetouch.service import VIA, LinkView, OneTouchService, PendingChange
from closeloop.onetouch.tokens import OneTouch

__all__ = [
    "VIA",
    "LinkView",
    "OneTouch",
    "OneTouchPages",
    "OneTouchService",
    "PendingChange",
    "TokenRedactingMiddleware",
    "redact_tokens",
    "wsgi_app",
]
