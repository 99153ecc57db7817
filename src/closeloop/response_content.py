"""What a survey response says, and what changed between two deliveries of it.

Two deliveries of one response id with equal content are duplicates; with
different content the later one is an update (see :mod:`closeloop.intake`).
"""

from __future__ import annotations

import json

from closeloop.model import SurveyResponse
from closeloop.validate import frozen_to_json

__all__ = ["changed_fields", "response_content"]

#: Canonical JSON, built once (``json.dumps`` with options builds an encoder per call).
_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                              default=frozen_to_json)


def response_content(response: SurveyResponse) -> str:
    """What a response says, as canonical JSON: score, contact box, comment and answers.

    Two deliveries of one response id with equal content are duplicates; with
    different content the later one is an update. The id, customer and
    ``submitted_at`` are not part of it: they identify the response, and stay as
    first recorded.
    """
    return _CANONICAL.encode(
        {"score": response.score, "contact_requested": response.contact_requested,
         "comment": response.comment, "answers": response.answers},
    )


def changed_fields(old: str, new: str) -> tuple[str, ...]:
    """What differs between two :func:`response_content` texts.

    Names are ``"score"``, ``"contact_requested"``, ``"comment"`` and
    ``"answers.<name>"`` for each top-level answer added, removed or changed.
    """
    before, after = json.loads(old), json.loads(new)
    changed = [name for name in ("score", "contact_requested", "comment")
               if before.get(name) != after.get(name)]
    answers_before, answers_after = before.get("answers") or {}, after.get("answers") or {}
    changed += [f"answers.{name}" for name in sorted({*answers_before, *answers_after})
                if answers_before.get(name) != answers_after.get(name)]
    return tuple(changed)
