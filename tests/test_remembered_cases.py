"""Status changes from the case a loop remembers: fewer reads, the same outcomes as a fresh read."""

from __future__ import annotations

import itertools
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from closeloop import CloseLoop, Status, StatusChanged
from closeloop.errors import CloseLoopError, ConcurrentUpdate, TransitionNotAllowed
from closeloop.service import CASES_REMEMBERED
from closeloop.storage import MemoryStore, Store
from closeloop.testing import FixedClock


class CountingStore(MemoryStore):
    """A MemoryStore that counts reads of one case."""

    gets = 0

    def get(self, case_id: str) -> Any:
        """Count, then read."""
        self.gets += 1
        return super().get(case_id)


def two_loops(store: Store, clock: FixedClock) -> tuple[CloseLoop, CloseLoop]:
    """Two loops over one store, as two processes of one app would be."""
    return CloseLoop(store=store, clock=clock), CloseLoop(store=store, clock=clock)


def stale_in_first(store: Store, clock: FixedClock) -> tuple[CloseLoop, str]:
    """A case that the first of two loops remembers in Progress, moved back to Open by the second."""
    first, second = two_loops(store, clock)
    case = first.open_case("c-1", by="agent")
    first.set_status(case.id, Status.PROGRESS, by="alice")
    second.set_status(case.id, Status.OPEN, by="bob")
    return first, case.id


def statuses(store: Store, case_id: str) -> list[tuple[str, str]]:
    """The case's status changes, as (from, to) names."""
    return [(e.from_custom_status, e.to_custom_status) for e in store.history(case_id)
            if isinstance(e, StatusChanged)]


def test_a_change_by_id_reads_the_case_only_the_first_time() -> None:
    """After one read, further status changes by id start from the remembered case."""
    store = CountingStore()
    loop = CloseLoop(store=store, clock=FixedClock())
    case = loop.open_case("c-1", by="agent")
    loop.set_status(case.id, Status.PROGRESS, by="alice")
    reads = store.gets
    loop.set_status(case.id, Status.OPEN, by="alice")
    closed = loop.set_status(case.id, Status.CLOSED, by="alice", comment="Done")
    assert store.gets == reads
    assert closed == store.get(case.id)


def test_a_change_after_another_writer_is_made_from_the_fresh_case(
    store: Store, clock: FixedClock
) -> None:
    """A remembered copy made stale by another loop is read again; no change is lost."""
    first, case_id = stale_in_first(store, clock)
    closed = first.set_status(case_id, Status.CLOSED, by="alice", comment="Sorted")
    assert closed == store.get(case_id)
    assert closed.version == 4
    assert statuses(store, case_id) == [("open", "progress"), ("progress", "open"),
                                        ("open", "closed")]


def test_a_change_the_stale_copy_refuses_is_judged_on_the_fresh_case(
    store: Store, clock: FixedClock
) -> None:
    """Progress from a remembered Closed is refused, but the case was reopened: it is allowed."""
    first, second = two_loops(store, clock)
    case = first.open_case("c-1", by="agent")
    first.set_status(case.id, Status.CLOSED, by="alice", comment="Sorted")
    second.set_status(case.id, Status.OPEN, by="bob", comment="Not sorted")
    moved = first.set_status(case.id, Status.PROGRESS, by="alice")
    assert (moved.status, moved.version) == (Status.PROGRESS, 4)


def test_a_refusal_names_the_current_status_not_the_remembered_one(
    store: Store, clock: FixedClock
) -> None:
    """A change the fresh case refuses raises what a fresh read raises, and writes nothing."""
    first, case_id = stale_in_first(store, clock)
    with pytest.raises(TransitionNotAllowed, match="already Open"):
        first.set_status(case_id, Status.OPEN, by="alice")
    assert store.get(case_id).version == 3


def test_an_expected_version_is_checked_against_the_stored_case(
    store: Store, clock: FixedClock
) -> None:
    """expected_version equal to the remembered copy's, but the case moved: ConcurrentUpdate."""
    first, case_id = stale_in_first(store, clock)
    with pytest.raises(ConcurrentUpdate) as caught:
        first.set_status(case_id, Status.CLOSED, by="alice", comment="x", expected_version=2)
    assert (caught.value.expected, caught.value.actual) == (2, 3)
    assert store.get(case_id).status is Status.OPEN


def test_an_erasure_by_another_loop_is_not_undone_from_memory(
    store: Store, clock: FixedClock
) -> None:
    """A case erased by another loop is changed from its erased state: the customer id stays gone."""
    first, second = two_loops(store, clock)
    case = first.open_case("c-1", by="agent")
    first.set_status(case.id, Status.PROGRESS, by="alice")
    second.erase_customer("c-1", by="dpo")
    closed = first.set_status(case.id, Status.CLOSED, by="alice", comment="Sorted")
    assert closed.customer_id != "c-1"
    assert closed == store.get(case.id)
    assert store.find(customer_id="c-1") == []


def test_memory_is_bounded() -> None:
    """The loop remembers at most CASES_REMEMBERED cases, the latest ones."""
    loop = CloseLoop(store=MemoryStore(), clock=FixedClock())
    ids = [loop.open_case(f"c-{n}", by="agent").id for n in range(CASES_REMEMBERED + 10)]
    remembered = loop.service._remembered
    assert len(remembered) == CASES_REMEMBERED
    assert ids[0] not in remembered and ids[-1] in remembered


TARGETS = st.sampled_from([Status.OPEN, Status.PROGRESS, Status.CLOSED])


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(steps=st.lists(st.tuples(st.integers(0, 1), TARGETS), min_size=1, max_size=12))
def test_two_loops_interleaved_behave_as_fresh_reads(
    store: Store, clock: FixedClock, steps: list[tuple[int, Status]]
) -> None:
    """Random changes from two loops succeed or fail exactly as the stored case says they must."""
    loops = two_loops(store, clock)
    case_id = loops[0].open_case("c-1", by="agent").id
    for which, target in steps:
        before = store.get(case_id)
        wanted = loops[which].workflow.resolve(target)
        try:
            loops[which].workflow.check(case_id, before.custom_status, wanted, comment="why",
                                        close_reason=None)
            expected: type[CloseLoopError] | None = None
        except CloseLoopError as refused:
            expected = type(refused)
        if expected is not None:
            with pytest.raises(expected):
                loops[which].set_status(case_id, target, by=f"agent-{which}", comment="why")
            assert store.get(case_id) == before
        else:
            result = loops[which].set_status(case_id, target, by=f"agent-{which}", comment="why")
            assert result == store.get(case_id)
            assert (result.status, result.version) == (target, before.version + 1)
    changes = statuses(store, case_id)
    assert all(a[1] == b[0] for a, b in itertools.pairwise(changes))
