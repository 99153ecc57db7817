"""What the id-only adapters share: ask the host's ``fetch`` and map what it returns.

SurveyMonkey and Qualtrics notify with ids only; the answers are read from
their APIs, which needs the host's credentials, so the host supplies
``fetch(response_id)``. It returns a :class:`~closeloop.model.SurveyResponse`
(the host mapped it), the tool's record as JSON data (mapped by the adapter's
``mapping``, a :class:`~closeloop.sources.JsonMapping`), or ``None`` when the
response is gone (then the delivery gives no response).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from closeloop.errors import InvalidInput
from closeloop.model import SurveyResponse
from closeloop.sources.mapping import JsonMapping
from closeloop.validate import check_callable

__all__ = ["Fetch", "fetched_response"]

#: The host's ``fetch(response_id)``: a SurveyResponse, the tool's record as JSON data, or None.
Fetch = Callable[[str], "SurveyResponse | Mapping[str, Any] | None"]


def check_fetch(fetch: Any, mapping: Any) -> None:
    """Refuse a ``fetch`` that is not callable, or a ``mapping`` that is not a JsonMapping."""
    check_callable("fetch", fetch, "callable: (response_id) -> SurveyResponse, mapping or None")
    if mapping is not None and not isinstance(mapping, JsonMapping):
        raise InvalidInput("mapping", mapping, "must be a JsonMapping or None")


def fetched_response(fetch: Fetch, mapping: JsonMapping | None, response_id: str) -> list[SurveyResponse]:
    """Call ``fetch(response_id)`` and turn its result into zero or one response.

    Exceptions ``fetch`` raises are the host's and pass through unchanged (a
    webhook then answers 500, so the tool retries later).
    """
    found = fetch(response_id)
    if found is None:
        return []
    if isinstance(found, SurveyResponse):
        return [found]
    if isinstance(found, Mapping) and mapping is not None:
        return [mapping.map(found, "fetched")]
    raise InvalidInput("fetched", found, "fetch must return a SurveyResponse, None, or a mapping "
                       "when the adapter has mapping=JsonMapping(...)")
