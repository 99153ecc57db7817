"""One-touch with a team's workflow, on every store: the page offers its statuses and reasons."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import pytest

from closeloop import Case, CloseLoop, ConcurrentUpdate, Status, StatusChanged
from closeloop.notify import MemoryNotifier
from closeloop.onetouch import OneTouch, OneTouchPages, wsgi_app
from closeloop.storage import Store
from closeloop.testing import FixedClock
from test_onetouch_pages import call, confirmation_of, follow, outgoing  # tests/ is on sys.path
from workflow_apps import WORKFLOW

SECRET = "test secret for one-touch pages, 32+ bytes"


@pytest.fixture
def loop(store: Store, outbox: MemoryNotifier, clock: FixedClock) -> CloseLoop:
    """A loop with the example workflow and one-touch links."""
    return CloseLoop(store=store, notifier=outbox, clock=clock, workflow=WORKFLOW,
                     one_touch=OneTouch(SECRET, base_url="https://crm.example/one-touch"))


@pytest.fixture
def app(loop: CloseLoop) -> OneTouchPages:
    """The pages under test."""
    return wsgi_app(loop)


@pytest.fixture
def case(loop: CloseLoop) -> Case:
    """A case assigned to alice, waiting on the customer."""
    opened = loop.open_case("c-1", by="survey")
    loop.assign(opened.id, to="alice", by="bob")
    return loop.set_status(opened.id, "waiting", by="alice", comment="Asked for the order")


@pytest.fixture
def token(loop: CloseLoop, case: Case) -> str:
    """A link token for the case."""
    (value,) = parse_qs(urlsplit(loop.one_touch.link(case.id)).query)["token"]
    return value


def test_link_view_offers_the_allowed_statuses_and_reasons(loop: CloseLoop, token: str) -> None:
    """From waiting: progress and closed, with labels, and the close reasons."""
    view = loop.one_touch.open(token)
    assert view.allowed == ("progress", Status.CLOSED)
    assert [(s.name, s.label) for s in view.choices] == [("progress", "Progress"),
                                                         ("closed", "Closed")]
    assert (view.status.label, view.close_reasons) == ("Waiting on customer",
                                                       ("solved", "no-response"))


def test_page_prepare_and_confirm_with_a_close_reason(
    loop: CloseLoop, app: OneTouchPages, case: Case, token: str
) -> None:
    """The page shows labels and reasons; closing needs a reason; the confirmed change has it."""
    page = call(app, query=f"token={token}")
    assert page.status == 200
    assert "Waiting on customer" in page.text and "No response" in page.text
    assert {"status", "close_reason", "comment"} <= outgoing(page).fields
    missing = call(app, "POST", form={"action": "prepare", "token": token, "status": "closed",
                                      "comment": "No answer"})
    assert missing.status == 422 and "Choose why the case is closed" in missing.text
    assert loop.get(case.id) == case
    ready = call(app, "POST", form={"action": "prepare", "token": token, "status": "closed",
                                    "close_reason": "no-response", "comment": "No answer"})
    assert ready.status == 200
    assert "from <strong>Waiting on customer</strong> to <strong>Closed</strong>" in ready.text
    assert "because <strong>No response</strong>" in ready.text
    done = follow(app, call(app, "POST", form={"action": "confirm",
                                               "confirmation": confirmation_of(ready)}))
    assert done.status == 200 and "is now <strong>Closed</strong>" in done.text
    closed = loop.get(case.id)
    assert (closed.status, closed.custom_status, closed.close_reason) == (
        Status.CLOSED, "closed", "no-response")
    last = loop.history(case.id)[-1]
    assert isinstance(last, StatusChanged)
    assert (last.via, last.from_custom_status, last.close_reason) == ("one-touch", "waiting",
                                                                       "no-response")


def test_a_move_within_a_category_through_the_page(
    loop: CloseLoop, app: OneTouchPages, case: Case, token: str
) -> None:
    """waiting → progress (both Progress) is a change one-touch can make and confirm."""
    ready = call(app, "POST", form={"action": "prepare", "token": token, "status": "progress",
                                    "comment": "They answered"})
    assert "to <strong>Progress</strong>" in ready.text
    follow(app, call(app, "POST", form={"action": "confirm",
                                        "confirmation": confirmation_of(ready)}))
    assert loop.get(case.id).custom_status == "progress"


def test_confirm_refuses_when_the_custom_status_changed(
    loop: CloseLoop, case: Case, token: str
) -> None:
    """A change prepared in waiting is not confirmed after the case moved on and back."""
    pending = loop.one_touch.prepare(token, status="closed", comment="x", close_reason="solved")
    loop.set_status(case.id, "progress", by="alice")
    with pytest.raises(ConcurrentUpdate):
        loop.one_touch.confirm(pending.token)
