"""The store contract for response updates: a recorded response changes only by compare-and-swap.

A mixin of :class:`~closeloop.testing.StoreContract`; it uses the same ``store`` fixture.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from attrs import evolve

from closeloop.errors import ConcurrentUpdate
from closeloop.model import Case, Opened, ResponseAttached, ResponseRecord, Status
from closeloop.storage.base import Change, ResponseUpdate, Store
from closeloop.storage.base_store import BaseStore

__all__ = ["ResponseUpdateContract"]

T0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)


def _recorded(response_id: str, content: str | None = '{"score":3}', **changes: Any) -> ResponseRecord:
    fields: dict[str, Any] = {"response_id": response_id, "customer_id": "cust-1",
                              "outcome": "ignored", "received_at": T0, "submitted_at": T0,
                              "score": 3, "content": content}
    return ResponseRecord(**{**fields, **changes})


def make_case() -> Case:
    """A new Open case of customer cust-1."""
    return Case(id="case-1", customer_id="cust-1", status=Status.OPEN, opened_at=T0,
                updated_at=T0, opened_by="agent-1", version=1)


def opened_change(case: Case) -> Change:
    """The change that creates ``case``."""
    return Change(case=case, expected_version=None,
                  events=(Opened(case_id=case.id, actor=case.opened_by, at=T0, seq=1),))


class ResponseUpdateContract:
    """Behaviour of :class:`~closeloop.storage.base.ResponseUpdate` in ``commit_many``."""

    def test_content_round_trips(self, store: Store) -> None:
        """A record's content comes back as written, and None stays None."""
        store.record_responses([_recorded("r-1"), _recorded("r-2", content=None)])
        found = store.responses(["r-1", "r-2"])
        assert (found["r-1"].content, found["r-2"].content) == ('{"score":3}', None)

    def test_update_swaps_the_record_and_keeps_its_place(self, store: Store) -> None:
        """An up-to-date update writes outcome, case, score and content; order and times stay."""
        store.record_responses([_recorded("r-1"), _recorded("r-2")])
        case = make_case()
        store.commit(opened_change(case))
        old = store.responses(["r-1"])["r-1"]
        new = evolve(old, outcome="attached", case_id=case.id, score=9, content='{"score":9}',
                     received_at=T0.replace(year=2030))
        store.commit_many([], (), [ResponseUpdate(old, new)])
        stored = store.responses(["r-1"])["r-1"]
        assert (stored.outcome, stored.case_id, stored.score, stored.content) == (
            "attached", case.id, 9, '{"score":9}')
        assert stored.received_at == old.received_at  # only the four fields change
        if isinstance(store, BaseStore):
            assert [r.response_id for r in store.find_responses()] == ["r-1", "r-2"]

    def test_stale_update_fails_and_writes_nothing(self, store: Store) -> None:
        """An update computed from an older record is ConcurrentUpdate; its batch is not written."""
        store.record_responses([_recorded("r-1")])
        old = store.responses(["r-1"])["r-1"]
        store.commit_many([], (), [ResponseUpdate(old, evolve(old, content='{"score":5}', score=5))])
        case = make_case()
        with pytest.raises(ConcurrentUpdate) as info:
            store.commit_many([opened_change(case)], (), [
                ResponseUpdate(old, evolve(old, content='{"score":9}', score=9)),
            ])
        assert info.value.response_id == "r-1"
        assert store.responses(["r-1"])["r-1"].content == '{"score":5}'
        assert store.find(customer_id=case.customer_id) == []

    def test_update_commits_with_its_case_change(self, store: Store) -> None:
        """A case change and a response update commit together in one batch."""
        case = make_case()
        store.commit(opened_change(case))
        store.record_responses([_recorded("r-1", case_id=case.id, outcome="opened")])
        old = store.responses(["r-1"])["r-1"]
        later = evolve(case, version=2, updated_at=T0)
        event = ResponseAttached(case_id=case.id, actor="t", at=T0, seq=2, response_id="r-1")
        store.commit_many([Change(case=later, expected_version=1, events=(event,))], (),
                          [ResponseUpdate(old, evolve(old, content="{}"))])
        assert store.get(case.id).version == 2
        assert store.responses(["r-1"])["r-1"].content == "{}"

    def test_update_of_a_record_that_changed_case_is_stale(self, store: Store) -> None:
        """Same content but another case since it was read: the update is refused."""
        store.record_responses([_recorded("r-1")])
        old = store.responses(["r-1"])["r-1"]
        case = make_case()
        store.commit(opened_change(case))
        store.commit_many([], (), [ResponseUpdate(old, evolve(old, outcome="opened", case_id=case.id))])
        with pytest.raises(ConcurrentUpdate):
            store.commit_many([], (), [ResponseUpdate(old, evolve(old, content="{}"))])
