"""Case lists through the facade: loop.page, loop.count, the cursor, and bad arguments.

The stores' answers themselves are held to the reference by the store contract
(closeloop.testing.query_contract); these tests cover what the facade adds: the
cursor, the page size, the clock, and InvalidInput for every bad argument.
"""

from __future__ import annotations

import base64
from datetime import datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from closeloop import UNASSIGNED, CaseQuery, CloseLoop, InvalidInput, Priority, Status
from closeloop.query import MAX_PAGE_SIZE, SORTS
from closeloop.testing import FixedClock


def open_cases(loop: CloseLoop, clock: FixedClock, count: int, **fields: Any) -> list[str]:
    """Open ``count`` cases a minute apart; returns their ids in opening order."""
    ids = []
    for number in range(count):
        clock.advance(minutes=1)
        ids.append(loop.open_case(f"cust-{number}", by="agent", **fields).id)
    return ids


def every_page(loop: CloseLoop, query: CaseQuery, size: int) -> list[list[str]]:
    """The ids of each page, following next_cursor to the end."""
    pages, after = [], None
    while True:
        page = loop.page(query, after=after, size=size)
        pages.append([case.id for case in page.cases])
        if page.next_cursor is None:
            return pages
        after = page.next_cursor


class TestPages:
    """loop.page lists a query page by page."""

    def test_pages_follow_each_other_to_the_end(self, loop: CloseLoop, clock: FixedClock) -> None:
        """Pages of 3 over 7 cases hold 3, 3, 1 cases in order; the last has no cursor."""
        ids = open_cases(loop, clock, 7)
        assert every_page(loop, CaseQuery(), 3) == [ids[0:3], ids[3:6], ids[6:]]

    def test_an_exact_last_page_has_no_cursor(self, loop: CloseLoop, clock: FixedClock) -> None:
        """When the cases fill the last page exactly, it says so: no empty page follows."""
        ids = open_cases(loop, clock, 4)
        assert every_page(loop, CaseQuery(sort="-opened"), 2) == [ids[:1:-1], ids[1::-1]]
        assert loop.page(CaseQuery(), size=50).next_cursor is None

    def test_no_query_is_every_case_oldest_first(self, loop: CloseLoop, clock: FixedClock) -> None:
        """loop.page() with no query lists every case, oldest opened first, 50 to a page."""
        ids = open_cases(loop, clock, 3)
        assert [case.id for case in loop.page().cases] == ids

    def test_cases_added_meanwhile_do_not_shift_the_pages(self, loop: CloseLoop,
                                                          clock: FixedClock) -> None:
        """A case added before the cursor is not listed; one added after it is, no case twice."""
        ids = open_cases(loop, clock, 4)
        first = loop.page(CaseQuery(sort="-opened"), size=2)
        assert [case.id for case in first.cases] == ids[:1:-1]
        later = open_cases(loop, clock, 1)  # newest: sorts before the cursor under -opened
        rest = loop.page(CaseQuery(sort="-opened"), after=first.next_cursor, size=10)
        assert [case.id for case in rest.cases] == ids[1::-1]
        assert later[0] not in [case.id for case in rest.cases]

    def test_overdue_is_judged_at_the_loops_clock(self, loop: CloseLoop, clock: FixedClock) -> None:
        """A case is overdue from its due time on (due exactly now counts), and never once Closed."""
        due = clock() + timedelta(hours=1)
        case = loop.open_case("cust", by="agent", due_at=due)
        overdue = CaseQuery(overdue=True)
        assert loop.page(overdue).cases == ()
        clock.advance(hours=1)
        assert [c.id for c in loop.page(overdue).cases] == [case.id]
        assert loop.count(overdue).total == 1
        loop.set_status(case.id, "closed", by="agent", comment="done")
        assert loop.page(overdue).cases == ()


class TestCounts:
    """loop.count counts a query's cases per status, and per assignee on request."""

    def test_counts_per_status_and_assignee(self, loop: CloseLoop, clock: FixedClock) -> None:
        """Every status is present; by_assignee is filled only on request, None for unassigned."""
        first, second, third = open_cases(loop, clock, 3)
        loop.assign(first, to="alice", by="boss")
        loop.assign(second, to="alice", by="boss")
        loop.set_status(second, Status.PROGRESS, by="alice")
        counts = loop.count()
        assert counts.by_status == {Status.OPEN: 2, Status.PROGRESS: 1, Status.CLOSED: 0}
        assert (counts.total, counts.by_assignee) == (3, {})
        people = loop.count(CaseQuery(status=["open", "progress"]), by_assignee=True).by_assignee
        assert people == {"alice": {Status.OPEN: 1, Status.PROGRESS: 1, Status.CLOSED: 0},
                          None: {Status.OPEN: 1, Status.PROGRESS: 0, Status.CLOSED: 0}}
        assert loop.count(CaseQuery(assignee=UNASSIGNED, sort="-due")).total == 1
        assert third in [case.id for case in loop.page(CaseQuery(assignee=UNASSIGNED)).cases]


class TestCursor:
    """The cursor continues its own query only, and refuses anything it did not make."""

    @pytest.fixture
    def cursor(self, loop: CloseLoop, clock: FixedClock) -> str:
        """The cursor after the first of three pages of (assignee=alice, sort=-priority)."""
        for case_id in open_cases(loop, clock, 5, priority="high"):
            loop.assign(case_id, to="alice", by="boss")
        cursor = loop.page(CaseQuery(assignee="alice", sort="-priority"), size=2).next_cursor
        assert cursor is not None
        return cursor

    @pytest.mark.parametrize("other", [
        CaseQuery(assignee="alice"),
        CaseQuery(assignee="alice", sort="priority"),
        CaseQuery(assignee="bob", sort="-priority"),
        CaseQuery(sort="-priority"),
        CaseQuery(assignee="alice", sort="-priority", status="open"),
    ])
    def test_a_cursor_from_another_query_is_refused(self, loop: CloseLoop, cursor: str,
                                                    other: CaseQuery) -> None:
        """Another sort or any other filter makes the cursor InvalidInput (field "after")."""
        with pytest.raises(InvalidInput, match="another query") as raised:
            loop.page(other, after=cursor)
        assert raised.value.field == "after"

    def test_the_same_query_built_again_continues(self, loop: CloseLoop, cursor: str) -> None:
        """An equal query (built anew, statuses in another order) continues the cursor."""
        page = loop.page(CaseQuery(assignee="alice", sort="-priority"), after=cursor, size=2)
        assert len(page.cases) == 2 and page.next_cursor is not None

    def test_a_cursor_is_plain_url_safe_text(self, cursor: str) -> None:
        """The cursor fits in a URL query string as it is."""
        assert cursor.isascii() and all(ch.isalnum() or ch in "-_." for ch in cursor)

    @settings(max_examples=200, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(position=st.integers(0, 10_000), replacement=st.characters(codec="ascii"))
    def test_an_edited_cursor_is_refused(self, loop: CloseLoop, cursor: str, position: int,
                                         replacement: str) -> None:
        """Any one character changed makes the cursor InvalidInput (field "after")."""
        index = position % len(cursor)
        edited = cursor[:index] + replacement + cursor[index + 1:]
        if edited == cursor:
            return
        with pytest.raises(InvalidInput) as raised:
            loop.page(CaseQuery(assignee="alice", sort="-priority"), after=edited)
        assert raised.value.field == "after"

    @pytest.mark.parametrize("bad", [
        "", "x", "not-a-cursor", ".", "a.b", "é.é", 42, None, b"bytes", "A" * 2000,
        base64.urlsafe_b64encode(b'[1,"x",[]]').decode() + ".AAAAAAAAAAA",
    ])
    def test_anything_else_is_refused(self, loop: CloseLoop, cursor: str, bad: Any) -> None:
        """Garbage, truncation, wrong types and forged payloads are InvalidInput, never a crash."""
        query = CaseQuery(assignee="alice", sort="-priority")
        if bad is None:  # None is the first page, not a cursor
            assert len(loop.page(query, after=bad, size=2).cases) == 2
            return
        with pytest.raises(InvalidInput) as raised:
            loop.page(query, after=bad)
        assert raised.value.field == "after"
        with pytest.raises(InvalidInput):
            loop.page(query, after=cursor[:-3])


class TestBadInput:
    """Every argument is checked: InvalidInput names the field, and nothing is read."""

    @pytest.mark.parametrize(("filters", "field"), [
        ({"assignee": ""}, "assignee"),
        ({"assignee": "a\nb"}, "assignee"),
        ({"assignee": 7}, "assignee"),
        ({"status": "done"}, "status"),
        ({"status": []}, "status"),
        ({"status": ["open", "nope"]}, "status"),
        ({"status": {"open": 1}}, "status"),
        ({"status": 3}, "status"),
        ({"priority": "critical"}, "priority"),
        ({"reason": ""}, "reason"),
        ({"customer_id": 5}, "customer_id"),
        ({"overdue": "yes"}, "overdue"),
        ({"overdue": 1}, "overdue"),
        ({"due_before": datetime(2026, 1, 1)}, "due_before"),  # naive: refused
        ({"opened_since": "2026-01-01"}, "opened_since"),
        ({"opened_since": datetime.fromisoformat("2026-01-02T00:00+00:00"),
          "opened_until": datetime.fromisoformat("2026-01-01T00:00+00:00")}, "opened_until"),
        ({"text": ""}, "text"),
        ({"text": "   "}, "text"),
        ({"text": "x" * 201}, "text"),
        ({"text": "a\x00b"}, "text"),
        ({"text": "\ud800"}, "text"),
        ({"text": 5}, "text"),
        ({"sort": "name"}, "sort"),
        ({"sort": "--due"}, "sort"),
        ({"sort": None}, "sort"),
    ])
    def test_bad_filters_name_their_field(self, filters: dict[str, Any], field: str) -> None:
        """A bad filter or sort raises InvalidInput whose field names it."""
        with pytest.raises(InvalidInput) as raised:
            CaseQuery(**filters)
        assert raised.value.field == field

    @pytest.mark.parametrize("size", [0, -1, MAX_PAGE_SIZE + 1, True, 2.5, "10"])
    def test_bad_page_sizes(self, loop: CloseLoop, size: Any) -> None:
        """size must be an integer from 1 to MAX_PAGE_SIZE."""
        with pytest.raises(InvalidInput) as raised:
            loop.page(size=size)
        assert raised.value.field == "size"

    @pytest.mark.parametrize("query", [{"assignee": "alice"}, "assignee=alice", 5])
    def test_a_query_must_be_a_case_query(self, loop: CloseLoop, query: Any) -> None:
        """page and count take a CaseQuery (or None), nothing else."""
        for call in (loop.page, loop.count):
            with pytest.raises(InvalidInput) as raised:
                call(query)
            assert raised.value.field == "query"

    def test_by_assignee_must_be_a_bool(self, loop: CloseLoop) -> None:
        """count(by_assignee=...) takes True or False only."""
        with pytest.raises(InvalidInput) as raised:
            loop.count(by_assignee="yes")  # type: ignore[arg-type]
        assert raised.value.field == "by_assignee"


class TestQueryValues:
    """CaseQuery holds its filters in one canonical form."""

    def test_one_value_and_a_collection_mean_the_same(self) -> None:
        """status="open", [Status.OPEN] and {"OPEN"} are one query; so are priorities."""
        assert CaseQuery(status="open") == CaseQuery(status=[Status.OPEN]) == CaseQuery(status={"OPEN"})
        assert CaseQuery(priority=["high", "low"]) == CaseQuery(priority=(Priority.LOW, "HIGH"))
        assert CaseQuery(status=["open", "progress"]).fingerprint() == \
            CaseQuery(status=["progress", "open"]).fingerprint()

    def test_every_field_changes_the_fingerprint(self) -> None:
        """Queries that differ in any one field have different fingerprints."""
        at = datetime.fromisoformat("2026-01-01T00:00+00:00")
        variants = [CaseQuery(), CaseQuery(assignee="alice"), CaseQuery(assignee=UNASSIGNED),
                    CaseQuery(assignee="UNASSIGNED"), CaseQuery(status="open"),
                    CaseQuery(priority="low"), CaseQuery(reason="r"), CaseQuery(customer_id="c"),
                    CaseQuery(overdue=True), CaseQuery(overdue=False), CaseQuery(due_before=at),
                    CaseQuery(opened_since=at), CaseQuery(opened_until=at), CaseQuery(text="t")]
        variants += [CaseQuery(sort=sort) for sort in SORTS[1:]]
        assert len({query.fingerprint() for query in variants}) == len(variants)


JUNK = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True), st.text(max_size=30),
    st.binary(max_size=10), st.lists(st.text(max_size=5), max_size=3),
    st.dictionaries(st.text(max_size=5), st.integers(), max_size=2),
    st.datetimes(), st.sampled_from(["open", "Closed", "urgent", "-due", "\ud800", "\x00", " "]),
)
FIELDS = ["assignee", "status", "priority", "reason", "customer_id", "overdue", "due_before",
          "opened_since", "opened_until", "text", "sort"]


@settings(max_examples=300)
@given(field=st.sampled_from(FIELDS), value=JUNK, after=st.one_of(JUNK, st.text()))
def test_junk_is_refused_as_invalid_input_only(field: str, value: Any, after: Any) -> None:
    """Anything for any filter, and anything as a cursor: a query, or InvalidInput naming it."""
    loop = CloseLoop()
    refused: InvalidInput | None = None
    try:
        query = CaseQuery(**{field: value})
    except InvalidInput as error:
        refused, query = error, CaseQuery()
    assert refused is None or refused.field == field
    assert loop.count(query).total == 0
    if after is None:
        return
    with pytest.raises(InvalidInput) as raised:
        loop.page(query, after=after)
    assert raised.value.field == "after"
