"""What a notice is about, as data: stored in the outbox, rendered at delivery.

A :class:`NoticeContent` holds the facts (the kind of notice, the case's fields,
who acted, the agent's note, the customer's response, the links) and no text.
Templates turn it into a subject and bodies when it is delivered, in the
recipient's language and time zone; a webhook sends it as JSON.

:meth:`NoticeContent.to_dict` and :meth:`NoticeContent.from_dict` convert it to
plain data (JSON-ready) and back, through closeloop's strict cattrs converter::

    >>> from datetime import datetime, timezone
    >>> at = datetime(2026, 1, 7, 9, 0, tzinfo=timezone.utc)
    >>> content = NoticeContent(kind="assigned", actor="bob", created_at=at,
    ...     case=CaseFacts(id="k-1", customer_id="c-42", status="open", opened_at=at))
    >>> NoticeContent.from_dict(content.to_dict()) == content
    True
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any, Final

from attrs import Attribute, field, frozen

from closeloop.convert import structure, unstructure
from closeloop.errors import InvalidInput
from closeloop.model import Case, Priority, Status, SurveyResponse
from closeloop.validate import (
    attrs_validator,
    check_comment,
    check_id,
    check_optional_id,
    check_response_comment,
    check_score,
    optional_stored_datetime,
    stored_datetime,
)

__all__ = [
    "CASE_EVENTS",
    "NOTICE_KINDS",
    "CaseFacts",
    "Links",
    "Note",
    "NoticeContent",
    "ResponseFacts",
]

#: The case-event kinds a channel can subscribe to (``Channel(events=...)``). A status
#: change to Closed is ``"closed"``; every other status change is ``"status_changed"``.
CASE_EVENTS: Final = (
    "opened", "assigned", "status_changed", "closed", "escalated", "response_attached",
)
#: Every kind of notice: the two addressed to a person (``assigned``, ``escalated``)
#: and the case-event kinds (the same names).
NOTICE_KINDS: Final = CASE_EVENTS


def _kind(instance: Any, attribute: Any, value: Any) -> None:
    if value not in NOTICE_KINDS:
        raise InvalidInput("kind", value, f"unknown notice kind; expected one of {', '.join(NOTICE_KINDS)}")


def _ids(name: str) -> Any:
    def validate(instance: Any, attribute: Any, value: tuple[str, ...]) -> None:
        for index, item in enumerate(value):
            check_id(f"{name}[{index}]", item)

    return validate


def _tuple(value: Any) -> tuple[str, ...]:
    if isinstance(value, str) or not hasattr(value, "__iter__"):
        raise InvalidInput("reasons", value, "must be a list of strings")
    return tuple(value)


def _status_value(value: Any) -> str:
    return Status.parse(value).value


def _optional_status_value(value: Any) -> str | None:
    return None if value is None else _status_value(value)


def _priority_value(value: Any) -> str:
    return Priority.parse(value).value


def _optional_seq(field: str, value: Any) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise InvalidInput(field, value, "must be a positive integer or None")


def _optional_url(instance: Any, attribute: Attribute[Any], value: Any) -> None:
    if value is not None and (not isinstance(value, str) or not value.startswith(("https://", "http://"))):
        raise InvalidInput(f"links.{attribute.name}", value, "must be an http(s) URL or None")


@frozen(kw_only=True)
class CaseFacts:
    """The case's fields as they were when the notice was written.

    Attributes:
        id: the case id.
        customer_id: whose case it is; a customer directory turns it into a name.
        status: the status category (``"open"``, ``"progress"``, ``"closed"``).
        status_label: how to show the status (a custom status's label, or
            ``"Open"``…); defaults to the category's display name.
        custom_status: the workflow's own status name, when it has one.
        priority: ``"low"``, ``"normal"``, ``"high"`` or ``"urgent"``.
        due_at: when the case is due (aware), if it has a due time.
        reasons: the names of the triggers (or rules) that opened it.
        assignee: who holds the case, if anyone.
        opened_at: when it was opened (aware).
    """

    id: str = field(validator=attrs_validator(check_id))
    customer_id: str = field(validator=attrs_validator(check_id))
    status: str = field(converter=_status_value)
    opened_at: datetime = field(validator=attrs_validator(stored_datetime))
    status_label: str = field(default="")
    custom_status: str | None = field(default=None, validator=attrs_validator(check_optional_id))
    priority: str = field(default="normal", converter=_priority_value)
    due_at: datetime | None = field(default=None, validator=attrs_validator(optional_stored_datetime))
    reasons: tuple[str, ...] = field(default=(), converter=_tuple, validator=_ids("reasons"))
    assignee: str | None = field(default=None, validator=attrs_validator(check_optional_id))

    def __attrs_post_init__(self) -> None:
        if not self.status_label:
            object.__setattr__(self, "status_label", Status(self.status).display_name)

    @classmethod
    def from_case(cls, case: Case, *, custom_status: str | None = None,
                  status_label: str | None = None) -> CaseFacts:
        """The facts of ``case``; a custom workflow passes its status name and label."""
        return cls(
            id=case.id, customer_id=case.customer_id, status=case.status,
            status_label=status_label or custom_status or case.status.display_name,
            custom_status=custom_status, priority=case.priority, due_at=case.due_at,
            reasons=case.reasons, assignee=case.assignee, opened_at=case.opened_at,
        )


@frozen(kw_only=True)
class Note:
    """A comment written by a closeloop user (an agent), never by the customer.

    Attributes:
        text: what they wrote.
        by: the user id of who wrote it (the assigner, the one who changed the status).
    """

    text: str = field(validator=attrs_validator(check_comment))
    by: str = field(validator=attrs_validator(check_id))


@frozen(kw_only=True)
class ResponseFacts:
    """The customer's survey response behind the notice: their own score and words.

    Attributes:
        id: the survey tool's response id.
        score: the NPS answer (0–10) or ``None``.
        comment: the customer's free-text answer; templates always quote it.
        submitted_at: when the customer submitted it.
    """

    id: str = field(validator=attrs_validator(check_id))
    score: int | None = field(default=None, validator=attrs_validator(check_score))
    comment: str | None = field(default=None, validator=attrs_validator(check_response_comment))
    submitted_at: datetime | None = field(
        default=None, validator=attrs_validator(optional_stored_datetime)
    )

    @classmethod
    def from_response(cls, response: SurveyResponse) -> ResponseFacts:
        """The facts of an ingested survey response."""
        return cls(id=response.id, score=response.score, comment=response.comment,
                   submitted_at=response.submitted_at)


@frozen(kw_only=True)
class Links:
    """The links a notice offers; each is optional.

    Attributes:
        change: the one-touch Change link (only the assignee gets one).
        case_page: the app's page for the case (``CloseLoop(case_url=...)``).
    """

    change: str | None = field(default=None, validator=_optional_url)
    case_page: str | None = field(default=None, validator=_optional_url)


@frozen(kw_only=True)
class NoticeContent:
    """What a notice is about: the facts, no text. Rendered by :class:`~closeloop.notify.Templates`.

    Attributes:
        kind: one of :data:`NOTICE_KINDS`.
        case: the case's fields when the notice was written.
        actor: who caused it: a user id, a trigger's name (``via="trigger"``) or
            the escalation actor.
        created_at: when the notice was written (aware).
        via: how the change was made when not through the app (``"trigger"``,
            ``"one-touch"``).
        note: an agent's comment that belongs to the change (the assigner's note,
            the status change's comment).
        response: the customer's survey response (score and comment), when the
            notice comes from one (a trigger opened the case, a response was attached).
        links: the one-touch Change link and the app's case page, each optional.
        from_status_label: how to show ``from_status`` (a workflow status's label).
        from_status: for ``status_changed`` and ``closed``, the status before
            (the case's status is the one after).
        why: for ``escalated``, ``"overdue"`` or ``"untouched"``.
        seq: for a case event, the event's position in the case's history (the
            case's version after it): a receiver orders one case's events by it and
            drops one it has seen. ``None`` for a notice to a person.
    """

    kind: str = field(validator=_kind)
    case: CaseFacts
    actor: str = field(validator=attrs_validator(check_id))
    created_at: datetime = field(validator=attrs_validator(stored_datetime))
    via: str | None = field(default=None, validator=attrs_validator(check_optional_id))
    note: Note | None = None
    response: ResponseFacts | None = None
    links: Links = field(factory=Links)
    from_status: str | None = field(default=None, converter=_optional_status_value)
    from_status_label: str | None = field(default=None)
    why: str | None = field(default=None, validator=attrs_validator(check_optional_id))
    seq: int | None = field(default=None, validator=attrs_validator(_optional_seq))

    def to_dict(self) -> dict[str, Any]:
        """Plain data (strings, numbers, lists, dicts; times as ISO 8601), ready for JSON."""
        data: dict[str, Any] = unstructure(self)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> NoticeContent:
        """Rebuild a content from :meth:`to_dict`'s output.

        Raises:
            InvalidInput: the data is not a notice content; the message names every
                bad path.
        """
        return structure(data, cls, "notice content")
