"""Delighted: ``survey_response.created`` and ``survey_response.updated`` webhooks.

Delighted posts JSON. A response is created the moment the person gives a
score; the comment usually arrives minutes later in ``survey_response.updated``
for the same ``event_data.id``, which closeloop treats as an update of that
response, not a new one.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from typing import Any, Literal

from closeloop.errors import InvalidInput
from closeloop.model import SurveyResponse
from closeloop.sources.base import (
    check_hmac,
    epoch_datetime,
    header,
    make_response,
    read_json,
    require,
    require_mapping,
    text_id,
)

__all__ = ["Delighted"]

_RESPONSE_EVENTS = ("survey_response.created", "survey_response.updated")
#: The header carrying ``sha256=<hex HMAC-SHA256 of the raw body>``.
SIGNATURE_HEADER = "X-Delighted-Webhook-Signature"


class Delighted:
    """Parse Delighted webhooks into survey responses.

    Args:
        secret: the webhook's signing secret; when given, every delivery must carry
            ``X-Delighted-Webhook-Signature: sha256=<hex HMAC-SHA256 of the body>``.
        customer: which person field is the customer id: ``"id"`` (Delighted's
            person id, the default) or ``"email"``.

    Mapping: ``event_data.id`` → ``id``; ``event_data.person.id`` (or ``.email``) →
    ``customer_id``; ``event_data.score`` → ``score``; ``event_data.comment`` →
    ``comment``; ``event_data.created_at`` (epoch seconds) → ``submitted_at``;
    ``answers`` holds ``person_properties`` (when sent), ``survey_type``, ``tags``
    and each additional answer under its question id (the non-null part of its
    ``value``: text, number, ``{"id", "text"}`` or a list of those).
    Other event types (``unsubscribe.created``) give no response.
    """

    def __init__(self, secret: str | None = None, *, customer: Literal["id", "email"] = "id") -> None:
        if secret is not None and (not isinstance(secret, str) or not secret):
            raise InvalidInput("secret", secret, "must be a non-empty string or None")
        if customer not in ("id", "email"):
            raise InvalidInput("customer", customer, "must be 'id' or 'email'")
        self.secret = secret
        self.customer = customer

    def parse(self, body: bytes, headers: Mapping[str, str]) -> list[SurveyResponse]:
        """The response in one Delighted delivery (none for other event types).

        Raises:
            SignatureInvalid: a secret was given and the signature is missing or wrong.
            InvalidInput: a malformed field, named by its JSON path (``event_data.score``).
        """
        if self.secret is not None:
            digest = hmac.new(self.secret.encode(), bytes(body), hashlib.sha256).digest()
            check_hmac(digest, header(headers, SIGNATURE_HEADER), what=SIGNATURE_HEADER,
                       encoding="hex", prefix="sha256=")
        payload = require_mapping(read_json(body), "body")
        event_type = payload.get("event_type")
        if not isinstance(event_type, str):
            raise InvalidInput("event_type", event_type, "must be a string")
        if event_type not in _RESPONSE_EVENTS:
            return []
        data = require_mapping(require(payload, "event_data", ""), "event_data")
        person = require_mapping(require(data, "person", "event_data"), "event_data.person")
        customer = text_id(require(person, self.customer, "event_data.person"),
                           f"event_data.person.{self.customer}")
        created = data.get("created_at")
        return [make_response(
            {"id": "event_data.id", "customer_id": f"event_data.person.{self.customer}",
             "score": "event_data.score", "comment": "event_data.comment",
             "answers": "event_data"},
            id=text_id(require(data, "id", "event_data"), "event_data.id"),
            customer_id=customer,
            score=data.get("score"),
            comment=data.get("comment") or None,
            answers=_answers(data),
            submitted_at=None if created is None else epoch_datetime(created, "event_data.created_at"),
        )]


def _answers(data: Mapping[str, Any]) -> dict[str, Any]:
    answers: dict[str, Any] = {}
    for key in ("person_properties", "survey_type", "tags"):
        if data.get(key) is not None:
            answers[key] = data[key]
    extra = data.get("additional_answers")
    if extra is None:
        return answers
    if not isinstance(extra, list):
        raise InvalidInput("event_data.additional_answers", extra, "must be a list")
    for index, item in enumerate(extra):
        path = f"event_data.additional_answers[{index}]"
        item = require_mapping(item, path)
        question = require_mapping(require(item, "question", path), f"{path}.question")
        key = text_id(require(question, "id", f"{path}.question"), f"{path}.question.id")
        value = item.get("value")
        if isinstance(value, Mapping):
            # Delighted sends one key per answer kind, all but one null.
            present = [v for v in value.values() if v is not None]
            value = present[0] if len(present) == 1 else dict(value)
        answers[key] = value
    return answers
