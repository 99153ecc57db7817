"""Typeform: the ``form_response`` webhook, answers matched by their field ``ref``.

Typeform signs the raw body when the webhook has a secret:
``Typeform-Signature: sha256=<base64 HMAC-SHA256 of the body>``.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from typing import Any

from closeloop.errors import InvalidInput
from closeloop.model import SurveyResponse
from closeloop.sources.base import (
    check_hmac,
    header,
    iso_datetime,
    make_response,
    read_json,
    require,
    require_mapping,
    text_id,
)
from closeloop.validate import check_id

__all__ = ["Typeform"]

SIGNATURE_HEADER = "Typeform-Signature"


class Typeform:
    """Parse Typeform webhooks into survey responses.

    Args:
        secret: the webhook's secret; when given, ``Typeform-Signature`` must match.
        score_ref: the ``ref`` of the NPS (opinion scale or number) field.
        comment_ref: the ``ref`` of the free-text field that is the comment.
        contact_ref: the ``ref`` of the yes/no field "please contact me".
        customer_field: the hidden field holding the customer id.

    Mapping: ``form_response.token`` → ``id``; ``form_response.hidden.<customer_field>``
    → ``customer_id``; the answer with ``score_ref`` → ``score``, ``comment_ref`` →
    ``comment``, ``contact_ref`` → ``contact_requested``;
    ``form_response.submitted_at`` → ``submitted_at``; ``answers`` holds every
    answer under its field ``ref`` (the typed value: text, number, boolean,
    ``{"label": …}`` for a choice, ``{"labels": […]}`` for choices), plus
    ``hidden`` and ``calculated`` as sent.
    """

    def __init__(
        self,
        secret: str | None = None,
        *,
        score_ref: str,
        comment_ref: str | None = None,
        contact_ref: str | None = None,
        customer_field: str,
    ) -> None:
        if secret is not None and (not isinstance(secret, str) or not secret):
            raise InvalidInput("secret", secret, "must be a non-empty string or None")
        self.secret = secret
        self.score_ref = check_id("score_ref", score_ref)
        self.comment_ref = None if comment_ref is None else check_id("comment_ref", comment_ref)
        self.contact_ref = None if contact_ref is None else check_id("contact_ref", contact_ref)
        self.customer_field = check_id("customer_field", customer_field)

    def parse(self, body: bytes, headers: Mapping[str, str]) -> list[SurveyResponse]:
        """The response in one Typeform delivery (none for other event types).

        Raises:
            SignatureInvalid: a secret was given and ``Typeform-Signature`` is missing or wrong.
            InvalidInput: a malformed field, named by its JSON path (``form_response.token``).
        """
        if self.secret is not None:
            digest = hmac.new(self.secret.encode(), bytes(body), hashlib.sha256).digest()
            check_hmac(digest, header(headers, SIGNATURE_HEADER), what=SIGNATURE_HEADER,
                       encoding="base64", prefix="sha256=")
        payload = require_mapping(read_json(body), "body")
        if payload.get("event_type") != "form_response":
            if not isinstance(payload.get("event_type"), str):
                raise InvalidInput("event_type", payload.get("event_type"), "must be a string")
            return []
        form = require_mapping(require(payload, "form_response", ""), "form_response")
        hidden = require_mapping(form.get("hidden") or {}, "form_response.hidden")
        customer_path = f"form_response.hidden.{self.customer_field}"
        customer = hidden.get(self.customer_field)
        if customer is None:
            raise InvalidInput(customer_path, None, "is required (the customer id)")
        answers, paths = _answers(form.get("answers"))
        fields: dict[str, Any] = {
            "id": text_id(require(form, "token", "form_response"), "form_response.token"),
            "customer_id": text_id(customer, customer_path),
            "score": answers.get(self.score_ref),
        }
        where = {"id": "form_response.token", "customer_id": customer_path,
                 "score": paths.get(self.score_ref, "form_response.answers"),
                 "answers": "form_response.answers"}
        if self.comment_ref is not None:
            fields["comment"] = answers.get(self.comment_ref) or None
            where["comment"] = paths.get(self.comment_ref, "form_response.answers")
        if self.contact_ref is not None:
            fields["contact_requested"] = answers.get(self.contact_ref) is True
        for key in ("hidden", "calculated"):
            if form.get(key) is not None:
                answers.setdefault(key, form[key])
        submitted = form.get("submitted_at")
        if submitted is not None:
            fields["submitted_at"] = iso_datetime(submitted, "form_response.submitted_at")
        return [make_response(where, answers=answers, **fields)]


def _answers(items: Any) -> tuple[dict[str, Any], dict[str, str]]:
    """Answers by field ref (or id), and the JSON path each came from."""
    if items is None:
        return {}, {}
    if not isinstance(items, list):
        raise InvalidInput("form_response.answers", items, "must be a list")
    answers: dict[str, Any] = {}
    paths: dict[str, str] = {}
    for index, item in enumerate(items):
        path = f"form_response.answers[{index}]"
        item = require_mapping(item, path)
        field = require_mapping(require(item, "field", path), f"{path}.field")
        key = field.get("ref") or field.get("id")
        key = text_id(key, f"{path}.field.ref")
        kind = item.get("type")
        if not isinstance(kind, str):
            raise InvalidInput(f"{path}.type", kind, "must be a string")
        answers[key] = item.get(kind)
        paths[key] = f"{path}.{kind}"
    return answers, paths
