"""The public surface of design.md, written as a user would, checked by mypy --strict.

Not run; .ci/run type-checks it so a renamed or retyped public name fails CI.
"""

from __future__ import annotations

import threading
from datetime import date, datetime, timedelta

from closeloop import (
    UNASSIGNED,
    CaseCounts,
    CaseNotFound,
    CasePage,
    CaseQuery,
    CloseLoop,
    CloseLoopError,
    CommentRequired,
    ConcurrentUpdate,
    IngestOutcome,
    InvalidInput,
    Status,
    SurveyResponse,
    TokenExpired,
    TokenInvalid,
    TokenUsed,
    TransitionNotAllowed,
)
from closeloop.calendar import BusinessHours
from closeloop.model import Case, Event
from closeloop.notify import (
    CASE_EVENTS,
    Channel,
    Customer,
    MemoryNotifier,
    Message,
    NoticeContent,
    SmtpNotifier,
    StaticUserDirectory,
    Templates,
    User,
    WebhookNotifier,
)
from closeloop.onetouch import OneTouch
from closeloop.outbox import DeliveryReport
from closeloop.reporting import Report
from closeloop.storage import MemoryStore, SQLiteStore
from closeloop.triggers import Trigger, contact_requested, nps_between
from closeloop.worker import WorkerStats
from closeloop.workflow import Workflow, WorkflowStatus

ERRORS: tuple[type[CloseLoopError], ...] = (
    CaseNotFound, TransitionNotAllowed, CommentRequired, ConcurrentUpdate, InvalidInput,
    TokenInvalid, TokenExpired, TokenUsed,
)


def walkthrough() -> None:
    """The design document's example, line by line."""
    outbox = MemoryNotifier()
    loop = CloseLoop(
        store=SQLiteStore("closeloop.db"),
        notifier=outbox,
        triggers=[
            Trigger("detractor", nps_between(0, 6)),
            Trigger("contact-request", contact_requested()),
        ],
        one_touch=OneTouch(secret_key="x" * 32, base_url="https://crm.example/one-touch",
                           max_age=timedelta(hours=24)),
        clock=None,
    )
    case: Case | None = loop.ingest(SurveyResponse(id="r-1", customer_id="c-42", score=3,
                                                   contact_requested=True, comment="Slow delivery"))
    assert case is not None
    manual: Case = loop.open_case("c-7", by="agent-1", comment="Called in upset")
    loop.assign(case.id, to="alice", by="bob")
    loop.set_status(case.id, Status.PROGRESS, by="alice", comment="Called the customer")
    loop.comment(case.id, "Answered their question on X", by="alice")
    loop.set_status(case.id, Status.CLOSED, by="alice", comment="Refund issued")

    current: Case = loop.get(case.id)
    home: list[Case] = loop.cases(assignee="alice", status=Status.OPEN, customer_id="c-42")
    events: list[Event] = loop.history(manual.id)
    report: Report = loop.report()
    counts: int = report.status_counts[Status.OPEN]

    link: str = loop.one_touch.link(case.id)
    token = link.split("token=")[1]
    view = loop.one_touch.open(token)
    pending = loop.one_touch.prepare(token, status=Status.CLOSED, comment="Sorted by phone")
    confirmed: Case = loop.one_touch.confirm(pending.token)

    sent: list[Message] = outbox.sent
    first = sent[0]
    fields: tuple[str | None, str, str, str, str] = (first.to, first.subject, first.text,
                                                     first.html, first.case_id)
    outcome: IngestOutcome = loop.ingest_outcome(
        SurveyResponse(id="r-2", customer_id="c-43", score=2)
    )
    kind: str = outcome.kind
    stats: WorkerStats = loop.run_worker(stop=threading.Event(), handle_signals=False)
    print(current, home, events, counts, view, confirmed, fields, MemoryStore(), kind, stats)
    sources_and_rules(loop)


def sources_and_rules(loop: CloseLoop) -> None:
    """The survey sources, webhook_app and the rule check, as docs/sources.md uses them."""
    from closeloop.rules import Finding, check
    from closeloop.sources import Delighted, Typeform, webhook_app

    parsed: list[SurveyResponse] = Delighted().parse(b'{"event_type": "unsubscribe.created"}', {})
    app = webhook_app(loop, Typeform("s", score_ref="nps", customer_field="user_id"))
    findings: list[Finding] = check(loop.triggers, sample=parsed)
    print(app, [f.message for f in findings])


class Crm:
    """A host's customer directory."""

    def lookup(self, customer_id: str) -> Customer | None:
        """The customer, or None."""
        return Customer(name="Jürgen Weber") if customer_id == "c-42" else None


def channels() -> None:
    """Several channels, templates and directories, as docs/notifications.md uses them."""
    loop = CloseLoop(
        notifiers={
            "email": SmtpNotifier("smtp.example.com", 587, sender="care@example.com",
                                  security="starttls", message_id_domain="example.com"),
            "crm": Channel(WebhookNotifier("https://crm.example/hooks", secret="whsec_AAAA"),
                           people=False, events=CASE_EVENTS),
        },
        templates=Templates(directory="templates/closeloop"),
        users=StaticUserDirectory({"alice": User(address="alice@example.com",
                                                 time_zone="Europe/Berlin", locale="de")}),
        customers=Crm(),
        case_url="https://crm.example/cases/{case_id}",
        deliver_notices=False,
    )
    report: DeliveryReport = loop.deliver_pending()
    given_up: int = report.abandoned
    for notice in loop.store.pending_notices():
        message: Message = loop.service.outbox.message(notice)
        content: NoticeContent | None = message.content
        print(notice.channel, notice.message_id, content)
    print(given_up)


def lists(loop: CloseLoop) -> None:
    """An assignee's home page, page by page, and the counts beside it."""
    query = CaseQuery(assignee="alice", status=["open", Status.PROGRESS], priority="urgent",
                      overdue=True, sort="-due", text="refund")
    page: CasePage = loop.page(query, size=20)
    cases: tuple[Case, ...] = page.cases
    cursor: str | None = page.next_cursor
    if cursor is not None:
        cases += loop.page(query, after=cursor, size=20).cases
    counts: CaseCounts = loop.count(CaseQuery(assignee=UNASSIGNED), by_assignee=True)
    per_status: int = counts.by_status[Status.OPEN] + counts.total
    nobodys: int = counts.by_assignee[None][Status.OPEN]
    print(cases, per_status, nobodys)


def team_workflow() -> None:
    """A team's workflow, close reasons and business hours (issue 13's public names)."""
    workflow = Workflow.from_dict({
        "statuses": [{"name": "open", "category": "open"},
                     {"name": "waiting", "category": "progress", "pauses_sla": True},
                     {"name": "closed", "category": "closed"}],
        "transitions": {"open": ["waiting", "closed"], "waiting": ["closed"], "closed": ["open"]},
        "close_reasons": ["solved"],
    })
    hours = BusinessHours("Europe/Amsterdam", "Mon-Fri 09:00-17:00", holidays=[date(2026, 4, 6)])
    loop = CloseLoop(workflow=workflow, calendar=hours)
    case = loop.open_case("c-1", by="agent")
    waiting: Case = loop.set_status(case.id, "waiting", by="alice")
    name: str = waiting.custom_status
    closed = loop.set_status(case.id, Status.CLOSED, by="alice", comment="Done",
                             close_reason="solved")
    reason: str | None = closed.close_reason
    due: datetime = hours.add(closed.opened_at, timedelta(hours=4))
    spent: timedelta = hours.between(closed.opened_at, due)
    per_status: int = loop.report().custom_status_counts["waiting"]
    allowed: tuple[WorkflowStatus, ...] = workflow.allowed("open")
    print(name, reason, spent, per_status, allowed)
