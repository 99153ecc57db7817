"""The store contract's part on workflows: custom statuses, close reasons, SLA pauses.

:class:`WorkflowStoreContract` is a mixin of :class:`~closeloop.testing.StoreContract`
(it uses the same ``store`` fixture): a store must keep a case's ``custom_status``,
``close_reason`` and ``paused_at`` and the workflow fields of its status-change
events, must not treat a paused case as overdue (the library's
:func:`~closeloop.reporting.is_overdue`, from the case row alone), and must report
the workflow figures exactly as the reference computation does.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

from attrs import evolve

from closeloop.calendar import BusinessHours
from closeloop.model import Case, Opened, Status, StatusChanged
from closeloop.report_reference import report_from_facts
from closeloop.reporting import Durations, ReportQuery, is_overdue
from closeloop.storage.base import Change, Store

__all__ = ["WorkflowStoreContract"]

T0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)  # a Monday
HOUR = timedelta(hours=1)
DAY = timedelta(days=1)


def _opened(case_id: str, **fields: Any) -> Change:
    values: dict[str, Any] = {
        "id": case_id, "customer_id": f"cust-{case_id}", "status": Status.OPEN, "opened_at": T0,
        "updated_at": T0, "opened_by": "agent-1", "version": 1,
    }
    values.update(fields)
    case = Case(**values)
    return Change(case=case, expected_version=None,
                  events=(Opened(case_id=case_id, actor="agent-1", at=T0, seq=1),))


def _move(store: Store, case_id: str, at: datetime, to: str, category: Status, *,
          close_reason: str | None = None, **fields: Any) -> Case:
    """Commit a status change of the case to the custom status ``to`` at ``at``."""
    case = store.get(case_id)
    updated = evolve(case, updated_at=at, version=case.version + 1, status=category,
                     custom_status=to, close_reason=close_reason,
                     closed_at=at if category is Status.CLOSED else None, **fields)
    event = StatusChanged(case_id=case_id, actor="alice", at=at, seq=case.version + 1,
                          comment="moved", from_status=case.status, to_status=category,
                          from_custom_status=case.custom_status, to_custom_status=to,
                          close_reason=close_reason)
    store.commit(Change(case=updated, expected_version=case.version, events=(event,)))
    return updated


class WorkflowStoreContract:
    """Workflow behaviour every store must have; mixed into :class:`StoreContract`."""

    def test_custom_status_close_reason_and_pause_round_trip(self, store: Store) -> None:
        """custom_status, paused_at and close_reason (on the case and its events) read back equal."""
        store.commit(_opened("wf-1", due_at=T0 + 2 * DAY))
        waiting = _move(store, "wf-1", T0 + HOUR, "waiting", Status.PROGRESS, paused_at=T0 + HOUR)
        assert store.get("wf-1") == waiting
        assert (waiting.custom_status, waiting.paused_at) == ("waiting", T0 + HOUR)
        closed = _move(store, "wf-1", T0 + 2 * HOUR, "closed", Status.CLOSED,
                       close_reason="no-response", paused_at=None)
        assert store.get("wf-1") == closed
        assert [c.id for c in store.find(status=Status.CLOSED)] == ["wf-1"]
        changes = [e for e in store.history("wf-1") if isinstance(e, StatusChanged)]
        assert [(e.from_custom_status, e.to_custom_status, e.close_reason) for e in changes] == [
            ("open", "waiting", None), ("waiting", "closed", "no-response"),
        ]

    def test_standard_cases_have_their_category_as_custom_status(self, store: Store) -> None:
        """A case of the standard workflow reads back with custom_status equal to its status."""
        store.commit(_opened("std"))
        moved = _move(store, "std", T0 + HOUR, "progress", Status.PROGRESS)
        assert store.get("std").custom_status == "progress" == moved.status.value
        (event,) = [e for e in store.history("std") if isinstance(e, StatusChanged)]
        assert (event.from_custom_status, event.to_custom_status) == ("open", "progress")

    def test_report_and_escalation_skip_a_paused_case(self, store: Store) -> None:
        """An overdue case whose SLA is paused is neither escalated as overdue nor counted overdue."""
        store.commit(_opened("running", due_at=T0 + DAY))
        store.commit(_opened("paused", due_at=T0 + DAY))
        _move(store, "paused", T0 + HOUR, "waiting", Status.PROGRESS, paused_at=T0 + HOUR)
        now = T0 + 3 * DAY
        assert [is_overdue(store.get(i), now) for i in ("running", "paused")] == [True, False]
        found = store.escalation_candidates(now=now, untouched_before=None,
                                            quiet_since=now - DAY, limit=10)
        assert [case.id for case in found] == ["running"]
        # Paused is not the same as touched: an untouched paused case is still untouched.
        found = store.escalation_candidates(now=now, untouched_before=now - DAY,
                                            quiet_since=now - DAY, limit=10)
        assert [case.id for case in found] == ["running", "paused"]
        assert store.report(ReportQuery(now=now)).overdue == 1

    def test_report_per_custom_status_close_reason_and_time_in_status(self, store: Store) -> None:
        """The report counts custom statuses, times closes per reason and stays per status."""
        for case_id in ("a", "b", "c"):
            store.commit(_opened(case_id))
        _move(store, "a", T0 + HOUR, "waiting", Status.PROGRESS)
        _move(store, "a", T0 + 4 * HOUR, "closed", Status.CLOSED, close_reason="no-response")
        _move(store, "b", T0 + 2 * HOUR, "closed", Status.CLOSED, close_reason="solved")
        _move(store, "c", T0 + 2 * HOUR, "waiting", Status.PROGRESS)
        query = ReportQuery(now=T0 + DAY, statuses=("open", "progress", "waiting", "closed"),
                            close_reasons=("solved", "no-response", "duplicate"))
        report = store.report(query)
        assert report.custom_status_counts == {"open": 0, "progress": 0, "waiting": 1, "closed": 2}
        assert report.status_counts == {Status.OPEN: 0, Status.PROGRESS: 1, Status.CLOSED: 2}

        def took(*hours: int) -> Durations:
            ordered = sorted(hours)
            return Durations(count=len(ordered), mean=sum(ordered) * HOUR // len(ordered),
                             median=ordered[(len(ordered) - 1) // 2] * HOUR, p90=ordered[-1] * HOUR)

        assert report.by_close_reason == {"solved": took(2), "no-response": took(4),
                                          "duplicate": Durations(count=0)}
        assert report.time_in_status == {"open": took(1, 2, 2), "progress": Durations(count=0),
                                         "waiting": took(3), "closed": Durations(count=0)}
        assert report == report_from_facts(query, store.report_facts(query))

    def test_report_business_time_figures_agree_with_the_reference(self, store: Store) -> None:
        """With a calendar, the business-time figures equal the reference's, wall clock kept."""
        store.commit(_opened("weekend"))
        _move(store, "weekend", T0 + 5 * DAY, "closed", Status.CLOSED)  # Saturday 09:00
        hours = BusinessHours("Europe/Amsterdam", "Mon-Fri 09:00-17:00",
                              holidays=[date(2026, 1, 6)])
        query = ReportQuery(now=T0 + 6 * DAY, calendar=hours)
        report = store.report(query)
        assert report.time_to_close.median == 5 * DAY
        # Mon 10:00-17:00 local, then Wed to Fri: 7 h + 3 × 8 h (Tuesday is a holiday).
        assert report.business_time_to_close == Durations(
            count=1, mean=31 * HOUR, median=31 * HOUR, p90=31 * HOUR)
        assert report.business_time_to_first_action == report.business_time_to_close
        assert report == report_from_facts(query, store.report_facts(query))
        assert store.report(ReportQuery(now=T0 + 6 * DAY)).business_time_to_close is None
