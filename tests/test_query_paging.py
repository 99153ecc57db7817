"""Paging through 10,000 cases while other processes insert and change cases.

The guarantee under test (see closeloop.cursor): every case that existed when paging
started and matched the query throughout, with its place in the order unchanged, is
listed exactly once; no case is listed twice; the listing keeps the query's order.

Two writer processes insert new cases (opened anywhere in the time span, so before
and after the cursor), move cases between Open and Progress and reassign them. They
never close a case, so every case keeps matching ``status=["open", "progress"]``.
After each page the test waits until a writer has written again (a condition, not
a sleep), so every page boundary has a write in it.
"""

from __future__ import annotations

import multiprocessing
import os
from pathlib import Path
from typing import Any

import pytest

from closeloop import CaseQuery, CloseLoop
from closeloop.model import Case
from closeloop.storage import Store
from closeloop.testing import FixedClock
from query_workers import T0, churn, initial_cases, open_store, seed

CASES = 10_000
PAGE = 50
#: Only there so a broken writer fails the test instead of hanging it.
HANG_GUARD = 120.0


def page_while_writing(kind: str, where: Any, sort: str) -> None:
    """Seed 10,000 cases, page through them in pages of 50 with two writers running, check."""
    store = open_store(kind, where)
    try:
        cases = initial_cases(CASES)
        seed(store, cases)
        listed = list_with_writers(kind, where, store, [case.id for case in cases], sort)
    finally:
        store.close()
    query = CaseQuery(status=["open", "progress"], sort=sort)
    ids = [case.id for case in listed]
    assert len(ids) == len(set(ids)), "a case was listed twice"
    assert {case.id for case in cases} <= set(ids), "a case that matched throughout was missed"
    assert all(query.matches(case, T0) for case in listed)
    keys = [query.sort.case_key(case) for case in listed]
    ordered = keys == sorted(keys, reverse=query.sort.descending)
    assert ordered and len(set(keys)) == len(keys), "the listing left the query's order"
    if sort == "opened":  # new cases open anywhere in the span: those after the cursor show up
        assert len(ids) > CASES


def list_with_writers(kind: str, where: Any, store: Store, case_ids: list[str],
                      sort: str) -> list[Case]:
    """Every page of the query, a writer's write between each two pages."""
    context = multiprocessing.get_context("spawn")
    stop, changed = context.Event(), context.Condition()
    written = context.Value("q", 0)
    writers = [context.Process(target=churn, args=(kind, where, number, case_ids, stop, written,
                                                   changed)) for number in range(2)]
    for writer in writers:
        writer.start()
    loop = CloseLoop(store=store, clock=FixedClock(T0))
    query = CaseQuery(status=["open", "progress"], sort=sort)
    listed: list[Case] = []
    try:
        after = None
        while True:
            seen = written.value
            with changed:
                assert changed.wait_for(lambda seen=seen: written.value > seen, HANG_GUARD), \
                    "writers stopped"
            page = loop.page(query, after=after, size=PAGE)
            listed.extend(page.cases)
            if page.next_cursor is None:
                return listed
            after = page.next_cursor
    finally:
        stop.set()
        for writer in writers:
            writer.join(HANG_GUARD)
        assert all(writer.exitcode == 0 for writer in writers), "a writer failed"


@pytest.mark.slow
@pytest.mark.parametrize("sort", ["opened", "-due"])
def test_sqlite_pages_each_case_once_while_others_write(tmp_path: Path, sort: str) -> None:
    """SQLite: 10,000 cases in pages of 50, two processes writing throughout: each once, in order."""
    page_while_writing("sqlite", str(tmp_path / "paging.db"), sort)


@pytest.mark.slow
@pytest.mark.postgres
@pytest.mark.parametrize("sort", ["opened", "-due"])
def test_postgres_pages_each_case_once_while_others_write(sort: str) -> None:
    """PostgreSQL: 10,000 cases in pages of 50, two processes writing throughout: each once, in order."""
    from postgres_workers import DSN_VARIABLE, drop_schema, scratch_schema

    dsn = os.environ.get(DSN_VARIABLE)
    if not dsn:
        if os.environ.get("CLOSELOOP_REQUIRE_ALL") == "1":
            pytest.fail(f"{DSN_VARIABLE} is required (CLOSELOOP_REQUIRE_ALL=1) but not set")
        pytest.skip(f"set {DSN_VARIABLE} to run PostgreSQL tests")
    schema = scratch_schema()
    try:
        page_while_writing("postgres", (dsn, schema), sort)
    finally:
        drop_schema(dsn, schema)
