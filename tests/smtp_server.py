"""A real SMTP server on loopback for tests: aiosmtpd in a thread, recording what it receives.

Usage::

    with SmtpServer() as server:
        notifier = SmtpNotifier("127.0.0.1", server.port, sender=..., address_of=...)
        notifier.send(message)
        assert server.received[0].rcpt_tos == ["alice@example.test"]
"""

from __future__ import annotations

import email
import email.policy
import socket
import ssl
import threading
from collections.abc import Callable, Mapping
from email.message import EmailMessage
from importlib import resources
from pathlib import Path
from types import TracebackType
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

__all__ = ["Received", "SmtpServer", "free_port", "shipped_certificate"]

HOST = "127.0.0.1"


def free_port() -> int:
    """A TCP port on loopback that nothing listens on (at the moment of asking)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((HOST, 0))
        port: int = probe.getsockname()[1]
        return port


def shipped_certificate() -> tuple[Path, Path] | None:
    """The self-signed certificate and key that ship inside aiosmtpd's own tests.

    They let a test run TLS without generating a certificate (which would need a
    package such as ``cryptography`` that the project does not depend on). The
    certificate is for CN "aes" with no subjectAltName, so clients must trust it
    explicitly and skip the host-name check. ``None`` if this aiosmtpd build does
    not ship them.
    """
    certs = resources.files("aiosmtpd") / "tests" / "certs"
    cert, key = certs / "server.crt", certs / "server.key"
    if not (cert.is_file() and key.is_file()):
        return None
    return Path(str(cert)), Path(str(key))


class Received:
    """One email the server accepted: its envelope, raw bytes and session facts."""

    def __init__(self, envelope: Envelope, *, login: str | None, tls: bool) -> None:
        self.mail_from: str | None = envelope.mail_from
        self.rcpt_tos: list[str] = list(envelope.rcpt_tos)
        content = envelope.original_content
        assert isinstance(content, bytes)
        self.content: bytes = content
        self.login = login
        self.tls = tls

    def parsed(self) -> EmailMessage:
        """The email, parsed as a mail client would."""
        parsed = email.message_from_bytes(self.content, policy=email.policy.default)
        assert isinstance(parsed, EmailMessage)
        return parsed


class _RecordingHandler:
    def __init__(self, on_message: Callable[[int], None] | None = None) -> None:
        self.received: list[Received] = []
        self.lock = threading.Lock()
        self.on_message = on_message

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        auth_data: Any = session.auth_data  # the LoginPassword _Accounts accepted
        login = auth_data.login.decode() if session.authenticated else None
        transport = server.transport
        tls = transport is not None and transport.get_extra_info("ssl_object") is not None
        with self.lock:
            if self.on_message is not None:
                self.on_message(len(self.received) + 1)
            self.received.append(Received(envelope, login=login, tls=tls))
        return "250 Message accepted for delivery"


class _Accounts:
    """An aiosmtpd authenticator that accepts the given user names and passwords."""

    def __init__(self, accounts: Mapping[str, str]) -> None:
        self.accounts = dict(accounts)

    def __call__(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, auth_data: Any
    ) -> AuthResult:
        if isinstance(auth_data, LoginPassword):
            user, password = auth_data.login.decode(), auth_data.password.decode()
            if user in self.accounts and self.accounts[user] == password:
                return AuthResult(success=True, auth_data=auth_data)
        return AuthResult(success=False, handled=False)


class SmtpServer:
    """An aiosmtpd server on 127.0.0.1 and a free port; a context manager.

    Args:
        accounts: user name → password; when given the server offers AUTH (and,
            without TLS, over plain text, which only a test should do).
        starttls: a server-side TLS context: the server offers STARTTLS and
            requires it before anything else.
        implicit_tls: a server-side TLS context: the connection is TLS from the
            first byte (SMTPS).
        on_message: called with the message's number (1, 2, …) before each is
            accepted, one at a time: a test advances its clock here to make a
            delivery take simulated time.
    """

    def __init__(
        self,
        *,
        accounts: Mapping[str, str] | None = None,
        starttls: ssl.SSLContext | None = None,
        implicit_tls: ssl.SSLContext | None = None,
        on_message: Callable[[int], None] | None = None,
    ) -> None:
        self.port = free_port()
        self._handler = _RecordingHandler(on_message)
        options: dict[str, Any] = {}
        if accounts is not None:
            options["authenticator"] = _Accounts(accounts)
            # Not auth_required: aiosmtpd warns when AUTH is required without TLS,
            # and the tests check that a login happened through `Received.login`.
            options["auth_require_tls"] = starttls is not None
        if starttls is not None:
            options["tls_context"] = starttls
            options["require_starttls"] = True
        self._options = options
        self._implicit_tls = implicit_tls
        self._controller: Controller | None = None

    @property
    def running(self) -> bool:
        """Whether the server is listening."""
        return self._controller is not None

    @property
    def received(self) -> list[Received]:
        """Every email accepted so far, oldest first."""
        with self._handler.lock:
            return list(self._handler.received)

    def start(self) -> None:
        """Start listening; after :meth:`stop`, again on the same port."""
        if self._controller is not None:
            return
        # A stopped Controller has closed its event loop, so each start needs a new one.
        controller = Controller(
            self._handler,
            hostname=HOST,
            port=self.port,
            ssl_context=self._implicit_tls,
            # A fixed name spares a reverse DNS lookup (socket.getfqdn) per connection.
            server_hostname="smtp.closeloop.test",
            ready_timeout=10.0,
            **self._options,
        )
        controller.start()
        self._controller = controller

    def stop(self) -> None:
        """Stop listening; connections are then refused."""
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def __enter__(self) -> SmtpServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()
