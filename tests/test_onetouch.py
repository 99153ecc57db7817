"""One-touch protocol: issuing, opening, preparing and confirming signed single-use links."""

from __future__ import annotations

import functools
import inspect
import json
import zlib
from collections.abc import Callable
from datetime import timedelta
from urllib.parse import parse_qs, urlsplit

import pytest
from hypothesis import given
from hypothesis import strategies as st
from itsdangerous import URLSafeSerializer
from itsdangerous.encoding import base64_decode, base64_encode

from closeloop import (
    Assigned,
    Case,
    CloseLoop,
    CommentPolicy,
    CommentRequired,
    ConcurrentUpdate,
    InvalidInput,
    Status,
    StatusChanged,
    TokenError,
    TokenExpired,
    TokenInvalid,
    TokenUsed,
    TransitionNotAllowed,
)
from closeloop.notify import MemoryNotifier
from closeloop.onetouch import VIA, LinkView, OneTouch, OneTouchService, PendingChange
from closeloop.storage import MemoryStore, Store
from closeloop.testing import FixedClock

SECRET = "test secret for one-touch links, 32+ bytes long"
OTHER_SECRET = "another secret, also long enough for signing"
BASE_URL = "https://crm.example/one-touch"


def make_loop(store: Store, outbox: MemoryNotifier, clock: FixedClock, **config: object) -> CloseLoop:
    """A loop with one-touch configured (any OneTouch argument may be overridden)."""
    options: dict[str, object] = {"secret_key": SECRET, "base_url": BASE_URL, **config}
    return CloseLoop(store=store, notifier=outbox, clock=clock,
                     one_touch=OneTouch(**options))  # type: ignore[arg-type]


def token_of(link: str) -> str:
    """The token parameter of a link."""
    (token,) = parse_qs(urlsplit(link).query)["token"]
    return token


@pytest.fixture
def loop(store: Store, outbox: MemoryNotifier, clock: FixedClock) -> CloseLoop:
    """A loop over each store kind with one-touch configured."""
    return make_loop(store, outbox, clock)


@pytest.fixture
def case(loop: CloseLoop) -> Case:
    """An Open case for customer c-42, assigned to alice."""
    opened = loop.open_case("c-42", by="agent-1", comment="Customer says: slow delivery")
    return loop.assign(opened.id, to="alice", by="bob")


@pytest.fixture
def token(loop: CloseLoop, case: Case) -> str:
    """A fresh link token for the case, issued now to alice."""
    return token_of(loop.one_touch.link(case.id))


class TestIssuing:
    """Links and the emails that carry them."""

    def test_assignment_email_carries_the_change_link(
        self, loop: CloseLoop, case: Case, outbox: MemoryNotifier
    ) -> None:
        """The assignee's email has the one-touch link as plain URL and as the Change button."""
        message = outbox.sent[-1]
        (link,) = [line.split(": ", 1)[1] for line in message.text.splitlines()
                   if line.startswith("Change: ")]
        assert link.startswith(f"{BASE_URL}?token=")
        assert f'href="{link}"' in message.html and ">Change</a>" in message.html
        assert loop.one_touch.open(token_of(link)).case.id == case.id

    def test_escalation_email_carries_the_change_link(
        self, loop: CloseLoop, outbox: MemoryNotifier, clock: FixedClock
    ) -> None:
        """An overdue case's escalation email to its assignee has a working one-touch link."""
        opened = loop.open_case("c-7", by="agent-1", due_at=clock() + timedelta(hours=1))
        case = loop.assign(opened.id, to="alice", by="bob")
        clock.advance(hours=2)
        loop.escalate()
        message = outbox.sent[-1]
        assert "escalated: overdue" in message.subject and message.to == "alice"
        (link,) = [line.split(": ", 1)[1] for line in message.text.splitlines()
                   if line.startswith("Change: ")]
        assert f'href="{link}"' in message.html
        view = loop.one_touch.open(token_of(link))
        assert (view.case.id, view.assignee) == (case.id, "alice")

    def test_each_link_is_new(self, loop: CloseLoop, case: Case) -> None:
        """Two links for the same case and assignee are different links."""
        assert loop.one_touch.link(case.id) != loop.one_touch.link(case.id)

    def test_existing_query_is_kept(self, store: Store, outbox: MemoryNotifier,
                                    clock: FixedClock) -> None:
        """A base URL with a query gets the token appended with '&'."""
        loop = make_loop(store, outbox, clock, base_url="https://crm.example/app?page=one-touch")
        case = loop.assign(loop.open_case("c-1", by="a").id, to="alice", by="bob")
        link = loop.one_touch.link(case.id)
        assert link.startswith("https://crm.example/app?page=one-touch&token=")
        assert loop.one_touch.open(token_of(link)).case.id == case.id

    def test_unassigned_case_gets_no_link(self, loop: CloseLoop) -> None:
        """A link belongs to an assignee, so an unassigned case has none."""
        case = loop.open_case("c-1", by="a")
        with pytest.raises(InvalidInput, match="no assignee"):
            loop.one_touch.link(case.id)

    def test_without_configuration(self, store: Store, outbox: MemoryNotifier) -> None:
        """Without one_touch=, loop.one_touch says how to configure it and emails use case_url."""
        loop = CloseLoop(store=store, notifier=outbox, case_url="https://crm.example/c/{case_id}")
        with pytest.raises(InvalidInput, match="not configured"):
            _ = loop.one_touch
        case = loop.assign(loop.open_case("c-1", by="a").id, to="alice", by="bob")
        assert f"https://crm.example/c/{case.id}" in outbox.sent[-1].text


class TestHappyPath:
    """Open, prepare, confirm."""

    def test_open_shows_what_the_update_page_needs(
        self, loop: CloseLoop, case: Case, token: str, clock: FixedClock
    ) -> None:
        """open() gives the case, its status, the statuses it may move to and the expiry."""
        view = loop.one_touch.open(token)
        assert isinstance(view, LinkView)
        assert view.case == loop.get(case.id)
        assert view.assignee == "alice"
        assert view.allowed == (Status.PROGRESS, Status.CLOSED)
        assert view.expires_at == clock() + timedelta(hours=24)
        assert [event.kind for event in view.history] == ["opened", "assigned"]

    def test_open_changes_nothing(self, loop: CloseLoop, case: Case, token: str) -> None:
        """Opening (as a mail scanner would) neither changes the case nor uses the link."""
        loop.one_touch.open(token)
        loop.one_touch.open(token)
        assert loop.get(case.id) == case
        assert loop.one_touch.prepare(token, status="closed", comment="ok").to_status is Status.CLOSED

    def test_confirm_applies_the_change_once_through_the_workflow(
        self, loop: CloseLoop, case: Case, token: str, clock: FixedClock
    ) -> None:
        """confirm() changes the status with the comment, as alice, via one-touch."""
        pending = loop.one_touch.prepare(token, status=Status.CLOSED, comment="Refund issued")
        assert isinstance(pending, PendingChange)
        assert (pending.case_id, pending.from_status, pending.to_status, pending.comment) == (
            case.id, Status.OPEN, Status.CLOSED, "Refund issued")
        assert pending.expires_at == clock() + timedelta(minutes=15)
        assert loop.get(case.id) == case  # nothing happens before confirmation
        clock.advance(minutes=1)
        changed = loop.one_touch.confirm(pending.token)
        assert changed == loop.get(case.id)
        assert (changed.status, changed.closed_at, changed.assignee) == (
            Status.CLOSED, clock(), "alice")
        assert loop.history(case.id)[-1] == StatusChanged(
            case_id=case.id, actor="alice", at=clock(), seq=3, comment="Refund issued",
            via=VIA, from_status=Status.OPEN, to_status=Status.CLOSED,
        )

    def test_pending_change_repr_hides_its_token(self, loop: CloseLoop, token: str) -> None:
        """The confirmation token stays out of a PendingChange's repr (and so out of logs)."""
        pending = loop.one_touch.prepare(token, status="progress", comment="on it")
        assert pending.token not in repr(pending)

    def test_loop_comment_policy_does_not_relax_the_comment(
        self, store: Store, outbox: MemoryNotifier, clock: FixedClock
    ) -> None:
        """Even with a policy that never asks for comments, a one-touch change needs one."""
        loop = CloseLoop(store=store, notifier=outbox, clock=clock,
                         comment_policy=CommentPolicy.none(),
                         one_touch=OneTouch(SECRET, base_url=BASE_URL))
        case = loop.assign(loop.open_case("c-1", by="a").id, to="alice", by="bob")
        with pytest.raises(CommentRequired):
            loop.one_touch.prepare(token_of(loop.one_touch.link(case.id)), status="progress",
                                   comment="")


class TestExpiry:
    """Links and confirmations expire by the loop's clock."""

    def test_link_works_at_exactly_max_age(
        self, loop: CloseLoop, case: Case, token: str, clock: FixedClock
    ) -> None:
        """At exactly 24 hours the link still opens, prepares and confirms."""
        clock.advance(hours=24)
        loop.one_touch.open(token)
        pending = loop.one_touch.prepare(token, status="closed", comment="just in time")
        assert pending.expires_at == clock()  # a confirmation never outlives its link
        assert loop.one_touch.confirm(pending.token).status is Status.CLOSED

    def test_link_expires_one_second_after_max_age(
        self, loop: CloseLoop, case: Case, token: str, clock: FixedClock
    ) -> None:
        """One second past 24 hours every step raises TokenExpired saying when it expired."""
        expiry = clock() + timedelta(hours=24)
        clock.advance(hours=23, minutes=50)
        pending = loop.one_touch.prepare(token, status="closed", comment="too late")
        clock.advance(minutes=10, seconds=1)
        for step in (lambda: loop.one_touch.open(token),
                     lambda: loop.one_touch.prepare(token, status="closed", comment="late"),
                     lambda: loop.one_touch.confirm(pending.token)):
            with pytest.raises(TokenExpired) as raised:
                step()
            assert raised.value.expired_at == expiry
        assert loop.get(case.id) == case

    def test_custom_max_age(self, store: Store, outbox: MemoryNotifier, clock: FixedClock) -> None:
        """max_age=2h: works at 2h, expired at 2h + 1s."""
        loop = make_loop(store, outbox, clock, max_age=timedelta(hours=2))
        case = loop.assign(loop.open_case("c-1", by="a").id, to="alice", by="bob")
        token = token_of(loop.one_touch.link(case.id))
        clock.advance(hours=2)
        assert loop.one_touch.open(token).expires_at == clock()
        clock.advance(seconds=1)
        with pytest.raises(TokenExpired):
            loop.one_touch.open(token)

    def test_confirmation_expires_after_confirm_max_age(
        self, loop: CloseLoop, case: Case, token: str, clock: FixedClock
    ) -> None:
        """A prepared change must be confirmed within 15 minutes; the link itself still works."""
        pending = loop.one_touch.prepare(token, status="closed", comment="done")
        clock.advance(minutes=15, seconds=1)
        with pytest.raises(TokenExpired) as raised:
            loop.one_touch.confirm(pending.token)
        assert raised.value.expired_at == pending.expires_at
        again = loop.one_touch.prepare(token, status="closed", comment="done")
        assert loop.one_touch.confirm(again.token).status is Status.CLOSED

    def test_max_age_is_read_when_the_link_is_used(
        self, store: Store, outbox: MemoryNotifier, clock: FixedClock
    ) -> None:
        """Shortening max_age in the configuration shortens links already sent."""
        loop = make_loop(store, outbox, clock)
        case = loop.assign(loop.open_case("c-1", by="a").id, to="alice", by="bob")
        token = token_of(loop.one_touch.link(case.id))
        clock.advance(hours=2)
        strict = make_loop(store, outbox, clock, max_age=timedelta(hours=1))
        with pytest.raises(TokenExpired):
            strict.one_touch.open(token)


def forge(token: str, **changes: object) -> str:
    """The token's payload with ``changes``, re-encoded, keeping the original signature."""
    payload, signature = token.rsplit(".", 1)
    raw = base64_decode(payload.lstrip("."))
    data = json.loads(zlib.decompress(raw) if payload.startswith(".") else raw)
    data.update(changes)
    encoded = base64_encode(json.dumps(data, separators=(",", ":")).encode()).decode()
    return f"{encoded}.{signature}"


class TestTampering:
    """Only tokens signed by the configuration, for the right purpose, are accepted."""

    def test_tampered_payload_is_invalid(self, loop: CloseLoop, case: Case, token: str) -> None:
        """Changing the case, assignee or issue time in a token breaks its signature."""
        other = loop.assign(loop.open_case("c-9", by="a").id, to="alice", by="bob")
        for changes in ({"c": other.id}, {"a": "mallory"}, {"t": 4_000_000_000}):
            with pytest.raises(TokenInvalid):
                loop.one_touch.open(forge(token, **changes))

    def test_altered_spelling_of_the_signature_is_invalid(
        self, loop: CloseLoop, token: str
    ) -> None:
        """A signature whose last character differs only in unused bits is still refused."""
        payload, signature = token.rsplit(".", 1)
        alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
        index = alphabet.index(signature[-1])
        twins = [alphabet[index ^ bit] for bit in (1, 2, 3)]  # 32 bytes leave 2 bits unused
        assert any(base64_decode(signature[:-1] + twin) == base64_decode(signature)
                   for twin in twins)
        for twin in twins:
            with pytest.raises(TokenInvalid):
                loop.one_touch.open(f"{payload}.{signature[:-1]}{twin}")
        with pytest.raises(TokenInvalid):
            loop.one_touch.open(f"{payload}.{signature[:10]}!{signature[10:]}")

    def test_wrong_key_is_invalid(self, store: Store, outbox: MemoryNotifier, clock: FixedClock,
                                  case: Case, token: str) -> None:
        """A link signed with another key is refused."""
        stranger = make_loop(store, outbox, clock, secret_key=OTHER_SECRET)
        with pytest.raises(TokenInvalid):
            stranger.one_touch.open(token)

    def test_rotated_key_still_verifies(self, store: Store, outbox: MemoryNotifier,
                                        clock: FixedClock, case: Case, token: str) -> None:
        """After rotation (old key kept, new key last) old links work and new ones use the new key."""
        rotated = make_loop(store, outbox, clock, secret_key=[SECRET, OTHER_SECRET])
        assert rotated.one_touch.open(token).case.id == case.id
        fresh = token_of(rotated.one_touch.link(case.id))
        only_new = make_loop(store, outbox, clock, secret_key=OTHER_SECRET)
        assert only_new.one_touch.open(fresh).case.id == case.id
        with pytest.raises(TokenInvalid):
            only_new.one_touch.open(token)  # the old key retired: old links stop

    def test_confirmation_token_is_not_a_link(self, loop: CloseLoop, token: str) -> None:
        """A confirmation token used as a link is refused, and a link as a confirmation."""
        pending = loop.one_touch.prepare(token, status="closed", comment="done")
        with pytest.raises(TokenInvalid):
            loop.one_touch.open(pending.token)
        with pytest.raises(TokenInvalid):
            loop.one_touch.prepare(pending.token, status="closed", comment="done")
        with pytest.raises(TokenInvalid):
            loop.one_touch.confirm(token)

    def test_same_key_other_salt_is_invalid(self, loop: CloseLoop, case: Case) -> None:
        """A token signed with the right key but without closeloop's salt is refused."""
        raw = URLSafeSerializer(SECRET).dumps({"i": "x", "c": case.id, "a": "alice", "t": 0})
        with pytest.raises(TokenInvalid):
            loop.one_touch.open(raw)

    @pytest.mark.parametrize("bad", ["", "no-dot", ".", "a.b.c", None, 42, b"bytes", "x" * 5000])
    def test_garbage_is_invalid(self, loop: CloseLoop, bad: object) -> None:
        """Anything that is not a token at all is TokenInvalid, never another error."""
        with pytest.raises(TokenInvalid):
            loop.one_touch.open(bad)  # type: ignore[arg-type]
        with pytest.raises(TokenInvalid):
            loop.one_touch.confirm(bad)  # type: ignore[arg-type]

    def test_errors_reveal_no_case_details(
        self, loop: CloseLoop, case: Case, token: str, clock: FixedClock
    ) -> None:
        """No token error names the case, the customer or the assignee."""
        errors: list[TokenError] = []
        for attempt in (lambda: loop.one_touch.open(forge(token, a="mallory")),
                        lambda: loop.one_touch.open(token[:-3])):
            with pytest.raises(TokenError) as raised:
                attempt()
            errors.append(raised.value)
        clock.advance(days=2)
        with pytest.raises(TokenExpired) as expired:
            loop.one_touch.open(token)
        errors.append(expired.value)
        for error in errors:
            for detail in (case.id, "c-42", "alice", "slow delivery"):
                assert detail not in str(error)


class TestSingleUse:
    """A link changes its case once."""

    def test_second_use_is_refused(self, loop: CloseLoop, case: Case, token: str) -> None:
        """After a confirmed change, the link cannot open, prepare or confirm again."""
        first = loop.one_touch.prepare(token, status="progress", comment="on it")
        second = loop.one_touch.prepare(token, status="closed", comment="done")
        loop.one_touch.confirm(first.token)
        for step in (lambda: loop.one_touch.confirm(first.token),
                     lambda: loop.one_touch.confirm(second.token),
                     lambda: loop.one_touch.open(token),
                     lambda: loop.one_touch.prepare(token, status="closed", comment="again")):
            with pytest.raises(TokenUsed):
                step()
        assert loop.get(case.id).status is Status.PROGRESS
        assert [e.kind for e in loop.history(case.id)].count("status_changed") == 1

    def test_a_new_link_works_after_the_old_one_was_used(
        self, loop: CloseLoop, case: Case, token: str
    ) -> None:
        """Single use is per link: a new email's link can change the case again."""
        loop.one_touch.confirm(loop.one_touch.prepare(token, status="progress", comment="a").token)
        fresh = token_of(loop.one_touch.link(case.id))
        loop.one_touch.confirm(loop.one_touch.prepare(fresh, status="closed", comment="b").token)
        assert loop.get(case.id).status is Status.CLOSED


class TestReassignment:
    """A link belongs to the assignee it was sent to."""

    def test_reassigned_case_refuses_the_old_link(self, loop: CloseLoop, case: Case,
                                                  token: str) -> None:
        """Once the case is reassigned to bob, alice's link and her pending change are invalid."""
        pending = loop.one_touch.prepare(token, status="closed", comment="done")
        loop.assign(case.id, to="bob", by="manager")
        for step in (lambda: loop.one_touch.open(token),
                     lambda: loop.one_touch.prepare(token, status="closed", comment="x"),
                     lambda: loop.one_touch.confirm(pending.token)):
            with pytest.raises(TokenInvalid, match="reassigned") as raised:
                step()
            assert raised.value.reason == "the case was reassigned"
        assert loop.get(case.id).status is Status.OPEN
        bobs = token_of(loop.one_touch.link(case.id))
        assert loop.one_touch.open(bobs).assignee == "bob"


class TestRules:
    """The workflow's rules and the comment rule apply to one-touch changes."""

    @pytest.mark.parametrize("comment", ["", "   ", " \n\t ", None])
    def test_blank_comment_is_refused(self, loop: CloseLoop, token: str, comment: str | None) -> None:
        """A missing, empty or whitespace-only comment raises CommentRequired."""
        with pytest.raises(CommentRequired):
            loop.one_touch.prepare(token, status="progress", comment=comment)  # type: ignore[arg-type]

    def test_overlong_comment_is_refused(self, loop: CloseLoop, token: str) -> None:
        """A comment over the length limit is InvalidInput naming the comment."""
        with pytest.raises(InvalidInput) as raised:
            loop.one_touch.prepare(token, status="progress", comment="x" * 10_001)
        assert raised.value.field == "comment"

    def test_forbidden_status_is_refused(self, loop: CloseLoop, case: Case) -> None:
        """A Closed case cannot go to Progress, nor a case to its own status."""
        loop.set_status(case.id, Status.CLOSED, by="alice", comment="done")
        token = token_of(loop.one_touch.link(case.id))
        assert loop.one_touch.open(token).allowed == (Status.OPEN,)
        for status in (Status.PROGRESS, Status.CLOSED):
            with pytest.raises(TransitionNotAllowed):
                loop.one_touch.prepare(token, status=status, comment="try")

    def test_unknown_status_is_invalid_input(self, loop: CloseLoop, token: str) -> None:
        """A status that does not exist is InvalidInput naming the status field."""
        with pytest.raises(InvalidInput) as raised:
            loop.one_touch.prepare(token, status="escalated", comment="x")
        assert raised.value.field == "status"

    def test_status_changed_since_prepare(self, loop: CloseLoop, case: Case, token: str) -> None:
        """If someone moved the case after prepare, confirm refuses and the link stays usable."""
        pending = loop.one_touch.prepare(token, status="closed", comment="done")
        loop.set_status(case.id, Status.PROGRESS, by="bob")
        with pytest.raises(ConcurrentUpdate):
            loop.one_touch.confirm(pending.token)
        assert loop.get(case.id).status is Status.PROGRESS
        again = loop.one_touch.prepare(token, status="closed", comment="done")
        assert loop.one_touch.confirm(again.token).status is Status.CLOSED

    def test_unrelated_change_since_prepare(self, loop: CloseLoop, case: Case, token: str) -> None:
        """A comment added between prepare and confirm does not block the change."""
        pending = loop.one_touch.prepare(token, status="closed", comment="done")
        loop.comment(case.id, "Customer called again", by="bob")
        assert loop.one_touch.confirm(pending.token).status is Status.CLOSED


class TestNeverReassigns:
    """No one-touch path can change who holds the case."""

    def test_no_entry_point_takes_an_assignee(self) -> None:
        """None of the service's public methods has a parameter for a new assignee."""
        for name, method in inspect.getmembers(OneTouchService, inspect.isfunction):
            if not name.startswith("_"):
                assert not {"to", "assignee", "assign_to"} & set(inspect.signature(method).parameters)

    def test_every_change_keeps_the_assignee(
        self, loop: CloseLoop, case: Case, clock: FixedClock
    ) -> None:
        """Through every status move by link, the assignee stays alice and no assignment is added."""
        for target in (Status.PROGRESS, Status.OPEN, Status.CLOSED, Status.OPEN):
            token = token_of(loop.one_touch.link(case.id))
            loop.one_touch.confirm(loop.one_touch.prepare(token, status=target, comment="x").token)
            assert loop.get(case.id).assignee == "alice"
        assert [e for e in loop.history(case.id) if isinstance(e, Assigned)] == [
            loop.history(case.id)[1]]


class TestConfiguration:
    """OneTouch refuses a weak or malformed configuration, and never shows its secret."""

    @pytest.mark.parametrize("secret", ["short", b"x" * 31, ["x" * 40, "short"], [], 12345])
    def test_weak_or_malformed_secret_is_refused(self, secret: object) -> None:
        """Keys under 32 bytes (or not keys at all) raise InvalidInput naming secret_key."""
        with pytest.raises(InvalidInput) as raised:
            OneTouch(secret, base_url=BASE_URL)  # type: ignore[arg-type]
        assert raised.value.field.startswith("secret_key")
        if isinstance(secret, str):
            assert secret not in str(raised.value)

    def test_secret_is_never_shown(self) -> None:
        """Neither repr nor an error message contains the secret."""
        assert SECRET not in repr(OneTouch(SECRET, base_url=BASE_URL))
        almost = "s3cr3t-" * 4  # 28 bytes
        with pytest.raises(InvalidInput) as raised:
            OneTouch(almost, base_url=BASE_URL)
        assert almost not in str(raised.value) and almost not in repr(raised.value.value)

    @pytest.mark.parametrize("url", ["/one-touch", "ftp://x.example/", "https://", "https://x/#a",
                                     "https://x/one touch", 7])
    def test_bad_base_url_is_refused(self, url: object) -> None:
        """The base URL must be an absolute http(s) URL without a fragment."""
        with pytest.raises(InvalidInput) as raised:
            OneTouch(SECRET, base_url=url)  # type: ignore[arg-type]
        assert raised.value.field == "base_url"

    @pytest.mark.parametrize("field", ["max_age", "confirm_max_age"])
    @pytest.mark.parametrize("value", [timedelta(0), timedelta(seconds=-1), 3600])
    def test_lifetimes_must_be_positive(self, field: str, value: object) -> None:
        """max_age and confirm_max_age must be positive timedeltas."""
        with pytest.raises(InvalidInput) as raised:
            OneTouch(SECRET, base_url=BASE_URL, **{field: value})  # type: ignore[arg-type]
        assert raised.value.field == field

    def test_loop_refuses_something_else_as_one_touch(self) -> None:
        """CloseLoop(one_touch=...) must be given a OneTouch."""
        with pytest.raises(InvalidInput) as raised:
            CloseLoop(one_touch="https://crm.example")  # type: ignore[arg-type]
        assert raised.value.field == "one_touch"


# -- property tests: altered tokens never verify ----------------------------------------


@functools.cache
def _fixture_tokens() -> tuple[CloseLoop, str, str, str]:
    """One loop (memory store), a case, a link token and a confirmation token for it."""
    loop = CloseLoop(store=MemoryStore(), notifier=MemoryNotifier(), clock=FixedClock(),
                     one_touch=OneTouch(SECRET, base_url=BASE_URL))
    case = loop.assign(loop.open_case("c-1", by="a").id, to="alice", by="bob")
    link = token_of(loop.one_touch.link(case.id))
    pending = loop.one_touch.prepare(link, status="closed", comment="déjà vu ✓ " * 20)
    return loop, case.id, link, pending.token


def _flip(token: str, index: int, mask: int) -> str:
    data = bytearray(token.encode("ascii"))
    data[index % len(data)] ^= mask
    return data.decode("latin-1")


def _assert_refused(use: Callable[[str], object], token: str) -> None:
    with pytest.raises(TokenInvalid):
        use(token)


@given(index=st.integers(min_value=0), mask=st.integers(min_value=1, max_value=255))
def test_flipped_link_tokens_are_invalid(index: int, mask: int) -> None:
    """Any byte of a link token flipped in any way: TokenInvalid, never a crash or another case."""
    loop, _, link, _ = _fixture_tokens()
    _assert_refused(loop.one_touch.open, _flip(link, index, mask))


@given(index=st.integers(min_value=0), mask=st.integers(min_value=1, max_value=255))
def test_flipped_confirmation_tokens_are_invalid(index: int, mask: int) -> None:
    """Any byte of a confirmation token flipped: TokenInvalid, and the case is untouched."""
    loop, case_id, _, confirmation = _fixture_tokens()
    _assert_refused(loop.one_touch.confirm, _flip(confirmation, index, mask))
    assert loop.get(case_id).status is Status.OPEN


@given(data=st.data())
def test_truncated_tokens_are_invalid(data: st.DataObject) -> None:
    """Every proper prefix or suffix of a valid token is TokenInvalid."""
    loop, case_id, link, confirmation = _fixture_tokens()
    token = data.draw(st.sampled_from([link, confirmation]))
    cut = data.draw(st.integers(min_value=0, max_value=len(token) - 1))
    for piece in (token[:cut], token[len(token) - cut:]):
        _assert_refused(loop.one_touch.open, piece)
        _assert_refused(loop.one_touch.confirm, piece)
    assert loop.get(case_id).status is Status.OPEN
