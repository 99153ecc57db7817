"""Qualtrics: ``surveyengine.completedResponse.<SurveyID>`` event subscriptions, ids only.

Qualtrics posts the event form-encoded (``application/x-www-form-urlencoded``),
not JSON: ``Topic``, ``Status``, ``SurveyID``, ``ResponseID``, ``CompletedDate``,
``BrandID``. It does not sign the notice with an HMAC; a forged notice can only
make the host fetch a real response by id from Qualtrics' API, which is why the
answers are always read from there.
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from urllib.parse import parse_qs

from closeloop.errors import InvalidInput, SignatureInvalid
from closeloop.model import SurveyResponse
from closeloop.sources.base import MAX_BODY_BYTES, header
from closeloop.sources.fetched import Fetch, check_fetch, fetched_response
from closeloop.sources.mapping import JsonMapping
from closeloop.validate import check_id

__all__ = ["Qualtrics"]

TOPIC_PREFIX = "surveyengine.completedResponse."


class Qualtrics:
    """Parse Qualtrics completed-response events: fetch the response they name.

    Args:
        fetch: ``fetch(response_id)`` returning a SurveyResponse, the response as
            JSON data (mapped by ``mapping``), or ``None``.
        mapping: how to map what ``fetch`` returns when it is JSON data.
        survey_id: when given, events for other surveys give no response.
        token / token_header: when given, the delivery must carry this header with
            this value (Qualtrics has no HMAC; a publication URL secret or a
            header added by your gateway is the usual guard).

    Mapping: ``ResponseID`` is passed to ``fetch``; a ``Topic`` that is not
    ``surveyengine.completedResponse.*`` gives no response.
    """

    def __init__(
        self,
        fetch: Fetch,
        *,
        mapping: JsonMapping | None = None,
        survey_id: str | None = None,
        token: str | None = None,
        token_header: str = "X-Closeloop-Token",  # noqa: S107 -- a header name, not a secret
    ) -> None:
        check_fetch(fetch, mapping)
        self.fetch = fetch
        self.mapping = mapping
        self.survey_id = None if survey_id is None else check_id("survey_id", survey_id)
        if token is not None and (not isinstance(token, str) or not token):
            raise InvalidInput("token", token, "must be a non-empty string or None")
        self.token = token
        self.token_header = check_id("token_header", token_header)

    def parse(self, body: bytes, headers: Mapping[str, str]) -> list[SurveyResponse]:
        """The response a Qualtrics event names, as ``fetch`` returns it.

        Raises:
            SignatureInvalid: a token was given and the header does not carry it.
            InvalidInput: a malformed field, named by its form key (``ResponseID``).
        """
        if self.token is not None:
            given = header(headers, self.token_header)
            if given is None or not hmac.compare_digest(
                given.encode("utf-8", "replace"), self.token.encode()
            ):
                raise SignatureInvalid(f"the {self.token_header} header is missing or wrong")
        form = _form(body)
        topic = _one(form, "Topic")
        if topic is None:
            raise InvalidInput("Topic", None, "is required")
        if not topic.startswith(TOPIC_PREFIX):
            return []
        if self.survey_id is not None and _one(form, "SurveyID") != self.survey_id:
            return []
        response_id = _one(form, "ResponseID")
        if response_id is None:
            raise InvalidInput("ResponseID", None, "is required")
        return fetched_response(self.fetch, self.mapping, check_id("ResponseID", response_id))


def _form(body: bytes) -> dict[str, list[str]]:
    if not isinstance(body, bytes | bytearray):
        raise InvalidInput("body", body, "must be bytes")
    if len(body) > MAX_BODY_BYTES:
        raise InvalidInput("body", len(body), f"must be at most {MAX_BODY_BYTES} bytes")
    try:
        text = bytes(body).decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidInput("body", bytes(body[:40]), "is not UTF-8 text") from None
    try:
        return parse_qs(text, keep_blank_values=True, strict_parsing=bool(text),
                        errors="strict", max_num_fields=1000)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidInput("body", text[:40], f"is not form-encoded ({exc})") from None


def _one(form: Mapping[str, list[str]], key: str) -> str | None:
    values = form.get(key)
    if not values:
        return None
    if len(values) > 1:
        raise InvalidInput(key, values, "must be given once")
    return values[0]
