"""A notifier that sends each message as an email through an SMTP server (stdlib only)."""

from __future__ import annotations

import hashlib
import re
import smtplib
import ssl
from email.errors import HeaderParseError
from email.headerregistry import Address
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import formatdate, getaddresses
from typing import Any, Literal, TypeAlias
from urllib.parse import quote

from closeloop.errors import InvalidInput, NotifierError, RecipientUnknown
from closeloop.notify.base import Message
from closeloop.notify.directory import AddressBook, AddressBookDirectory, User, UserDirectory
from closeloop.validate import check_int, check_seconds

__all__ = ["AddressBook", "Security", "SmtpNotifier"]

#: How the connection is protected: ``"none"`` (plain text), ``"starttls"`` (upgrade a
#: plain connection, usually port 587) or ``"ssl"`` (TLS from the start, usually port 465).
Security: TypeAlias = Literal["none", "starttls", "ssl"]

_SECURITIES = ("none", "starttls", "ssl")

# Everything str.splitlines() breaks on, and every other C0/C1 control except tab:
# none of it may reach a header, where a line break would start a new header.
_UNSAFE_IN_HEADER = re.compile(r"[\x00-\x08\x0a-\x1f\x7f-\x9f\u2028\u2029]")
_HOSTNAME = re.compile(r"[^\s\x00-\x1f\x7f]+")
# A Message-ID's right part as a dot-atom of letters, digits and hyphens.
_DOMAIN = re.compile(r"[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*")

# Characters kept as they are in a Message-ID's left part: RFC 5322 atext, minus
# "%" (the escape) and "." (a dot-atom may not start, end or repeat dots).
# quote() also always keeps letters, digits and "_-~".
_MESSAGE_ID_SAFE = "!#$&'*+/=?^`{|}~"
_MAX_MESSAGE_ID_LOCAL = 200

# What a failed SMTP conversation can raise: smtplib.SMTPException, socket errors,
# timeouts and ssl.SSLError are all OSErrors; ValueError covers encoding failures
# (a non-ASCII password, a non-ASCII address to a server without SMTPUTF8).
_DELIVERY_ERRORS = (OSError, ValueError)


class SmtpNotifier:
    """Sends each message as one email (plain text plus an HTML alternative) over SMTP.

    Every :meth:`send` opens its own connection, delivers one email and closes the
    connection. Notices are few (one per assignment or escalation), and a fresh
    connection can never be found stale or half-closed by the server, so there is
    no pool to manage and no state shared between threads.

    The email's ``Message-ID`` is derived from the notice's id
    (``<notice-id@domain>``), so a notice retried by ``CloseLoop.deliver_pending()``
    carries the same Message-ID every time, and a mail client that got it twice can
    tell that both are one notice. Its ``X-Closeloop-Case`` header holds the case
    id, percent-encoded (``urllib.parse.unquote`` gives the id back).

    Any failure (connection refused, timeout, TLS or login failure, a refused
    recipient) is raised as :class:`~closeloop.errors.NotifierError` with the
    original exception chained as ``__cause__``; the notice then stays in the
    outbox for a retry. A user the directory does not know, or who has no usable
    address, is :class:`~closeloop.errors.RecipientUnknown` (a NotifierError that
    a retry cannot fix). A message
    that could never be sent safely (a line break or other control character in
    its subject) is refused with :class:`~closeloop.errors.InvalidInput` before any
    connection is made; closeloop's templates never produce one.

    Args:
        host: the SMTP server's host name or address.
        port: its port: usually 25 (relay), 587 (``"starttls"``), 465 (``"ssl"``).
        sender: the From address, ``"noreply@example.com"`` or
            ``"Customer care <noreply@example.com>"``.
        users: a user directory that gives each recipient (``Message.to``) an
            address. Default: the address in ``Message.recipient``, which the loop
            fills from its own ``CloseLoop(users=...)``; give this only to use
            another directory than the loop's.
        address_of: the older form of ``users``: maps a user id to an email
            address, a mapping (read at each send, so later changes apply) or a
            callable returning ``None`` for an unknown user.
        security: ``"none"``, ``"starttls"`` or ``"ssl"``. With ``"starttls"`` a
            server that does not offer STARTTLS is an error, never a fallback to
            plain text.
        username: log in with this user name (and ``password``); no login when
            ``None``. With ``security="none"`` the password crosses the network
            in clear text: use that only towards a relay on the same host.
        password: the password for ``username``.
        timeout: seconds to wait for the server on each network operation.
        ssl_context: the TLS settings; default :func:`ssl.create_default_context`,
            which checks the server's certificate and host name.
        local_hostname: the name given in EHLO; default the machine's FQDN.
        message_id_domain: the right-hand side of each Message-ID; default the
            sender's domain (a domain you control, as RFC 5322 asks).

    Raises:
        InvalidInput: an argument is unusable; ``field`` names it.

    Example::

        notifier = SmtpNotifier(
            "smtp.example.com", 587,
            sender="Customer care <care@example.com>",
            security="starttls", username="closeloop", password=os.environ["SMTP_PASSWORD"],
        )
        users = StaticUserDirectory({"alice": User(address="alice@example.com",
                                                   time_zone="Europe/Berlin")})
        loop = CloseLoop(store=SQLiteStore("closeloop.db"), notifier=notifier, users=users)
        loop.assign(case.id, to="alice", by="bob")     # alice@example.com gets an email
    """

    def __init__(
        self,
        host: str = "localhost",
        port: int = 25,
        *,
        sender: str,
        users: UserDirectory | None = None,
        address_of: AddressBook | None = None,
        security: Security = "none",
        username: str | None = None,
        password: str | None = None,
        timeout: float = 10.0,
        ssl_context: ssl.SSLContext | None = None,
        local_hostname: str | None = None,
        message_id_domain: str | None = None,
    ) -> None:
        self.host = _check_hostname("host", host)
        self.port = check_int("port", port, minimum=1, maximum=65535)
        self.sender = _mailbox("sender", sender)
        if users is not None and address_of is not None:
            raise InvalidInput(
                "users", users, "give at most one of users= (a UserDirectory) and address_of="
            )
        if users is not None and not callable(getattr(users, "lookup", None)):
            raise InvalidInput("users", users, "must have a lookup(user_id) method")
        self.address_of = address_of
        self.users: UserDirectory | None = (
            AddressBookDirectory(address_of) if address_of is not None else users
        )
        if message_id_domain is None:
            # The sender's domain is one the host controls; an IDN one is not a dot-atom.
            message_id_domain = (
                self.sender.domain if _DOMAIN.fullmatch(self.sender.domain) else "closeloop"
            )
        self.message_id_domain = _check_domain("message_id_domain", message_id_domain)
        if security not in _SECURITIES:
            raise InvalidInput("security", security, f"must be one of {', '.join(_SECURITIES)}")
        self.security: Security = security
        _check_credentials(username, password)
        self.username = username
        self._password = password
        self.timeout = check_seconds("timeout", timeout)
        if ssl_context is not None and not isinstance(ssl_context, ssl.SSLContext):
            raise InvalidInput("ssl_context", ssl_context, "must be an ssl.SSLContext or None")
        if ssl_context is not None and security == "none":
            raise InvalidInput(
                "ssl_context", ssl_context, 'is used only with security="starttls" or "ssl"'
            )
        self.ssl_context = (
            ssl.create_default_context() if ssl_context is None and security != "none"
            else ssl_context
        )
        self.local_hostname = (
            None if local_hostname is None else _check_hostname("local_hostname", local_hostname)
        )

    def __repr__(self) -> str:
        return (
            f"SmtpNotifier({self.host!r}, {self.port}, sender={str(self.sender)!r}, "
            f"security={self.security!r}, username={self.username!r})"
        )

    def send(self, message: Message) -> None:
        """Email ``message`` to the address of user ``message.to``, or raise.

        Raises:
            InvalidInput: the message's subject is not one line of text (nothing is
                sent).
            RecipientUnknown: the directory does not know the user, or their
                address is not usable.
            NotifierError: the SMTP server could not be reached or refused the
                email; the cause is chained.
        """
        email, recipient = self._compose(message)
        try:
            smtp = self._connect()
        except _DELIVERY_ERRORS as exc:
            raise NotifierError(
                f"could not connect to SMTP server {self.host}:{self.port} "
                f"to send notice {message.notice_id!r}: {exc!r}"
            ) from exc
        try:
            # An explicit envelope: the recipients are never read back from headers.
            smtp.send_message(
                email, from_addr=self.sender.addr_spec, to_addrs=[recipient.addr_spec]
            )
        except _DELIVERY_ERRORS as exc:
            smtp.close()
            raise NotifierError(
                f"SMTP server {self.host}:{self.port} did not accept notice "
                f"{message.notice_id!r} for user {message.to!r}: {exc!r}"
            ) from exc
        try:
            smtp.quit()
        except _DELIVERY_ERRORS:
            # The server has accepted the email: a failed goodbye must not turn a
            # delivered notice into a failed one (it would be sent twice).
            smtp.close()

    def build_email(self, message: Message) -> EmailMessage:
        """The email :meth:`send` would deliver for ``message``, without sending it.

        Useful to preview a notice or to hand it to another mail transport.

        Raises:
            InvalidInput: the message's subject is not one line of text.
            RecipientUnknown: user ``message.to`` has no usable address.
        """
        return self._compose(message)[0]

    def _compose(self, message: Message) -> tuple[EmailMessage, Address]:
        if not isinstance(message.subject, str) or _UNSAFE_IN_HEADER.search(message.subject):
            raise InvalidInput(
                "message.subject", message.subject,
                "must be one line of text without control characters",
            )
        # The case and notice ids need no such check: they reach headers only
        # percent-encoded, so any valid id (even one with a U+2028) can be sent.
        for field in ("case_id", "notice_id", "text", "html"):
            if not isinstance(getattr(message, field), str):
                raise InvalidInput(f"message.{field}", getattr(message, field), "must be a string")
        recipient = self._recipient(message)
        subject, text, html = message.subject, message.text, message.html
        email = EmailMessage(policy=SMTP)
        try:
            # The SMTP policy refuses a header value with a line break too: a
            # second line of defence behind the check above.
            email["From"] = self.sender
            email["To"] = recipient
            email["Subject"] = subject
            email["Date"] = formatdate(usegmt=True)
            email["Message-ID"] = _message_id(message.notice_id, self.message_id_domain)
            email["X-Closeloop-Case"] = quote(message.case_id, safe="")
            # RFC 3834: tells vacation responders not to answer a notification.
            email["Auto-Submitted"] = "auto-generated"
            email.set_content(text)
            email.add_alternative(html, subtype="html")
        except (ValueError, TypeError) as exc:
            raise InvalidInput("message", message, f"cannot be made into an email: {exc}") from exc
        return email, recipient

    def _recipient(self, message: Message) -> Address:
        user_id = message.to
        if user_id is None:
            raise RecipientUnknown(None, "a case-event message is addressed to nobody; give "
                                   "the channel a recipient= to email case events")
        user = self.users.lookup(user_id) if self.users is not None else message.recipient
        if not isinstance(user, User) or not user.address:
            raise RecipientUnknown(user_id, "has no email address in the user directory")
        try:
            return _mailbox("address", user.address)
        except InvalidInput as exc:
            raise RecipientUnknown(user_id, f"has an email address that is not usable: {exc}") from exc

    def _connect(self) -> smtplib.SMTP:
        smtp: smtplib.SMTP
        if self.security == "ssl":
            smtp = smtplib.SMTP_SSL(
                self.host, self.port, local_hostname=self.local_hostname,
                timeout=self.timeout, context=self.ssl_context,
            )
        else:
            smtp = smtplib.SMTP(
                self.host, self.port, local_hostname=self.local_hostname, timeout=self.timeout
            )
        try:
            if self.security == "starttls":
                smtp.starttls(context=self.ssl_context)
            if self.username is not None and self._password is not None:
                smtp.login(self.username, self._password)
        except BaseException:
            smtp.close()
            raise
        return smtp


def _mailbox(field: str, value: Any) -> Address:
    """Parse one address, ``a@example.com`` or ``Name <a@example.com>``, or raise InvalidInput."""
    if not isinstance(value, str) or not value.strip():
        raise InvalidInput(field, value, "must be an email address such as name@example.com")
    if _UNSAFE_IN_HEADER.search(value):
        raise InvalidInput(field, value, "must not contain line breaks or control characters")
    parsed = getaddresses([value])
    if len(parsed) != 1:
        raise InvalidInput(field, value, "must be exactly one email address")
    display_name, addr_spec = parsed[0]
    try:
        address = Address(display_name=display_name, addr_spec=addr_spec)
    except (ValueError, IndexError, HeaderParseError) as exc:
        raise InvalidInput(field, value, f"is not a valid email address ({exc})") from exc
    if not address.username or not address.domain:
        raise InvalidInput(field, value, "must be an email address such as name@example.com")
    return address


def _message_id(notice_id: str, domain: str) -> str:
    local = quote(notice_id, safe=_MESSAGE_ID_SAFE).replace(".", "%2E")
    if len(local) > _MAX_MESSAGE_ID_LOCAL:
        # Still stable across retries, and short enough for one header line.
        local = "sha256." + hashlib.sha256(notice_id.encode()).hexdigest()
    return f"<{local}@{domain}>"


def _check_domain(field: str, value: Any) -> str:
    if not isinstance(value, str) or not _DOMAIN.fullmatch(value):
        raise InvalidInput(field, value, "must be a domain name such as mail.example.com")
    return value


def _check_hostname(field: str, value: Any) -> str:
    if not isinstance(value, str) or not _HOSTNAME.fullmatch(value):
        raise InvalidInput(field, value, "must be a non-empty host name without spaces")
    return value


def _check_credentials(username: Any, password: Any) -> None:
    if username is None:
        if password is not None:
            raise InvalidInput("username", None, "is required when a password is given")
        return
    if not isinstance(username, str) or not username or _UNSAFE_IN_HEADER.search(username):
        raise InvalidInput("username", username, "must be a non-empty single-line string")
    if not isinstance(password, str):
        # Never echo a password back in an error message.
        raise InvalidInput("password", "<hidden>", "must be a string when a username is given")
