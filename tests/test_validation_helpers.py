"""The shared validators of closeloop.validate, and the entry points that now use them.

Each entry point below used to write its own ``bool``/``int``/timedelta/callable check;
these tests pin that each still refuses bad values with an InvalidInput naming its
field, now through the one helper.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from closeloop import CloseLoop, ConcurrentUpdate, InvalidInput, SurveyResponse
from closeloop.intake import Dedupe
from closeloop.model import ResponseRecord
from closeloop.notify import MemoryNotifier
from closeloop.notify.smtp import SmtpNotifier
from closeloop.notify.webhook import WebhookNotifier
from closeloop.onetouch import OneTouch
from closeloop.predicates import predicate
from closeloop.routing import FunctionRouter
from closeloop.sources import JsonMapping, webhook_app
from closeloop.storage import Change, MemoryStore, ResponseUpdate, SQLiteStore
from closeloop.testing import make_case
from closeloop.triggers import Trigger, nps_between
from closeloop.validate import check_seconds

KEY = "validation-test-key-0123456789abcdefghijklmnopqrstuvwxyz"


class TestCheckSeconds:
    """check_seconds: a timeout, as a float."""

    @pytest.mark.parametrize("value", [1, 0.5, 30.0])
    def test_accepts_positive_numbers_as_float(self, value: float) -> None:
        """Ints and floats above zero come back as floats."""
        assert check_seconds("timeout", value) == float(value)
        assert isinstance(check_seconds("timeout", value), float)

    @pytest.mark.parametrize("value", [0, -1, True, math.nan, math.inf, "5", None])
    def test_refuses_everything_else(self, value: Any) -> None:
        """Zero, negatives, bools, NaN, infinity and strings are refused, naming the field."""
        with pytest.raises(InvalidInput, match="must be a positive number of seconds") as raised:
            check_seconds("timeout", value)
        assert raised.value.field == "timeout"

    def test_zero_when_allowed(self) -> None:
        """allow_zero accepts 0 and still refuses negatives."""
        assert check_seconds("timeout", 0, allow_zero=True) == 0.0
        with pytest.raises(InvalidInput, match="non-negative"):
            check_seconds("timeout", -0.1, allow_zero=True)


ENTRY_POINTS: list[tuple[str, Callable[[Path], object]]] = [
    ("timeout", lambda tmp: SQLiteStore(tmp / "x.db", timeout=True)),
    ("timeout", lambda tmp: SQLiteStore(tmp / "x.db", timeout=math.nan)),
    ("port", lambda tmp: SmtpNotifier(port=0, sender="cx@example.test")),
    ("port", lambda tmp: SmtpNotifier(port=True, sender="cx@example.test")),
    ("timeout", lambda tmp: SmtpNotifier(sender="cx@example.test", timeout=0,
                                        address_of={"alice": "alice@example.test"})),
    ("timeout", lambda tmp: WebhookNotifier("https://hooks.example.test/x", timeout=math.inf)),
    ("clock", lambda tmp: WebhookNotifier("https://hooks.example.test/x", clock="now")),  # type: ignore[arg-type]
    ("max_age", lambda tmp: OneTouch(secret_key=KEY, base_url="https://crm.example/ot",
                                     max_age=timedelta(0))),
    ("dedupe", lambda tmp: Dedupe.reopen_within(timedelta(seconds=-1))),
    ("tolerance", lambda tmp: JsonMapping({"id": "id", "customer_id": "c"}, tolerance=timedelta(0))),
    ("mapping.signature.tolerance_seconds", lambda tmp: JsonMapping.from_data(
        {"fields": {"id": "id", "customer_id": "c"}, "signature": {"tolerance_seconds": True}})),
    ("max_body", lambda tmp: webhook_app(CloseLoop(), JsonMapping({"id": "id", "customer_id": "c"}),
                                         max_body=0)),
    ("contact_requested", lambda tmp: SurveyResponse(id="r", customer_id="c", contact_requested=1)),  # type: ignore[arg-type]
    ("version", lambda tmp: make_case(version=True)),
    ("version", lambda tmp: make_case(version=0)),
    ("predicate", lambda tmp: predicate("not callable")),  # type: ignore[arg-type]
    ("function", lambda tmp: FunctionRouter("not callable")),  # type: ignore[arg-type]
]


@pytest.mark.parametrize(("field", "build"), ENTRY_POINTS,
                         ids=[f"{field}-{n}" for n, (field, _) in enumerate(ENTRY_POINTS)])
def test_entry_points_refuse_bad_values_naming_the_field(
    tmp_path: Path, field: str, build: Callable[[Path], object]
) -> None:
    """Each entry point refuses a bad number, duration, flag or callable with its field's name."""
    with pytest.raises(InvalidInput) as raised:
        build(tmp_path)
    assert raised.value.field == field


class AlwaysRaced(MemoryStore):
    """A store on which another process wins every commit (as a very busy customer's case would)."""

    def commit_many(self, changes: Sequence[Change], ignored: Sequence[ResponseRecord] = (),
                    updated: Sequence[ResponseUpdate] = ()) -> None:
        if changes:
            raise ConcurrentUpdate("case-busy", 3, 4)
        super().commit_many(changes, ignored, updated)


def test_ingest_that_keeps_losing_names_the_case_not_the_response() -> None:
    """An ingest that loses every retry raises the last conflict, naming the case, not the response."""
    loop = CloseLoop(store=AlwaysRaced(), notifier=MemoryNotifier(),
                     triggers=[Trigger("detractor", nps_between(0, 6))])
    with pytest.raises(ConcurrentUpdate) as raised:
        loop.ingest(SurveyResponse(id="r-1", customer_id="c-1", score=2))
    assert (raised.value.case_id, raised.value.expected, raised.value.actual) == ("case-busy", 3, 4)
    assert raised.value.response_id is None


def test_a_response_recorded_twice_names_the_response() -> None:
    """A change recording a response id already recorded raises ConcurrentUpdate with response_id."""
    from closeloop.testing import make_record, opened_change

    store = MemoryStore()
    store.record_responses([make_record("r-1")])
    with pytest.raises(ConcurrentUpdate) as raised:
        store.commit(Change(case=make_case("c"), expected_version=None,
                            events=opened_change(make_case("c")).events,
                            responses=(make_record("r-1", "c"),)))
    assert (raised.value.response_id, raised.value.case_id) == ("r-1", "c")
