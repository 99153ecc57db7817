"""A notifier that POSTs each message as JSON over HTTP, signed the Standard Webhooks way."""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any, Literal, TypeAlias

import httpx
from standardwebhooks.webhooks import EmptyWebhookSecretError, Webhook

from closeloop.errors import InvalidInput, NotifierError
from closeloop.notify.base import Message
from closeloop.validate import check_callable, check_seconds

__all__ = ["WebhookFormat", "WebhookNotifier"]

#: The body's shape: ``"closeloop"`` (the notice as structured JSON) or ``"slack"``
#: (``{"text": ...}``, what Slack and Teams incoming webhooks take).
WebhookFormat: TypeAlias = Literal["closeloop", "slack"]

_FORMATS = ("closeloop", "slack")
# A webhook-id goes into a header and into the signed string: keep it to a
# conservative alphabet, else use a digest of the notice id (just as stable).
_SAFE_ID = re.compile(r"[A-Za-z0-9_.:~-]{1,200}")
_BASE64 = re.compile(r"[A-Za-z0-9+/]+={0,2}")
_UNSAFE_HEADER = re.compile(r"[\x00-\x1f\x7f]")
# Everything httpx raises for a failed exchange, plus what a bad header value or
# a socket problem can raise before httpx wraps it.
_DELIVERY_ERRORS = (httpx.HTTPError, httpx.InvalidURL, httpx.StreamError, OSError, ValueError)


class WebhookNotifier:
    """POSTs each message as one JSON request; any 2xx answer counts as delivered.

    With ``format="closeloop"`` the body follows the Standard Webhooks payload
    shape: ``{"type": "closeloop.<kind>", "timestamp": ..., "data": {...}}``,
    where ``data`` holds ``notice_id``, ``to`` (``None`` for a case event), ``case_id``, ``kind``,
    ``subject``, ``text``, ``links`` (``change``, ``case_page``) and ``content``
    (the :class:`~closeloop.notify.NoticeContent` as plain data, or ``None``).
    With ``format="slack"`` the body is ``{"text": ...}``: the subject and the
    links, for a Slack or Teams incoming webhook.

    With a ``secret``, every request carries ``webhook-id``,
    ``webhook-timestamp`` and ``webhook-signature`` headers
    (https://www.standardwebhooks.com); a receiver checks them with
    ``standardwebhooks.Webhook(secret).verify(body, headers)``. The
    ``webhook-id`` is derived from the notice id, so a notice retried after a
    crash carries the same id and the receiver can drop the duplicate.

    Each send uses a fresh connection (notices are few; nothing to go stale).
    Redirects are not followed. A non-2xx answer, a timeout or a connection
    failure raises :class:`~closeloop.errors.NotifierError` with the cause
    chained; the notice then stays pending for a retry. Error messages name the
    endpoint's host only, since a webhook URL is often itself a secret.

    Args:
        url: the endpoint, ``https://…`` (or ``http://`` for a local receiver).
        secret: the signing secret, ``"whsec_<base64>"`` or raw bytes; ``None``
            sends no signature headers (a Slack URL is its own secret).
        format: ``"closeloop"`` or ``"slack"``.
        timeout: seconds to wait for the endpoint on each network operation.
        headers: extra request headers (an ``Authorization`` header, say).
        transport: an ``httpx`` transport, for tests or proxies; default httpx's own.
        clock: returns the aware time stamped on each request; default now (UTC).
            Receivers refuse timestamps more than five minutes off their clock.

    Raises:
        InvalidInput: an argument is unusable; ``field`` names it.

    Example::

        chat = WebhookNotifier("https://hooks.slack.com/services/T000/B000/XXXX", format="slack")
        crm = WebhookNotifier("https://crm.example/hooks/closeloop",
                              secret=os.environ["CLOSELOOP_WEBHOOK_SECRET"])
    """

    def __init__(
        self,
        url: str,
        *,
        secret: str | bytes | None = None,
        format: WebhookFormat = "closeloop",
        timeout: float = 10.0,
        headers: Mapping[str, str] | None = None,
        transport: httpx.BaseTransport | None = None,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.url = _check_url(url)
        self._signer = None if secret is None else _signer(secret)
        if format not in _FORMATS:
            raise InvalidInput("format", format, f"must be one of {', '.join(_FORMATS)}")
        self.format: WebhookFormat = format
        self.timeout = check_seconds("timeout", timeout)
        self.headers = _check_headers(headers)
        if transport is not None and not isinstance(transport, httpx.BaseTransport):
            raise InvalidInput("transport", transport, "must be an httpx.BaseTransport")
        self.transport = transport
        if clock is not None:
            check_callable("clock", clock, "a callable returning an aware datetime")
        self.clock = clock or (lambda: datetime.now(UTC))

    def __repr__(self) -> str:
        return (f"WebhookNotifier({self.url.scheme}://{self.url.host}/…, format={self.format!r}, "
                f"signed={self._signer is not None})")

    def payload(self, message: Message) -> dict[str, Any]:
        """The JSON body :meth:`send` posts for ``message``, as a dict."""
        links = message.links
        if self.format == "slack":
            lines = [_slack_escape(message.subject)]
            if links.change:
                lines.append(f"<{links.change}|Change>")
            if links.case_page:
                lines.append(f"<{links.case_page}|Open the case>")
            return {"text": "\n".join(lines)}
        return {
            "type": f"closeloop.{message.kind}",
            "timestamp": self._now().isoformat(),
            "data": {
                "notice_id": message.notice_id,
                "to": message.to,
                "case_id": message.case_id,
                "kind": message.kind,
                "subject": message.subject,
                "text": message.text,
                "links": {"change": links.change, "case_page": links.case_page},
                "content": None if message.content is None else message.content.to_dict(),
            },
        }

    def build_request(self, message: Message) -> httpx.Request:
        """The signed request :meth:`send` would make for ``message``, without sending it."""
        for name in ("subject", "text", "case_id", "kind", "notice_id"):
            if not isinstance(getattr(message, name), str):
                raise InvalidInput(f"message.{name}", getattr(message, name), "must be a string")
        if message.to is not None and not isinstance(message.to, str):
            raise InvalidInput("message.to", message.to, "must be a string or None")
        body = json.dumps(self.payload(message), ensure_ascii=False, separators=(",", ":"))
        headers = {"content-type": "application/json", "user-agent": "closeloop", **self.headers}
        if self._signer is not None:
            webhook_id = _webhook_id(message.notice_id)
            at = self._now()
            headers["webhook-id"] = webhook_id
            headers["webhook-timestamp"] = str(math.floor(at.timestamp()))
            # sign() reads the time as UTC whatever its zone: hand it UTC.
            headers["webhook-signature"] = self._signer.sign(webhook_id, at, body)
        return httpx.Request("POST", self.url, content=body.encode("utf-8"), headers=headers)

    def send(self, message: Message) -> None:
        """POST ``message``, or raise.

        Raises:
            InvalidInput: the message has a field that is not a string (nothing sent).
            NotifierError: the endpoint could not be reached, timed out or did not
                answer 2xx; the cause is chained.
        """
        request = self.build_request(message)
        where = f"{self.url.scheme}://{self.url.host}"
        try:
            with httpx.Client(timeout=self.timeout, transport=self.transport,
                              follow_redirects=False, trust_env=False) as client:
                response = client.send(request)
        except _DELIVERY_ERRORS as exc:
            raise NotifierError(
                f"could not POST notice {message.notice_id!r} to {where}: {type(exc).__name__}: {exc}"
            ) from exc
        if not 200 <= response.status_code < 300:
            raise NotifierError(
                f"{where} answered {response.status_code} {response.reason_phrase} "
                f"to notice {message.notice_id!r}"
            )

    def _now(self) -> datetime:
        at = self.clock()
        if not isinstance(at, datetime) or at.utcoffset() is None:
            raise InvalidInput("clock", at, "must return an aware datetime")
        return at.astimezone(UTC)


def _check_url(value: Any) -> httpx.URL:
    try:
        url = httpx.URL(value) if isinstance(value, str) else None
    except httpx.InvalidURL:
        url = None
    if url is None or url.scheme not in ("http", "https") or not url.host:
        raise InvalidInput("url", value, "must be an http:// or https:// URL with a host")
    return url


def _signer(secret: Any) -> Webhook:
    if not isinstance(secret, str | bytes) or not secret:
        raise InvalidInput("secret", "<hidden>", 'must be "whsec_<base64>" or non-empty bytes')
    # The package's decoder skips characters outside base64: a typo would sign
    # with some other key instead of failing here.
    if isinstance(secret, str) and not _BASE64.fullmatch(secret.removeprefix("whsec_")):
        raise InvalidInput("secret", "<hidden>", 'must be "whsec_" followed by base64')
    try:
        return Webhook(secret)
    except (EmptyWebhookSecretError, ValueError) as exc:  # binascii.Error is a ValueError
        # Never echo the secret back.
        raise InvalidInput("secret", "<hidden>", f'must be "whsec_<base64>" or bytes ({exc})') from None


def _check_headers(headers: Any) -> dict[str, str]:
    if headers is None:
        return {}
    if not isinstance(headers, Mapping) or not all(
        isinstance(k, str) and isinstance(v, str) and k and not _UNSAFE_HEADER.search(k + v)
        for k, v in headers.items()
    ):
        raise InvalidInput("headers", headers, "must map header names to one-line strings")
    reserved = {k.lower() for k in headers} & {"webhook-id", "webhook-timestamp", "webhook-signature"}
    if reserved:
        raise InvalidInput("headers", sorted(reserved), "are set by the notifier itself")
    return dict(headers)


def _webhook_id(notice_id: str) -> str:
    if _SAFE_ID.fullmatch(notice_id):
        return f"msg_{notice_id}"
    return "msg_sha256_" + hashlib.sha256(notice_id.encode("utf-8", "surrogatepass")).hexdigest()


def _slack_escape(text: str) -> str:
    """Slack's three control characters, so a case field cannot forge a link."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
