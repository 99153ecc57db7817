"""Escalation: overdue or untouched cases get an email, once per interval.

``loop.escalate()`` is meant for cron (or any scheduler), possibly in several
processes at once. Each escalation is a change to the case (an "escalated"
event, version + 1) committed against the version that was read, so when two
processes pick the same case exactly one commits it and the other skips it;
a case escalated less than ``resend_after`` ago is not picked again.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Literal

from attrs import evolve, field, frozen

from closeloop.errors import ConcurrentUpdate, InvalidInput
from closeloop.model import Case, Escalated
from closeloop.reporting import is_overdue
from closeloop.service import SYSTEM_ACTOR, CaseService, draft
from closeloop.validate import (
    attrs_validator,
    check_bool,
    check_optional_id,
    check_optional_positive_timedelta,
    check_positive_int,
    check_positive_timedelta,
)

__all__ = ["Escalation", "EscalationPolicy", "EscalationRun"]

#: The actor recorded on escalation events.
ESCALATION_ACTOR = SYSTEM_ACTOR


@frozen(kw_only=True)
class EscalationPolicy:
    """When cases are escalated and to whom.

    Args:
        overdue: escalate cases past their ``due_at``.
        untouched_for: also escalate cases with no change for this long (``None``: don't).
            Any change counts, an escalation included. With a loop ``calendar`` this
            is business time. A case whose SLA is paused is not overdue, but can
            still be untouched.
        resend_after: do not escalate the same case again within this interval.
        fallback: who is told about unassigned cases (a manager or team inbox);
            ``None`` records the escalation without emailing anyone.

    Example::

        CloseLoop(..., escalation=EscalationPolicy(untouched_for=timedelta(days=2),
                                                   fallback="cx-lead"))
    """

    overdue: bool = field(default=True, validator=attrs_validator(check_bool))
    untouched_for: timedelta | None = field(
        default=None, validator=attrs_validator(check_optional_positive_timedelta)
    )
    resend_after: timedelta = field(
        default=timedelta(hours=24), validator=attrs_validator(check_positive_timedelta)
    )
    fallback: str | None = field(default=None, validator=attrs_validator(check_optional_id))

    def __attrs_post_init__(self) -> None:
        if not self.overdue and self.untouched_for is None:
            raise InvalidInput("overdue", self.overdue,
                               "nothing would ever be escalated: set overdue or untouched_for")


@frozen
class Escalation:
    """One case escalated: to whom (``None`` when nobody was emailed) and why."""

    case_id: str
    to: str | None
    why: Literal["overdue", "untouched"]


@frozen
class EscalationRun:
    """What one :meth:`~closeloop.CloseLoop.escalate` call did (or, dry, would do).

    ``skipped`` counts cases another process changed between reading and escalating.
    """

    escalated: tuple[Escalation, ...]
    skipped: int
    dry_run: bool


def escalate(
    service: CaseService, policy: EscalationPolicy, *, dry_run: bool, limit: int
) -> EscalationRun:
    """Escalate every case due for it (up to ``limit``); see the module docstring."""
    check_bool("dry_run", dry_run)
    check_positive_int("limit", limit)
    now = service.now()
    untouched_before = _untouched_before(service, policy, now)
    candidates = service.store.escalation_candidates(
        now=now if policy.overdue else datetime.min.replace(tzinfo=now.tzinfo),
        untouched_before=untouched_before, quiet_since=now - policy.resend_after, limit=limit,
    )
    done: list[Escalation] = []
    skipped = 0
    for case in candidates:
        why: Literal["overdue", "untouched"] = (
            "overdue" if policy.overdue and is_overdue(case, now) else "untouched"
        )
        to = case.assignee or policy.fallback
        if not dry_run:
            try:
                _escalate_case(service, case, why, to, now)
            except ConcurrentUpdate:
                skipped += 1
                continue
        done.append(Escalation(case.id, to, why))
    return EscalationRun(tuple(done), skipped, dry_run)


def _untouched_before(
    service: CaseService, policy: EscalationPolicy, now: datetime
) -> datetime | None:
    """The latest ``updated_at`` that counts as untouched; business time with a calendar."""
    if policy.untouched_for is None:
        return None
    if service.calendar is not None:
        return service.calendar.subtract(now, policy.untouched_for)
    return now - policy.untouched_for


def _escalate_case(
    service: CaseService, case: Case, why: Literal["overdue", "untouched"], to: str | None,
    now: datetime,
) -> None:
    change = service.advance(
        case, draft(Escalated, actor=ESCALATION_ACTOR, notified=to, why=why), now=now
    )
    if to is not None:
        notices = service.person_notice(change.case, "escalated", to, actor=ESCALATION_ACTOR,
                                        now=now, why=why, response=service.latest_response(case))
        change = evolve(change, notices=notices)
    service.commit(change)
