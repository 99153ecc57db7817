"""Survey sources: webhooks from the survey tools people use, as SurveyResponses.

One small class per tool, each with ``parse(body, headers) -> list[SurveyResponse]``
that verifies the tool's signature when given its secret and maps its payload;
:func:`webhook_app` serves any of them as a WSGI endpoint that ingests what it
parses. See ``docs/sources.md`` for each adapter's field mapping::

    from closeloop.sources import Typeform, webhook_app
    app = webhook_app(loop, Typeform(secret, score_ref="nps", customer_field="user_id"))

Errors: :class:`~closeloop.errors.SignatureInvalid` (not signed by the tool) and
:class:`~closeloop.errors.InvalidInput` whose ``field`` is the JSON path of the
malformed value (``event_data.score``); nothing else escapes ``parse``.
"""

from closeloop.sources.asknicely import AskNicely
from closeloop.sources.base import MAX_BODY_BYTES, Source, header
from closeloop.sources.delighted import Delighted
from closeloop.sources.mapping import JsonMapping
from closeloop.sources.qualtrics import Qualtrics
from closeloop.sources.surveymonkey import SurveyMonkey
from closeloop.sources.typeform import Typeform
from closeloop.sources.webhook import webhook_app

__all__ = [
    "MAX_BODY_BYTES",
    "AskNicely",
    "Delighted",
    "JsonMapping",
    "Qualtrics",
    "Source",
    "SurveyMonkey",
    "Typeform",
    "header",
    "webhook_app",
]
