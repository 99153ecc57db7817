"""SmtpNotifier against a real SMTP server (aiosmtpd) on loopback."""

from __future__ import annotations

import math
import smtplib
import socket
import ssl
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from email.message import EmailMessage
from typing import Any
from urllib.parse import unquote

import pytest

from closeloop import (
    Assigned,
    CloseLoop,
    DeliveryReport,
    InvalidInput,
    NotifierError,
    SurveyResponse,
)
from closeloop.notify import (
    Customer,
    Notifier,
    RecipientUnknown,
    SmtpNotifier,
    StaticUserDirectory,
    User,
)
from closeloop.notify.templates import one_line
from closeloop.storage import MemoryStore
from closeloop.testing import FixedClock, NotifierContract
from closeloop.testing.notifier_contract import Delivered, make_content, make_message
from closeloop.triggers import Trigger, nps_between
from smtp_server import HOST, SmtpServer, free_port, shipped_certificate

SENDER = "Customer care <care@example.test>"
ADDRESSES = {"alice": "alice@example.test", "bob": "bob@example.test"}


@pytest.fixture
def server() -> Iterator[SmtpServer]:
    """A plain SMTP server (no TLS, no AUTH) that records what it accepts."""
    with SmtpServer() as server:
        yield server


def smtp_notifier(port: int, **options: Any) -> SmtpNotifier:
    """A notifier for the loopback server on ``port``, with test defaults."""
    settings: dict[str, Any] = {"sender": SENDER, "address_of": ADDRESSES, "timeout": 5.0}
    settings.update(options)
    return SmtpNotifier(HOST, port, **settings)


@pytest.fixture
def notifier(server: SmtpServer) -> SmtpNotifier:
    """A notifier pointed at ``server``."""
    return smtp_notifier(server.port)


def text_of(email: EmailMessage) -> str:
    """The plain-text body, with the wire's CRLF line ends turned back into LF."""
    part = email.get_body(preferencelist=("plain",))
    assert isinstance(part, EmailMessage)
    content = part.get_content()
    assert isinstance(content, str)
    return content.replace("\r\n", "\n")


def html_of(email: EmailMessage) -> str:
    """The HTML body, with CRLF line ends turned back into LF."""
    part = email.get_body(preferencelist=("html",))
    assert isinstance(part, EmailMessage)
    content = part.get_content()
    assert isinstance(content, str)
    return content.replace("\r\n", "\n")


class TestSmtpNotifierContract(NotifierContract):
    """SmtpNotifier keeps the contract every notifier keeps."""

    @pytest.fixture
    def notifier(self, server: SmtpServer) -> Notifier:
        """An SmtpNotifier delivering to the loopback server."""
        return smtp_notifier(server.port)

    @pytest.fixture
    def delivered(self, server: SmtpServer) -> Delivered:
        """What the server received, as (user id, subject, text) triples."""
        user_of = {address: user for user, address in ADDRESSES.items()}

        def delivered() -> list[tuple[str, str, str]]:
            triples = []
            for received in server.received:
                email = received.parsed()
                (recipient,) = received.rcpt_tos
                triples.append((user_of[recipient], str(email["Subject"]), text_of(email).strip()))
            return triples

        return delivered


class TestSend:
    """What a sent message looks like when it arrives."""

    def test_arrives_with_headers_and_both_bodies(
        self, notifier: SmtpNotifier, server: SmtpServer
    ) -> None:
        """The email carries From, the mapped To, Subject, a Message-ID from the notice id,
        the case header, the text part and the HTML alternative."""
        message = make_message(text="Line one\nLine two\n", html="<p>Line <b>one</b></p>")
        notifier.send(message)

        (received,) = server.received
        assert received.mail_from == "care@example.test"
        assert received.rcpt_tos == ["alice@example.test"]
        email = received.parsed()
        assert email["From"] == SENDER
        assert email["To"] == "alice@example.test"
        assert email["Subject"] == message.subject
        assert email["Message-ID"] == "<notice-1@example.test>"
        assert email["X-Closeloop-Case"] == "case-1"
        assert email["Auto-Submitted"] == "auto-generated"
        assert email["Date"].datetime.tzinfo is not None
        assert email.get_content_type() == "multipart/alternative"
        assert text_of(email) == "Line one\nLine two\n"
        assert html_of(email).strip() == "<p>Line <b>one</b></p>"

    def test_message_id_is_stable_across_retries(
        self, notifier: SmtpNotifier, server: SmtpServer
    ) -> None:
        """Sending the same notice twice gives both emails the same Message-ID."""
        notifier.send(make_message())
        notifier.send(make_message())
        first, second = (received.parsed()["Message-ID"] for received in server.received)
        assert first == second == "<notice-1@example.test>"

    def test_unusual_ids_become_valid_message_ids_and_case_headers(
        self, notifier: SmtpNotifier, server: SmtpServer
    ) -> None:
        """Ids with spaces, dots, "@" or non-ASCII are encoded reversibly, one line each."""
        message = make_message(case_id="Fall 7/ä.b", notice_id="n 1@x..y")
        notifier.send(message)
        email = server.received[0].parsed()
        assert email["Message-ID"] == "<n%201%40x%2E%2Ey@example.test>"
        assert unquote(email["X-Closeloop-Case"]) == "Fall 7/ä.b"

    def test_build_email_makes_no_connection(self) -> None:
        """build_email returns the email send would deliver, without a server."""
        email = smtp_notifier(free_port()).build_email(make_message())
        assert email["To"] == "alice@example.test"
        assert email["Message-ID"] == "<notice-1@example.test>"


class TestThroughTheFacade:
    """SmtpNotifier wired into CloseLoop."""

    def test_assignment_email_names_case_customer_and_assigner(self, server: SmtpServer) -> None:
        """Assigning a case to alice emails her once, naming the case, customer and assigner."""
        loop = CloseLoop(store=MemoryStore(), notifier=smtp_notifier(server.port))
        case = loop.open_case("c-42", by="agent-1")
        loop.assign(case.id, to="alice", by="bob")

        (received,) = server.received
        assert received.rcpt_tos == ["alice@example.test"]
        email = received.parsed()
        assert email["Subject"] == "c-42 · Normal priority · assigned to you by bob"
        assert email["X-Closeloop-Case"] == case.id
        text = text_of(email)
        assert f"Case: {case.id}\n" in text
        assert "Customer: c-42\n" in text
        assert text.startswith("bob assigned you a case")
        assert loop.store.pending_notices() == []

    def test_failed_delivery_keeps_the_change_and_is_retried(self) -> None:
        """With the mail server down, assign still succeeds and the notice waits; once the
        server is up, deliver_pending sends it."""
        server = SmtpServer()  # not started yet: connections to its port are refused
        loop = CloseLoop(store=MemoryStore(), notifier=smtp_notifier(server.port))
        case = loop.open_case("c-42", by="agent-1")

        assigned = loop.assign(case.id, to="alice", by="bob")

        assert assigned.assignee == "alice"
        assert loop.get(case.id).assignee == "alice"
        last_event = loop.history(case.id)[-1]
        assert isinstance(last_event, Assigned)
        assert (last_event.kind, last_event.actor, last_event.assignee) == (
            "assigned", "bob", "alice",
        )
        (notice,) = loop.store.pending_notices()
        assert notice.attempts == 1
        assert notice.last_error is not None
        assert "NotifierError" in notice.last_error

        with server:
            report = loop.deliver_pending()
            assert report == DeliveryReport(sent=1, failed=0)
            (received,) = server.received
            assert received.rcpt_tos == ["alice@example.test"]
            assert received.parsed()["Message-ID"] == f"<{notice.message_id}@example.test>"
            assert loop.store.pending_notices() == []

    def test_line_separators_in_ids_never_reach_headers(self, server: SmtpServer) -> None:
        """Ids with Unicode line separators are refused before anything is written or sent."""
        loop = CloseLoop(store=MemoryStore(), notifier=smtp_notifier(server.port))
        for bad in ("c-1\u2029Bcc: evil@x.test", "c-1\u2028Bcc: evil@x.test", "c-1\x85Bcc: x"):
            with pytest.raises(InvalidInput, match="control characters"):
                loop.open_case(bad, by="agent-1")
        case = loop.open_case("c-1", by="agent-1")
        with pytest.raises(InvalidInput):
            loop.assign(case.id, to="alice\u2028Bcc: evil@x.test", by="bob")
        assert server.received == []
        assert loop.store.pending_notices() == []


class TestHeaderInjection:
    """Nothing in a message can add a header or a recipient."""

    @pytest.mark.parametrize(
        "subject",
        [
            "Hello\r\nBcc: x@evil.test",
            "Hello\nBcc: x@evil.test",
            "Hello\rBcc: x@evil.test",
            "Hello\u2028Bcc: x@evil.test",
            "Hello\x85Bcc: x@evil.test",
            "Hello\x00",
        ],
    )
    def test_subject_with_a_line_break_is_refused(
        self, notifier: SmtpNotifier, server: SmtpServer, subject: str
    ) -> None:
        """A subject with any line break or control character is refused and nothing is sent."""
        with pytest.raises(InvalidInput) as caught:
            notifier.send(make_message(subject=subject))
        assert caught.value.field == "message.subject"
        assert server.received == []

    def test_case_id_with_a_line_break_is_encoded(
        self, notifier: SmtpNotifier, server: SmtpServer
    ) -> None:
        """A raw CR/LF in a message's case or notice id is percent-encoded, never a new header."""
        notifier.send(make_message(case_id="case-1\r\nBcc: x@evil.test",
                                   notice_id="n-1\r\nBcc: x@evil.test"))
        (received,) = server.received
        assert received.rcpt_tos == ["alice@example.test"]
        email = received.parsed()
        assert "Bcc" not in email
        assert email["X-Closeloop-Case"] == "case-1%0D%0ABcc%3A%20x%40evil.test"
        assert email["Message-ID"] == "<n-1%0D%0ABcc%3A%20x%40evil%2Etest@example.test>"

    def test_address_with_a_line_break_is_refused(self, server: SmtpServer) -> None:
        """An address book entry that smuggles a Bcc header is a NotifierError; nothing is sent."""
        notifier = smtp_notifier(
            server.port, address_of={"alice": "alice@example.test\r\nBcc: x@evil.test"}
        )
        with pytest.raises(NotifierError, match="alice"):
            notifier.send(make_message())
        assert server.received == []

    def test_templates_fold_unicode_line_separators_in_subjects(self) -> None:
        """one_line, used for every subject, folds every kind of line break into one line."""
        folded = one_line("case\u2028Bcc: x@evil.test\x85\u2029\r\nSubject: hi")
        assert folded.splitlines() == [folded]
        assert folded == "case Bcc: x@evil.test Subject: hi"


class TestAddressOf:
    """How user ids become email addresses."""

    def test_unknown_user_is_a_notifier_error_naming_the_user(
        self, notifier: SmtpNotifier, server: SmtpServer
    ) -> None:
        """A user missing from the address book raises NotifierError naming the user id."""
        with pytest.raises(NotifierError, match="'carol'"):
            notifier.send(make_message(to="carol"))
        assert server.received == []

    def test_callable_address_book(self, server: SmtpServer) -> None:
        """A callable maps user ids to addresses; returning None means unknown."""
        directory: Callable[[str], str | None] = lambda user: (  # noqa: E731
            f"{user}@staff.example.test" if user != "nobody" else None
        )
        notifier = smtp_notifier(server.port, address_of=directory)
        notifier.send(make_message(to="dave"))
        assert server.received[0].rcpt_tos == ["dave@staff.example.test"]
        with pytest.raises(NotifierError, match="'nobody'"):
            notifier.send(make_message(to="nobody"))
        assert len(server.received) == 1

    @pytest.mark.parametrize(
        "address", ["alice", "", "alice@example.test, mallory@evil.test", "@example.test"]
    )
    def test_unusable_address_is_a_notifier_error(self, server: SmtpServer, address: str) -> None:
        """An address book entry that is not exactly one address raises NotifierError."""
        notifier = smtp_notifier(server.port, address_of={"alice": address})
        with pytest.raises(NotifierError, match="'alice'"):
            notifier.send(make_message())
        assert server.received == []

    def test_unknown_user_is_recipient_unknown(self, notifier: SmtpNotifier) -> None:
        """An unknown user raises RecipientUnknown carrying the user id, so retries can stop."""
        with pytest.raises(RecipientUnknown) as caught:
            notifier.send(make_message(to="carol"))
        assert caught.value.user_id == "carol"

    def test_display_name_addresses_are_accepted(self, server: SmtpServer) -> None:
        """An entry such as "Alice Doe <alice@example.test>" is used with its name."""
        notifier = smtp_notifier(
            server.port, address_of={"alice": "Alice Doe <alice@example.test>"}
        )
        notifier.send(make_message())
        (received,) = server.received
        assert received.rcpt_tos == ["alice@example.test"]
        assert received.parsed()["To"] == "Alice Doe <alice@example.test>"


class TestDeliveryFailures:
    """Every transport failure is a NotifierError with the driver's exception chained."""

    def test_connection_refused(self) -> None:
        """Nothing listening on the port: NotifierError caused by ConnectionRefusedError."""
        with pytest.raises(NotifierError) as caught:
            smtp_notifier(free_port()).send(make_message())
        assert isinstance(caught.value.__cause__, ConnectionRefusedError)

    def test_silent_server_times_out(self) -> None:
        """A server that accepts the connection but never greets: NotifierError after timeout."""
        with socket.socket() as listener:
            listener.bind((HOST, 0))
            listener.listen()
            notifier = smtp_notifier(listener.getsockname()[1], timeout=0.2)
            with pytest.raises(NotifierError) as caught:
                notifier.send(make_message())
        # smtplib turns the socket timeout into SMTPServerDisconnected("... timed out").
        assert isinstance(caught.value.__cause__, OSError)
        assert "timed out" in str(caught.value.__cause__)

    def test_starttls_never_falls_back_to_plain_text(self, server: SmtpServer) -> None:
        """security="starttls" against a server without STARTTLS fails; nothing is sent."""
        notifier = smtp_notifier(server.port, security="starttls")
        with pytest.raises(NotifierError) as caught:
            notifier.send(make_message())
        assert isinstance(caught.value.__cause__, smtplib.SMTPNotSupportedError)
        assert server.received == []

    def test_ssl_against_a_plain_server(self, server: SmtpServer) -> None:
        """security="ssl" against a plain-text server fails with the TLS error chained."""
        notifier = smtp_notifier(server.port, security="ssl")
        with pytest.raises(NotifierError) as caught:
            notifier.send(make_message())
        assert isinstance(caught.value.__cause__, ssl.SSLError)
        assert server.received == []

    def test_login_to_a_server_without_auth(self, server: SmtpServer) -> None:
        """A username given to a server that offers no AUTH fails; nothing is sent."""
        notifier = smtp_notifier(server.port, username="mailer", password="s3cret")
        with pytest.raises(NotifierError) as caught:
            notifier.send(make_message())
        assert isinstance(caught.value.__cause__, smtplib.SMTPNotSupportedError)
        assert server.received == []


class TestLogin:
    """Logging in to the server (over plain text here; see TestTls for TLS)."""

    @pytest.fixture
    def auth_server(self) -> Iterator[SmtpServer]:
        """A server with one account, mailer / s3cret."""
        with SmtpServer(accounts={"mailer": "s3cret"}) as server:
            yield server

    def test_logs_in_when_a_username_is_given(self, auth_server: SmtpServer) -> None:
        """With username and password the email is sent by the authenticated user."""
        notifier = smtp_notifier(auth_server.port, username="mailer", password="s3cret")
        notifier.send(make_message())
        (received,) = auth_server.received
        assert received.login == "mailer"

    def test_no_login_without_a_username(self, auth_server: SmtpServer) -> None:
        """Without a username the notifier does not log in."""
        smtp_notifier(auth_server.port).send(make_message())
        assert auth_server.received[0].login is None

    def test_wrong_password(self, auth_server: SmtpServer) -> None:
        """A refused login is a NotifierError caused by SMTPAuthenticationError; nothing is sent."""
        notifier = smtp_notifier(auth_server.port, username="mailer", password="wrong")
        with pytest.raises(NotifierError) as caught:
            notifier.send(make_message())
        assert isinstance(caught.value.__cause__, smtplib.SMTPAuthenticationError)
        assert "wrong" not in str(caught.value)
        assert auth_server.received == []


def server_tls_context() -> ssl.SSLContext:
    """A server-side TLS context with aiosmtpd's shipped self-signed certificate."""
    paths = shipped_certificate()
    if paths is None:
        pytest.skip("this aiosmtpd build ships no test certificate")
    cert, key = paths
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    return context


def client_tls_context() -> ssl.SSLContext:
    """A client context that trusts only the shipped certificate.

    The certificate is checked against that one CA; the host-name check is off
    because the certificate names host "aes", not 127.0.0.1.
    """
    paths = shipped_certificate()
    assert paths is not None
    context = ssl.create_default_context(cafile=str(paths[0]))
    context.check_hostname = False
    return context


class TestTls:
    """STARTTLS and implicit TLS against a server with a self-signed certificate."""

    def test_starttls_then_login(self) -> None:
        """security="starttls" upgrades the connection before logging in and sending."""
        with SmtpServer(accounts={"mailer": "s3cret"}, starttls=server_tls_context()) as server:
            notifier = smtp_notifier(
                server.port, security="starttls", ssl_context=client_tls_context(),
                username="mailer", password="s3cret",
            )
            notifier.send(make_message())
            (received,) = server.received
        assert (received.tls, received.login) == (True, "mailer")

    def test_implicit_tls(self) -> None:
        """security="ssl" speaks TLS from the first byte."""
        with SmtpServer(implicit_tls=server_tls_context()) as server:
            notifier = smtp_notifier(server.port, security="ssl", ssl_context=client_tls_context())
            notifier.send(make_message())
            (received,) = server.received
        assert received.tls

    def test_default_context_refuses_an_untrusted_certificate(self) -> None:
        """Without an ssl_context the server's certificate is verified: a self-signed one
        is refused and nothing is sent."""
        with SmtpServer(starttls=server_tls_context()) as server:
            notifier = smtp_notifier(server.port, security="starttls")
            with pytest.raises(NotifierError) as caught:
                notifier.send(make_message())
            assert server.received == []
        assert isinstance(caught.value.__cause__, ssl.SSLCertVerificationError)


class TestConstructor:
    """Bad configuration is refused at construction, naming the field."""

    @pytest.mark.parametrize(
        ("options", "field"),
        [
            ({"security": "tls"}, "security"),
            ({"security": None}, "security"),
            ({"port": 0}, "port"),
            ({"port": 65536}, "port"),
            ({"port": "25"}, "port"),
            ({"port": True}, "port"),
            ({"host": ""}, "host"),
            ({"host": "smtp example.test"}, "host"),
            ({"host": None}, "host"),
            ({"sender": None}, "sender"),
            ({"sender": ""}, "sender"),
            ({"sender": "not-an-address"}, "sender"),
            ({"sender": "a@example.test, b@example.test"}, "sender"),
            ({"sender": "care@example.test\r\nBcc: x@evil.test"}, "sender"),
            ({"address_of": 42}, "address_of"),
            ({"users": StaticUserDirectory({})}, "users"),
            ({"address_of": None, "users": {"alice": "a@example.test"}}, "users"),
            ({"message_id_domain": "bad domain"}, "message_id_domain"),
            ({"username": "mailer"}, "password"),
            ({"password": "s3cret"}, "username"),
            ({"username": "", "password": "s3cret"}, "username"),
            ({"timeout": 0}, "timeout"),
            ({"timeout": -1.0}, "timeout"),
            ({"timeout": math.nan}, "timeout"),
            ({"timeout": math.inf}, "timeout"),
            ({"timeout": None}, "timeout"),
            ({"timeout": True}, "timeout"),
            ({"ssl_context": "yes"}, "ssl_context"),
            ({"ssl_context": ssl.create_default_context()}, "ssl_context"),
            ({"local_hostname": ""}, "local_hostname"),
        ],
    )
    def test_bad_argument_is_invalid_input(self, options: dict[str, Any], field: str) -> None:
        """Each unusable argument raises InvalidInput whose field names it."""
        arguments: dict[str, Any] = {
            "host": "localhost", "port": 25, "sender": SENDER, "address_of": ADDRESSES,
        }
        arguments.update(options)
        with pytest.raises(InvalidInput) as caught:
            SmtpNotifier(**arguments)
        assert caught.value.field == field

    def test_password_is_never_shown(self) -> None:
        """Neither repr nor a refused password reveals it."""
        notifier = SmtpNotifier(
            sender=SENDER, address_of=ADDRESSES, username="mailer", password="s3cret-pw",
            security="starttls",
        )
        assert "s3cret-pw" not in repr(notifier)
        with pytest.raises(InvalidInput) as caught:
            SmtpNotifier(sender=SENDER, address_of=ADDRESSES, username="mailer",
                         password=b"s3cret-pw")  # type: ignore[arg-type]
        assert "s3cret-pw" not in str(caught.value)

    def test_defaults(self) -> None:
        """localhost:25, plain text, no login, a 10 s timeout."""
        notifier = SmtpNotifier(sender=SENDER, address_of=ADDRESSES)
        assert (notifier.host, notifier.port, notifier.security, notifier.username) == (
            "localhost", 25, "none", None,
        )
        assert notifier.timeout == 10.0
        assert notifier.ssl_context is None



class _Crm:
    """A host's customer directory knowing one customer."""

    def lookup(self, customer_id: str) -> Customer | None:
        """Jürgen Weber for c-42, nobody else."""
        return Customer(name="Jürgen Weber", phone="+49 30 1234") if customer_id == "c-42" else None


class TestUserDirectory:
    """SmtpNotifier(users=...): addresses, zones and locales from the host's user directory."""

    USERS = StaticUserDirectory({
        "alice": User(address="Alice Doe <alice@example.test>", time_zone="Europe/Berlin"),
        "bob": User(address="bob@example.test", time_zone="America/New_York", locale="de"),
        "nomail": User(display_name="No Mail"),
    })

    def test_address_comes_from_the_directory(self, server: SmtpServer) -> None:
        """The envelope and To header use the User's address."""
        notifier = smtp_notifier(server.port, address_of=None, users=self.USERS)
        notifier.send(make_message())
        (received,) = server.received
        assert received.rcpt_tos == ["alice@example.test"]
        assert received.parsed()["To"] == "Alice Doe <alice@example.test>"

    @pytest.mark.parametrize("user", ["carol", "nomail"])
    def test_user_unknown_or_without_address(self, server: SmtpServer, user: str) -> None:
        """A user missing from the directory, or without address, is RecipientUnknown; nothing sent."""
        notifier = smtp_notifier(server.port, address_of=None, users=self.USERS)
        with pytest.raises(RecipientUnknown, match=repr(user)):
            notifier.send(make_message(to=user))
        assert server.received == []

    def test_content_is_rendered_for_the_recipient(self, server: SmtpServer) -> None:
        """Through a loop with users and customers: customer name, score, the recipient's time."""
        clock = FixedClock(datetime(2026, 1, 7, 9, 0, tzinfo=UTC))
        loop = CloseLoop(notifier=smtp_notifier(server.port, address_of=None), clock=clock,
                         users=self.USERS, customers=_Crm(),
                         triggers=[Trigger("detractor", nps_between(0, 6), assign_to="alice")])
        loop.ingest(SurveyResponse(id="r-1", customer_id="c-42", score=3,
                                   comment="Slow delivery"))
        email = server.received[0].parsed()
        text, html = text_of(email), html_of(email)
        assert email["Subject"] == "Jürgen Weber · Normal priority · assigned to you by trigger detractor"
        assert email["To"] == "Alice Doe <alice@example.test>"
        assert "Jürgen Weber" in text and "score 3 of 10" in text and "score 3 of 10" in html
        # 09:00 UTC is 10:00 in Berlin in January.
        assert "Wed 7 Jan 2026, 10:00 CET" in text
        assert "> Slow delivery" in text

    def test_address_comes_from_the_message_without_a_directory(self, server: SmtpServer) -> None:
        """A notifier without a directory of its own mails the address the loop's directory gave."""
        notifier = smtp_notifier(server.port, address_of=None)
        notifier.send(make_message(recipient=User(address="bob@example.test")))
        assert server.received[0].rcpt_tos == ["bob@example.test"]
        with pytest.raises(RecipientUnknown, match="'alice'"):
            notifier.send(make_message())

    def test_message_id_domain_is_configurable(self, server: SmtpServer) -> None:
        """message_id_domain sets the Message-ID's right-hand side."""
        smtp_notifier(server.port, message_id_domain="crm.example").send(make_message())
        assert server.received[0].parsed()["Message-ID"] == "<notice-1@crm.example>"

    def test_message_text_is_sent_as_rendered(self, server: SmtpServer) -> None:
        """The notifier sends the message's own subject and text even when it carries content."""
        notifier = smtp_notifier(server.port, address_of=None, users=self.USERS)
        notifier.send(make_message(content=make_content()))
        email = server.received[0].parsed()
        assert email["Subject"] == make_message().subject
        assert text_of(email).strip() == make_message().text.strip()
