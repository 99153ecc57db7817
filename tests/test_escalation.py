"""Escalation of overdue and untouched cases: once per interval, to the right person."""

from __future__ import annotations

import multiprocessing
import re
import sqlite3
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from closeloop import CloseLoop, Escalated, InvalidInput, Status
from closeloop.escalation import EscalationPolicy
from closeloop.notify import MemoryNotifier
from closeloop.onetouch import OneTouch
from closeloop.storage import SQLiteStore, Store
from closeloop.testing import FixedClock
from escalation_workers import escalate_once


def make_loop(store: Store, clock: FixedClock, outbox: MemoryNotifier, **policy: Any) -> CloseLoop:
    """A loop over the store with the given escalation policy."""
    return CloseLoop(store=store, notifier=outbox, clock=clock,
                     escalation=EscalationPolicy(**policy) if policy else None)


class TestEscalate:
    """What escalate() picks and what it sends."""

    def test_overdue_case_is_escalated_once_per_interval(
        self, store: Store, clock: FixedClock, outbox: MemoryNotifier
    ) -> None:
        """An overdue case gets one event and one email; again only after resend_after."""
        loop = make_loop(store, clock, outbox)
        case = loop.open_case("c-1", by="agent", due_at=clock() + timedelta(hours=4))
        loop.assign(case.id, to="alice", by="bob")
        assert loop.escalate().escalated == ()
        clock.advance(hours=5)
        run = loop.escalate()
        assert [(e.case_id, e.to, e.why) for e in run.escalated] == [(case.id, "alice", "overdue")]
        event = loop.history(case.id)[-1]
        assert isinstance(event, Escalated)
        assert (event.actor, event.notified, event.why, event.at) == ("closeloop", "alice",
                                                                     "overdue", clock())
        assert [m.kind for m in outbox.sent] == ["assigned", "escalated"]
        assert "overdue" in outbox.sent[-1].subject and case.id in outbox.sent[-1].text
        clock.advance(hours=23)
        assert loop.escalate().escalated == ()
        clock.advance(hours=2)
        assert len(loop.escalate().escalated) == 1
        assert len(outbox.sent) == 3

    def test_untouched_cases_when_configured(
        self, store: Store, clock: FixedClock, outbox: MemoryNotifier
    ) -> None:
        """With untouched_for, a case with no change for that long is escalated too."""
        loop = make_loop(store, clock, outbox, overdue=False, untouched_for=timedelta(days=2))
        quiet = loop.open_case("c-1", by="agent")
        busy = loop.open_case("c-2", by="agent")
        clock.advance(days=1)
        loop.comment(busy.id, "called", by="agent")
        clock.advance(days=1, seconds=1)
        run = loop.escalate()
        assert [(e.case_id, e.why, e.to) for e in run.escalated] == [(quiet.id, "untouched", None)]

    def test_unassigned_goes_to_fallback_and_closed_never(
        self, store: Store, clock: FixedClock, outbox: MemoryNotifier
    ) -> None:
        """Unassigned overdue cases go to the fallback; Closed cases are never escalated."""
        loop = make_loop(store, clock, outbox, fallback="cx-lead")
        open_case = loop.open_case("c-1", by="agent", due_at=clock())
        closed = loop.open_case("c-2", by="agent", due_at=clock())
        loop.set_status(closed.id, Status.CLOSED, by="agent", comment="done")
        clock.advance(minutes=1)
        run = loop.escalate()
        assert [(e.case_id, e.to) for e in run.escalated] == [(open_case.id, "cx-lead")]
        assert [m.to for m in outbox.sent] == ["cx-lead"]

    def test_no_fallback_records_without_email(
        self, store: Store, clock: FixedClock, outbox: MemoryNotifier
    ) -> None:
        """An unassigned case with no fallback is recorded as escalated, and nobody is emailed."""
        loop = make_loop(store, clock, outbox)
        case = loop.open_case("c-1", by="agent", due_at=clock())
        clock.advance(minutes=1)
        assert [e.to for e in loop.escalate().escalated] == [None]
        event = loop.history(case.id)[-1]
        assert isinstance(event, Escalated) and event.notified is None
        assert outbox.sent == []

    def test_escalation_email_carries_one_touch_link(
        self, store: Store, clock: FixedClock, outbox: MemoryNotifier
    ) -> None:
        """With one-touch configured, the assignee's escalation email has a working Change link."""
        loop = CloseLoop(store=store, notifier=outbox, clock=clock, one_touch=OneTouch(
            "s" * 32, base_url="https://crm.test/one-touch"))
        case = loop.open_case("c-1", by="agent", due_at=clock())
        loop.assign(case.id, to="alice", by="lead")
        clock.advance(minutes=1)
        loop.escalate()
        escalation = outbox.sent[-1]
        assert escalation.kind == "escalated" and ">Change<" in escalation.html
        (link,) = re.findall(r"https://crm\.test/one-touch\?token=[\w.\-]+", escalation.text)
        view = loop.one_touch.open(link.split("token=")[1])
        assert view.case.id == case.id

    def test_dry_run_writes_nothing(
        self, store: Store, clock: FixedClock, outbox: MemoryNotifier
    ) -> None:
        """A dry run lists what would be escalated and changes nothing."""
        loop = make_loop(store, clock, outbox)
        case = loop.open_case("c-1", by="agent", due_at=clock())
        clock.advance(minutes=1)
        run = loop.escalate(dry_run=True)
        assert run.dry_run and [e.case_id for e in run.escalated] == [case.id]
        assert loop.get(case.id).version == 1 and outbox.sent == []
        assert len(loop.escalate().escalated) == 1

    @pytest.mark.parametrize(
        ("policy", "field"),
        [({"resend_after": timedelta(0)}, "resend_after"),
         ({"untouched_for": 3}, "untouched_for"),
         ({"overdue": False}, "overdue"),
         ({"fallback": ""}, "fallback")],
    )
    def test_bad_policy(self, policy: dict[str, Any], field: str) -> None:
        """A policy with a bad setting is refused naming the setting."""
        with pytest.raises(InvalidInput) as raised:
            EscalationPolicy(**policy)
        assert raised.value.field == field

    def test_bad_arguments(self) -> None:
        """escalate() refuses a bad limit or dry_run."""
        loop = CloseLoop()
        with pytest.raises(InvalidInput, match="limit"):
            loop.escalate(limit=0)
        with pytest.raises(InvalidInput, match="dry_run"):
            loop.escalate(dry_run="yes")  # type: ignore[arg-type]
        with pytest.raises(InvalidInput, match="escalation"):
            CloseLoop(escalation={"overdue": True})  # type: ignore[arg-type]


@pytest.mark.slow
def test_two_processes_escalate_each_case_once(tmp_path: Path) -> None:
    """Two processes escalating at once send each due escalation exactly once."""
    path = tmp_path / "esc.db"
    clock = FixedClock()
    loop = CloseLoop(store=SQLiteStore(path), notifier=MemoryNotifier(), clock=clock)
    due = []
    for index in range(40):
        case = loop.open_case(f"c-{index}", by="agent", due_at=clock() + timedelta(hours=1))
        loop.assign(case.id, to=f"user-{index % 3}", by="lead")
        due.append(case.id)
    loop.open_case("c-not-due", by="agent", due_at=clock() + timedelta(days=3))
    loop.store.close()
    later = (clock() + timedelta(hours=2)).isoformat()
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Manager().Barrier(2)
    with ctx.Pool(2) as pool:
        sent = pool.starmap(escalate_once, [(str(path), later, barrier)] * 2)
    all_sent = sent[0] + sent[1]
    assert sorted(case_id for case_id, _ in all_sent) == sorted(due)
    with sqlite3.connect(path) as conn:
        rows = conn.execute(
            "SELECT case_id, count(*) FROM events WHERE kind = 'escalated' GROUP BY case_id"
        ).fetchall()
    assert sorted(rows) == sorted((case_id, 1) for case_id in due)
    with ctx.Pool(1) as pool:
        assert pool.starmap(escalate_once, [(str(path), later, ctx.Manager().Barrier(1))]) == [[]]
