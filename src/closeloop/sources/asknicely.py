"""AskNicely: the response webhook (a score, then possibly an updated score or comment).

AskNicely posts JSON with a ``person`` and a ``question``; it fires again when
the contact changes their score or comment, with ``count`` one higher and the
same ``question.id``, so a repeat delivery is an update of the same response.
AskNicely does not sign its webhooks; it can add custom headers, so a shared
token in a header of your choice is the guard offered here.
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from typing import Any, Literal

from closeloop.errors import InvalidInput, SignatureInvalid
from closeloop.model import SurveyResponse
from closeloop.sources.base import (
    epoch_datetime,
    header,
    make_response,
    read_json,
    require,
    require_mapping,
    text_id,
)
from closeloop.validate import check_id

__all__ = ["AskNicely"]

#: Question fields mapped onto SurveyResponse fields rather than kept in answers.
_MAPPED = ("id", "score", "comment", "responded")


class AskNicely:
    """Parse AskNicely webhooks into survey responses.

    Args:
        token / token_header: when given, the delivery must carry this header with
            this value (configure it as a custom header in AskNicely's Webhooks app).
        customer: which person field is the customer id, ``"id"`` (default) or ``"email"``.

    Mapping: ``question.id`` → ``id``; ``person.id`` (or ``.email``) → ``customer_id``;
    ``question.score`` (digits as text) → ``score``; ``question.comment`` →
    ``comment``; ``question.responded`` (epoch seconds) → ``submitted_at``;
    ``answers`` holds ``person`` (the contact's fields), ``question`` (its other
    fields: segment, delivery method, custom fields) and ``count``.
    """

    def __init__(
        self,
        token: str | None = None,
        *,
        token_header: str = "Authorization",  # noqa: S107 -- a header name, not a secret
        customer: Literal["id", "email"] = "id",
    ) -> None:
        if token is not None and (not isinstance(token, str) or not token):
            raise InvalidInput("token", token, "must be a non-empty string or None")
        if customer not in ("id", "email"):
            raise InvalidInput("customer", customer, "must be 'id' or 'email'")
        self.token = token
        self.token_header = check_id("token_header", token_header)
        self.customer = customer

    def parse(self, body: bytes, headers: Mapping[str, str]) -> list[SurveyResponse]:
        """The response in one AskNicely delivery.

        Raises:
            SignatureInvalid: a token was given and the header does not carry it.
            InvalidInput: a malformed field, named by its JSON path (``question.score``).
        """
        if self.token is not None:
            given = header(headers, self.token_header)
            if given is None or not hmac.compare_digest(
                given.strip().encode("utf-8", "replace"), self.token.encode()
            ):
                raise SignatureInvalid(f"the {self.token_header} header is missing or wrong")
        payload = require_mapping(read_json(body), "body")
        person = require_mapping(require(payload, "person", ""), "person")
        question = require_mapping(require(payload, "question", ""), "question")
        score: Any = question.get("score")
        if isinstance(score, str):
            score = int(score) if score.isascii() and score.strip().isdigit() else (score or None)
        responded = question.get("responded")
        answers: dict[str, Any] = {
            "person": dict(person),
            "question": {k: v for k, v in question.items() if k not in _MAPPED},
        }
        if payload.get("count") is not None:
            answers["count"] = payload["count"]
        return [make_response(
            {"id": "question.id", "customer_id": f"person.{self.customer}",
             "score": "question.score", "comment": "question.comment", "answers": "body"},
            id=text_id(require(question, "id", "question"), "question.id"),
            customer_id=text_id(require(person, self.customer, "person"), f"person.{self.customer}"),
            score=score,
            comment=question.get("comment") or None,
            answers=answers,
            submitted_at=None if not responded else epoch_datetime(responded, "question.responded"),
        )]
