"""One-touch configuration and its two kinds of signed token.

A *link token* travels in the email's Change link; a *confirmation token* is
issued when the assignee has chosen a status and written a comment, and must
be sent back to make the change. Both are itsdangerous ``URLSafeSerializer``
tokens (HMAC-SHA256, compact JSON, URL-safe base64), each kind signed under
its own salt so that one can never stand in for the other. A third kind, the
*receipt*, names a change already made so that the done page can show it after
the redirect; it authorises nothing.

Why not itsdangerous' timed serializers: they read ``time.time()``, and
closeloop judges expiry by the loop's injected clock. So the issue time is an
explicit field of the signed payload (whole seconds since the epoch, rounded
down), and the age is checked against ``loop.now()`` by
:class:`~closeloop.onetouch.service.OneTouchService`. This module only signs
and verifies; it never looks at a clock or a store.

Tokens are checked for shape before the signature is: base64 decoding in
itsdangerous ignores stray characters and the unused low bits of the last
character, so without this check some altered tokens would still verify.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from attrs import Factory, frozen
from itsdangerous import BadData, URLSafeSerializer
from itsdangerous.encoding import base64_decode, base64_encode

from closeloop.errors import InvalidInput, TokenInvalid
from closeloop.model import Status
from closeloop.validate import check_positive_timedelta

__all__ = [
    "CONFIRM_SALT",
    "LINK_SALT",
    "MIN_SECRET_BYTES",
    "RECEIPT_SALT",
    "ConfirmClaims",
    "LinkClaims",
    "OneTouch",
    "Receipt",
]

#: Shortest secret key accepted, in bytes (UTF-8 for a str): HMAC-SHA256's block of entropy.
MIN_SECRET_BYTES = 32
#: Salt of link tokens; the ``v1`` names the payload format.
LINK_SALT = "closeloop.one-touch.link.v1"
#: Salt of confirmation tokens.
CONFIRM_SALT = "closeloop.one-touch.confirm.v1"
#: Salt of receipts (the done page's proof of what was done).
RECEIPT_SALT = "closeloop.one-touch.receipt.v1"
#: Longest link token or receipt read; a real one is well under 1 KiB.
MAX_LINK_TOKEN = 4096
#: Longest confirmation token read; it carries the comment (up to 10,000 characters).
MAX_CONFIRM_TOKEN = 100_000

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_SECOND = timedelta(seconds=1)
# Optional "." (zlib-compressed payload), payload, ".", signature: URL-safe base64 only.
_SHAPE = re.compile(r"\.?[A-Za-z0-9_-]+\.([A-Za-z0-9_-]+)")
_NOT_VALID = "the link is not valid"
_CONFIRMATION_NOT_VALID = "the confirmation is not valid"
_RECEIPT_NOT_VALID = "the page address is not valid"


def to_seconds(moment: datetime) -> int:
    """An aware datetime as whole seconds since the epoch, rounded down."""
    return (moment - _EPOCH) // _SECOND


def from_seconds(seconds: int) -> datetime:
    """Whole seconds since the epoch as an aware UTC datetime."""
    return _EPOCH + seconds * _SECOND


@frozen
class LinkClaims:
    """What a link token asserts: this link (``link_id``) was sent to ``assignee`` for ``case_id``."""

    link_id: str
    case_id: str
    assignee: str
    issued_at: datetime


@frozen
class ConfirmClaims:
    """What a confirmation token asserts: the link's holder asked for this change.

    ``from_status`` and ``version`` are the case as it was shown when the change
    was prepared.
    """

    link: LinkClaims
    from_status: Status
    to_status: Status
    comment: str
    version: int
    prepared_at: datetime
    #: The workflow's names for the two statuses (default: the categories' values).
    from_custom_status: str = Factory(lambda self: self.from_status.value, takes_self=True)
    to_custom_status: str = Factory(lambda self: self.to_status.value, takes_self=True)
    close_reason: str | None = None


@frozen
class Receipt:
    """What a receipt asserts: ``case_id`` was moved to ``status`` through one-touch at ``at``."""

    case_id: str
    status: Status
    at: datetime
    #: The workflow's name for the status (default: the category's value).
    custom_status: str = Factory(lambda self: self.status.value, takes_self=True)


def _secret_keys(value: Any) -> list[bytes]:
    keys = [value] if isinstance(value, str | bytes) else value
    if not isinstance(keys, Sequence) or isinstance(keys, str | bytes) or not keys:
        raise InvalidInput("secret_key", "<hidden>", "must be a str or bytes, or a non-empty "
                           "list of them (newest last)")
    encoded: list[bytes] = []
    for index, key in enumerate(keys):
        field = "secret_key" if len(keys) == 1 else f"secret_key[{index}]"
        if isinstance(key, str):
            key = key.encode("utf-8", "surrogatepass")
        if not isinstance(key, bytes):
            raise InvalidInput(field, type(key).__name__, "must be a str or bytes")
        if len(key) < MIN_SECRET_BYTES:
            # The secret itself is never echoed, only its length.
            raise InvalidInput(field, f"<hidden, {len(key)} bytes>",
                               f"must be at least {MIN_SECRET_BYTES} bytes; generate one with "
                               "python -c 'import secrets; print(secrets.token_urlsafe(48))'")
        encoded.append(key)
    return encoded


def _base_url(value: Any) -> str:
    if not isinstance(value, str):
        raise InvalidInput("base_url", value, "must be a string")
    try:
        parts = urlsplit(value)
    except ValueError:
        raise InvalidInput("base_url", value, "must be a URL") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidInput("base_url", value, "must be an absolute http:// or https:// URL")
    if parts.fragment or value.endswith("#"):
        raise InvalidInput("base_url", value, "must not have a #fragment")
    if any(ch.isspace() or ord(ch) < 32 for ch in value):
        raise InvalidInput("base_url", value, "must not contain spaces or control characters")
    return value


class OneTouch:
    """One-touch configuration: the signing keys, where links point, how long they last.

    Pass it to ``CloseLoop(one_touch=...)`` and use the bound service as
    ``loop.one_touch``.

    Args:
        secret_key: the signing key, at least 32 bytes; or a list of keys, newest
            last, to rotate: links are signed with the newest and verified with any.
        base_url: the page serving the links (where :func:`~closeloop.onetouch.wsgi_app`
            is mounted), an absolute http(s) URL; the token is appended as
            ``?token=…`` (or ``&token=…`` when the URL already has a query).
        max_age: how long a link works after the email is sent.
        confirm_max_age: how long a prepared change waits for confirmation (never
            longer than the link itself still works).

    Example::

        OneTouch(secret_key=os.environ["ONE_TOUCH_KEY"],
                 base_url="https://crm.example/one-touch", max_age=timedelta(hours=24))
    """

    __slots__ = ("_confirm", "_link", "_receipt", "base_url", "confirm_max_age", "max_age")

    def __init__(
        self,
        secret_key: str | bytes | Sequence[str | bytes],
        *,
        base_url: str,
        max_age: timedelta = timedelta(hours=24),
        confirm_max_age: timedelta = timedelta(minutes=15),
    ) -> None:
        keys = _secret_keys(secret_key)
        self.base_url = _base_url(base_url)
        self.max_age = check_positive_timedelta("max_age", max_age)
        self.confirm_max_age = check_positive_timedelta("confirm_max_age", confirm_max_age)
        self._link = _serializer(keys, LINK_SALT)
        self._confirm = _serializer(keys, CONFIRM_SALT)
        self._receipt = _serializer(keys, RECEIPT_SALT)

    def __repr__(self) -> str:
        keys = len(self._link.secret_keys)
        return (f"OneTouch(base_url={self.base_url!r}, max_age={self.max_age!r}, "
                f"confirm_max_age={self.confirm_max_age!r}, secret_key=<{keys} hidden>)")

    def issue_link(self, case_id: str, assignee: str, issued_at: datetime) -> str:
        """The URL of a new single-use link for ``case_id``, bound to ``assignee``."""
        claims = LinkClaims(
            link_id=secrets.token_urlsafe(12), case_id=case_id, assignee=assignee,
            issued_at=issued_at,
        )
        return self.url(self.sign_link(claims))

    # -- link tokens ----------------------------------------------------------------

    def url(self, token: str) -> str:
        """The link to send: ``base_url`` with the token added as the ``token`` parameter."""
        joiner = "&" if "?" in self.base_url else "?"
        if self.base_url.endswith(("?", "&")):
            joiner = ""
        return f"{self.base_url}{joiner}token={token}"

    def sign_link(self, claims: LinkClaims) -> str:
        """A link token for ``claims``."""
        return self._link.dumps({
            "i": claims.link_id, "c": claims.case_id, "a": claims.assignee,
            "t": to_seconds(claims.issued_at),
        })

    def read_link(self, token: Any) -> LinkClaims:
        """The claims of a link token this configuration signed. Does not judge expiry.

        Raises:
            TokenInvalid: not a link token signed with one of the keys.
        """
        data = _load(self._link, token, MAX_LINK_TOKEN, _NOT_VALID)
        try:
            return _link_claims(data)
        except (KeyError, TypeError, ValueError, OverflowError):
            raise TokenInvalid(_NOT_VALID) from None

    # -- confirmation tokens --------------------------------------------------------

    def sign_confirmation(self, claims: ConfirmClaims) -> str:
        """A confirmation token for ``claims``."""
        link = claims.link
        payload: dict[str, Any] = {
            "i": link.link_id, "c": link.case_id, "a": link.assignee,
            "t": to_seconds(link.issued_at), "f": claims.from_status.value,
            "s": claims.to_status.value, "m": claims.comment, "v": claims.version,
            "p": to_seconds(claims.prepared_at),
        }
        # A workflow's own names and a close reason only when there are any: tokens of
        # the standard workflow stay as short as they were.
        if claims.from_custom_status != claims.from_status.value:
            payload["F"] = claims.from_custom_status
        if claims.to_custom_status != claims.to_status.value:
            payload["S"] = claims.to_custom_status
        if claims.close_reason is not None:
            payload["r"] = claims.close_reason
        return self._confirm.dumps(payload)

    def read_confirmation(self, token: Any) -> ConfirmClaims:
        """The claims of a confirmation token this configuration signed. Does not judge expiry.

        Raises:
            TokenInvalid: not a confirmation token signed with one of the keys.
        """
        data = _load(self._confirm, token, MAX_CONFIRM_TOKEN, _CONFIRMATION_NOT_VALID)
        try:
            from_status, to_status = Status(data["f"]), Status(data["s"])
            reason = data.get("r")
            return ConfirmClaims(
                link=_link_claims(data),
                from_status=from_status,
                to_status=to_status,
                comment=_text(data["m"]),
                version=_integer(data["v"]),
                prepared_at=from_seconds(_integer(data["p"])),
                from_custom_status=_text(data.get("F", from_status.value)),
                to_custom_status=_text(data.get("S", to_status.value)),
                close_reason=None if reason is None else _text(reason),
            )
        except (KeyError, TypeError, ValueError, OverflowError):
            raise TokenInvalid(_CONFIRMATION_NOT_VALID) from None


    # -- receipts -------------------------------------------------------------------

    def sign_receipt(self, receipt: Receipt) -> str:
        """A receipt token for a change already made (shown by the done page; acts on nothing)."""
        payload: dict[str, Any] = {
            "c": receipt.case_id, "s": receipt.status.value, "t": to_seconds(receipt.at),
        }
        if receipt.custom_status != receipt.status.value:
            payload["S"] = receipt.custom_status
        return self._receipt.dumps(payload)

    def read_receipt(self, token: Any) -> Receipt:
        """The receipt a token carries.

        Raises:
            TokenInvalid: not a receipt signed with one of the keys.
        """
        data = _load(self._receipt, token, MAX_LINK_TOKEN, _RECEIPT_NOT_VALID)
        try:
            status = Status(data["s"])
            return Receipt(case_id=_text(data["c"]), status=status,
                           at=from_seconds(_integer(data["t"])),
                           custom_status=_text(data.get("S", status.value)))
        except (KeyError, TypeError, ValueError, OverflowError):
            raise TokenInvalid(_RECEIPT_NOT_VALID) from None


def _serializer(keys: list[bytes], salt: str) -> URLSafeSerializer:
    return URLSafeSerializer(
        keys, salt=salt, signer_kwargs={"digest_method": hashlib.sha256},
        fallback_signers=[],
    )


def _load(serializer: URLSafeSerializer, token: Any, limit: int, reason: str) -> Mapping[str, Any]:
    if not isinstance(token, str) or len(token) > limit:
        raise TokenInvalid(reason)
    shape = _SHAPE.fullmatch(token)
    if shape is None:
        raise TokenInvalid(reason)
    signature = shape.group(1)
    try:
        if base64_encode(base64_decode(signature)).decode("ascii") != signature:
            raise TokenInvalid(reason)  # same bytes spelled differently: not ours
        data = serializer.loads(token)
    except BadData:
        raise TokenInvalid(reason) from None
    if not isinstance(data, dict):
        raise TokenInvalid(reason)
    return data


def _link_claims(data: Mapping[str, Any]) -> LinkClaims:
    return LinkClaims(
        link_id=_text(data["i"]),
        case_id=_text(data["c"]),
        assignee=_text(data["a"]),
        issued_at=from_seconds(_integer(data["t"])),
    )


def _text(value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError("expected a string")
    return value


def _integer(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError("expected an integer")
    return value
