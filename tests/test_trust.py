"""Regressions for issue 14's review: every argument bounded, every stored value readable.

Each test here failed on the main branch the review was made against: an
out-of-range datetime accepted and then breaking every read, ``via`` stored
unchecked, ``ingest_many`` counting another process's responses as its own,
one-touch confirmations applied after A → B → A, and the order of the token
checks.
"""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from closeloop import (
    CloseLoop,
    ConcurrentUpdate,
    InvalidInput,
    Status,
    StatusChanged,
    StoreError,
    SurveyResponse,
    TokenUsed,
)
from closeloop.notify import MemoryNotifier
from closeloop.onetouch import OneTouch
from closeloop.storage import SQLiteStore, Store
from closeloop.testing import FixedClock
from closeloop.triggers import Trigger, nps_between
from closeloop.validate import MAX_DURATION, MAX_INSTANT, MIN_INSTANT

SECRET = "a secret for the trust tests, 32 bytes or more"
#: An aware datetime whose UTC value is past datetime.max: 9999-12-31T23:00-23:59.
BEYOND_UTC = datetime(9999, 12, 31, 23, 0, tzinfo=timezone(-timedelta(hours=23, minutes=59)))


def dump(store: Store) -> Any:
    """Everything a store holds that the API can read, for before/after comparisons."""
    cases = store.query_cases() if hasattr(store, "query_cases") else []
    return ([(case, store.history(case.id)) for case in cases], store.pending_notices(),
            store.responses([f"r-{i}" for i in range(10)]))


class TestDatetimesAreBounded:
    """A datetime the store could not hold (or add an SLA to) is refused at the door."""

    @pytest.mark.parametrize("when", [
        BEYOND_UTC,
        datetime(1, 1, 1, 0, 0, tzinfo=timezone(timedelta(hours=23))),
        datetime(9999, 12, 30, tzinfo=UTC),
        MAX_INSTANT + timedelta(microseconds=1),
        MIN_INSTANT - timedelta(microseconds=1),
    ])
    def test_due_at_out_of_range_is_refused_and_reads_keep_working(
        self, loop: CloseLoop, store: Store, when: datetime
    ) -> None:
        """due_at outside the documented range: InvalidInput naming due_at; cases() still reads."""
        loop.open_case("c-1", by="agent")
        before = dump(store)
        with pytest.raises(InvalidInput, match="due_at"):
            loop.open_case("c-2", by="agent", due_at=when)
        assert dump(store) == before
        assert [case.customer_id for case in loop.cases()] == ["c-1"]

    def test_submitted_at_out_of_range_is_refused(self) -> None:
        """A response whose submitted_at lies outside the range cannot even be built."""
        with pytest.raises(InvalidInput, match="submitted_at"):
            SurveyResponse(id="r-1", customer_id="c-1", score=1, submitted_at=BEYOND_UTC)

    def test_latest_submission_plus_longest_sla_does_not_overflow(self, store: Store) -> None:
        """The latest accepted submitted_at plus the longest due_in opens a case with that due date."""
        loop = CloseLoop(store=store, triggers=[Trigger("d", nps_between(0, 6), due_in=MAX_DURATION)])
        case = loop.ingest(SurveyResponse(id="r-1", customer_id="c-1", score=1,
                                          submitted_at=MAX_INSTANT))
        assert case is not None and case.due_at == MAX_INSTANT + MAX_DURATION
        assert loop.get(case.id).due_at == case.due_at
        assert loop.cases() == [loop.get(case.id)]

    @pytest.mark.parametrize("due_in", [MAX_DURATION + timedelta(seconds=1), timedelta.max])
    def test_longer_than_the_longest_sla_is_refused(self, due_in: timedelta) -> None:
        """A trigger's due_in over 100 years is refused when the trigger is made."""
        with pytest.raises(InvalidInput, match="due_in"):
            Trigger("d", nps_between(0, 6), due_in=due_in)

    def test_report_bounds_are_checked(self, loop: CloseLoop) -> None:
        """report(since=…) beyond the range is an InvalidInput naming since, not an OverflowError."""
        with pytest.raises(InvalidInput, match="since"):
            loop.report(since=BEYOND_UTC)

    def test_clock_out_of_range_is_refused(self, store: Store) -> None:
        """A clock returning a datetime outside the range makes calls fail with InvalidInput (clock)."""
        loop = CloseLoop(store=store, clock=lambda: BEYOND_UTC)
        with pytest.raises(InvalidInput, match="clock"):
            loop.open_case("c-1", by="agent")
        assert loop.cases() == []


class TestViaIsChecked:
    """``set_status(via=…)`` is a short label, checked like an id."""

    @pytest.mark.parametrize("via", [
        "one\r\ntouch", "nul\x00", "x" * 1_000_000, 7, b"raw", "\ud800", "", " padded ",
    ])
    def test_bad_via_is_refused_and_nothing_is_written(
        self, loop: CloseLoop, store: Store, via: Any
    ) -> None:
        """CRLF, NUL, 1 MB, an int, bytes, a lone surrogate, blank or padded: InvalidInput naming via."""
        case = loop.open_case("c-1", by="agent")
        before = dump(store)
        with pytest.raises(InvalidInput, match="via"):
            loop.set_status(case.id, Status.PROGRESS, by="agent", via=via)
        assert dump(store) == before
        assert [event.kind for event in loop.history(case.id)] == ["opened"]

    def test_a_good_via_is_recorded(self, loop: CloseLoop) -> None:
        """A plain label is kept on the status-change event."""
        case = loop.open_case("c-1", by="agent")
        loop.set_status(case.id, Status.PROGRESS, by="agent", via="phone-app")
        assert loop.history(case.id)[-1].via == "phone-app"


class TestLimitsAreBounded:
    """Integers that no database could take are refused, not overflowed."""

    @pytest.mark.parametrize("call", [
        lambda loop: loop.cases(limit=2**63),
        lambda loop: loop.deliver_pending(2**63),
        lambda loop: loop.escalate(limit=2**63),
        lambda loop: loop.ingest_many([], batch_size=2**63),
    ])
    def test_huge_limits_are_invalid_input(self, loop: CloseLoop, call: Any) -> None:
        """A limit of 2**63 is an InvalidInput, never a raw OverflowError."""
        with pytest.raises(InvalidInput):
            call(loop)


class TestDamagedRowsSurfaceAsStoreError:
    """A row the codec cannot convert is a StoreError, never a raw OverflowError or ValueError."""

    @pytest.mark.parametrize(("column", "value"), [
        ("due_at", 2**62), ("opened_at", -(2**62)), ("reasons", "{not json"),
    ])
    def test_damaged_case_row(self, tmp_path: Path, column: str, value: object) -> None:
        """A case row damaged behind closeloop's back makes get() and cases() raise StoreError."""
        path = tmp_path / "damaged.db"
        loop = CloseLoop(store=SQLiteStore(path))
        case = loop.open_case("c-1", by="agent")
        with sqlite3.connect(path) as db:
            db.execute(f"UPDATE cases SET {column} = ? WHERE id = ?", (value, case.id))
        with pytest.raises(StoreError):
            loop.get(case.id)
        with pytest.raises(StoreError):
            loop.cases()
        loop.store.close()


class RacingStore(SQLiteStore):
    """A SQLiteStore that lets "another process" ingest right after the dedupe read.

    The other process is a second loop on its own connection to the same file,
    so the interleaving that lost the count happens deterministically.
    """

    def __init__(self, path: Path, rival: list[SurveyResponse]) -> None:
        super().__init__(path)
        self.rival = rival

    def responses(self, response_ids: Any) -> Any:
        """Read as usual, then let the rival ingest its responses before we write."""
        seen = super().responses(response_ids)
        if self.rival:
            other = CloseLoop(store=SQLiteStore(self.path), triggers=RULES)
            other.ingest_many(self.rival)
            other.store.close()
            self.rival = []
        return seen


RULES = [Trigger("detractor", nps_between(0, 6))]


class TestExactSummaries:
    """``ingest_many`` and ``ingest_outcome`` report what their own transaction wrote."""

    def batch(self) -> list[SurveyResponse]:
        """Three detractors and three promoters from six customers."""
        return [SurveyResponse(id=f"r-{i}", customer_id=f"c-{i}", score=1 if i < 3 else 9)
                for i in range(6)]

    def test_ingest_many_does_not_count_another_process_s_responses(self, tmp_path: Path) -> None:
        """Another process ingests the same batch between our read and our write: we count duplicates."""
        batch = self.batch()
        store = RacingStore(tmp_path / "race.db", rival=batch)
        loop = CloseLoop(store=store, triggers=RULES)
        summary = loop.ingest_many(batch)
        assert (summary.opened, summary.attached, summary.ignored, summary.duplicates) == (0, 0, 0, 6)
        assert len(loop.cases()) == 3
        store.close()

    def test_ingest_outcome_of_an_ignored_response_another_process_took(self, tmp_path: Path) -> None:
        """A promoter recorded by another process meanwhile is a "duplicate", not "ignored"."""
        promoter = SurveyResponse(id="r-9", customer_id="c-9", score=10)
        store = RacingStore(tmp_path / "race.db", rival=[promoter])
        loop = CloseLoop(store=store, triggers=RULES)
        assert loop.ingest_outcome(promoter).kind == "duplicate"
        store.close()

    def test_a_recorded_response_fails_the_whole_batch(self, store: Store) -> None:
        """commit_many with an ignored response id already recorded raises ConcurrentUpdate naming it."""
        loop = CloseLoop(store=store, triggers=RULES)
        loop.ingest(SurveyResponse(id="r-1", customer_id="c-1", score=9))
        fresh = loop.ingest_many([SurveyResponse(id="r-2", customer_id="c-2", score=9)])
        assert fresh.ignored == 1
        record = store.responses(["r-1"])["r-1"]
        with pytest.raises(ConcurrentUpdate) as raised:
            store.commit_many([], [record])
        assert raised.value.response_id == "r-1" and raised.value.case_id is None


@pytest.fixture
def one_touch_loop(store: Store, clock: FixedClock) -> CloseLoop:
    """A loop with one-touch links (24 h), a case assigned to alice."""
    return CloseLoop(store=store, notifier=MemoryNotifier(), clock=clock,
                     one_touch=OneTouch(SECRET, base_url="https://crm.example/one-touch"))


def link_token(loop: CloseLoop, case_id: str) -> str:
    """The token of the case's one-touch link."""
    (token,) = parse_qs(urlsplit(loop.one_touch.link(case_id)).query)["token"]
    return token


class TestOneTouchConfirmations:
    """A confirmation acts only on the case as it was prepared, and says Used before Expired."""

    def test_a_to_b_to_a_is_refused_and_the_link_stays_usable(self, one_touch_loop: CloseLoop) -> None:
        """Open → Progress → Open between prepare and confirm: ConcurrentUpdate; the link still works."""
        loop = one_touch_loop
        case = loop.assign(loop.open_case("c-1", by="agent").id, to="alice", by="bob")
        token = link_token(loop, case.id)
        pending = loop.one_touch.prepare(token, status=Status.CLOSED, comment="Refunded")
        loop.set_status(case.id, Status.PROGRESS, by="bob")
        loop.set_status(case.id, Status.OPEN, by="bob")
        with pytest.raises(ConcurrentUpdate):
            loop.one_touch.confirm(pending.token)
        assert loop.get(case.id).status is Status.OPEN
        again = loop.one_touch.prepare(token, status=Status.CLOSED, comment="Refunded after all")
        loop.one_touch.confirm(again.token)
        changes = [e for e in loop.history(case.id) if isinstance(e, StatusChanged)]
        assert [(e.to_status, e.via) for e in changes] == [
            (Status.PROGRESS, None), (Status.OPEN, None), (Status.CLOSED, "one-touch")]

    def test_used_and_expired_says_used(self, one_touch_loop: CloseLoop, clock: FixedClock) -> None:
        """A used link (and its confirmation) opened after it also expired raises TokenUsed."""
        loop = one_touch_loop
        case = loop.assign(loop.open_case("c-1", by="agent").id, to="alice", by="bob")
        token = link_token(loop, case.id)
        pending = loop.one_touch.prepare(token, status=Status.CLOSED, comment="Refunded")
        loop.one_touch.confirm(pending.token)
        clock.advance(timedelta(days=30))
        with pytest.raises(TokenUsed):
            loop.one_touch.open(token)
        with pytest.raises(TokenUsed):
            loop.one_touch.confirm(pending.token)


class TestOneTouchPagesHardening:
    """The pages refuse cross-site POSTs, redirect after confirm, and tokens stay out of URLs."""

    @pytest.fixture
    def app(self, one_touch_loop: CloseLoop) -> Any:
        """The one-touch pages of a loop with one case assigned to alice."""
        from closeloop.onetouch import wsgi_app

        return wsgi_app(one_touch_loop)

    @pytest.fixture
    def token(self, one_touch_loop: CloseLoop) -> str:
        """The token of alice's link to a fresh case."""
        loop = one_touch_loop
        case = loop.assign(loop.open_case("c-1", by="agent").id, to="alice", by="bob")
        return link_token(loop, case.id)

    @pytest.mark.parametrize("headers", [
        {"HTTP_SEC_FETCH_SITE": "cross-site"},
        {"HTTP_SEC_FETCH_SITE": "same-site"},
        {"HTTP_ORIGIN": "https://evil.example"},
    ])
    def test_cross_site_post_is_refused(self, app: Any, one_touch_loop: CloseLoop, token: str,
                                        headers: dict[str, str]) -> None:
        """A POST another site made (Sec-Fetch-Site, else Origin) gets 403 and changes nothing."""
        from test_onetouch_pages import call

        page = call(app, "POST", form={"action": "prepare", "token": token, "status": "closed",
                                       "comment": "forged"}, headers=headers)
        assert page.status == 403 and "another site" in page.text
        (case,) = one_touch_loop.cases()
        assert case.status is Status.OPEN and case.version == 2

    @pytest.mark.parametrize("headers", [
        {"HTTP_SEC_FETCH_SITE": "same-origin"},
        {"HTTP_SEC_FETCH_SITE": "none"},
        {"HTTP_ORIGIN": "https://crm.example"},
        {"HTTP_ORIGIN": "null"},
        {},
    ])
    def test_same_origin_post_is_served(self, app: Any, token: str, headers: dict[str, str]) -> None:
        """A POST from the page itself (or with no browser hints) reaches the confirm step."""
        from test_onetouch_pages import call

        page = call(app, "POST", form={"action": "prepare", "token": token, "status": "closed",
                                       "comment": "fine"}, headers=headers)
        assert page.status == 200 and "Confirm the change" in page.text

    def test_confirm_answers_with_a_redirect(self, app: Any, one_touch_loop: CloseLoop,
                                             token: str) -> None:
        """Confirm is answered 303 to a GET done page, so Back and reload never post it again."""
        from test_onetouch_pages import call, confirmation_of, prepare

        confirmation = confirmation_of(prepare(app, token))
        redirect = call(app, "POST", form={"action": "confirm", "confirmation": confirmation})
        assert redirect.status == 303
        location = urlsplit(redirect.headers["location"])
        assert "done=" in location.query and "token=" not in location.query
        done = call(app, query=location.query)
        assert done.status == 200 and "Done" in done.text
        assert call(app, query=location.query).status == 200  # a reload repeats nothing
        (case,) = one_touch_loop.cases()
        assert case.status is Status.CLOSED and case.version == 3

    def test_middleware_takes_the_token_out_of_every_logged_url(
        self, one_touch_loop: CloseLoop, token: str
    ) -> None:
        """redact_tokens rewrites QUERY_STRING, RAW_URI, REQUEST_URI and Referer; the page still works."""
        from closeloop.onetouch import redact_tokens, wsgi_app
        from test_onetouch_pages import call

        seen: dict[str, Any] = {}
        pages = wsgi_app(one_touch_loop)

        def spy(environ: dict[str, Any], start_response: Any) -> Any:
            seen.update(environ)
            return pages(environ, start_response)

        app = redact_tokens(spy)
        uri = f"/one-touch?lang=en&token={token}"
        page = call(app, query=f"lang=en&token={token}", headers={  # type: ignore[arg-type]
            "RAW_URI": uri, "REQUEST_URI": uri, "HTTP_REFERER": f"https://mail.example{uri}#top"})
        assert page.status == 200 and "Update case" in page.text
        logged = [seen["QUERY_STRING"], seen["RAW_URI"], seen["REQUEST_URI"], seen["HTTP_REFERER"]]
        assert all(token not in value and "token=REDACTED" in value for value in logged)
        assert seen["HTTP_REFERER"].endswith("#top") and "lang=en" in seen["QUERY_STRING"]
