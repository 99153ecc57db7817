"""What every survey-tool adapter shares: the port, header lookup, JSON reading, signatures.

An adapter turns one webhook delivery (the raw body and its headers) into
:class:`~closeloop.model.SurveyResponse` objects. Every failure is a closeloop
error: :class:`~closeloop.errors.SignatureInvalid` when the delivery is not
signed by the tool, :class:`~closeloop.errors.InvalidInput` whose ``field`` is
the JSON path of the bad value (``event_data.score``) otherwise.
"""

from __future__ import annotations

import base64
import hmac
import json
import math
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from closeloop.errors import CloseLoopError, InvalidInput, SignatureInvalid
from closeloop.model import SurveyResponse

__all__ = [
    "MAX_BODY_BYTES",
    "Clock",
    "Source",
    "check_hmac",
    "epoch_datetime",
    "header",
    "iso_datetime",
    "make_response",
    "read_json",
    "require",
    "require_mapping",
    "text_id",
    "within_window",
]

#: Largest webhook body the adapters read, in bytes (``webhook_app`` refuses more with 413).
MAX_BODY_BYTES = 2_000_000

#: A callable returning the current time as an aware datetime.
Clock = Callable[[], datetime]


class Source(Protocol):
    """Protocol: a survey tool's webhook, parsed into survey responses.

    ``parse`` checks the delivery's signature first when the adapter was given
    the tool's secret, then maps the payload. It returns an empty list for a
    delivery that carries no response (an unsubscribe, a ping). It writes
    nothing and calls nothing but the host's own ``fetch`` where the tool sends
    ids only.

    Example::

        responses = Typeform(secret, score_ref="nps", customer_field="user_id").parse(
            request.body, request.headers)
    """

    def parse(self, body: bytes, headers: Mapping[str, str]) -> list[SurveyResponse]:
        """The responses in one delivery.

        Raises:
            SignatureInvalid: a secret was given and the delivery is not signed with it.
            InvalidInput: the payload is malformed; ``field`` is the JSON path.
        """
        ...


def header(headers: Mapping[str, str], name: str) -> str | None:
    """The value of header ``name``, looked up ignoring case (HTTP header names are)."""
    value = headers.get(name)
    if value is None:
        wanted = name.lower()
        value = next((v for k, v in headers.items() if isinstance(k, str) and k.lower() == wanted), None)
    return value if isinstance(value, str) else None


def read_json(body: bytes) -> Any:
    """The body as JSON data; anything unreadable is an InvalidInput on ``body``."""
    if not isinstance(body, bytes | bytearray):
        raise InvalidInput("body", body, "must be bytes")
    if len(body) > MAX_BODY_BYTES:
        raise InvalidInput("body", len(body), f"must be at most {MAX_BODY_BYTES} bytes")
    try:
        text = bytes(body).decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidInput("body", bytes(body[:40]), "is not UTF-8 text") from None
    try:
        return json.loads(text, parse_constant=_no_constant)
    except RecursionError:
        raise InvalidInput("body", None, "is nested too deeply") from None
    except ValueError as exc:
        raise InvalidInput("body", text[:40], f"is not valid JSON ({exc})") from None


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def require_mapping(value: Any, path: str) -> Mapping[str, Any]:
    """``value`` if it is a JSON object, else InvalidInput naming ``path``."""
    if not isinstance(value, Mapping):
        raise InvalidInput(path, value, "must be a JSON object")
    return value


def require(data: Mapping[str, Any], key: str, path: str) -> Any:
    """``data[key]``, or InvalidInput naming ``path.key`` when it is missing or null."""
    value = data.get(key)
    if value is None:
        raise InvalidInput(_join(path, key), None, "is required")
    return value


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def text_id(value: Any, path: str) -> str:
    """An id as text: tools send ids as strings or integers (``"5435"`` or ``5435``)."""
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if not isinstance(value, str):
        raise InvalidInput(path, value, "must be a string or integer id")
    return value


def epoch_datetime(value: Any, path: str) -> datetime:
    """An aware UTC datetime from epoch seconds (a number, or digits as text)."""
    if isinstance(value, str) and value.isascii() and value.strip().isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise InvalidInput(path, value, "must be a time in seconds since 1970")
    try:
        return datetime.fromtimestamp(value, UTC)
    except (OverflowError, OSError, ValueError):
        raise InvalidInput(path, value, "is not a representable time") from None


def iso_datetime(value: Any, path: str) -> datetime:
    """An aware datetime from ISO 8601 text with an offset (``2018-01-18T18:17:02Z``)."""
    if not isinstance(value, str):
        raise InvalidInput(path, value, "must be an ISO 8601 date-time")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise InvalidInput(path, value, "must be an ISO 8601 date-time") from None
    if parsed.tzinfo is None or parsed.utcoffset() is None:
        raise InvalidInput(path, value, "must carry a UTC offset")
    return parsed


def check_hmac(expected: bytes, given: str | None, *, what: str, encoding: str = "base64",
               prefix: str = "") -> None:
    """Compare a received signature with the one computed, in constant time.

    Args:
        expected: the HMAC digest computed over what the tool signed.
        given: the header's value (``None`` when the header is missing).
        what: the header's name, for the error message.
        encoding: how the tool writes the digest, ``"base64"`` or ``"hex"``.
        prefix: text the tool puts before the digest (``"sha256="``).

    Raises:
        SignatureInvalid: missing, malformed or wrong.
    """
    if given is None:
        raise SignatureInvalid(f"the {what} header is missing")
    value = given.strip()
    if prefix:
        if not value.startswith(prefix):
            raise SignatureInvalid(f"the {what} header does not start with {prefix!r}")
        value = value[len(prefix):]
    text = base64.b64encode(expected) if encoding == "base64" else expected.hex().encode()
    try:
        candidate = value.encode("ascii")
    except UnicodeEncodeError:
        raise SignatureInvalid(f"the {what} header is not a signature") from None
    if not hmac.compare_digest(text, candidate if encoding == "base64" else candidate.lower()):
        raise SignatureInvalid(f"the {what} header does not match the body")


def within_window(timestamp: str | None, now: datetime, tolerance: timedelta, *, what: str) -> str:
    """Refuse a signed timestamp (epoch seconds) further than ``tolerance`` from ``now``.

    Returns the timestamp text, which the tool signs along with the body.
    """
    if timestamp is None:
        raise SignatureInvalid(f"the {what} header is missing")
    text = timestamp.strip()
    if not (text.isascii() and text.isdigit() and len(text) <= 12):
        raise SignatureInvalid(f"the {what} header is not a time in seconds")
    sent = datetime.fromtimestamp(int(text), UTC)
    if abs(now - sent) > tolerance:
        raise SignatureInvalid(f"the {what} header is outside the allowed {tolerance} window")
    return text


def make_response(paths: Mapping[str, str], **fields: Any) -> SurveyResponse:
    """Build a SurveyResponse; a refused field is reported under its JSON path.

    Args:
        paths: for each SurveyResponse field given, the JSON path it came from.
        fields: the SurveyResponse's arguments.
    """
    try:
        return SurveyResponse(**fields)
    except InvalidInput as exc:
        name = exc.field.partition("[")[0].split(" ")[0]
        where = paths.get(name)
        if where is None:
            raise
        tail = exc.field[len(name):]
        raise InvalidInput(f"{where}{tail}", exc.value, exc.reason) from None
    except CloseLoopError:
        raise
    except (TypeError, ValueError) as exc:
        raise InvalidInput("body", None, f"could not be mapped: {exc}") from None


def now_utc() -> datetime:
    """The default clock."""
    return datetime.now(UTC)
