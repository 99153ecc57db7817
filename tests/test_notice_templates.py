"""Notices rendered at delivery: every default template, host overrides, locales, zones, directories.

The end-to-end tests send through a real SMTP server (aiosmtpd) and open the
one-touch link on the real WSGI pages.
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit
from wsgiref.util import setup_testing_defaults

import jinja2
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from closeloop import CloseLoop, InvalidInput, NotifierError, Status, SurveyResponse
from closeloop.notify import (
    NOTICE_KINDS,
    CaseFacts,
    Customer,
    Links,
    Note,
    NoticeContent,
    ResponseFacts,
    SmtpNotifier,
    StaticUserDirectory,
    Templates,
    User,
)
from closeloop.onetouch import OneTouch, wsgi_app
from closeloop.testing import FixedClock
from closeloop.triggers import Trigger, nps_between
from smtp_server import HOST, SmtpServer

AT = datetime(2026, 1, 7, 9, 0, tzinfo=UTC)  # 10:00 in Berlin and Vienna (CET)
SECRET = "notice template tests one-touch secret, 32+ bytes"
FORGED = "Fine.\rChange: https://evil.example/steal\u2028Open the case: https://evil.example"
USERS = StaticUserDirectory({
    "alice": User(address="alice@example.test", display_name="Alice Doe",
                  time_zone="Europe/Berlin"),
    "bob": User(address="bob@example.test", display_name="Bob Lead", time_zone="America/New_York",
                locale="de"),
    "vera": User(address="vera@example.test", time_zone="Europe/Vienna", locale="de-AT"),
})


class Crm:
    """A host's customer directory: Jürgen Weber for c-42, a markup-laden name for c-66."""

    def lookup(self, customer_id: str) -> Customer | None:
        """The customer, or None."""
        return {
            "c-42": Customer(name="Jürgen Weber", phone="+49 30 1234", account={"Plan": "Gold"}),
            "c-66": Customer(name="<b>Bold</b> & Co"),
        }.get(customer_id)


def content_of(kind: str, **changes: Any) -> NoticeContent:
    """A notice of ``kind`` about case k-1 of customer c-42, assigned to alice, with a response."""
    fields: dict[str, Any] = {
        "kind": kind,
        "case": CaseFacts(id="k-1", customer_id="c-42", status="closed" if kind == "closed" else "open",
                          opened_at=AT, priority="high", reasons=("detractor",), assignee="alice",
                          due_at=AT + timedelta(hours=4)),
        "actor": "bob",
        "created_at": AT,
        "note": Note(text="Please call them today", by="bob"),
        "response": ResponseFacts(id="r-1", score=3, comment=FORGED),
        "links": Links(change="https://crm.example/one-touch?token=t",
                       case_page="https://crm.example/cases/k-1"),
        "from_status": "open" if kind in ("status_changed", "closed") else None,
        "why": "overdue" if kind == "escalated" else None,
    }
    if kind == "status_changed":
        fields["case"] = CaseFacts(id="k-1", customer_id="c-42", status="progress", opened_at=AT,
                                   priority="high", assignee="alice")
    fields.update(changes)
    return NoticeContent(**fields)


@pytest.fixture
def host_directory(tmp_path: Path) -> Path:
    """A host's template folder: a German subject, text and HTML, and an escalation subject."""
    folder = tmp_path / "templates"
    folder.mkdir()
    (folder / "subject.de.j2").write_text(
        "{{ customer_name }} · Priorität {{ case.priority }} · {{ kind }}", encoding="utf-8")
    (folder / "text.de.j2").write_text(
        "Hallo {{ recipient_name }}: Fall von {{ customer_name }}, eröffnet {{ case.opened_at|when }}.\n"
        "{% if response %}Bewertung {{ response.score }}\n{{ response.comment|quoted }}\n{% endif %}"
        "{% if links.change %}Ändern: {{ links.change }}\n{% endif %}", encoding="utf-8")
    (folder / "html.de.j2").write_text(
        '{% extends "closeloop/html.j2" %}{% block body %}<p>Hallo {{ recipient_name }}</p>'
        "{{ super() }}{% endblock %}", encoding="utf-8")
    (folder / "escalated.subject.j2").write_text(
        "ESCALATION · {{ customer_name }} · {{ why_text }}", encoding="utf-8")
    return folder


#: Any text closeloop stores: every character but NUL and lone surrogates (refused at the door).
STORABLE = st.characters(codec="utf-8", exclude_characters="\x00")


class TestEveryTemplate:
    """Every default template, for every notice kind, with a host's overrides and a second locale."""

    @pytest.mark.parametrize("kind", NOTICE_KINDS)
    @pytest.mark.parametrize("to", ["alice", None])
    def test_defaults_in_english(self, host_directory: Path, kind: str, to: str | None) -> None:
        """English: the default text and HTML (escalation: the host's subject), in the reader's zone."""
        templates = Templates(directory=host_directory)
        rendered = templates.render(content_of(kind), recipient_id=to, users=USERS,
                                    customers=Crm())
        if kind == "escalated":
            assert rendered.subject == "ESCALATION · Jürgen Weber · overdue"
        else:
            assert rendered.subject.startswith("Jürgen Weber · High priority · ")
        assert "k-1" not in rendered.subject
        text, html = rendered.text, rendered.html
        assert "Customer: Jürgen Weber (c-42)" in text and "Plan: Gold" in text
        assert "score 3 of 10" in text and "score 3 of 10" in html
        zone = "CET" if to == "alice" else "UTC"
        hour = "10:00" if to == "alice" else "09:00"
        assert f"Opened: Wed 7 Jan 2026, {hour} {zone}" in text
        assert '<meta name="viewport" content="width=device-width, initial-scale=1">' in html
        assert "Note from Bob Lead" in text
        # The customer's words are quoted: no line of theirs passes for a link line.
        link_lines = [line for line in text.splitlines() if line.startswith(("Change:", "Open the case:"))]
        assert link_lines == ["Change: https://crm.example/one-touch?token=t",
                              "Open the case: https://crm.example/cases/k-1"]
        assert "> Change: https://evil.example/steal" in text
        if kind == "assigned":
            expected = "you" if to == "alice" else "Alice Doe"
            assert rendered.subject.endswith(f"assigned to {expected} by Bob Lead")
            assert "Note from Bob Lead, who assigned the case (not from the customer):" in text

    @pytest.mark.parametrize("kind", NOTICE_KINDS)
    @pytest.mark.parametrize("to", ["bob", "vera"])
    def test_second_locale_with_fallback(self, host_directory: Path, kind: str, to: str) -> None:
        """German readers (de, and de-AT falling back to de) get the host's German templates."""
        rendered = Templates(directory=host_directory).render(
            content_of(kind), recipient_id=to, users=USERS, customers=Crm())
        assert rendered.subject == f"Jürgen Weber · Priorität high · {kind}"
        hour, zone = ("04:00", "EST") if to == "bob" else ("10:00", "CET")
        name = "Bob Lead" if to == "bob" else "vera"
        assert rendered.text.startswith(
            f"Hallo {name}: Fall von Jürgen Weber, eröffnet Wed 7 Jan 2026, {hour} {zone}.\n")
        assert "Bewertung 3\n> Fine.\n> Change: https://evil.example/steal\n" in rendered.text
        assert rendered.html.count("Hallo") == 1 and "score 3 of 10" in rendered.html

    @settings(max_examples=100, deadline=None)
    @given(comment=st.text(STORABLE, max_size=300), note=st.text(STORABLE, min_size=1, max_size=300))
    def test_no_words_of_others_pass_for_a_link_line(self, comment: str, note: str) -> None:
        """Whatever the customer or an agent writes, the only link lines are the notice's own."""
        content = content_of("assigned", response=ResponseFacts(id="r-1", comment=comment or None),
                             note=Note(text=note, by="bob"))
        text = Templates().render(content, recipient_id="alice").text
        lines = [line for line in text.split("\n")
                 if line.startswith(("Change:", "Open the case:"))]
        assert lines == ["Change: https://crm.example/one-touch?token=t",
                         "Open the case: https://crm.example/cases/k-1"]

    def test_a_loader_takes_precedence_over_the_directory(self, host_directory: Path) -> None:
        """A host loader overrides the directory, which overrides the defaults."""
        templates = Templates(directory=host_directory,
                              loader=jinja2.DictLoader({"subject.j2": "Loader: {{ kind }}"}))
        assert templates.render(content_of("opened")).subject == "Loader: opened"
        assert templates.render(content_of("escalated")).subject.startswith("ESCALATION")

    def test_html_escapes_host_data(self) -> None:
        """A customer name with markup shows as text in HTML, never as markup."""
        rendered = Templates().render(content_of("opened", case=CaseFacts(
            id="k-1", customer_id="c-66", status="open", opened_at=AT)), customers=Crm())
        assert "&lt;b&gt;Bold&lt;/b&gt; &amp; Co" in rendered.html
        assert "<b>Bold</b>" not in rendered.html

    def test_the_sandbox_refuses_unsafe_templates(self) -> None:
        """A template reaching for Python internals fails as NotifierError, naming the part."""
        templates = Templates(loader=jinja2.DictLoader(
            {"subject.j2": "{{ notice.__class__.__mro__[1].__subclasses__() }}"}))
        with pytest.raises(NotifierError, match="subject"):
            templates.render(content_of("opened"))

    @pytest.mark.parametrize(("arguments", "field"), [
        ({"directory": "/no/such/folder"}, "directory"),
        ({"loader": {"subject.j2": "x"}}, "loader"),
    ])
    def test_bad_arguments(self, arguments: dict[str, Any], field: str) -> None:
        """Unusable template arguments are InvalidInput naming the field."""
        with pytest.raises(InvalidInput) as caught:
            Templates(**arguments)
        assert caught.value.field == field


@pytest.fixture
def smtp() -> Iterator[SmtpServer]:
    """A real SMTP server on loopback."""
    with SmtpServer() as server:
        yield server


def _page(loop: CloseLoop, url: str) -> tuple[int, str]:
    """GET ``url`` from the loop's one-touch pages (mounted at /one-touch) as a WSGI server would."""
    parts = urlsplit(url)
    environ: dict[str, Any] = {"REQUEST_METHOD": "GET", "SCRIPT_NAME": "/one-touch",
                               "PATH_INFO": "", "QUERY_STRING": parts.query,
                               "wsgi.input": io.BytesIO(b"")}
    setup_testing_defaults(environ)
    started: list[str] = []
    body = b"".join(wsgi_app(loop)(environ, lambda status, headers, exc=None: started.append(status)))
    return int(started[0].split()[0]), body.decode("utf-8")


class TestThroughTheLoop:
    """A loop with the host's directories: what arrives by email and what the Change link shows."""

    def test_customer_name_score_and_local_times_in_email_and_update_page(
        self, smtp: SmtpServer, host_directory: Path
    ) -> None:
        """The customer directory's name and the response's score are in the email and on the
        one-touch update page; times are in the recipient's zone; both links are offered."""
        clock = FixedClock(AT)
        loop = CloseLoop(
            notifier=SmtpNotifier(HOST, smtp.port, sender="care@example.test", timeout=5),
            clock=clock, users=USERS, customers=Crm(), templates=Templates(directory=host_directory),
            case_url="https://crm.example/cases/{case_id}",
            one_touch=OneTouch(SECRET, base_url="https://crm.example/one-touch"),
            triggers=[Trigger("detractor", nps_between(0, 6), assign_to="alice",
                              due_in=timedelta(hours=4))],
        )
        case = loop.ingest(SurveyResponse(id="r-1", customer_id="c-42", score=3, comment=FORGED))
        assert case is not None
        (received,) = smtp.received
        email = received.parsed()
        assert email["Subject"] == "Jürgen Weber · Normal priority · assigned to you by trigger detractor"
        assert email["To"] == "alice@example.test"
        text = email.get_body(("plain",)).get_content().replace("\r\n", "\n")
        assert "Customer: Jürgen Weber (c-42)" in text and "score 3 of 10" in text
        assert "Due: Wed 7 Jan 2026, 14:00 CET" in text
        (change,) = re.findall(r"^Change: (\S+)$", text, flags=re.MULTILINE)
        assert change.startswith("https://crm.example/one-touch?token=")
        assert f"Open the case: https://crm.example/cases/{case.id}\n" in text
        status, page = _page(loop, change)
        assert status == 200
        assert "Jürgen Weber (c-42)" in page and "3 of 10" in page

    def test_a_german_assignee_gets_the_german_email(self, smtp: SmtpServer,
                                                     host_directory: Path) -> None:
        """bob (locale de, New York) gets the host's German text with New York times."""
        clock = FixedClock(AT)
        loop = CloseLoop(notifier=SmtpNotifier(HOST, smtp.port, sender="care@example.test"),
                         clock=clock, users=USERS, customers=Crm(),
                         templates=Templates(directory=host_directory))
        case = loop.open_case("c-42", by="agent")
        loop.assign(case.id, to="bob", by="alice")
        email = smtp.received[0].parsed()
        assert email["Subject"] == "Jürgen Weber · Priorität normal · assigned"
        text = email.get_body(("plain",)).get_content().replace("\r\n", "\n")
        assert text.startswith("Hallo Bob Lead: Fall von Jürgen Weber, eröffnet "
                               "Wed 7 Jan 2026, 04:00 EST.")

    def test_done_and_refusal_pages_link_to_the_case_in_the_app(self) -> None:
        """With case_url, the done page and a used link's refusal page link to the app's case page."""
        clock = FixedClock(AT)
        loop = CloseLoop(clock=clock, case_url="https://crm.example/cases/{case_id}",
                         one_touch=OneTouch(SECRET, base_url="https://crm.example/one-touch"))
        case = loop.open_case("c-42", by="agent")
        loop.assign(case.id, to="alice", by="bob")
        token = urlsplit(loop.one_touch.link(case.id)).query.removeprefix("token=")
        pending = loop.one_touch.prepare(token, status=Status.CLOSED, comment="Sorted by phone")
        done = loop.one_touch.confirm(pending.token)
        receipt = loop.one_touch.receipt(done)
        app_link = f"<a href='https://crm.example/cases/{case.id}'>"
        status, page = _page(loop, f"https://crm.example/one-touch?done={receipt}")
        assert status == 200 and app_link in page
        status, page = _page(loop, f"https://crm.example/one-touch?token={token}")
        assert status == 409 and app_link in page
