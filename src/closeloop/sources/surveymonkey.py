"""SurveyMonkey: ``response_completed`` (and ``response_updated``) webhooks, ids only.

SurveyMonkey signs each callback: ``Sm-Signature`` is the base64 HMAC-SHA1 of
the raw body keyed ``"<client_id>&<client_secret>"``, and ``Sm-Apikey`` carries
the client id.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from typing import Any

from closeloop.errors import InvalidInput, SignatureInvalid
from closeloop.model import SurveyResponse
from closeloop.sources.base import (
    check_hmac,
    header,
    read_json,
    require,
    require_mapping,
    text_id,
)
from closeloop.sources.fetched import Fetch, check_fetch, fetched_response
from closeloop.sources.mapping import JsonMapping

__all__ = ["SurveyMonkey"]

SIGNATURE_HEADER = "Sm-Signature"
API_KEY_HEADER = "Sm-Apikey"
#: Events that carry a response id worth fetching.
RESPONSE_EVENTS = ("response_completed", "response_updated", "response_created")


class SurveyMonkey:
    """Parse SurveyMonkey webhooks: verify, then fetch the response they name.

    Args:
        fetch: ``fetch(response_id)`` returning a SurveyResponse, the response
            details as JSON data (mapped by ``mapping``), or ``None``.
        mapping: how to map what ``fetch`` returns when it is JSON data.
        client_id / client_secret: your app's; when both are given, ``Sm-Signature``
            must match and ``Sm-Apikey`` must be the client id.
        events: the event types that fetch a response; others give none.

    Mapping: ``object_id`` (the response id; ``resources.respondent_id`` when
    absent) is passed to ``fetch``; ``event_type`` outside ``events`` gives no
    response.
    """

    def __init__(
        self,
        fetch: Fetch,
        *,
        mapping: JsonMapping | None = None,
        client_id: str | None = None,
        client_secret: str | None = None,
        events: tuple[str, ...] = ("response_completed", "response_updated"),
    ) -> None:
        check_fetch(fetch, mapping)
        if (client_id is None) != (client_secret is None):
            raise InvalidInput("client_secret", None, "give both client_id and client_secret, or neither")
        for name, value in (("client_id", client_id), ("client_secret", client_secret)):
            if value is not None and (not isinstance(value, str) or not value):
                raise InvalidInput(name, value, "must be a non-empty string or None")
        self.fetch = fetch
        self.mapping = mapping
        self.client_id = client_id
        self.client_secret = client_secret
        self.events = tuple(events)

    def parse(self, body: bytes, headers: Mapping[str, str]) -> list[SurveyResponse]:
        """The response a SurveyMonkey callback names, as ``fetch`` returns it.

        Raises:
            SignatureInvalid: credentials were given and the signature or API key is wrong.
            InvalidInput: a malformed field, named by its JSON path (``object_id``).
        """
        if self.client_id is not None and self.client_secret is not None:
            key = f"{self.client_id}&{self.client_secret}".encode()
            digest = hmac.new(key, bytes(body), hashlib.sha1).digest()
            check_hmac(digest, header(headers, SIGNATURE_HEADER), what=SIGNATURE_HEADER)
            api_key = header(headers, API_KEY_HEADER)
            if api_key is not None and not hmac.compare_digest(
                api_key.strip().encode("utf-8", "replace"), self.client_id.encode()
            ):
                raise SignatureInvalid(f"the {API_KEY_HEADER} header is not this app's client id")
        payload = require_mapping(read_json(body), "body")
        event_type = payload.get("event_type")
        if not isinstance(event_type, str):
            raise InvalidInput("event_type", event_type, "must be a string")
        if event_type not in self.events:
            return []
        response_id: Any = payload.get("object_id")
        path = "object_id"
        if response_id is None:
            resources = require_mapping(require(payload, "resources", ""), "resources")
            response_id, path = require(resources, "respondent_id", "resources"), "resources.respondent_id"
        return fetched_response(self.fetch, self.mapping, text_id(response_id, path))
