"""The case-list part of the store contract: every filter, every order, pages and counts.

:class:`QueryContract` is one of :class:`~closeloop.testing.StoreContract`'s bases, so
a store that runs the store contract runs these too. A store that inherits
``find_page`` and ``count_cases`` from :class:`~closeloop.storage.BaseStore` passes
them by construction; a store that overrides them for speed (as the SQL stores do)
is held here to the same answers:

- small hand-checked cases for each filter, each order and each count;
- a hypothesis test that lists random queries page by page and compares the pages
  with a plain Python filter and sort over every stored case, written out here
  independently of :mod:`closeloop.query`;
- for stores that decode rows, :class:`CorruptedRowContract`: a row changed behind
  the store's back must read as :class:`~closeloop.errors.StoreError`, never as a
  wrong Case.
"""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import attrs
import pytest
from attrs import evolve
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from closeloop.errors import InvalidInput, StoreError
from closeloop.model import Case, Commented, Opened, Priority, Status
from closeloop.query import SORTS, UNASSIGNED, CaseQuery
from closeloop.storage.base import Change, Store

__all__ = ["CORRUPTIONS", "CorruptedRowContract", "QueryContract"]

T0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
H = timedelta(hours=1)
M = timedelta(minutes=1)
NOW = T0 + H

#: (id, assignee, status, priority, reasons, customer, opened, updated, due, comment)
#: with times in minutes (opened, updated) and hours (due) after T0. At NOW, "c" is
#: overdue and "e" is due exactly now, which counts as overdue; "b" is Closed.
SAMPLE: tuple[tuple[Any, ...], ...] = (
    ("a", "alice", Status.OPEN, Priority.HIGH, ("detractor",), "c1", 0, 5, 2, "Slow delivery"),
    ("b", "alice", Status.CLOSED, Priority.LOW, (), "c2", 1, 9, -1, None),
    ("c", None, Status.PROGRESS, Priority.URGENT, ("contact",), "c1", 2, 3, -2, "Refund please"),
    ("d", "bob", Status.OPEN, Priority.NORMAL, ("detractor", "contact"), "c3", 2, 2, None, "ÄRGER"),
    ("e", None, Status.OPEN, Priority.URGENT, (), "c2", 3, 4, 1, None),
)

#: (field, raw value) written into a stored case behind the store's back. None of them
#: is a value closeloop writes; the database may refuse it or coerce it, and whatever
#: it keeps must read back as StoreError or as a valid Case.
CORRUPTIONS: tuple[tuple[str, Any], ...] = (
    ("status", "done"), ("status", ""), ("status", 3), ("status", "closed"),
    ("priority", "URGENT"), ("priority", 2),
    ("assignee", ""), ("assignee", "   "), ("assignee", "a\nb"), ("assignee", "x" * 201),
    ("assignee", 7), ("assignee", b"alice"), ("customer_id", "\x00"), ("opened_by", ""),
    ("reasons", "not json"), ("reasons", '{"a": 1}'), ("reasons", '"abc"'), ("reasons", "[1]"),
    ("reasons", '[""]'), ("reasons", "[null]"), ("reasons", 5), ("reasons", [""]),
    ("reasons", [None]), ("response_ids", '["a\\nb"]'), ("response_ids", ["a\u2028b"]),
    ("version", 0), ("version", -1), ("version", "abc"), ("version", 1.5),
    ("opened_at", "yesterday"), ("opened_at", 1.5), ("updated_at", "x"), ("due_at", "soon"),
    ("closed_at", T0),
)


def _sample_case(spec: tuple[Any, ...]) -> Case:
    case_id, assignee, status, priority, reasons, customer, opened, updated, due, _ = spec
    return Case(
        id=case_id, customer_id=customer, status=status, opened_at=T0 + opened * M,
        updated_at=T0 + updated * M, opened_by="agent", version=1, assignee=assignee,
        reasons=reasons, priority=priority, due_at=None if due is None else T0 + due * H,
        closed_at=T0 + updated * M if status is Status.CLOSED else None,
    )


def _store_case(store: Store, case: Case, comment: str | None, later: str | None = None) -> None:
    """Commit ``case`` with its opening comment, then (if given) a later comment as version 2."""
    store.commit(Change(case=case, expected_version=None, events=[
        Opened(case_id=case.id, actor=case.opened_by, at=case.opened_at, seq=1, comment=comment)]))
    if later is not None:
        store.commit(Change(case=evolve(case, version=2), expected_version=1, events=[
            Commented(case_id=case.id, actor="agent", at=case.updated_at, seq=2, comment=later)]))


def _all_pages(store: Store, query: CaseQuery, size: int, now: datetime) -> list[Case]:
    """Every page of ``query`` in turn, each continuing after the last case of the one before."""
    listed: list[Case] = []
    while True:
        after = None if not listed else query.sort.position(listed[-1])
        page = store.find_page(query, now=now, after=after, limit=size)
        listed.extend(page)
        if len(page) < size:
            return listed
        assert len(listed) <= 10_000, "paging does not end"


# -- the plain Python statement of every filter and order, independent of closeloop.query --


def _fold(text: str) -> str:
    return "".join(chr(ord(ch) + 32) if "A" <= ch <= "Z" else ch for ch in text)


def _expected(cases: list[Case], comments: dict[str, list[str | None]], query: CaseQuery,
              now: datetime) -> list[Case]:
    def keep(case: Case) -> bool:
        overdue = (case.status is not Status.CLOSED and case.due_at is not None
                   and case.due_at <= now)
        checks = [
            query.assignee is None
            or (case.assignee is None if query.assignee is UNASSIGNED
                else case.assignee == query.assignee),
            query.status is None or case.status in query.status,
            query.custom_status is None or case.custom_status in query.custom_status,
            query.priority is None or case.priority in query.priority,
            query.reason is None or query.reason in case.reasons,
            query.customer_id is None or case.customer_id == query.customer_id,
            query.overdue is None or overdue == query.overdue,
            query.due_before is None or (case.due_at is not None and case.due_at < query.due_before),
            query.opened_since is None or case.opened_at >= query.opened_since,
            query.opened_until is None or case.opened_at < query.opened_until,
            query.text is None or any(c is not None and _fold(query.text) in _fold(c)
                                      for c in comments[case.id]),
        ]
        return all(checks)

    rank = {Priority.URGENT: 0, Priority.HIGH: 1, Priority.NORMAL: 2, Priority.LOW: 3}
    keys: dict[str, Callable[[Case], tuple[Any, ...]]] = {
        "opened": lambda c: (c.opened_at, c.id),
        "updated": lambda c: (c.updated_at, c.id),
        "due": lambda c: (c.due_at is None, c.due_at or T0, c.opened_at, c.id),
        "priority": lambda c: (rank[c.priority], c.opened_at, c.id),
    }
    return sorted(filter(keep, cases), key=keys[query.sort.name], reverse=query.sort.descending)


#: Makes every generated case id unique, across examples too.
_SERIAL = itertools.count()


@st.composite
def _stored_cases(draw: st.DrawFn) -> tuple[Case, str | None, str | None]:
    """A random case (unique id whose order varies), its opening comment and a later one."""
    status = draw(st.sampled_from(Status))
    # A team's own status on top of the category now and then (Workflow: "waiting" is a
    # Progress status, "archived" a Closed one).
    custom = draw(st.sampled_from([status.value, {Status.OPEN: "open", Status.PROGRESS: "waiting",
                                                  Status.CLOSED: "archived"}[status]]))
    opened = T0 + draw(st.integers(0, 4)) * M
    updated = opened + draw(st.integers(0, 3)) * M
    due = draw(st.none() | st.integers(-2, 2).map(lambda hours: T0 + hours * H))
    prefix = draw(st.sampled_from(["a", "B", "b", "é", "0", "a-"]))
    case = Case(
        id=f"{prefix}{next(_SERIAL)}", customer_id=draw(st.sampled_from(["c1", "c2"])),
        status=status, opened_at=opened, updated_at=updated, opened_by="agent", version=1,
        assignee=draw(st.sampled_from([None, "alice", "bob", "Ålice"])),
        reasons=draw(st.lists(st.sampled_from(["detractor", "contact"]), unique=True)),
        priority=draw(st.sampled_from(Priority)), due_at=due,
        closed_at=updated if status is Status.CLOSED else None, custom_status=custom,
    )
    texts = st.sampled_from(["Slow delivery", "SLOW", "refund please", "Ärger", ""])
    return case, draw(st.none() | texts), draw(st.none() | texts)


def _sometimes(values: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """``None`` (no filter) three times in four: with every filter drawn independently, a
    query would otherwise match almost nothing and compare empty pages."""
    return st.one_of(st.none(), st.none(), st.none(), values)


@st.composite
def _queries(draw: st.DrawFn) -> CaseQuery:
    """A random query: any mix of filters (each one unset more often than not), any order."""
    times = _sometimes(st.integers(-2, 5).map(lambda n: T0 + n * M))
    since, until = draw(times), draw(times)
    if since is not None and until is not None and since >= until:
        since = None
    return CaseQuery(
        assignee=draw(_sometimes(st.sampled_from([UNASSIGNED, "alice", "Ålice", "nobody"]))),
        status=draw(_sometimes(st.frozensets(st.sampled_from(Status), min_size=1))),
        custom_status=draw(_sometimes(st.frozensets(
            st.sampled_from(["open", "progress", "waiting", "closed", "archived"]), min_size=1))),
        priority=draw(_sometimes(st.frozensets(st.sampled_from(Priority), min_size=1))),
        reason=draw(_sometimes(st.sampled_from(["detractor", "contact"]))),
        customer_id=draw(_sometimes(st.just("c1"))),
        overdue=draw(_sometimes(st.booleans())),
        due_before=draw(_sometimes(st.integers(-2, 3).map(lambda hours: T0 + hours * H))),
        opened_since=since, opened_until=until,
        text=draw(_sometimes(st.sampled_from(["slow", "SLOW D", "ärger", "Ärger", "refund", "e"]))),
        sort=draw(st.sampled_from(SORTS)),
    )


class QueryContract:
    """Case lists every :class:`~closeloop.storage.Store` must get right (see the module)."""

    @pytest.fixture
    def sample(self, store: Store) -> Iterator[Store]:
        """The store holding :data:`SAMPLE`."""
        for spec in SAMPLE:
            _store_case(store, _sample_case(spec), spec[-1])
        yield store

    @pytest.mark.parametrize(("filters", "expected"), [
        ({}, "abcde"),
        ({"assignee": "alice"}, "ab"),
        ({"assignee": UNASSIGNED}, "ce"),
        ({"status": "open"}, "ade"),
        ({"status": ["open", "progress"]}, "acde"),
        ({"priority": "urgent"}, "ce"),
        ({"priority": [Priority.LOW, Priority.HIGH]}, "ab"),
        ({"reason": "contact"}, "cd"),
        ({"customer_id": "c2"}, "be"),
        ({"overdue": True}, "ce"),
        ({"overdue": False}, "abd"),
        ({"due_before": T0 + H}, "bc"),
        ({"opened_since": T0 + 2 * M}, "cde"),
        ({"opened_until": T0 + 2 * M}, "ab"),
        ({"opened_since": T0 + M, "opened_until": T0 + 3 * M}, "bcd"),
        ({"text": "slow D"}, "a"),
        ({"text": "Ärger"}, "d"),
        ({"text": "ärger"}, ""),
        ({"text": "e"}, "acd"),
        ({"assignee": "alice", "status": "open", "text": "delivery"}, "a"),
    ])
    def test_each_filter(self, sample: Store, filters: dict[str, Any], expected: str) -> None:
        """find_page applies each filter (and all of them together); due exactly now is overdue."""
        page = sample.find_page(CaseQuery(**filters), now=NOW, after=None, limit=10)
        assert "".join(case.id for case in page) == expected

    @pytest.mark.parametrize(("sort", "expected"), [
        ("opened", "abcde"), ("-opened", "edcba"),
        ("updated", "dceab"), ("-updated", "baecd"),
        ("due", "cbeaD"), ("-due", "Daebc"),
        ("priority", "ceadb"), ("-priority", "bdaec"),
    ])
    def test_each_order(self, sample: Store, sort: str, expected: str) -> None:
        """Each order, and its exact reverse: no due date sorts last, urgent first, ties by id."""
        page = sample.find_page(CaseQuery(sort=sort), now=NOW, after=None, limit=10)
        assert "".join(case.id for case in page) == expected.lower()

    @pytest.mark.parametrize("sort", SORTS)
    def test_pages_continue_after_the_position(self, sample: Store, sort: str) -> None:
        """Pages of 2 after each last position list every case once, in order."""
        query = CaseQuery(sort=sort)
        whole = sample.find_page(query, now=NOW, after=None, limit=10)
        assert _all_pages(sample, query, 2, NOW) == whole
        assert sample.find_page(query, now=NOW, after=query.sort.position(whole[-1]), limit=10) == []

    def test_counts_per_status_and_assignee(self, sample: Store) -> None:
        """count_cases counts per status, per assignee on request, under the same filters."""
        counts = sample.count_cases(CaseQuery(), now=NOW, by_assignee=True)
        assert counts.by_status == {Status.OPEN: 3, Status.PROGRESS: 1, Status.CLOSED: 1}
        assert counts.by_assignee == {
            "alice": {Status.OPEN: 1, Status.PROGRESS: 0, Status.CLOSED: 1},
            "bob": {Status.OPEN: 1, Status.PROGRESS: 0, Status.CLOSED: 0},
            None: {Status.OPEN: 1, Status.PROGRESS: 1, Status.CLOSED: 0},
        }
        overdue = sample.count_cases(CaseQuery(overdue=True, text="refund"), now=NOW,
                                     by_assignee=False)
        assert (overdue.by_status[Status.PROGRESS], overdue.total, overdue.by_assignee) == (1, 1, {})

    @settings(max_examples=50, deadline=None,
              # Each subclass runs it on its own store: several executors are the point.
              suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                     HealthCheck.differing_executors])
    @given(stored=st.lists(_stored_cases(), max_size=8), query=_queries(),
           hours=st.integers(-3, 3),
           size=st.integers(1, 6), by_assignee=st.booleans())
    def test_pages_and_counts_equal_a_plain_filter(
        self, store: Store, stored: list[tuple[Case, str | None, str | None]], query: CaseQuery,
        hours: int, size: int, by_assignee: bool,
    ) -> None:
        """Random cases and queries: every page, joined, and every count equal a plain filter/sort."""
        # Everything is drawn before the store is touched: a store's own threads (a
        # connection pool's) may use the random module, which hypothesis forbids
        # while it draws.
        for case, comment, later in stored:
            _store_case(store, case, comment, later)
        everything = store.find()  # cases of earlier examples stay: they are compared too
        comments = {case.id: [event.comment for event in store.history(case.id)]
                    for case in everything}
        now = T0 + hours * H
        expected = _expected(everything, comments, query, now)
        assert [c.id for c in _all_pages(store, query, size, now)] == [c.id for c in expected]
        assert _all_pages(store, query, size, now) == expected
        counts = store.count_cases(query, now=now, by_assignee=by_assignee)
        groups = Counter((case.status, case.assignee) for case in expected)
        assert dict(counts.by_status) == {s: sum(n for (t, _), n in groups.items() if t is s)
                                         for s in Status}
        if by_assignee:
            assert {who: {s: n for s, n in per.items() if n}
                    for who, per in counts.by_assignee.items()} == {
                who: {s: n for (s, w), n in groups.items() if w == who}
                for who in {w for _, w in groups}}


class CorruptedRowContract:
    """For a store that decodes rows: a row changed behind its back is never a wrong Case.

    Mix it into your store's contract class beside :class:`~closeloop.testing.StoreContract`
    and provide a ``corrupt_case`` fixture: a function ``(store, case_id, field, value)
    -> bool`` that writes ``value`` as the raw column value of the case's ``field`` (a
    datetime in the store's own time representation), bypassing the store, and returns
    ``False`` if the database refused it. A store that keeps the Case objects themselves
    (as ``MemoryStore`` does) has no rows to damage and does not take part.
    """

    def test_a_corrupted_row_is_a_store_error(
        self, store: Store, corrupt_case: Callable[[Store, str, str, Any], bool],
    ) -> None:
        """A row changed behind the store's back reads as StoreError or a valid Case, never an invalid one."""
        for number, (field, value) in enumerate(CORRUPTIONS):
            customer = f"damaged-{number}"
            case = evolve(_sample_case(SAMPLE[0]), id=f"case-{number}", customer_id=customer)
            _store_case(store, case, None)
            if not corrupt_case(store, case.id, field, value):
                assert store.get(case.id) == case, f"{field}={value!r} was refused, yet changed"
                continue
            _check_never_invalid(store, case.id, customer, field, value)


def _check_never_invalid(store: Store, case_id: str, customer: str, field: str, value: Any) -> None:
    """Every read that meets the damaged case raises StoreError or gives a valid Case.

    A database may coerce a raw value into a valid one (SQLite turns an integer
    into text in a text column): a Case that the validating constructor accepts as
    it is is then the right answer. Anything else must be a StoreError.
    """
    query = CaseQuery(customer_id=customer)
    readers: list[Callable[[], Case | list[Case]]] = [lambda: store.get(case_id)]
    if field != "customer_id":  # otherwise the customer filters no longer find it
        readers.append(lambda: store.find(customer_id=customer))
        readers.append(lambda: store.find_page(query, now=NOW, after=None, limit=10))
    for read in readers:
        try:
            found = read()
        except StoreError:
            continue
        for case in found if isinstance(found, list) else [found]:
            try:
                again = Case(**{name: getattr(case, name) for name in attrs.fields_dict(Case)})
            except InvalidInput as exc:
                pytest.fail(f"{field}={value!r} read back as an invalid Case: {exc}")
            assert again == case and type(getattr(case, field)) is type(getattr(again, field))
    if field == "status" and value not in {status.value for status in Status}:
        with pytest.raises(StoreError):  # a count cannot hold a status closeloop does not know
            store.count_cases(query, now=NOW, by_assignee=False)
