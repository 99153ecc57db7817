"""WebhookNotifier against a real HTTP server on 127.0.0.1, signatures checked by standardwebhooks."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from closeloop import InvalidInput, NotifierError
from closeloop.notify import Links, NoticeContent, Notifier, WebhookNotifier
from closeloop.testing import NotifierContract
from closeloop.testing.notifier_contract import Delivered, make_content, make_message
from http_endpoint import Endpoint

SECRET = "whsec_" + base64.b64encode(b"closeloop-test-signing-key-32by").decode()


@pytest.fixture
def endpoint() -> Iterator[Endpoint]:
    """A running local endpoint."""
    with Endpoint() as endpoint:
        yield endpoint


class TestWebhookNotifierContract(NotifierContract):
    """WebhookNotifier keeps the notifier contract."""

    @pytest.fixture
    def notifier(self, endpoint: Endpoint) -> Iterator[Notifier]:
        """A signed WebhookNotifier posting to the local endpoint."""
        yield WebhookNotifier(endpoint.url, secret=SECRET, timeout=5)

    @pytest.fixture
    def delivered(self, endpoint: Endpoint) -> Delivered:
        """What the endpoint received, read from the JSON payloads."""
        return lambda: [(p["data"]["to"], p["data"]["subject"], p["data"]["text"].strip())
                        for p in endpoint.payloads()]


class TestSigning:
    """Standard Webhooks headers, checked by the standardwebhooks package's own verifier."""

    def test_signature_verifies_and_payload_carries_the_notice(self, endpoint: Endpoint) -> None:
        """The receiver's Webhook(secret).verify accepts the request and gets the structured notice."""
        content = make_content()
        WebhookNotifier(endpoint.url, secret=SECRET).send(make_message(content=content))
        ((headers, body),) = endpoint.requests
        payload = Webhook(SECRET).verify(body, headers)
        assert payload["type"] == "closeloop.assigned"
        assert payload["data"]["links"] == {
            "change": "https://crm.example.test/one-touch?token=t",
            "case_page": "https://crm.example.test/cases/case-1",
        }
        assert NoticeContent.from_dict(payload["data"]["content"]) == content

    def test_wrong_secret_or_tampered_body_fails_verification(self, endpoint: Endpoint) -> None:
        """A receiver with another secret, or a changed body, refuses the request."""
        WebhookNotifier(endpoint.url, secret=SECRET).send(make_message())
        ((headers, body),) = endpoint.requests
        other = "whsec_" + base64.b64encode(b"another-key-another-key-another!").decode()
        with pytest.raises(WebhookVerificationError):
            Webhook(other).verify(body, headers)
        with pytest.raises(WebhookVerificationError):
            Webhook(SECRET).verify(body.replace(b"alice", b"mallo"), headers)

    def test_webhook_id_is_stable_per_notice(self, endpoint: Endpoint) -> None:
        """A retried notice carries the same webhook-id; another notice a different one."""
        notifier = WebhookNotifier(endpoint.url, secret=SECRET)
        notifier.send(make_message(notice_id="n-1"))
        notifier.send(make_message(notice_id="n-1"))
        notifier.send(make_message(notice_id="n-2"))
        ids = [headers["webhook-id"] for headers, _ in endpoint.requests]
        assert ids[0] == ids[1] != ids[2]

    @settings(max_examples=50, deadline=None)
    @given(notice_id=st.text(min_size=1, max_size=300).filter(str.strip))
    def test_any_notice_id_gives_a_valid_header_id(self, notice_id: str) -> None:
        """Whatever the notice id, the webhook-id is printable ASCII and verifies."""
        notifier = WebhookNotifier("https://hooks.example.test/x", secret=SECRET)
        try:
            request = notifier.build_request(make_message(notice_id=notice_id))
        except InvalidInput:
            return  # not a usable id at all (lone surrogate in JSON is fine; keep going)
        webhook_id = request.headers["webhook-id"]
        assert webhook_id.isascii() and webhook_id.isprintable() and len(webhook_id) <= 210
        Webhook(SECRET).verify(request.content, dict(request.headers))

    def test_clock_sets_the_timestamp(self) -> None:
        """The webhook-timestamp comes from the injected clock (a stale one fails verification)."""
        at = datetime.now(UTC) - timedelta(hours=1)
        request = WebhookNotifier("https://hooks.example.test/x", secret=SECRET,
                                  clock=lambda: at).build_request(make_message())
        assert request.headers["webhook-timestamp"] == str(int(at.timestamp()))
        with pytest.raises(WebhookVerificationError, match="too old"):
            Webhook(SECRET).verify(request.content, dict(request.headers))

    def test_no_secret_no_signature_headers(self, endpoint: Endpoint) -> None:
        """Without a secret (a Slack URL is its own secret) no webhook-* headers are sent."""
        WebhookNotifier(endpoint.url).send(make_message())
        ((headers, _),) = endpoint.requests
        assert not {"webhook-id", "webhook-signature", "webhook-timestamp"} & set(headers)


class TestSlackFormat:
    """format="slack" posts {"text": ...} for Slack/Teams incoming webhooks."""

    def test_text_has_subject_and_links(self, endpoint: Endpoint) -> None:
        """The text is the subject plus Slack links to Change and the case page."""
        WebhookNotifier(endpoint.url, format="slack").send(make_message(content=make_content()))
        (payload,) = endpoint.payloads()
        assert payload == {"text": make_message().subject
                           + "\n<https://crm.example.test/one-touch?token=t|Change>"
                           + "\n<https://crm.example.test/cases/case-1|Open the case>"}

    def test_case_fields_cannot_forge_slack_links(self, endpoint: Endpoint) -> None:
        """<, > and & in the subject are escaped, so a customer's words never become a link."""
        WebhookNotifier(endpoint.url, format="slack").send(
            make_message(subject="c <https://evil.test|Change> & co"))
        assert endpoint.payloads()[0]["text"] == "c &lt;https://evil.test|Change&gt; &amp; co"


class TestFailures:
    """Every failure is a NotifierError with the cause chained; no httpx exception leaks."""

    @pytest.mark.parametrize("status", [301, 400, 404, 500, 503])
    def test_non_2xx_is_a_notifier_error(self, endpoint: Endpoint, status: int) -> None:
        """An answer outside 2xx (redirects included: they are not followed) fails the send."""
        endpoint.status = status
        with pytest.raises(NotifierError, match=str(status)):
            WebhookNotifier(endpoint.url).send(make_message())

    def test_connection_refused(self) -> None:
        """Nobody listening is a NotifierError, not an httpx.ConnectError."""
        with Endpoint() as gone:
            url = gone.url
        with pytest.raises(NotifierError) as caught:
            WebhookNotifier(url, timeout=2).send(make_message())
        assert caught.value.__cause__ is not None
        assert not isinstance(caught.value, OSError)

    def test_timeout(self, endpoint: Endpoint) -> None:
        """An endpoint slower than the timeout is a NotifierError naming the host, not the path."""
        endpoint.hang.set()
        with pytest.raises(NotifierError, match="Timeout") as caught:
            WebhookNotifier(endpoint.url, timeout=0.2).send(make_message())
        assert "/hooks/closeloop" not in str(caught.value)


class TestConstructor:
    """Bad configuration is refused at construction, naming the field."""

    @pytest.mark.parametrize(
        ("options", "field"),
        [
            ({"url": "ftp://example.test/x"}, "url"),
            ({"url": "not a url"}, "url"),
            ({"url": 42}, "url"),
            ({"secret": ""}, "secret"),
            ({"secret": "whsec_!!!not-base64"}, "secret"),
            ({"format": "teams"}, "format"),
            ({"timeout": 0}, "timeout"),
            ({"timeout": True}, "timeout"),
            ({"headers": {"webhook-id": "x"}}, "headers"),
            ({"headers": {"x-a": "b\r\nx-evil: 1"}}, "headers"),
            ({"transport": "http"}, "transport"),
            ({"clock": 3}, "clock"),
        ],
    )
    def test_bad_argument_is_invalid_input(self, options: dict[str, Any], field: str) -> None:
        """Each unusable argument raises InvalidInput whose field names it."""
        arguments: dict[str, Any] = {"url": "https://hooks.example.test/x", **options}
        with pytest.raises(InvalidInput) as caught:
            WebhookNotifier(**arguments)
        assert caught.value.field == field

    def test_secret_is_never_shown(self) -> None:
        """Neither repr nor an error message reveals the secret or the URL's path."""
        notifier = WebhookNotifier("https://hooks.example.test/T0/B0/sekrit", secret=SECRET)
        assert SECRET not in repr(notifier) and "sekrit" not in repr(notifier)
        with pytest.raises(InvalidInput) as caught:
            WebhookNotifier("https://hooks.example.test/x", secret="whsec_!!!sekrit")
        assert "sekrit" not in str(caught.value)


def test_links_property_is_empty_without_content() -> None:
    """A message with no content has no links (a webhook payload says null for both)."""
    assert make_message().links == Links()
    payload = WebhookNotifier("https://hooks.example.test/x").payload(make_message())
    assert payload["data"]["links"] == {"change": None, "case_page": None}
    assert payload["data"]["content"] is None
