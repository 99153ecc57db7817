"""The one-touch WSGI pages, called directly: every page and refusal, its status, headers and escaping."""

from __future__ import annotations

import base64
import hashlib
import io
import re
from collections.abc import Iterable
from datetime import timedelta
from html.parser import HTMLParser
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit
from wsgiref.util import setup_testing_defaults

import pytest
from attrs import frozen

from closeloop import Case, CloseLoop, InvalidInput, Status, StoreError
from closeloop.notify import MemoryNotifier
from closeloop.onetouch import OneTouch, OneTouchPages, wsgi_app
from closeloop.onetouch.pages import MAX_BODY_BYTES
from closeloop.storage import MemoryStore, Store
from closeloop.testing import FixedClock

SECRET = "test secret for one-touch pages, 32+ bytes"
NASTY = "<script>alert('x')</script> & \"quoted\""


@frozen
class Response:
    """What the app answered."""

    status: int
    headers: dict[str, str]
    body: bytes

    @property
    def text(self) -> str:
        """The body as text."""
        return self.body.decode("utf-8")


def call(app: OneTouchPages, method: str = "GET", *, query: str = "", form: dict[str, str] | None = None,
         body: bytes | None = None, content_type: str = "application/x-www-form-urlencoded",
         path: str = "", content_length: str | None = None,
         headers: dict[str, str] | None = None) -> Response:
    """Call the app with a hand-built environ, mounted at /one-touch (``headers``: extra environ keys)."""
    if form is not None:
        body = urlencode(form).encode("ascii")
    environ: dict[str, Any] = {
        "REQUEST_METHOD": method, "SCRIPT_NAME": "/one-touch", "PATH_INFO": path,
        "QUERY_STRING": query, "wsgi.input": io.BytesIO(body or b""),
    }
    if body is not None:
        environ["CONTENT_TYPE"] = content_type
        environ["CONTENT_LENGTH"] = str(len(body))
    if content_length is not None:
        environ["CONTENT_LENGTH"] = content_length
    environ.update(headers or {})
    setup_testing_defaults(environ)
    started: list[tuple[str, list[tuple[str, str]]]] = []

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        started.append((status, headers))
        return lambda data: None

    chunks: Iterable[bytes] = app(environ, start_response)
    (status, headers), = started
    names = [name.lower() for name, _ in headers]
    assert len(names) == len(set(names)), "a header was sent twice"
    return Response(int(status.split()[0]), {k.lower(): v for k, v in headers}, b"".join(chunks))


class Outgoing(HTMLParser):
    """Collects every URL a page points to (href, src, action…)."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []
        self.tags: list[str] = []
        self.fields: set[str] = set()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        if tag in ("input", "textarea", "select", "button"):
            self.fields.add(dict(attrs).get("name") or "")
        for name, value in attrs:
            if name in ("href", "src", "action", "formaction", "srcset", "poster", "data"):
                self.urls.append(value or "")


def outgoing(page: Response) -> Outgoing:
    """The page parsed for its outgoing URLs and tags."""
    parser = Outgoing()
    parser.feed(page.text)
    return parser


@pytest.fixture
def loop(store: Store, outbox: MemoryNotifier, clock: FixedClock) -> CloseLoop:
    """A loop with one-touch links pointing at /one-touch."""
    return CloseLoop(store=store, notifier=outbox, clock=clock,
                     one_touch=OneTouch(SECRET, base_url="https://crm.example/one-touch"))


@pytest.fixture
def app(loop: CloseLoop) -> OneTouchPages:
    """The pages under test."""
    return wsgi_app(loop)


@pytest.fixture
def case(loop: CloseLoop) -> Case:
    """A case whose customer id and opening comment are full of markup, assigned to alice."""
    opened = loop.open_case("c<b>&'\"", by="survey", comment=f"Customer wrote: {NASTY}")
    return loop.assign(opened.id, to="alice", by="bob")


@pytest.fixture
def token(loop: CloseLoop, case: Case) -> str:
    """A link token for the case."""
    (value,) = parse_qs(urlsplit(loop.one_touch.link(case.id)).query)["token"]
    return value


def prepare(app: OneTouchPages, token: str, status: str = "closed",
            comment: str = "Refunded") -> Response:
    """POST the update form."""
    return call(app, "POST", form={"action": "prepare", "token": token, "status": status,
                                   "comment": comment})


def confirmation_of(page: Response) -> str:
    """The confirmation token hidden in a confirm page."""
    match = re.search(r"name='confirmation' value='([^']+)'", page.text)
    assert match, page.text
    return match.group(1)


def follow(app: OneTouchPages, page: Response) -> Response:
    """GET the page a 303 redirect points to (a path and query under /one-touch)."""
    assert page.status == 303, page.text
    location = urlsplit(page.headers["location"])
    assert location.path == "/one-touch" and not location.netloc
    return call(app, query=location.query)


def assert_safe_headers(page: Response) -> None:
    """The headers every one-touch response carries."""
    headers = page.headers
    assert headers["content-type"] == "text/html; charset=utf-8"
    assert headers["cache-control"] == "no-store"
    assert headers["referrer-policy"] == "no-referrer"
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["x-frame-options"] == "DENY"
    csp = dict(part.strip().split(" ", 1) for part in headers["content-security-policy"].split(";"))
    assert csp["default-src"] == "'none'"
    assert csp["form-action"] == "'self'"
    assert csp["frame-ancestors"] == "'none'"
    assert csp["base-uri"] == "'none'"
    assert "script-src" not in csp and "unsafe-inline" not in csp["style-src"]
    assert int(headers["content-length"]) == len(page.body)


class TestUpdatePage:
    """GET with the emailed link's token."""

    def test_shows_the_case_and_the_form(self, app: OneTouchPages, case: Case, token: str) -> None:
        """200: the case summary, the allowed statuses as choices, a required comment, a POST form."""
        page = call(app, query=f"token={token}")
        assert page.status == 200
        assert_safe_headers(page)
        assert f"Update case {case.id}" in page.text
        assert "value='progress' required" in page.text and "value='closed' required" in page.text
        assert "value='open'" not in page.text  # the current status is not a choice
        assert "<textarea id='comment' name='comment' rows='5' required" in page.text
        assert "method='post' action='/one-touch'" in page.text
        assert "name='viewport'" in page.text
        # No reassignment offered: the form sends only these fields (buttons have no name).
        assert outgoing(page).fields == {"action", "token", "status", "comment", ""}

    def test_escapes_everything_from_the_case(self, app: OneTouchPages, token: str) -> None:
        """Customer id and comments are shown as text, never as markup."""
        page = call(app, query=f"token={token}")
        assert "<script>" not in page.text and "<b>" not in page.text
        assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt; &amp; &quot;quoted&quot;" in page.text
        assert "c&lt;b&gt;&amp;&#x27;&quot;" in page.text
        assert outgoing(page).tags.count("script") == 0

    def test_token_is_in_no_outgoing_url(self, app: OneTouchPages, token: str) -> None:
        """The page posts back to its path; the token travels only in a hidden field."""
        page = call(app, query=f"token={token}")
        urls = outgoing(page).urls
        assert urls == ["/one-touch"]
        assert all(token not in url for url in urls)

    def test_style_is_allowed_by_its_hash(self, app: OneTouchPages, token: str) -> None:
        """The CSP allows exactly the page's own stylesheet, by hash."""
        page = call(app, query=f"token={token}")
        (style,) = re.findall(r"<style>(.*?)</style>", page.text)
        digest = base64.b64encode(hashlib.sha256(style.encode()).digest()).decode()
        assert f"style-src 'sha256-{digest}'" in page.headers["content-security-policy"]

    def test_head_sends_headers_only(self, app: OneTouchPages, token: str) -> None:
        """HEAD answers like GET without a body."""
        page = call(app, "HEAD", query=f"token={token}")
        assert page.status == 200 and page.body == b""
        assert page.headers["cache-control"] == "no-store"

    def test_opening_changes_nothing(self, app: OneTouchPages, loop: CloseLoop, case: Case,
                                     token: str) -> None:
        """A GET (say, a mail scanner following the link) leaves the case and the link as they were."""
        call(app, query=f"token={token}")
        assert loop.get(case.id) == case
        assert prepare(app, token).status == 200


class TestConfirmPage:
    """POST action=prepare."""

    def test_asks_to_confirm_the_change(self, app: OneTouchPages, case: Case, token: str,
                                        loop: CloseLoop) -> None:
        """200: "Change case #… from Open to Closed with comment …?", Confirm and Cancel forms."""
        page = prepare(app, token, comment=NASTY)
        assert page.status == 200
        assert_safe_headers(page)
        assert (f"Change case <strong>#{case.id}</strong> from <strong>Open</strong> to "
                "<strong>Closed</strong> with comment:") in page.text
        assert "<script>" not in page.text
        assert page.text.count("&lt;script&gt;alert(&#x27;x&#x27;)") == 2  # shown + in Cancel form
        assert ">Confirm</button>" in page.text and ">Cancel</button>" in page.text
        assert outgoing(page).urls == ["/one-touch", "/one-touch"]
        assert loop.get(case.id) == case  # nothing changed yet

    def test_cancel_goes_back_with_the_choice_kept(self, app: OneTouchPages, token: str) -> None:
        """Cancel (a POST, no link) shows the update page with the status and comment filled in."""
        page = call(app, "POST", form={"action": "cancel", "token": token, "status": "closed",
                                       "comment": NASTY})
        assert page.status == 200
        assert "value='closed' required checked" in page.text
        assert ">\n&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt; &amp; &quot;quoted&quot;</textarea>" \
            in page.text

    @pytest.mark.parametrize(("status", "comment", "message"), [
        ("closed", "   ", "Please write a comment"),
        ("open", "same status", "cannot move to that status"),
        ("", "no status chosen", "Choose the new status"),
        ("escalated", "unknown", "Choose the new status"),
        ("closed", "x" * 10_001, "must be at most 10000 characters"),
        ("closed", "nul \x00 byte", "must not contain NUL characters"),
    ])
    def test_refused_choice_redisplays_the_form(self, app: OneTouchPages, token: str, status: str,
                                                comment: str, message: str) -> None:
        """422: the update page again, with what to fix."""
        page = prepare(app, token, status=status, comment=comment)
        assert page.status == 422
        assert_safe_headers(page)
        assert message in page.text and "role='alert'" in page.text
        assert "name='action' value='prepare'" in page.text


class TestDonePage:
    """POST action=confirm."""

    def test_confirm_changes_the_case_once(self, app: OneTouchPages, loop: CloseLoop, case: Case,
                                           token: str) -> None:
        """303 to the done page; the case is Closed by alice via one-touch; the comment as typed."""
        confirmation = confirmation_of(prepare(app, token, comment="Refunded\r\nline two"))
        redirect = call(app, "POST", form={"action": "confirm", "confirmation": confirmation})
        assert_safe_headers(redirect)
        page = follow(app, redirect)
        assert page.status == 200
        assert_safe_headers(page)
        assert "<h1>Done</h1>" in page.text and "is now <strong>Closed</strong>" in page.text
        event = loop.history(case.id)[-1]
        assert (event.kind, event.actor, event.via, event.comment) == (
            "status_changed", "alice", "one-touch", "Refunded\nline two")
        assert loop.get(case.id).assignee == "alice"

    def test_link_and_confirmation_are_used_up(self, app: OneTouchPages, token: str) -> None:
        """409 "already used" for the confirmation again, the link again, and a new prepare."""
        confirmation = confirmation_of(prepare(app, token))
        call(app, "POST", form={"action": "confirm", "confirmation": confirmation})
        for page in (call(app, "POST", form={"action": "confirm", "confirmation": confirmation}),
                     call(app, query=f"token={token}"), prepare(app, token)):
            assert page.status == 409
            assert_safe_headers(page)
            assert "This link has already been used" in page.text

    def test_extra_fields_cannot_reassign(self, app: OneTouchPages, loop: CloseLoop, case: Case,
                                          token: str) -> None:
        """Fields the pages do not know (assignee=…) are ignored; the case stays alice's."""
        page = call(app, "POST", form={"action": "prepare", "token": token, "status": "closed",
                                       "comment": "ok", "assignee": "mallory", "to": "mallory"})
        call(app, "POST", form={"action": "confirm", "confirmation": confirmation_of(page),
                                "assignee": "mallory"})
        assert loop.get(case.id).assignee == "alice"
        assert loop.get(case.id).status is Status.CLOSED

    def test_case_changed_since_prepare(self, app: OneTouchPages, loop: CloseLoop, case: Case,
                                        token: str) -> None:
        """409 "The case has changed" if its status moved after the confirm page was shown."""
        confirmation = confirmation_of(prepare(app, token))
        loop.set_status(case.id, Status.PROGRESS, by="bob")
        page = call(app, "POST", form={"action": "confirm", "confirmation": confirmation})
        assert page.status == 409 and "The case has changed" in page.text
        assert call(app, query=f"token={token}").status == 200  # the link still works


class TestRefusals:
    """Expired, used and invalid links, and malformed requests."""

    def test_expired_link(self, app: OneTouchPages, token: str, clock: FixedClock) -> None:
        """410 with when it expired, for the link and for the form."""
        clock.advance(hours=24, seconds=1)
        for page in (call(app, query=f"token={token}"), prepare(app, token)):
            assert page.status == 410
            assert_safe_headers(page)
            assert "This link has expired" in page.text and "2026-01-06 09:00 UTC" in page.text

    def test_expired_confirmation(self, app: OneTouchPages, token: str, clock: FixedClock) -> None:
        """410 "This confirmation has expired" after confirm_max_age."""
        confirmation = confirmation_of(prepare(app, token))
        clock.advance(minutes=16)
        page = call(app, "POST", form={"action": "confirm", "confirmation": confirmation})
        assert page.status == 410 and "This confirmation has expired" in page.text

    @pytest.mark.parametrize("query", ["", "token=", "token=garbage", "token=a.b", "other=1"])
    def test_invalid_link(self, app: OneTouchPages, query: str) -> None:
        """400 "not valid" for a missing or mangled token, revealing nothing."""
        page = call(app, query=query)
        assert page.status == 400
        assert_safe_headers(page)
        assert "This link is not valid" in page.text

    def test_tampered_link_reveals_no_case(self, app: OneTouchPages, case: Case, token: str) -> None:
        """A token with one character changed gets the invalid page, which names no case."""
        bad = token[:5] + ("A" if token[5] != "A" else "B") + token[6:]
        page = call(app, query=f"token={bad}")
        assert page.status == 400 and case.id not in page.text and "c&lt;b" not in page.text

    def test_reassigned_case(self, app: OneTouchPages, loop: CloseLoop, case: Case,
                             token: str) -> None:
        """400 with the reason when the case went to someone else."""
        loop.assign(case.id, to="bob", by="manager")
        page = call(app, query=f"token={token}")
        assert page.status == 400 and "the case was reassigned" in page.text

    def test_confirmation_token_as_link(self, app: OneTouchPages, token: str) -> None:
        """A confirmation token pasted as a link (or a link as confirmation) is invalid."""
        confirmation = confirmation_of(prepare(app, token))
        assert call(app, query=f"token={confirmation}").status == 400
        assert call(app, "POST", form={"action": "confirm", "confirmation": token}).status == 400

    def test_other_methods(self, app: OneTouchPages, token: str) -> None:
        """405 with an Allow header for PUT, DELETE…"""
        for method in ("PUT", "DELETE", "PATCH", "OPTIONS"):
            page = call(app, method, query=f"token={token}")
            assert page.status == 405 and page.headers["allow"] == "GET, HEAD, POST"
            assert_safe_headers(page)

    def test_other_paths(self, app: OneTouchPages, token: str) -> None:
        """404 below the mount point."""
        page = call(app, query=f"token={token}", path="/admin")
        assert page.status == 404
        assert_safe_headers(page)

    @pytest.mark.parametrize(("kwargs", "status"), [
        ({"form": {"action": "delete"}}, 400),
        ({"form": {}}, 400),
        ({"body": b"action=prepare&action=confirm"}, 400),
        ({"body": b"action=prepare&comment=%FF%FE"}, 400),
        ({"body": b"action=confirm", "content_type": "application/json"}, 415),
        ({"body": b"action=confirm", "content_type": "multipart/form-data; boundary=x"}, 415),
        ({"body": b"action=confirm", "content_length": "lots"}, 400),
        ({"body": b"action=confirm", "content_length": "-1"}, 400),
        ({"body": b"action=confirm", "content_length": "100"}, 400),
        ({"body": b"", "content_length": str(MAX_BODY_BYTES + 1)}, 413),
        ({"body": b"&".join([b"a=1"] * 100)}, 400),
    ])
    def test_malformed_posts(self, app: OneTouchPages, kwargs: dict[str, Any], status: int) -> None:
        """Unknown actions, repeated fields, bad encodings, wrong types and sizes are refused."""
        page = call(app, "POST", **kwargs)
        assert page.status == status
        assert_safe_headers(page)

    def test_largest_comment_fits(self, app: OneTouchPages, token: str) -> None:
        """A maximal comment of 4-byte characters still fits in the body limit, both ways."""
        comment = "😀" * 10_000
        page = prepare(app, token, comment=comment)
        assert page.status == 200
        confirmation = confirmation_of(page)
        body = urlencode({"action": "confirm", "confirmation": confirmation}).encode()
        assert len(body) <= MAX_BODY_BYTES
        assert call(app, "POST", body=body).status == 303

    def test_store_outage(self, outbox: MemoryNotifier, clock: FixedClock) -> None:
        """503 "try again", never a traceback, when the store fails."""

        class Down(MemoryStore):
            def link_used(self, link_id: str) -> bool:
                raise StoreError("database is down")

        loop = CloseLoop(store=Down(), notifier=outbox, clock=clock,
                         one_touch=OneTouch(SECRET, base_url="https://crm.example/one-touch",
                                            max_age=timedelta(hours=1)))
        case = loop.assign(loop.open_case("c-1", by="a").id, to="alice", by="bob")
        link = loop.one_touch.link(case.id)
        page = call(wsgi_app(loop), query=urlsplit(link).query)
        assert page.status == 503 and "Nothing was changed" in page.text
        assert_safe_headers(page)

    def test_app_needs_one_touch(self) -> None:
        """wsgi_app refuses a loop without one-touch configured."""
        with pytest.raises(InvalidInput, match="not configured"):
            wsgi_app(CloseLoop())
