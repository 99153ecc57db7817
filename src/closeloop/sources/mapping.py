"""JsonMapping: any other survey tool, described by the JSON paths of its fields.

A mapping is a dict of SurveyResponse field → JSON path in the tool's payload,
given in code or loaded from plain data (as ``json.load`` or ``tomllib.load``
returns it)::

    [fields]
    id = "response.id"
    customer_id = "response.contact.external_id"
    score = "response.nps"
    comment = "response.why"
    submitted_at = "response.completed_at"
    "answers.plan" = "response.contact.plan"

    [signature]
    header = "X-Signature"
    prefix = "sha256="
    encoding = "hex"
    timestamp_header = "X-Timestamp"

A path is dot-separated keys, with all-digit parts indexing lists
(``items.0.value``), the syntax :func:`closeloop.predicates.answer_at` uses.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from closeloop.errors import InvalidInput
from closeloop.model import SurveyResponse
from closeloop.sources.base import (
    Clock,
    check_hmac,
    epoch_datetime,
    header,
    iso_datetime,
    make_response,
    now_utc,
    read_json,
    require_mapping,
    text_id,
    within_window,
)
from closeloop.validate import check_id, check_positive_int, check_positive_timedelta

__all__ = ["JsonMapping"]

_MISSING: Any = object()
_FIELDS = ("id", "customer_id", "score", "contact_requested", "comment", "submitted_at", "answers")
_SIGNATURE_KEYS = ("header", "prefix", "encoding", "timestamp_header", "tolerance_seconds")


def _walk(data: Any, path: str) -> Any:
    value = data
    for part in path.split("."):
        if isinstance(value, Mapping):
            value = value.get(part, _MISSING)
        elif isinstance(value, list) and part.isascii() and part.isdigit():
            index = int(part)
            value = value[index] if index < len(value) else _MISSING
        else:
            return _MISSING
        if value is _MISSING:
            return _MISSING
    return value


class JsonMapping:
    """Parse any JSON webhook whose fields you can name by path.

    Args:
        fields: SurveyResponse field → JSON path. ``id`` and ``customer_id`` are
            required; ``score``, ``contact_requested``, ``comment``,
            ``submitted_at`` and ``answers`` (a path to an object of answers) are
            optional; ``"answers.<name>"`` puts the value at a path under
            ``answers[name]``.
        records: path to a list of records, for tools that post several
            responses at once; ``None`` (default): the body is one record.
        secret: when given, deliveries must carry an HMAC-SHA256 signature of the
            body (or of ``"<timestamp>.<body>"`` with ``timestamp_header``).
        signature_header / signature_prefix / signature_encoding: where and how the
            tool writes the signature (``"hex"`` or ``"base64"``).
        timestamp_header: the header with the signing time in epoch seconds; a
            delivery further than ``tolerance`` from ``clock()`` is refused.
        clock: returns the current aware datetime (tests pass a fixed one).

    Values: ids may be strings or integers; a score is an integer 0–10 or its
    digits as text; ``contact_requested`` is a boolean (missing or null: False);
    ``submitted_at`` is ISO 8601 with an offset, or epoch seconds.
    """

    def __init__(
        self,
        fields: Mapping[str, str],
        *,
        records: str | None = None,
        secret: str | None = None,
        signature_header: str = "X-Signature",
        signature_prefix: str = "",
        signature_encoding: str = "hex",
        timestamp_header: str | None = None,
        tolerance: timedelta = timedelta(minutes=5),
        clock: Clock | None = None,
    ) -> None:
        if not isinstance(fields, Mapping):
            raise InvalidInput("fields", fields, "must be a mapping of field to JSON path")
        for name, path in fields.items():
            base = name.split(".", 1)[0] if isinstance(name, str) else name
            if base not in _FIELDS or (base == "answers" and name != "answers" and not name[8:]):
                raise InvalidInput(f"fields.{name}", name, f"unknown field; expected one of "
                                   f"{', '.join(_FIELDS)} or 'answers.<name>'")
            check_id(f"fields.{name}", path)
        for required in ("id", "customer_id"):
            if required not in fields:
                raise InvalidInput(f"fields.{required}", None, "is required")
        if signature_encoding not in ("hex", "base64"):
            raise InvalidInput("signature_encoding", signature_encoding, "must be 'hex' or 'base64'")
        if secret is not None and (not isinstance(secret, str) or not secret):
            raise InvalidInput("secret", secret, "must be a non-empty string or None")
        check_positive_timedelta("tolerance", tolerance)
        self.fields = dict(fields)
        self.records = None if records is None else check_id("records", records)
        self.secret = secret
        self.signature_header = check_id("signature_header", signature_header)
        self.signature_prefix = signature_prefix
        self.signature_encoding = signature_encoding
        self.timestamp_header = timestamp_header
        self.tolerance = tolerance
        self.clock = clock or now_utc

    @classmethod
    def from_data(cls, data: Any, *, secret: str | None = None, clock: Clock | None = None) -> JsonMapping:
        """Build a mapping from plain data: ``{"fields": {...}, "records": ..., "signature": {...}}``.

        The secret is passed separately: it belongs in your secret store, not in
        the mapping file. Errors name the path (``mapping.signature.encoding``).
        """
        data = require_mapping(data, "mapping")
        unknown = [key for key in data if key not in ("fields", "records", "signature")]
        if unknown:
            raise InvalidInput(f"mapping.{unknown[0]}", unknown[0], "unknown key; expected fields, "
                               "records, signature")
        fields = require_mapping(data.get("fields"), "mapping.fields")
        signature = require_mapping(data.get("signature") or {}, "mapping.signature")
        for key in signature:
            if key not in _SIGNATURE_KEYS:
                raise InvalidInput(f"mapping.signature.{key}", key,
                                   f"unknown key; expected {', '.join(_SIGNATURE_KEYS)}")
        tolerance = signature.get("tolerance_seconds", 300)
        check_positive_int("mapping.signature.tolerance_seconds", tolerance)
        try:
            return cls(
                fields, records=data.get("records"), secret=secret,
                signature_header=signature.get("header", "X-Signature"),
                signature_prefix=signature.get("prefix", ""),
                signature_encoding=signature.get("encoding", "hex"),
                timestamp_header=signature.get("timestamp_header"),
                tolerance=timedelta(seconds=tolerance), clock=clock,
            )
        except InvalidInput as exc:
            raise InvalidInput(f"mapping.{exc.field}", exc.value, exc.reason) from None

    def parse(self, body: bytes, headers: Mapping[str, str]) -> list[SurveyResponse]:
        """The responses in one delivery.

        Raises:
            SignatureInvalid: a secret was given and the signature (or its time) is refused.
            InvalidInput: a malformed field, named by its JSON path.
        """
        if self.secret is not None:
            signed = bytes(body)
            if self.timestamp_header is not None:
                stamp = within_window(header(headers, self.timestamp_header), self.clock(),
                                      self.tolerance, what=self.timestamp_header)
                signed = stamp.encode() + b"." + signed
            digest = hmac.new(self.secret.encode(), signed, hashlib.sha256).digest()
            check_hmac(digest, header(headers, self.signature_header), what=self.signature_header,
                       encoding=self.signature_encoding, prefix=self.signature_prefix)
        data = read_json(body)
        if self.records is None:
            return [self.map(data)]
        items = _walk(data, self.records)
        if not isinstance(items, list):
            raise InvalidInput(self.records, None if items is _MISSING else items, "must be a list")
        return [self.map(item, f"{self.records}[{index}]") for index, item in enumerate(items)]

    def map(self, record: Any, where: str = "") -> SurveyResponse:
        """One record (parsed JSON data) as a SurveyResponse; errors name the JSON path."""
        record = require_mapping(record, where or "body")

        def path(name: str) -> str:
            return f"{where}.{self.fields[name]}" if where else self.fields[name]

        def value(name: str) -> Any:
            found = _walk(record, self.fields[name]) if name in self.fields else _MISSING
            return None if found is _MISSING else found

        fields: dict[str, Any] = {}
        for name in ("id", "customer_id"):
            found = value(name)
            if found is None:
                raise InvalidInput(path(name), None, "is required")
            fields[name] = text_id(found, path(name))
        score = value("score")
        if isinstance(score, str) and score.isascii() and score.strip().isdigit():
            score = int(score)
        fields["score"] = score
        fields["contact_requested"] = value("contact_requested") or False
        comment = value("comment")
        fields["comment"] = comment if comment != "" else None
        submitted = value("submitted_at")
        if submitted is not None:
            fields["submitted_at"] = _when(submitted, path("submitted_at"))
        answers: dict[str, Any] = {}
        if "answers" in self.fields:
            found = value("answers")
            if found is not None:
                answers.update(require_mapping(found, path("answers")))
        for name in self.fields:
            if name.startswith("answers."):
                found = value(name)
                if found is not None:
                    answers[name[len("answers."):]] = found
        fields["answers"] = answers
        paths = {name: path(name) for name in _FIELDS if name in self.fields}
        paths.setdefault("answers", where or "body")
        return make_response(paths, **fields)


def _when(value: Any, path: str) -> datetime:
    if isinstance(value, str) and not value.strip().isdigit():
        return iso_datetime(value, path)
    return epoch_datetime(value, path)
