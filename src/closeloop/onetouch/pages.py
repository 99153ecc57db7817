"""The one-touch pages as a WSGI app: update, confirm, done, and a page for every refusal.

Mount :func:`wsgi_app` at the path ``OneTouch.base_url`` points to. It uses the
standard library only, so any WSGI server or framework can host it.

- ``GET ?token=…``: the update page (status choice, mandatory comment). It
  changes nothing, so a mail scanner that follows the link does no harm.
- ``POST action=prepare``: the confirm page ("Change case … from Open to
  Closed with comment …?"), carrying the confirmation token.
- ``POST action=confirm``: makes the change, then ``303 See Other`` to
  ``GET ?done=<receipt>``, the done page, so that Back or reload never posts
  the confirmation again. A receipt says what was done and authorises nothing.
- ``POST action=cancel``: back to the update page, with the choice kept.

Tokens travel in the link's query and then only in hidden POST fields, never
in a page's links or form actions. Every response is ``no-store``, sends no
referrer, and has a Content-Security-Policy that allows no script at all and
only this page's own stylesheet. A POST that the browser marks as cross-site
(``Sec-Fetch-Site``) or whose ``Origin`` is another site is refused with 403
before its form is read; requests without those headers (older browsers,
scripts) are served, since the tokens are what authorises a change.
"""

from __future__ import annotations

import base64
import hashlib
import logging
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from html import escape
from typing import TYPE_CHECKING, Protocol
from urllib.parse import parse_qs, quote, urlsplit

from attrs import frozen

from closeloop.errors import (
    CommentRequired,
    ConcurrentUpdate,
    InvalidInput,
    StoreError,
    TokenExpired,
    TokenInvalid,
    TokenUsed,
    TransitionNotAllowed,
)
from closeloop.model import Event, StatusChanged
from closeloop.onetouch.redact import TOKEN_ENVIRON_KEY
from closeloop.onetouch.service import LinkView, OneTouchService
from closeloop.validate import MAX_COMMENT_LENGTH
from closeloop.workflow import Workflow

if TYPE_CHECKING:
    from wsgiref.types import StartResponse, WSGIEnvironment

__all__ = ["MAX_BODY_BYTES", "OneTouchPages", "wsgi_app"]

log = logging.getLogger("closeloop.onetouch")

#: Largest request body read: a maximal comment, every character percent-encoded
#: UTF-8 (up to 12 bytes each), plus room for the tokens.
MAX_BODY_BYTES = 12 * MAX_COMMENT_LENGTH + 64 * 1024

_STYLE = (
    # Ids are long unbroken strings; letting them wrap keeps phones from zooming out.
    "body{font-family:system-ui,sans-serif;margin:0;padding:16px;line-height:1.4;"
    "color:#202124;background:#fff;overflow-wrap:anywhere}"
    "main{max-width:36rem;margin:0 auto}"
    "h1{font-size:1.5rem}"
    "table{border-collapse:collapse;margin-bottom:1rem}"
    "th{text-align:left;padding:2px 12px 2px 0;vertical-align:top}"
    "ol{padding-left:1.2rem}li{margin-bottom:.4rem}"
    ".said,blockquote{white-space:pre-wrap}"
    "blockquote{margin:0 0 1rem;padding:8px 12px;border-left:4px solid #1a73e8;"
    "background:#f1f3f4}"
    "fieldset{border:0;padding:0;margin:0 0 1rem}"
    "label.choice{display:block;font-size:1.2rem;padding:14px;margin:8px 0;"
    "border:2px solid #dadce0;border-radius:8px}"
    "label.choice input{transform:scale(1.5);margin-right:12px}"
    "textarea{width:100%;box-sizing:border-box;font-size:1.1rem;padding:8px}"
    "button{display:block;width:100%;font-size:1.3rem;padding:16px;margin:12px 0;"
    "border:0;border-radius:8px;background:#1a73e8;color:#fff}"
    "button.secondary{background:#e8eaed;color:#202124}"
    ".error{color:#b00020;font-weight:bold}"
    ".note{color:#5f6368;font-size:.9rem}"
)
_STYLE_HASH = base64.b64encode(hashlib.sha256(_STYLE.encode("utf-8")).digest()).decode("ascii")

#: Headers on every response.
SECURITY_HEADERS: Sequence[tuple[str, str]] = (
    ("Cache-Control", "no-store"),
    ("Referrer-Policy", "no-referrer"),
    ("Content-Security-Policy",
     f"default-src 'none'; style-src 'sha256-{_STYLE_HASH}'; form-action 'self'; "
     "frame-ancestors 'none'; base-uri 'none'"),
    ("X-Content-Type-Options", "nosniff"),
    ("X-Frame-Options", "DENY"),
    ("X-Robots-Tag", "noindex, nofollow"),
)

_REASONS = {
    200: "OK", 303: "See Other", 400: "Bad Request", 403: "Forbidden", 404: "Not Found",
    405: "Method Not Allowed",
    409: "Conflict", 410: "Gone", 413: "Content Too Large", 415: "Unsupported Media Type",
    422: "Unprocessable Content", 503: "Service Unavailable",
}
_ACTIONS = ("prepare", "confirm", "cancel")
_FIELDS = ("action", "token", "confirmation", "status", "close_reason", "comment")
#: ``Sec-Fetch-Site`` values a POST may carry: from this page, or typed by the user.
#: ``same-site`` is refused too: a sibling subdomain is another application.
_FETCH_SITES_ALLOWED = ("same-origin", "none")


@frozen
class Page:
    """One response: status code, HTML body, and any extra headers."""

    status: int
    body: str
    extra_headers: tuple[tuple[str, str], ...] = ()

    def headers(self, length: int) -> list[tuple[str, str]]:
        """Every header of the response, for a body of ``length`` bytes."""
        return [
            ("Content-Type", "text/html; charset=utf-8"),
            ("Content-Length", str(length)),
            *SECURITY_HEADERS,
            *self.extra_headers,
        ]


class BadRequest(Exception):
    """The request itself is malformed (a page, not a closeloop error)."""

    def __init__(self, status: int, message: str) -> None:
        self.status = status
        super().__init__(message)


class HasOneTouch(Protocol):
    """Protocol: anything with a ``one_touch`` service, such as a :class:`~closeloop.CloseLoop`."""

    @property
    def one_touch(self) -> OneTouchService:
        """The loop's one-touch service."""
        ...


def wsgi_app(loop: HasOneTouch) -> OneTouchPages:
    """The one-touch pages for ``loop`` as a WSGI application.

    Raises InvalidInput if the loop has no one-touch configuration.

    Example::

        from wsgiref.simple_server import make_server
        make_server("127.0.0.1", 8080, wsgi_app(loop)).serve_forever()
    """
    return OneTouchPages(loop.one_touch)


class OneTouchPages:
    """The WSGI application :func:`wsgi_app` returns."""

    def __init__(self, service: OneTouchService) -> None:
        self.service = service
        base = urlsplit(service.config.base_url)
        default_port = {"http": 80, "https": 443}[base.scheme]
        port = "" if base.port in (None, default_port) else f":{base.port}"
        host = base.hostname or ""
        host = f"[{host}]" if ":" in host else host
        self._base_origin = f"{base.scheme}://{host}{port}".lower()

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        """Serve one request."""
        page = self.respond(environ)
        body = page.body.encode("utf-8")
        start_response(f"{page.status} {_REASONS[page.status]}", page.headers(len(body)))
        return [b"" if environ.get("REQUEST_METHOD") == "HEAD" else body]

    def respond(self, environ: WSGIEnvironment) -> Page:
        """The page for a request (no I/O beyond reading the body and the store)."""
        if environ.get("PATH_INFO", "") not in ("", "/"):
            return _message(404, "Page not found", "There is nothing here.")
        method = environ.get("REQUEST_METHOD", "GET")
        # WSGI paths are bytes decoded as latin-1; forms post back to this path, no query.
        path = environ.get("SCRIPT_NAME", "") + environ.get("PATH_INFO", "")
        action_path = quote(path.encode("latin-1", "replace")) or "/"
        try:
            if method in ("GET", "HEAD"):
                query = _parse(environ.get("QUERY_STRING", ""))
                if "done" in query and "token" not in query:
                    return self._done(query["done"])
                # TokenRedactingMiddleware has taken the token out of the query (and logs).
                token = environ.get(TOKEN_ENVIRON_KEY, query.get("token", ""))
                return self._update(token if isinstance(token, str) else "", action_path)
            if method == "POST":
                if self._cross_site(environ):
                    return _message(403, "Request refused",
                                    "This form was sent from another site. Nothing was changed. "
                                    "Open the link from your email again.")
                return self._post(_read_form(environ), action_path)
        except BadRequest as exc:
            return _message(exc.status, "Bad request", str(exc))
        except StoreError:
            log.exception("one-touch page could not reach the store")
            return _message(503, "Please try again",
                            "The case system is not available right now. Nothing was changed.")
        return Page(405, _document("Method not allowed", "<p>Use the link from your email.</p>"),
                    (("Allow", "GET, HEAD, POST"),))

    # -- the three steps ------------------------------------------------------------

    def _post(self, form: dict[str, str], action_path: str) -> Page:
        action = form.get("action", "")
        if action not in _ACTIONS:
            raise BadRequest(400, "The form was not understood.")
        if action == "confirm":
            return self._confirm(form.get("confirmation", ""), action_path)
        status, comment = form.get("status", ""), form.get("comment", "").replace("\r\n", "\n")
        reason = form.get("close_reason", "")
        if action == "cancel":
            return self._update(form.get("token", ""), action_path, status=status, comment=comment,
                                close_reason=reason)
        return self._prepare(form.get("token", ""), status, comment, reason, action_path)

    def _update(self, token: str, action_path: str, *, status: str = "", comment: str = "",
                close_reason: str = "", error: str | None = None) -> Page:
        try:
            view = self.service.open(token)
        except (TokenInvalid, TokenExpired, TokenUsed) as exc:
            return _refusal(exc, case_link=self._case_link_of(token))
        body = _update_body(view, token, action_path, _Choice(status, close_reason, comment),
                            error)
        return Page(200 if error is None else 422, _document(f"Update case {view.case.id}", body))

    def _prepare(self, token: str, status: str, comment: str, reason: str,
                 action_path: str) -> Page:
        try:
            pending = self.service.prepare(token, status=status, comment=comment,
                                           close_reason=reason or None)
        except (TokenInvalid, TokenExpired, TokenUsed) as exc:
            return _refusal(exc, case_link=self._case_link_of(token))
        except CommentRequired:
            error = "Please write a comment: it goes into the case history."
        except TransitionNotAllowed:
            error = "The case cannot move to that status. Choose another."
        except InvalidInput as exc:
            if exc.field == "status":
                error = "Choose the new status."
            elif exc.field == "close_reason":
                error = ("Choose why the case is closed." if exc.value is None
                         else "A close reason goes only with a status that closes the case.")
            else:
                error = f"The comment {exc.reason}."
        else:
            workflow = self.service.workflow
            because = ("" if pending.close_reason is None else
                       f" because <strong>{_e(workflow.close_reason_label(pending.close_reason))}"
                       "</strong>")
            body = (
                f"<p>Change case <strong>#{_e(pending.case_id)}</strong> from "
                f"<strong>{_e(_label(workflow, pending.from_custom_status))}</strong> to "
                f"<strong>{_e(_label(workflow, pending.to_custom_status))}</strong>{because} "
                "with comment:</p>"
                f"<blockquote>{_e(pending.comment)}</blockquote>"
                f"<form method='post' action='{_e(action_path)}'>"
                "<input type='hidden' name='action' value='confirm'>"
                f"<input type='hidden' name='confirmation' value='{_e(pending.token)}'>"
                "<button type='submit'>Confirm</button></form>"
                f"<form method='post' action='{_e(action_path)}'>"
                "<input type='hidden' name='action' value='cancel'>"
                f"<input type='hidden' name='token' value='{_e(token)}'>"
                f"<input type='hidden' name='status' value='{_e(pending.to_custom_status)}'>"
                f"<input type='hidden' name='close_reason' value='{_e(pending.close_reason or '')}'>"
                f"<input type='hidden' name='comment' value='{_e(pending.comment)}'>"
                "<button type='submit' class='secondary'>Cancel</button></form>"
                f"<p class='note'>Nothing changes until you confirm, "
                f"by {_e(_when(pending.expires_at))}.</p>"
            )
            return Page(200, _document("Confirm the change", body))
        return self._update(token, action_path, status=status, comment=comment,
                            close_reason=reason, error=error)

    def _confirm(self, confirmation: str, action_path: str) -> Page:
        try:
            case = self.service.confirm(confirmation)
        except (TokenInvalid, TokenExpired, TokenUsed) as exc:
            return _refusal(exc, confirmation=True, case_link=self._case_link_of(confirmation))
        except ConcurrentUpdate as exc:
            return _message(409, "The case has changed",
                            "Someone changed the case while you were deciding, so nothing was "
                            "changed. Open the link from your email again to see it as it is now.",
                            None if exc.case_id is None else self.service.case_link(exc.case_id))
        # Post/Redirect/Get: Back or reload on the done page repeats a harmless GET.
        location = f"{action_path}?done={self.service.receipt(case)}"
        body = _document("Done", f"<p><a href='{_e(location)}'>See what was done</a>.</p>")
        return Page(303, body, (("Location", location),))

    def _done(self, receipt: str) -> Page:
        try:
            done = self.service.done(receipt)
        except TokenInvalid as exc:
            return _refusal(exc)
        body = (
            f"<p>Case <strong>#{_e(done.case_id)}</strong> is now "
            f"<strong>{_e(_label(self.service.workflow, done.custom_status))}</strong> "
            f"(changed {_e(_when(done.at))}). Your comment is in its history.</p>"
            "<p>This link has now been used. For any further change, "
            f"{_app_link(self.service.case_link(done.case_id))}.</p>"
        )
        return Page(200, _document("Done", body))

    def _case_link_of(self, token: str) -> str | None:
        case_id = self.service.case_id_of(token)
        return None if case_id is None else self.service.case_link(case_id)

    def _cross_site(self, environ: WSGIEnvironment) -> bool:
        """Whether the browser says this POST comes from another site (defence in depth)."""
        fetch_site = environ.get("HTTP_SEC_FETCH_SITE")
        if fetch_site is not None:
            return fetch_site.strip().lower() not in _FETCH_SITES_ALLOWED
        origin = environ.get("HTTP_ORIGIN")
        # "null" is what a browser sends for a page with Referrer-Policy: no-referrer,
        # as these pages have: it says nothing, so it is not held against the request.
        if origin is None or origin.strip().lower() == "null":
            return False
        return origin.strip().lower() not in (self._base_origin, _request_origin(environ))


# -- page bodies --------------------------------------------------------------------


@frozen
class _Choice:
    """What the assignee chose so far (kept when the page is shown again)."""

    status: str
    close_reason: str
    comment: str


def _label(workflow: Workflow, name: str) -> str:
    """A status's label; a name the workflow no longer has is shown as it is."""
    try:
        return workflow.status(name).label
    except InvalidInput:
        return name


def _event_line(workflow: Workflow, event: Event) -> str:
    if isinstance(event, StatusChanged):
        what = f"status changed to {_label(workflow, event.to_custom_status)}"
        if event.close_reason is not None:
            what += f" ({workflow.close_reason_label(event.close_reason)})"
        return what
    return event.kind.replace("_", " ")


def _update_body(view: LinkView, token: str, action_path: str, chosen: _Choice,
                 error: str | None) -> str:
    case = view.case
    workflow = view.workflow
    name = view.customer.name if view.customer is not None else None
    customer = f"{name} ({case.customer_id})" if name else case.customer_id
    rows = [("Customer", customer), ("Status", view.status.label),
            ("Priority", case.priority.value.capitalize()), ("Assigned to", view.assignee),
            ("Opened", _when(case.opened_at))]
    if case.reasons:
        rows.append(("Reasons", ", ".join(case.reasons)))
    if case.due_at is not None:
        rows.append(("Due", _when(case.due_at)))
    if view.response is not None and view.response.score is not None:
        rows.append(("Survey score", f"{view.response.score} of 10"))
    table = "".join(f"<tr><th>{_e(label)}</th><td>{_e(value)}</td></tr>" for label, value in rows)
    events = "".join(
        f"<li>{_e(_when(event.at))} · {_e(_event_line(workflow, event))} by {_e(event.actor)}"
        + (f"<div class='said'>{_e(event.comment)}</div>" if event.comment else "")
        + "</li>"
        for event in view.history
    )
    choices = "".join(
        f"<label class='choice'><input type='radio' name='status' value='{_e(target.name)}' "
        f"required{' checked' if target.name == chosen.status else ''}> {_e(target.label)}"
        "</label>"
        for target in view.choices
    )
    reasons = "".join(
        f"<label class='choice'><input type='radio' name='close_reason' value='{_e(reason)}'"
        f"{' checked' if reason == chosen.close_reason else ''}> "
        f"{_e(workflow.close_reason_label(reason))}</label>"
        for reason in view.close_reasons
    )
    if reasons:  # no script may run here, so the server checks that a closing change has one
        reasons = (f"<fieldset><legend>If you close the case: why?</legend>{reasons}"
                   "</fieldset>")
    return (
        (f"<p class='error' role='alert'>{_e(error)}</p>" if error else "")
        + f"<table>{table}</table>"
        + (f"<h2>Latest in its history</h2><ol>{events}</ol>" if events else "")
        + f"<form method='post' action='{_e(action_path)}'>"
        "<input type='hidden' name='action' value='prepare'>"
        f"<input type='hidden' name='token' value='{_e(token)}'>"
        f"<fieldset><legend>New status</legend>{choices}</fieldset>{reasons}"
        "<p><label for='comment'>Comment (required)</label></p>"
        f"<textarea id='comment' name='comment' rows='5' required "
        # A textarea drops one newline right after its start tag; this one, not the comment's.
        f"maxlength='{MAX_COMMENT_LENGTH}'>\n{_e(chosen.comment)}</textarea>"
        "<button type='submit'>Continue</button></form>"
        f"<p class='note'>This link changes the case once and works until "
        f"{_e(_when(view.expires_at))}. It cannot reassign the case.</p>"
    )


def _app_link(case_link: str | None) -> str:
    """"use the app", as a link to the case's page in the app when the loop has ``case_url``."""
    if case_link is None:
        return "use the app"
    return f"<a href='{_e(case_link)}'>open the case in the app</a>"


def _refusal(exc: TokenInvalid | TokenExpired | TokenUsed, *, confirmation: bool = False,
             case_link: str | None = None) -> Page:
    if isinstance(exc, TokenUsed):
        return _message(409, "This link has already been used",
                        "The case was already changed through this link. A link changes a case "
                        "only once; for any further change, use the app.", case_link)
    if isinstance(exc, TokenExpired):
        what = "confirmation" if confirmation else "link"
        return _message(410, f"This {what} has expired",
                        f"It stopped working at {_when(exc.expired_at)}. "
                        + ("Open the link from your email again, if it still works, "
                           "or use the app." if confirmation else "Use the app to update the case."),
                        case_link)
    return _message(400, "This link is not valid",
                    f"Sorry: {exc.reason}. Use the app to update the case.", case_link)


def _message(status: int, title: str, text: str, case_link: str | None = None) -> Page:
    link = "" if case_link is None else (
        f"<p><a href='{_e(case_link)}'>Open the case in the app</a></p>")
    return Page(status, _document(title, f"<p>{_e(text)}</p>{link}"))


def _request_origin(environ: WSGIEnvironment) -> str:
    """The origin this request was sent to, as the server saw it (scheme://host[:port])."""
    scheme = environ.get("wsgi.url_scheme", "http")
    host = environ.get("HTTP_HOST") or environ.get("SERVER_NAME", "")
    if not environ.get("HTTP_HOST"):
        port = environ.get("SERVER_PORT", "")
        if port and port != {"http": "80", "https": "443"}.get(scheme):
            host = f"{host}:{port}"
    return f"{scheme}://{host}".lower()


def _document(title: str, body: str) -> str:
    return (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>"
        "<meta name='robots' content='noindex, nofollow'>"
        f"<title>{_e(title)}</title><style>{_STYLE}</style></head>"
        f"<body><main><h1>{_e(title)}</h1>{body}</main></body></html>"
    )


def _e(value: str) -> str:
    return escape(value, quote=True)


def _when(moment: datetime) -> str:
    return f"{moment.astimezone(UTC):%Y-%m-%d %H:%M} UTC"


# -- reading requests ---------------------------------------------------------------


def _parse(encoded: str) -> dict[str, str]:
    try:
        fields = parse_qs(encoded, keep_blank_values=True, encoding="utf-8", errors="strict",
                          max_num_fields=len(_FIELDS) + 4)
    except (UnicodeDecodeError, ValueError):
        raise BadRequest(400, "The form was not understood.") from None
    form: dict[str, str] = {}
    for name, values in fields.items():
        if len(values) != 1:
            raise BadRequest(400, f"The form field {name!r} was sent more than once.")
        form[name] = values[0]
    return form


def _read_form(environ: WSGIEnvironment) -> dict[str, str]:
    content_type = environ.get("CONTENT_TYPE", "").split(";")[0].strip().lower()
    if content_type != "application/x-www-form-urlencoded":
        raise BadRequest(415, "Send the form as application/x-www-form-urlencoded.")
    try:
        length = int(environ.get("CONTENT_LENGTH") or "")
    except ValueError:
        raise BadRequest(400, "The form has no length.") from None
    if length < 0:
        raise BadRequest(400, "The form has no length.")
    if length > MAX_BODY_BYTES:
        raise BadRequest(413, "The form is too large.")
    body = environ["wsgi.input"].read(length)
    if len(body) != length:
        raise BadRequest(400, "The form arrived incomplete.")
    # An urlencoded body is ASCII; latin-1 keeps any stray byte for parse_qs to refuse.
    return _parse(body.decode("latin-1"))
