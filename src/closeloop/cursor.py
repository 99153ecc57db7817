"""The opaque cursor of a :class:`~closeloop.query.CasePage`: where the next page starts.

Keyset pagination: a cursor holds the sort values of the last case of a page
(:meth:`~closeloop.query.Sort.position`) and the next page lists the cases that come
after those values. Unlike an offset, this stays right while cases are added or
changed: a case that existed when paging started, matches the query the whole time
and keeps its place in the order is listed exactly once. (A case whose sort value
changes meanwhile, say under ``sort="updated"``, may be listed twice or not at all;
a case added meanwhile is listed if it sorts after the current page.)

A cursor is URL-safe text. It is bound to its query: it carries a digest of the
filters and the sort, and a cursor from another query is refused. A checksum makes a
damaged or hand-edited cursor fail loudly as :class:`~closeloop.errors.InvalidInput`
rather than start somewhere unexpected. A cursor is not a secret and grants nothing:
the next page applies the query's filters again, so the most a forged cursor can do
is choose where in the query's own results to start.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from datetime import UTC, datetime, timedelta
from typing import Any

from closeloop.errors import InvalidInput
from closeloop.model import Case, Priority
from closeloop.query import CaseQuery, Position
from closeloop.validate import check_id

__all__ = ["MAX_CURSOR_LENGTH", "decode_cursor", "encode_cursor"]

#: Longest cursor accepted, in characters (a real one is well under 200).
MAX_CURSOR_LENGTH = 1000
_FORMAT = 1
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICRO = timedelta(microseconds=1)
#: Keys the checksum; it detects damage and edits, it is not a signature (see above).
_CHECKSUM_KEY = b"closeloop.cursor.v1"
_NOT_OURS = "is not a cursor closeloop issued, or it was damaged or edited"


def encode_cursor(query: CaseQuery, case: Case) -> str:
    """The cursor that continues ``query`` after ``case`` (the last case of a page)."""
    values = [_encode(value) for value in query.sort.position(case)]
    payload = json.dumps([_FORMAT, query.fingerprint(), values], separators=(",", ":")).encode()
    return f"{_b64(payload)}.{_b64(_checksum(payload))}"


def decode_cursor(query: CaseQuery, cursor: Any) -> Position:
    """The position ``cursor`` continues from, for ``query``.

    Raises:
        InvalidInput: (field ``after``) the cursor is not text closeloop made, was
            damaged or edited, or belongs to another query (other filters or sort).
    """
    if not isinstance(cursor, str) or not 0 < len(cursor) <= MAX_CURSOR_LENGTH:
        raise InvalidInput("after", cursor, f"must be a cursor from CasePage.next_cursor ({_NOT_OURS})")
    body, _, mark = cursor.partition(".")
    try:
        payload = _unb64(body)
        intact = hmac.compare_digest(_unb64(mark), _checksum(payload))
        data = json.loads(payload) if intact else None
    except (ValueError, binascii.Error):  # bad base64, bad UTF-8 or JSON
        data = None
    if not (isinstance(data, list) and len(data) == 3 and data[0] == _FORMAT
            and isinstance(data[1], str) and isinstance(data[2], list)):
        raise InvalidInput("after", cursor, _NOT_OURS)
    if data[1] != query.fingerprint():
        raise InvalidInput(
            "after", cursor,
            "belongs to another query: a cursor continues only the filters and sort it came from",
        )
    fields = query.sort.fields
    if len(data[2]) != len(fields):
        raise InvalidInput("after", cursor, _NOT_OURS)
    try:
        return tuple(_DECODE[name](value) for name, value in zip(fields, data[2], strict=True))
    except (TypeError, ValueError, OverflowError):  # InvalidInput is a ValueError too
        raise InvalidInput("after", cursor, _NOT_OURS) from None


def _encode(value: Any) -> Any:
    if isinstance(value, datetime):
        return (value - _EPOCH) // _MICRO
    if isinstance(value, Priority):
        return value.value
    return value  # an id, or None (no due date)


def _time(value: Any) -> datetime:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError("a time is integer microseconds")
    return _EPOCH + value * _MICRO


def _optional_time(value: Any) -> datetime | None:
    return None if value is None else _time(value)


def _priority(value: Any) -> Priority:
    if not isinstance(value, str):
        raise TypeError("a priority is its value")
    return Priority(value)


def _id(value: Any) -> str:
    return check_id("id", value)


_DECODE = {
    "opened_at": _time,
    "updated_at": _time,
    "due_at": _optional_time,
    "priority": _priority,
    "id": _id,
}


def _checksum(payload: bytes) -> bytes:
    return hashlib.blake2b(payload, key=_CHECKSUM_KEY, digest_size=8).digest()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    """Decode what :func:`_b64` made, and only that: the spare bits of the last character
    and anything outside the alphabet would otherwise let an edited cursor decode equal."""
    if not text.isascii():
        raise ValueError("not base64")
    data = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    if _b64(data) != text:
        raise ValueError("not the canonical encoding")
    return data
