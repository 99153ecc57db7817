"""The outbox part of the store contract: deliveries as data, per channel, abandoned ones.

:class:`OutboxContract` is one of :class:`~closeloop.testing.StoreContract`'s
bases, so every store that runs the store contract runs these too.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from closeloop.model import Case, Notice, Opened, Status
from closeloop.storage.base import Change, Store
from closeloop.validate import thaw

__all__ = ["OutboxContract"]

_AT = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
#: A notice's content as plain data, with nesting, lists, numbers, None and non-ASCII text.
_CONTENT: dict[str, Any] = {
    "kind": "opened",
    "case": {"id": "case-o", "customer_id": "cust-ü", "status": "open",
             "opened_at": _AT.isoformat(), "reasons": ["detractor", "contact"]},
    "actor": "trigger-a", "created_at": _AT.isoformat(), "via": "trigger",
    "response": {"id": "r-1", "score": 3, "comment": "Zu spät \u2014 \"wieder\"", "submitted_at": None},
    "links": {"change": None, "case_page": "https://crm.example/cases/case-o"},
    "seq": 1,
}


def _delivery(notice_id: str, **changes: Any) -> Notice:
    fields: dict[str, Any] = {
        "id": notice_id, "message_id": "message-1", "case_id": "case-o", "kind": "opened",
        "to": None, "channel": "crm", "content": _CONTENT, "created_at": _AT,
        "next_attempt_at": _AT,
    }
    fields.update(changes)
    return Notice(**fields)


def _commit_case_with(store: Store, *notices: Notice) -> None:
    case = Case(id="case-o", customer_id="cust-ü", status=Status.OPEN, opened_at=_AT,
                updated_at=_AT, opened_by="trigger-a", version=1)
    event = Opened(case_id=case.id, actor=case.opened_by, at=_AT, seq=1)
    store.commit(Change(case=case, expected_version=None, events=(event,), notices=notices))


class OutboxContract:
    """Deliveries (one outbox row per notice and channel) read back as written; abandoning ends one."""

    def test_delivery_reads_back_equal(self, store: Store) -> None:
        """Channel, shared message id, no recipient and content as data all read back equal."""
        deliveries = [_delivery("d-1"), _delivery("d-2", channel="email", to="alice")]
        _commit_case_with(store, *deliveries)
        assert store.pending_notices() == deliveries
        (claimed, other) = store.claim_notices(now=_AT, lease=timedelta(minutes=1))
        assert claimed.content is not None and thaw(claimed.content) == _CONTENT
        assert (claimed.to, claimed.channel, other.channel) == (None, "crm", "email")
        assert claimed.message_id == other.message_id == "message-1"

    def test_abandoned_delivery_is_never_claimed_again(self, store: Store) -> None:
        """notice_abandoned ends a delivery: one more attempt, its error, failed_at; not pending."""
        _commit_case_with(store, _delivery("d-1"), _delivery("d-2", channel="email"))
        store.notice_abandoned("d-1", error="RecipientUnknown('carol')", at=_AT)
        assert [n.id for n in store.pending_notices()] == ["d-2"]
        assert [n.id for n in store.claim_notices(now=_AT + timedelta(days=1),
                                                  lease=timedelta(0))] == ["d-2"]
        store.notices_sent(["d-2"], at=_AT)
        store.notice_abandoned("d-2", error="late", at=_AT)  # a delivered one stays delivered
        assert store.pending_notices() == []

    def test_same_instant_deliveries_are_claimed_in_id_order(self, store: Store) -> None:
        """Deliveries written at one instant are listed and claimed by id (their written order)."""
        ids = ["0001-b", "0002-a", "0003-c"]
        _commit_case_with(store, *[_delivery(i) for i in reversed(ids)])
        assert [n.id for n in store.pending_notices()] == ids
        assert [n.id for n in store.claim_notices(now=_AT, lease=timedelta(1), limit=2)] == ids[:2]
