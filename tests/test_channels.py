"""Several channels per loop: one delivery per channel, case-event webhooks, unknown recipients.

The receivers are real: an SMTP server (aiosmtpd) and an HTTP endpoint on loopback.
"""

from __future__ import annotations

import base64
from collections import Counter
from collections.abc import Iterator
from datetime import timedelta

import pytest
from attrs import evolve
from standardwebhooks.webhooks import Webhook

from closeloop import (
    CloseLoop,
    EscalationPolicy,
    InvalidInput,
    NoticeFailed,
    Status,
    SurveyResponse,
)
from closeloop.model import Commented
from closeloop.notify import (
    CASE_EVENTS,
    Channel,
    MemoryNotifier,
    Message,
    NoticeContent,
    SmtpNotifier,
    StaticUserDirectory,
    User,
    WebhookNotifier,
)
from closeloop.notify.channel import DEFAULT_CHANNEL
from closeloop.outbox import DeliveryReport
from closeloop.storage import Store
from closeloop.storage.base import Change
from closeloop.testing import FixedClock
from closeloop.testing.store_contract import make_notice
from closeloop.triggers import Trigger, nps_between
from http_endpoint import Endpoint
from smtp_server import HOST, SmtpServer

SECRET = "whsec_" + base64.b64encode(b"closeloop-case-event-signing-key").decode()
USERS = StaticUserDirectory({
    "alice": User(address="alice@example.test", display_name="Alice Doe"),
    "bob": User(address="bob@example.test"),
    "cx-team": User(address="cx-team@example.test"),
})


@pytest.fixture
def smtp() -> Iterator[SmtpServer]:
    """A real SMTP server on loopback."""
    with SmtpServer() as server:
        yield server


@pytest.fixture
def endpoint() -> Iterator[Endpoint]:
    """A real HTTP endpoint on loopback."""
    with Endpoint() as endpoint:
        yield endpoint


def email_notifier(server: SmtpServer) -> SmtpNotifier:
    """An SmtpNotifier for ``server`` that takes addresses from the loop's user directory."""
    return SmtpNotifier(HOST, server.port, sender="care@example.test", timeout=5)


class TestEmailAndWebhook:
    """notifiers={"email": ..., "chat": ...}: each channel's delivery stands on its own."""

    def test_failing_webhook_never_resends_the_email(
        self, store: Store, smtp: SmtpServer, endpoint: Endpoint
    ) -> None:
        """Webhook down: each email goes out exactly once while the webhook is retried until it works."""
        clock = FixedClock()
        endpoint.status = 503
        loop = CloseLoop(store=store, clock=clock, users=USERS, notifiers={
            "email": email_notifier(smtp), "chat": WebhookNotifier(endpoint.url, timeout=5),
        })
        cases = [loop.open_case(f"c-{n}", by="agent") for n in range(3)]
        for case in cases:
            loop.assign(case.id, to="alice", by="bob")
        assert len(smtp.received) == 3 and endpoint.requests == []
        for _ in range(4):  # the webhook keeps failing; back-off moves on the clock
            clock.advance(hours=1)
            assert loop.deliver_pending() == DeliveryReport(sent=0, failed=3)
        endpoint.status = 204
        clock.advance(hours=1)
        assert loop.deliver_pending() == DeliveryReport(sent=3, failed=0)
        assert loop.store.pending_notices() == []
        assert len(smtp.received) == 3
        emailed = Counter(r.parsed()["Message-ID"] for r in smtp.received)
        posted = Counter(headers_id for headers_id in
                         (p["data"]["notice_id"] for p in endpoint.payloads()))
        assert set(emailed.values()) == {1} and set(posted.values()) == {1}
        # Both channels carry the same message id for a notice: receivers can match them.
        assert {mid.strip("<>").split("@")[0] for mid in emailed} == set(posted)
        assert endpoint.answers.count(503) == 3 * 5

    def test_each_channel_gets_one_delivery_row(self, store: Store) -> None:
        """An assignment writes one outbox row per people channel, sharing a message id."""
        loop = CloseLoop(store=store, deliver_notices=False, notifiers={
            "email": MemoryNotifier(), "chat": MemoryNotifier(),
            "crm": Channel(MemoryNotifier(), people=False, events=["closed"]),
        })
        case = loop.open_case("c-1", by="agent")
        loop.assign(case.id, to="alice", by="bob")
        rows = loop.store.pending_notices()
        assert sorted(row.channel for row in rows) == ["chat", "email"]
        assert len({row.message_id for row in rows}) == 1
        assert len({row.id for row in rows}) == 2
        assert all(row.to == "alice" and row.content is not None for row in rows)


class TestCaseEventWebhooks:
    """Channel(events=...): case events through the outbox, signed the Standard Webhooks way."""

    def test_every_event_kind_arrives_signed(self, store: Store, endpoint: Endpoint) -> None:
        """Opened, assigned, status_changed, closed, escalated, response_attached: each verified."""
        clock = FixedClock()
        loop = CloseLoop(
            store=store, clock=clock, case_url="https://crm.example/cases/{case_id}",
            triggers=[Trigger("detractor", nps_between(0, 6))],
            escalation=EscalationPolicy(untouched_for=timedelta(days=1)),
            notifiers={"crm": Channel(WebhookNotifier(endpoint.url, secret=SECRET),
                                      people=False, events=CASE_EVENTS)},
        )
        case = loop.ingest(SurveyResponse(id="r-1", customer_id="c-42", score=2,
                                          comment="Late again"))
        assert case is not None
        loop.ingest(SurveyResponse(id="r-2", customer_id="c-42", score=1))
        loop.assign(case.id, to="alice", by="bob", comment="Please call")
        loop.set_status(case.id, Status.PROGRESS, by="alice")
        loop.comment(case.id, "Left a voicemail", by="alice")  # not a case event
        clock.advance(days=3)
        assert len(loop.escalate().escalated) == 1
        loop.set_status(case.id, Status.CLOSED, by="alice", comment="Refund issued")

        verified = [Webhook(SECRET).verify(body, headers) for headers, body in endpoint.requests]
        assert [payload["type"] for payload in verified] == [
            "closeloop.opened", "closeloop.response_attached", "closeloop.assigned",
            "closeloop.status_changed", "closeloop.escalated", "closeloop.closed",
        ]
        contents = [NoticeContent.from_dict(payload["data"]["content"]) for payload in verified]
        assert all(payload["data"]["to"] is None for payload in verified)
        assert all(c.links.change is None and c.links.case_page ==
                   f"https://crm.example/cases/{case.id}" for c in contents)
        opened, attached, assigned, progress, escalated, closed = contents
        assert opened.response is not None and opened.response.score == 2
        assert opened.response.comment == "Late again"
        assert attached.response is not None and attached.response.score == 1
        assert assigned.note is not None and (assigned.note.by, assigned.note.text) == (
            "bob", "Please call")
        assert (progress.from_status, progress.case.status) == ("open", "progress")
        assert escalated.why == "untouched"
        assert closed.note is not None and closed.note.text == "Refund issued"
        ids = [headers["webhook-id"] for headers, _ in endpoint.requests]
        assert len(set(ids)) == len(ids)

    def test_events_are_written_with_the_change_and_retried(
        self, store: Store, endpoint: Endpoint
    ) -> None:
        """A down endpoint loses no event: the deliveries wait in the outbox and go out later."""
        clock = FixedClock()
        endpoint.status = 500
        loop = CloseLoop(store=store, clock=clock, notifiers={
            "crm": Channel(WebhookNotifier(endpoint.url, secret=SECRET), people=False,
                           events=["opened", "closed"])})
        case = loop.open_case("c-1", by="agent")
        loop.set_status(case.id, Status.CLOSED, by="agent", comment="Duplicate")
        assert [n.kind for n in loop.store.pending_notices()] == ["opened", "closed"]
        endpoint.status = 204
        clock.advance(minutes=1)
        assert loop.deliver_pending().sent == 2
        types = [Webhook(SECRET).verify(body, headers)["type"] for headers, body in endpoint.requests]
        assert types == ["closeloop.opened", "closeloop.closed"]

    def test_an_email_channel_can_take_events_for_a_team_inbox(
        self, store: Store, smtp: SmtpServer
    ) -> None:
        """Channel(recipient=...) addresses case-event emails to a user the directory knows."""
        loop = CloseLoop(store=store, users=USERS, notifiers={
            "team": Channel(email_notifier(smtp), people=False, events=["opened"],
                            recipient="cx-team")})
        loop.open_case("c-9", by="agent", comment="Called in upset")
        (received,) = smtp.received
        assert received.rcpt_tos == ["cx-team@example.test"]
        assert received.parsed()["Subject"] == "c-9 · Normal priority · new case opened by agent"


class TestUnknownRecipient:
    """A recipient the notifier cannot reach: given up at once, and the history says so."""

    def test_unknown_assignee_is_given_up_and_recorded(
        self, store: Store, smtp: SmtpServer, endpoint: Endpoint
    ) -> None:
        """No address for carol: the email is abandoned with a notice_failed event; chat still gets it."""
        clock = FixedClock()
        loop = CloseLoop(store=store, clock=clock, users=USERS, notifiers={
            "email": email_notifier(smtp), "chat": WebhookNotifier(endpoint.url)})
        case = loop.open_case("c-1", by="agent")
        assigned = loop.assign(case.id, to="carol", by="bob")
        assert smtp.received == [] and len(endpoint.requests) == 1
        assert loop.store.pending_notices() == []
        failed = loop.history(case.id)[-1]
        assert isinstance(failed, NoticeFailed)
        assert (failed.actor, failed.notice_kind, failed.channel, failed.recipient) == (
            "closeloop", "assigned", "email", "carol")
        assert failed.comment is not None and "carol" in failed.comment
        assert loop.get(case.id).version == assigned.version + 1
        clock.advance(days=1)
        assert loop.deliver_pending() == DeliveryReport(sent=0, failed=0)

    def test_a_later_deliverer_gives_up_too(self, store: Store, smtp: SmtpServer) -> None:
        """A worker meeting an unknown recipient counts it abandoned, once."""
        loop = CloseLoop(store=store, users=USERS, deliver_notices=False,
                         notifiers={"email": email_notifier(smtp)})
        case = loop.open_case("c-1", by="agent")
        loop.assign(case.id, to="zed", by="bob")
        assert loop.deliver_pending() == DeliveryReport(sent=0, failed=0, abandoned=1)
        assert loop.deliver_pending() == DeliveryReport(sent=0, failed=0)
        assert [e.kind for e in loop.history(case.id)][-1] == "notice_failed"


class TestChannelRouting:
    """Which channel delivers a stored notice."""

    def test_default_channel_goes_to_the_first_people_channel(self, store: Store) -> None:
        """A notice written for the channel "default" (one notifier, or an older closeloop) is
        delivered through the first channel that takes notices for people."""
        writer = CloseLoop(store=store, deliver_notices=False)
        case = writer.open_case("c-1", by="agent")
        writer.assign(case.id, to="alice", by="bob")
        assert [n.channel for n in store.pending_notices()] == [DEFAULT_CHANNEL]
        hooks, email = MemoryNotifier(), MemoryNotifier()
        worker = CloseLoop(store=store, notifiers={
            "hooks": Channel(hooks, people=False, events=["opened"]), "email": email})
        assert worker.deliver_pending().sent == 1
        assert [m.to for m in email.sent] == ["alice"] and hooks.sent == []

    def test_a_channel_this_loop_lacks_waits_for_one_that_has_it(self, store: Store) -> None:
        """A delivery for a channel the deliverer does not have stays pending, saying why."""
        writer = CloseLoop(store=store, deliver_notices=False,
                           notifiers={"sms": MemoryNotifier()})
        case = writer.open_case("c-1", by="agent")
        writer.assign(case.id, to="alice", by="bob")
        other = CloseLoop(store=store, notifiers={"email": MemoryNotifier()})
        assert other.deliver_pending() == DeliveryReport(sent=0, failed=1)
        (waiting,) = store.pending_notices()
        assert waiting.last_error is not None and "'sms'" in waiting.last_error

    def test_stored_text_of_an_older_notice_is_sent_as_it_is(self, store: Store) -> None:
        """A notice stored as rendered text (no content) is delivered with that text."""
        outbox = MemoryNotifier()
        loop = CloseLoop(store=store, notifier=outbox)
        case = loop.open_case("c-1", by="agent")
        legacy = make_notice(case.id, "legacy-1", at=loop.now())
        event = Commented(case_id=case.id, actor="agent", at=loop.now(), seq=2, comment="x")
        store.commit(Change(case=evolve(case, version=2), expected_version=1, events=[event],
                            notices=[legacy]))
        assert loop.deliver_pending().sent == 1
        (message,) = outbox.sent
        assert isinstance(message, Message) and message.content is None
        assert (message.subject, message.text, message.notice_id) == (
            legacy.subject, legacy.text, "legacy-1")


class TestConfiguration:
    """Bad channel configuration is refused with InvalidInput naming the field."""

    @pytest.mark.parametrize(("arguments", "field"), [
        ({"notifier": MemoryNotifier(), "notifiers": {"a": MemoryNotifier()}}, "notifiers"),
        ({"notifiers": {}}, "notifiers"),
        ({"notifiers": {"a": "not a notifier"}}, "notifiers['a']"),
        ({"notifiers": {"": MemoryNotifier()}}, "notifiers"),
        ({"templates": "plain"}, "templates"),
        ({"users": {"alice": "a@x"}}, "users"),
        ({"case_url": "/cases/{case_id}"}, "case_url"),
    ])
    def test_loop_arguments(self, arguments: dict[str, object], field: str) -> None:
        """Each unusable loop argument names itself."""
        with pytest.raises(InvalidInput) as caught:
            CloseLoop(**arguments)  # type: ignore[arg-type]
        assert caught.value.field == field

    @pytest.mark.parametrize(("arguments", "field"), [
        ({"events": ["opened", "reopened"]}, "events"),
        ({"events": "opened"}, "events"),
        ({"people": False}, "events"),
        ({"people": "yes"}, "people"),
        ({"recipient": ""}, "recipient"),
        ({"templates": object()}, "templates"),
    ])
    def test_channel_arguments(self, arguments: dict[str, object], field: str) -> None:
        """Each unusable Channel argument names itself."""
        with pytest.raises(InvalidInput) as caught:
            Channel(MemoryNotifier(), **arguments)  # type: ignore[arg-type]
        assert caught.value.field == field
