"""The survey-tool adapters: vendors' documented payloads, signatures, and mangled input."""

from __future__ import annotations

import base64
import copy
import hashlib
import hmac
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from closeloop import (
    CloseLoop,
    CloseLoopError,
    InvalidInput,
    ResponseUpdated,
    SignatureInvalid,
    SurveyResponse,
)
from closeloop.sources import AskNicely, Delighted, JsonMapping, Qualtrics, SurveyMonkey, Typeform
from closeloop.storage import SQLiteStore
from closeloop.testing import FixedClock
from closeloop.triggers import Trigger, comment_contains, nps_between
from closeloop.validate import thaw

# -- the vendors' documented example payloads ------------------------------------------------

#: https://app.delighted.com/docs/api/webhooks ("Example request body for a survey_response
#: object"); the page shows the .updated event, .created is the same without the comment.
DELIGHTED_UPDATED: dict[str, Any] = {
    "event_type": "survey_response.updated",
    "event_id": "b8d057c59327541d7ec2104c0a9a255ad1997fb00831b9c6bbf09561e6d5cbd0",
    "event_data": {
        "id": "5435",
        "person": {"id": "5975", "email": "charlie_gravis@example.com", "name": "Charlie Gravis",
                   "created_at": 1732186784},
        "survey_type": "nps",
        "score": 9,
        "comment": "Your service is fast and flawless!",
        "permalink": "https://app.delighted.com/r/5pFDpmlyC8GUc5oxU6USto5VonSKAqOa",
        "created_at": 1732186844,
        "updated_at": 1732187444,
        "person_properties": None,
        "notes": [],
        "tags": [],
        "additional_answers": [
            {"id": "4",
             "value": {"free_response": None, "scale": None, "select_one": None,
                       "select_many": [{"id": "DxmjNj", "text": "Convenience"},
                                       {"id": "uNQIig", "text": "Friendly staff"}]},
             "question": {"id": "enum_z9EvYV", "type": "select_many",
                          "text": "What specifically did you enjoy about your experience with us?"}},
        ],
    },
}
DELIGHTED_CREATED: dict[str, Any] = copy.deepcopy(DELIGHTED_UPDATED)
DELIGHTED_CREATED["event_type"] = "survey_response.created"
DELIGHTED_CREATED["event_data"]["comment"] = None

#: https://www.typeform.com/developers/webhooks/example-payload/ (abridged: the definition
#: block is left out; answers keep the documented shapes and refs).
TYPEFORM: dict[str, Any] = {
    "event_id": "LtWXD3crgy",
    "event_type": "form_response",
    "form_response": {
        "form_id": "lT4Z3j",
        "token": "a3a12ec67a1365927098a606107fac15",
        "submitted_at": "2018-01-18T18:17:02Z",
        "landed_at": "2018-01-18T18:07:02Z",
        "calculated": {"score": 9},
        "hidden": {"user_id": "abc123456"},
        "answers": [
            {"type": "text", "text": "It's cold right now! I live in an older medium-sized city.",
             "field": {"id": "DlXFaesGBpoF", "type": "long_text", "ref": "readable_ref_long_text"}},
            {"type": "email", "email": "laura@example.com",
             "field": {"id": "SMEUb7VJz92Q", "type": "email", "ref": "readable_ref_email"}},
            {"type": "text", "text": "Laura",
             "field": {"id": "JwWggjAKtOkA", "type": "short_text", "ref": "readable_ref_short_text"}},
            {"type": "number", "number": 5,
             "field": {"id": "NRsxU591jIW9", "type": "opinion_scale",
                       "ref": "readable_ref_opinion_scale"}},
            {"type": "boolean", "boolean": True,
             "field": {"id": "gFFf3xAkJKsr", "type": "yes_no", "ref": "readable_ref_yes_no"}},
            {"type": "choices", "choices": {"labels": ["London", "Sydney"]},
             "field": {"id": "PNe8ZKBK8C2Q", "type": "picture_choice",
                       "ref": "readable_ref_picture_choice"}},
            {"type": "date", "date": "2005-10-15",
             "field": {"id": "KoJxDM3c6x8h", "type": "date", "ref": "readable_ref_date"}},
        ],
    },
}

#: https://prismatic.io/docs/example-payloads/surveymonkey/triggers/eventsWebhook.json (the
#: body of a SurveyMonkey v3 callback; Sm-Signature per
#: https://asyncapi.apis.io/asyncapis/surveymonkey/surveymonkey-asyncapi/).
SURVEYMONKEY: dict[str, Any] = {
    "name": "My Survey Webhook", "filter_type": "survey", "filter_id": "123456789",
    "event_type": "response_completed", "event_id": "unique-event-id-12345",
    "object_type": "response", "object_id": "987654321",
    "event_datetime": "2026-01-21T10:30:00.000000+00:00",
    "resources": {"survey_id": "123456789", "collector_id": "111222333",
                  "respondent_id": "444555666", "recipient_id": "777888999"},
}

#: https://api.qualtrics.com/docs/create-subscription: events arrive x-www-form-urlencoded.
QUALTRICS = {
    "Topic": "surveyengine.completedResponse.SV_cJ9Ox6sM0dNd2mG", "Status": "Complete",
    "SurveyID": "SV_cJ9Ox6sM0dNd2mG", "ResponseID": "R_1Fc3fzmMsYnBCIS",
    "CompletedDate": "2026-01-21 10:30:00", "BrandID": "examplebrand",
}

#: https://asknicely.zendesk.com/hc/en-us/articles/47782734299540-Triggering-Webhooks-in-AskNicely
ASKNICELY: dict[str, Any] = {
    "count": 1,
    "person": {"id": "163012", "name": "Firstname Lastname", "firstname": "Firstname",
               "lastname": "Lastname", "email": "tester@asknice.ly", "created": "1774990112",
               "segment": "general"},
    "question": {"id": "345094", "score": "10", "comment": "The gym was great, love it!",
                 "sent": "1774990116", "opened": "1774990122", "responded": "1774990125",
                 "segment": "general", "deliverymethod": "email"},
}

#: What a host's fetch returns for SurveyMonkey/Qualtrics, mapped by a JsonMapping.
FETCHED = {"id": "987654321", "custom_variables": {"customer": "c-42"},
           "nps": 3, "why": "Too slow", "date_modified": "2026-01-21T10:29:00+00:00",
           "plan": {"label": "Business"}}
FETCHED_MAPPING = JsonMapping({"id": "id", "customer_id": "custom_variables.customer",
                               "score": "nps", "comment": "why", "submitted_at": "date_modified",
                               "answers.plan": "plan"})


def body(data: Any) -> bytes:
    """The payload as a webhook body."""
    return json.dumps(data).encode()


def typeform(secret: str | None = None) -> Typeform:
    """The Typeform adapter configured for the example form."""
    return Typeform(secret, score_ref="readable_ref_opinion_scale",
                    comment_ref="readable_ref_long_text", contact_ref="readable_ref_yes_no",
                    customer_field="user_id")


def tf_signature(secret: str, raw: bytes) -> str:
    """Typeform's signature of ``raw``."""
    return "sha256=" + base64.b64encode(hmac.new(secret.encode(), raw, hashlib.sha256).digest()).decode()


class TestDelighted:
    def test_created_example(self) -> None:
        """Delighted's documented payload, as .created: id, person, score, time; no comment yet.

        https://app.delighted.com/docs/api/webhooks
        """
        (response,) = Delighted().parse(body(DELIGHTED_CREATED), {})
        assert (response.id, response.customer_id, response.score) == ("5435", "5975", 9)
        assert response.comment is None
        assert response.submitted_at == datetime.fromtimestamp(1732186844, UTC)
        assert response.answers["enum_z9EvYV"][1]["text"] == "Friendly staff"
        assert response.answers["survey_type"] == "nps"

    def test_updated_example_carries_the_comment(self) -> None:
        """The documented .updated event gives the same response id with the late comment.

        https://app.delighted.com/docs/api/webhooks
        """
        (response,) = Delighted(customer="email").parse(body(DELIGHTED_UPDATED), {})
        assert response.id == "5435" and response.customer_id == "charlie_gravis@example.com"
        assert response.comment == "Your service is fast and flawless!"

    def test_created_then_updated_is_one_case_holding_the_late_comment(self, tmp_path: Any) -> None:
        """Documented .created then .updated: "opened" then "updated", one case, the comment in its
        history, and the comment-matching trigger fires on the update.

        https://app.delighted.com/docs/api/webhooks
        """
        loop = CloseLoop(store=SQLiteStore(tmp_path / "d.db"),
                         triggers=[Trigger("promoter", nps_between(9, 10)),
                                   Trigger("praise", comment_contains("flawless"))])
        first = loop.ingest_outcome(Delighted().parse(body(DELIGHTED_CREATED), {})[0])
        second = loop.ingest_outcome(Delighted().parse(body(DELIGHTED_UPDATED), {})[0])
        assert (first.kind, second.kind) == ("opened", "updated")
        assert first.case is not None and first.case.reasons == ("promoter",)
        assert second.case is not None and second.case.id == first.case.id
        assert second.case.reasons == ("promoter", "praise")
        (case,) = loop.cases()
        update = loop.history(case.id)[-1]
        assert isinstance(update, ResponseUpdated) and update.changed == ("comment",)
        assert update.comment == "Your service is fast and flawless!" and "praise" in update.reasons
        again = loop.ingest_outcome(Delighted().parse(body(DELIGHTED_UPDATED), {})[0])
        assert again.kind == "duplicate"  # Delighted retrying the same event changes nothing
        loop.store.close()

    def test_unsubscribe_gives_nothing(self) -> None:
        """An unsubscribe.created event carries no response."""
        assert Delighted().parse(body({"event_type": "unsubscribe.created", "event_data": {}}), {}) == []

    def test_signature_checked_when_secret_given(self) -> None:
        """With a secret, a missing or wrong signature is SignatureInvalid; the right one passes."""
        raw = body(DELIGHTED_UPDATED)
        good = "sha256=" + hmac.new(b"s3cret", raw, hashlib.sha256).hexdigest()
        assert Delighted("s3cret").parse(raw, {"x-delighted-webhook-signature": good})
        with pytest.raises(SignatureInvalid):
            Delighted("s3cret").parse(raw, {})
        with pytest.raises(SignatureInvalid):
            Delighted("s3cret").parse(raw + b" ", {"X-Delighted-Webhook-Signature": good})

    def test_bad_score_names_json_path(self) -> None:
        """A score of 11 is an InvalidInput whose field is event_data.score."""
        data = copy.deepcopy(DELIGHTED_UPDATED)
        data["event_data"]["score"] = 11
        with pytest.raises(InvalidInput) as info:
            Delighted().parse(body(data), {})
        assert info.value.field == "event_data.score"

    def test_missing_person_names_json_path(self) -> None:
        """A payload without a person names event_data.person."""
        data = copy.deepcopy(DELIGHTED_UPDATED)
        del data["event_data"]["person"]
        with pytest.raises(InvalidInput) as info:
            Delighted().parse(body(data), {})
        assert info.value.field == "event_data.person"


class TestTypeform:
    def test_example_payload(self) -> None:
        """Typeform's documented payload maps token, hidden user id and the answers by ref.

        https://www.typeform.com/developers/webhooks/example-payload/
        """
        (response,) = typeform().parse(body(TYPEFORM), {})
        assert response.id == "a3a12ec67a1365927098a606107fac15"
        assert response.customer_id == "abc123456"
        assert response.score == 5 and response.contact_requested is True
        assert response.comment is not None and response.comment.startswith("It's cold")
        # Answers are frozen: lists arrive as tuples (thaw() gives plain JSON back).
        assert thaw(response.answers["readable_ref_picture_choice"]) == {"labels": ["London", "Sydney"]}
        assert response.submitted_at == datetime(2018, 1, 18, 18, 17, 2, tzinfo=UTC)

    def test_signature(self) -> None:
        """Typeform-Signature is sha256=<base64 HMAC>; wrong or missing is SignatureInvalid.

        https://www.typeform.com/developers/webhooks/secure-your-webhooks/
        """
        raw = body(TYPEFORM)
        assert typeform("k").parse(raw, {"TYPEFORM-SIGNATURE": tf_signature("k", raw)})
        for headers in ({}, {"Typeform-Signature": tf_signature("other", raw)},
                        {"Typeform-Signature": "sha1=abc"}, {"Typeform-Signature": "sha256=é"}):
            with pytest.raises(SignatureInvalid):
                typeform("k").parse(raw, headers)

    def test_missing_customer_field(self) -> None:
        """Without the configured hidden field, the error names form_response.hidden.user_id."""
        data = copy.deepcopy(TYPEFORM)
        data["form_response"]["hidden"] = {}
        with pytest.raises(InvalidInput) as info:
            typeform().parse(body(data), {})
        assert info.value.field == "form_response.hidden.user_id"

    def test_bad_score_names_answer_path(self) -> None:
        """A score answer of 42 names the answer's JSON path."""
        data = copy.deepcopy(TYPEFORM)
        data["form_response"]["answers"][3]["number"] = 42
        with pytest.raises(InvalidInput) as info:
            typeform().parse(body(data), {})
        assert info.value.field == "form_response.answers[3].number"


class TestIdOnlyTools:
    def test_surveymonkey_example_fetches_object_id(self) -> None:
        """SurveyMonkey's callback is verified, then fetch(object_id) is mapped.

        https://prismatic.io/docs/example-payloads/surveymonkey/triggers/eventsWebhook.json
        """
        asked: list[str] = []

        def fetch(response_id: str) -> dict[str, Any]:
            asked.append(response_id)
            return FETCHED

        raw = body(SURVEYMONKEY)
        signature = base64.b64encode(hmac.new(b"cid&csecret", raw, hashlib.sha1).digest()).decode()
        source = SurveyMonkey(fetch, mapping=FETCHED_MAPPING, client_id="cid", client_secret="csecret")
        (response,) = source.parse(raw, {"sm-signature": signature, "SM-APIKEY": "cid"})
        assert asked == ["987654321"]
        assert (response.customer_id, response.score, response.answers["plan"]["label"]) == (
            "c-42", 3, "Business")
        with pytest.raises(SignatureInvalid):
            source.parse(raw, {"Sm-Signature": signature, "Sm-Apikey": "other"})
        with pytest.raises(SignatureInvalid):
            source.parse(raw[:-1], {"Sm-Signature": signature})

    def test_surveymonkey_other_events_fetch_nothing(self) -> None:
        """A survey_created callback gives no response and calls no fetch."""
        source = SurveyMonkey(lambda _: pytest.fail("fetched"), mapping=FETCHED_MAPPING)
        assert source.parse(body({**SURVEYMONKEY, "event_type": "survey_created"}), {}) == []

    def test_qualtrics_form_event(self) -> None:
        """Qualtrics' form-encoded completedResponse event fetches its ResponseID.

        https://api.qualtrics.com/docs/create-subscription
        """
        asked: list[str] = []
        source = Qualtrics(lambda rid: asked.append(rid) or SurveyResponse(id=rid, customer_id="c-1"),
                           survey_id="SV_cJ9Ox6sM0dNd2mG")
        (response,) = source.parse(urlencode(QUALTRICS).encode(), {})
        assert asked == ["R_1Fc3fzmMsYnBCIS"] and response.id == "R_1Fc3fzmMsYnBCIS"
        other = {**QUALTRICS, "SurveyID": "SV_other"}
        assert source.parse(urlencode(other).encode(), {}) == []

    def test_qualtrics_missing_response_id(self) -> None:
        """A completedResponse event without ResponseID names the form key."""
        form = {k: v for k, v in QUALTRICS.items() if k != "ResponseID"}
        with pytest.raises(InvalidInput) as info:
            Qualtrics(lambda _: None).parse(urlencode(form).encode(), {})
        assert info.value.field == "ResponseID"

    def test_fetch_returning_junk_is_invalid_input(self) -> None:
        """A fetch that returns neither a response, a mapping nor None is InvalidInput."""
        with pytest.raises(InvalidInput):
            Qualtrics(lambda _: 42).parse(urlencode(QUALTRICS).encode(), {})  # type: ignore[arg-type,return-value]


class TestAskNicely:
    def test_example_payload(self) -> None:
        """AskNicely's documented payload: question id, person id, score from text, comment.

        https://asknicely.zendesk.com/hc/en-us/articles/47782734299540-Triggering-Webhooks-in-AskNicely
        """
        (response,) = AskNicely().parse(body(ASKNICELY), {})
        assert (response.id, response.customer_id, response.score) == ("345094", "163012", 10)
        assert response.comment == "The gym was great, love it!"
        assert response.answers["person"]["segment"] == "general"
        assert response.submitted_at == datetime.fromtimestamp(1774990125, UTC)

    def test_token_header(self) -> None:
        """With a token, the configured header must carry it, in any letter case."""
        source = AskNicely("t0k", token_header="X-Token")
        assert source.parse(body(ASKNICELY), {"x-token": "t0k"})
        with pytest.raises(SignatureInvalid):
            source.parse(body(ASKNICELY), {"X-Token": "nope"})


class TestJsonMapping:
    def test_paths_and_records(self) -> None:
        """Field paths pick values from each record of a batch, lists indexed by number."""
        mapping = JsonMapping({"id": "rid", "customer_id": "who.0", "score": "nps",
                               "answers.plan": "meta.plan"}, records="items")
        raw = body({"items": [{"rid": 1, "who": ["c-1"], "nps": "7", "meta": {"plan": "pro"}},
                              {"rid": "r-2", "who": ["c-2"]}]})
        first, second = mapping.parse(raw, {})
        assert (first.id, first.customer_id, first.score, first.answers) == ("1", "c-1", 7, {"plan": "pro"})
        assert second.score is None

    def test_error_names_record_path(self) -> None:
        """A bad score in the second record names items[1].nps."""
        mapping = JsonMapping({"id": "rid", "customer_id": "c", "score": "nps"}, records="items")
        with pytest.raises(InvalidInput) as info:
            mapping.parse(body({"items": [{"rid": 1, "c": "x"}, {"rid": 2, "c": "y", "nps": 12}]}), {})
        assert info.value.field == "items[1].nps"

    def test_from_toml_data(self) -> None:
        """A mapping loads from TOML data; a typo is named by its path."""
        import tomllib

        data = tomllib.loads('[fields]\nid = "r"\ncustomer_id = "c"\n[signature]\nheader = "X-Sig"\n')
        mapping = JsonMapping.from_data(data, secret="k")
        raw = body({"r": "1", "c": "2"})
        good = hmac.new(b"k", raw, hashlib.sha256).hexdigest()
        assert mapping.parse(raw, {"x-sig": good})[0].id == "1"
        with pytest.raises(InvalidInput) as info:
            JsonMapping.from_data({"fields": {"id": "r", "customer_id": "c", "scroe": "s"}})
        assert info.value.field == "mapping.fields.scroe"

    def test_timestamp_window_uses_injected_clock(self) -> None:
        """A signed timestamp outside the tolerance from the injected clock is refused."""
        clock = FixedClock(datetime(2026, 1, 5, 9, 0, tzinfo=UTC))
        mapping = JsonMapping({"id": "r", "customer_id": "c"}, secret="k", timestamp_header="X-Ts",
                              tolerance=timedelta(minutes=5), clock=clock)
        raw = body({"r": "1", "c": "2"})
        stamp = str(int(clock().timestamp()))
        signature = hmac.new(b"k", stamp.encode() + b"." + raw, hashlib.sha256).hexdigest()
        headers = {"X-Ts": stamp, "X-Signature": signature}
        assert mapping.parse(raw, headers)
        clock.advance(minutes=6)
        with pytest.raises(SignatureInvalid):
            mapping.parse(raw, headers)


# -- mangled payloads: only closeloop errors ---------------------------------------------------

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
)


def _fetch(response_id: str) -> dict[str, Any]:
    return {**FETCHED, "id": response_id}


SOURCES: list[tuple[str, Callable[[], Any], bytes]] = [
    ("delighted", Delighted, body(DELIGHTED_UPDATED)),
    ("typeform", typeform, body(TYPEFORM)),
    ("surveymonkey", lambda: SurveyMonkey(_fetch, mapping=FETCHED_MAPPING), body(SURVEYMONKEY)),
    ("qualtrics", lambda: Qualtrics(_fetch, mapping=FETCHED_MAPPING), urlencode(QUALTRICS).encode()),
    ("asknicely", AskNicely, body(ASKNICELY)),
    ("jsonmapping", lambda: FETCHED_MAPPING, body(FETCHED)),
]


def _replace_somewhere(data: Any, draw: st.DrawFn) -> Any:
    """``data`` with one value, somewhere inside, replaced by random JSON."""
    if isinstance(data, dict) and data and draw(st.booleans()):
        key = draw(st.sampled_from(sorted(data)))
        return {**data, key: _replace_somewhere(data[key], draw)}
    if isinstance(data, list) and data and draw(st.booleans()):
        index = draw(st.integers(0, len(data) - 1))
        return [*data[:index], _replace_somewhere(data[index], draw), *data[index + 1:]]
    return draw(JSON)


@st.composite
def mangled(draw: st.DrawFn, raw: bytes) -> bytes:
    """The example body truncated, byte-flipped, or with a value of the wrong type."""
    how = draw(st.sampled_from(["truncate", "flip", "replace", "random"]))
    if how == "truncate":
        return raw[: draw(st.integers(0, len(raw)))]
    if how == "flip":
        index = draw(st.integers(0, len(raw) - 1))
        return raw[:index] + bytes([draw(st.integers(0, 255))]) + raw[index + 1:]
    if how == "random":
        return json.dumps(draw(JSON)).encode()
    try:
        data = json.loads(raw)
    except ValueError:  # the form-encoded one: replace a value with random text
        return raw + b"&" + urlencode({draw(st.sampled_from(sorted(QUALTRICS))): draw(st.text())}).encode()
    return json.dumps(_replace_somewhere(data, draw)).encode()


@pytest.mark.parametrize(("name", "make", "raw"), SOURCES, ids=[s[0] for s in SOURCES])
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_mangled_payloads_raise_only_closeloop_errors(
    name: str, make: Callable[[], Any], raw: bytes, data: st.DataObject
) -> None:
    """Truncated, flipped, random or wrongly-typed payloads give responses or closeloop errors."""
    payload = data.draw(mangled(raw))
    try:
        result = make().parse(payload, {})
    except CloseLoopError:
        return
    assert all(isinstance(item, SurveyResponse) for item in result)


SIGNED_SOURCES: list[tuple[str, Callable[[], Any], str]] = [
    ("delighted", lambda: Delighted("k"), "X-Delighted-Webhook-Signature"),
    ("typeform", lambda: typeform("k"), "Typeform-Signature"),
    ("surveymonkey", lambda: SurveyMonkey(_fetch, mapping=FETCHED_MAPPING, client_id="c",
                                          client_secret="k"), "Sm-Signature"),
    ("qualtrics", lambda: Qualtrics(_fetch, token="k"), "X-Closeloop-Token"),
    ("asknicely", lambda: AskNicely("k"), "Authorization"),
    ("jsonmapping", lambda: JsonMapping({"id": "id", "customer_id": "c"}, secret="k",
                                        timestamp_header="X-Ts"), "X-Signature"),
]


@pytest.mark.parametrize(("name", "make", "header_name"), SIGNED_SOURCES, ids=[s[0] for s in SIGNED_SOURCES])
@settings(max_examples=100, deadline=None)
@given(value=st.text(max_size=80), stamp=st.text(max_size=14), raw=st.binary(max_size=64))
def test_mangled_signatures_are_signature_invalid(
    name: str, make: Callable[[], Any], header_name: str, value: str, stamp: str, raw: bytes
) -> None:
    """Any signature header value (or timestamp) that is not the tool's is SignatureInvalid, never a crash."""
    assume(value.strip() != "k")  # the shared token itself, for the token-guarded tools
    with pytest.raises(SignatureInvalid):
        make().parse(raw, {header_name: value, "X-Ts": stamp, "Sm-Apikey": "c"})
