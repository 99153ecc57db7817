"""The domain values: survey responses, cases, their history events and notices.

All are frozen attrs classes validated at construction, so an invalid one
cannot exist; change them with :func:`attrs.evolve`. :mod:`closeloop.convert`
turns them into plain data and back.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping
from datetime import datetime
from operator import attrgetter
from typing import Any, Literal, TypeAlias, TypeVar

import attrs
from attrs import field, frozen

from closeloop._codegen import _Source
from closeloop.errors import InvalidInput
from closeloop.validate import (
    FrozenDict,
    attrs_validator,
    check_bool,
    check_id,
    check_int,
    check_optional_id,
    check_optional_label,
    check_response_comment,
    check_score,
    check_status_name,
    freeze_answers,
    optional_aware_datetime,
    optional_stored_datetime,
    stored_datetime,
)

__all__ = [
    "Assigned",
    "Case",
    "Commented",
    "Erased",
    "Escalated",
    "Event",
    "Notice",
    "NoticeFailed",
    "Opened",
    "Priority",
    "ResponseAttached",
    "ResponseRecord",
    "ResponseUpdated",
    "Status",
    "StatusChanged",
    "SurveyResponse",
]


class Status(enum.StrEnum):
    """The three standard case statuses. Values are stored; display names are shown."""

    OPEN = "open"
    PROGRESS = "progress"
    CLOSED = "closed"

    @property
    def display_name(self) -> str:
        """``"Open"``, ``"Progress"`` or ``"Closed"``."""
        return self.value.capitalize()

    @classmethod
    def parse(cls, value: Any, field: str = "status") -> Status:
        """Return the status named by ``value`` (a Status or its value), or raise InvalidInput."""
        if isinstance(value, Status):
            return value
        if isinstance(value, str):
            try:
                return cls(value.lower())
            except ValueError:
                pass
        names = ", ".join(repr(s.value) for s in cls)
        raise InvalidInput(field, value, f"unknown status; expected one of {names}")


class Priority(enum.StrEnum):
    """How urgent a case is; triggers set it, reports and lists can sort by it."""

    LOW = "low"
    NORMAL = "normal"
    HIGH = "high"
    URGENT = "urgent"

    @classmethod
    def parse(cls, value: Any, field: str = "priority") -> Priority:
        """Return the priority named by ``value``, or raise InvalidInput."""
        if isinstance(value, Priority):
            return value
        if isinstance(value, str):
            try:
                return cls(value.lower())
            except ValueError:
                pass
        names = ", ".join(repr(p.value) for p in cls)
        raise InvalidInput(field, value, f"unknown priority; expected one of {names}")


def _status(value: Any) -> Status:
    return Status.parse(value)


def _priority(value: Any) -> Priority:
    return Priority.parse(value)


#: The categories' values: a custom status named like a category belongs to it.
CATEGORY_NAMES = frozenset(status.value for status in Status)


def _category_value(instance: Any) -> str:
    return str(instance.status.value)


def _from_value(instance: Any) -> str:
    return str(instance.from_status.value)


def _to_value(instance: Any) -> str:
    return str(instance.to_status.value)


def _optional_status_name(field_name: str, value: Any) -> None:
    if value is not None:
        check_status_name(field_name, value)


def _frozen_answers(value: Any) -> Mapping[str, Any]:
    return freeze_answers("answers", value)


def _ids(field_name: str) -> Any:
    def validate(instance: Any, attribute: Any, value: tuple[str, ...]) -> None:
        for index, item in enumerate(value):
            check_id(f"{field_name}[{index}]", item)

    return validate


def _to_tuple(value: Any) -> tuple[str, ...]:
    if isinstance(value, str) or not hasattr(value, "__iter__"):
        raise InvalidInput("reasons", value, "must be a list of strings")
    return tuple(value)


@frozen
class SurveyResponse:
    """One answered survey, as the survey tool delivered it.

    Args:
        id: the survey tool's response id; ingesting the same id twice opens nothing new.
        customer_id: who answered.
        score: NPS answer, an ``int`` 0–10, or ``None`` when skipped.
        contact_requested: the "please contact me" box.
        comment: the free-text answer, up to
            :data:`~closeloop.validate.MAX_RESPONSE_COMMENT_LENGTH` (100,000) characters.
        answers: any other answers, keyed by question: JSON-like values (strings,
            numbers, booleans, ``None``, lists, mappings), nested at most
            :data:`~closeloop.validate.MAX_ANSWER_DEPTH` levels and at most
            :data:`~closeloop.validate.MAX_ANSWERS_SIZE` characters in all. They are
            held read-only: mappings as :class:`~closeloop.validate.FrozenDict`
            (equal to the dict given), lists as tuples.
        submitted_at: when the customer submitted it (aware); ``None`` means "now"
            on ingest.
    """

    id: str = field(validator=attrs_validator(check_id))
    customer_id: str = field(validator=attrs_validator(check_id))
    score: int | None = field(default=None, validator=attrs_validator(check_score))
    contact_requested: bool = field(default=False, validator=attrs_validator(check_bool))
    comment: str | None = field(default=None, validator=attrs_validator(check_response_comment))
    answers: Mapping[str, Any] = field(factory=dict, converter=_frozen_answers)
    submitted_at: datetime | None = field(
        default=None, validator=attrs_validator(optional_aware_datetime)
    )


@frozen
class Case:
    """A piece of follow-up work for one customer.

    ``version`` starts at 1 and grows by exactly one with every change; it is
    also the number of events in the case's history. ``closed_at`` is set while
    the case is Closed and cleared when it is reopened.

    ``status`` is always one of the three categories; ``custom_status`` is the
    workflow's own name for where the case is (``"waiting"``, see
    :class:`~closeloop.workflow.Workflow`). It defaults to the category's value, and a
    ``custom_status`` that names a category always follows ``status`` (so
    ``attrs.evolve(case, status=Status.CLOSED)`` of a case in the default workflow
    stays consistent). ``close_reason`` is why the case was closed, set only while
    it is Closed. ``paused_at`` is when its SLA clock was paused (it entered a
    status that pauses the SLA), ``None`` while the clock runs; a paused case is
    never overdue.
    """

    id: str = field(validator=attrs_validator(check_id))
    customer_id: str = field(validator=attrs_validator(check_id))
    status: Status = field(converter=_status)
    opened_at: datetime = field(validator=attrs_validator(stored_datetime))
    updated_at: datetime = field(validator=attrs_validator(stored_datetime))
    opened_by: str = field(validator=attrs_validator(check_id))
    version: int = field()
    assignee: str | None = field(default=None, validator=attrs_validator(check_optional_id))
    reasons: tuple[str, ...] = field(default=(), converter=_to_tuple, validator=_ids("reasons"))
    response_ids: tuple[str, ...] = field(
        default=(), converter=_to_tuple, validator=_ids("response_ids")
    )
    priority: Priority = field(default=Priority.NORMAL, converter=_priority)
    due_at: datetime | None = field(
        default=None, validator=attrs_validator(optional_stored_datetime)
    )
    closed_at: datetime | None = field(
        default=None, validator=attrs_validator(optional_stored_datetime)
    )
    custom_status: str = field(
        default=attrs.Factory(_category_value, takes_self=True),
        validator=attrs_validator(check_status_name),
    )
    close_reason: str | None = field(
        default=None, validator=attrs_validator(_optional_status_name)
    )
    paused_at: datetime | None = field(
        default=None, validator=attrs_validator(optional_stored_datetime)
    )

    @version.validator
    def _check_version(self, attribute: Any, value: Any) -> None:
        check_int("version", value, minimum=1)

    def __attrs_post_init__(self) -> None:
        if (self.status is Status.CLOSED) != (self.closed_at is not None):
            raise InvalidInput(
                "closed_at", self.closed_at, f"must be set exactly when the status is Closed "
                f"(status is {self.status.display_name})"
            )
        if self.custom_status in CATEGORY_NAMES and self.custom_status != self.status.value:
            object.__setattr__(self, "custom_status", self.status.value)
        if self.close_reason is not None and self.status is not Status.CLOSED:
            raise InvalidInput("close_reason", self.close_reason,
                               f"is set only while the case is Closed (status is "
                               f"{self.status.display_name})")
        if self.paused_at is not None and self.status is Status.CLOSED:
            raise InvalidInput("paused_at", self.paused_at,
                               "is set only while the case is not Closed")


@frozen(kw_only=True)
class _EventBase:
    case_id: str = field(validator=attrs_validator(check_id))
    actor: str = field(validator=attrs_validator(check_id))
    at: datetime = field(validator=attrs_validator(stored_datetime))
    #: Position in the case's history; equals the case version the event produced.
    seq: int = field()
    # The response's own bound: an opened/attached event carries the survey comment.
    # Agent comments are held to MAX_COMMENT_LENGTH by the facade before they get here.
    comment: str | None = field(default=None, validator=attrs_validator(check_response_comment))
    #: How the change was made when not through the app: ``"one-touch"``, ``"trigger"``.
    via: str | None = field(default=None, validator=attrs_validator(check_optional_label))


@frozen(kw_only=True)
class Opened(_EventBase):
    """The case was opened, by hand (actor = agent) or by a trigger (actor = trigger name)."""

    kind: Literal["opened"] = "opened"
    status: Status = field(default=Status.OPEN, converter=_status)


@frozen(kw_only=True)
class Assigned(_EventBase):
    """``actor`` assigned the case to ``assignee`` (``previous`` held it before)."""

    kind: Literal["assigned"] = "assigned"
    assignee: str = field(validator=attrs_validator(check_id))
    previous: str | None = field(default=None)

    @property
    def assigner(self) -> str:
        """Who assigned the case (the event's actor)."""
        return self.actor


@frozen(kw_only=True)
class StatusChanged(_EventBase):
    """The status moved from ``from_status`` to ``to_status`` (the categories).

    ``from_custom_status`` and ``to_custom_status`` are the workflow's names for
    the two statuses (by default the categories' values); ``close_reason`` is why
    the case was closed, on a change into a closed status that gave one.
    """

    kind: Literal["status_changed"] = "status_changed"
    from_status: Status = field(converter=_status)
    to_status: Status = field(converter=_status)
    from_custom_status: str = field(
        default=attrs.Factory(_from_value, takes_self=True),
        validator=attrs_validator(check_status_name),
    )
    to_custom_status: str = field(
        default=attrs.Factory(_to_value, takes_self=True),
        validator=attrs_validator(check_status_name),
    )
    close_reason: str | None = field(
        default=None, validator=attrs_validator(_optional_status_name)
    )


@frozen(kw_only=True)
class Commented(_EventBase):
    """An agent's comment on the case. It never emails the customer."""

    kind: Literal["commented"] = "commented"


@frozen(kw_only=True)
class ResponseAttached(_EventBase):
    """A further survey response from the customer was attached to this open case."""

    kind: Literal["response_attached"] = "response_attached"
    response_id: str = field(validator=attrs_validator(check_id))
    reasons: tuple[str, ...] = field(default=(), converter=_to_tuple)


@frozen(kw_only=True)
class ResponseUpdated(_EventBase):
    """A response already on this case arrived again with new content (a late comment,
    a changed score, a box ticked on a later page).

    ``actor`` is the customer who changed their answers; ``comment`` is the new
    comment when it changed; ``changed`` names what changed (``"score"``,
    ``"contact_requested"``, ``"comment"``, ``"answers.<name>"``); ``score`` is the
    score now; ``reasons`` are the triggers the new content matches.
    """

    kind: Literal["response_updated"] = "response_updated"
    response_id: str = field(validator=attrs_validator(check_id))
    changed: tuple[str, ...] = field(default=(), converter=_to_tuple)
    score: int | None = field(default=None, validator=attrs_validator(check_score))
    reasons: tuple[str, ...] = field(default=(), converter=_to_tuple)


@frozen(kw_only=True)
class Escalated(_EventBase):
    """The case was escalated (overdue or untouched); ``notified`` got the notice."""

    kind: Literal["escalated"] = "escalated"
    notified: str | None = field(default=None)
    why: str = field(default="overdue")


@frozen(kw_only=True)
class NoticeFailed(_EventBase):
    """A notice about the case was given up: ``channel`` cannot deliver it to ``recipient``.

    Written by the outbox (actor ``"closeloop"``) when a notifier reports the
    recipient unknown (:class:`~closeloop.errors.RecipientUnknown`): retrying
    cannot help, so the delivery ends and the history says so. ``comment`` holds
    the notifier's reason; ``notice_kind`` is the notice's kind (``"assigned"``…).
    """

    kind: Literal["notice_failed"] = "notice_failed"
    notice_kind: str = field(validator=attrs_validator(check_id))
    channel: str = field(validator=attrs_validator(check_id))
    recipient: str | None = field(default=None, validator=attrs_validator(check_optional_id))


@frozen(kw_only=True)
class Erased(_EventBase):
    """The customer's personal data in this case was erased (``actor`` did it).

    Appended by :meth:`CloseLoop.erase_customer <closeloop.CloseLoop.erase_customer>`
    (``why="request"``) or :meth:`CloseLoop.purge <closeloop.CloseLoop.purge>`
    (``why="retention"``) after every other event of the case was redacted. It
    holds no personal data, is not a first action, and leaves ``updated_at`` as
    it was: reports read the case as before.
    """

    kind: Literal["erased"] = "erased"
    why: Literal["request", "retention"] = field(default="request")

    @why.validator
    def _check_why(self, attribute: Any, value: Any) -> None:
        if value not in ("request", "retention"):
            raise InvalidInput("why", value, "must be 'request' or 'retention'")


Event: TypeAlias = (
    Opened | Assigned | StatusChanged | Commented | ResponseAttached | ResponseUpdated | Escalated
    | NoticeFailed | Erased
)

#: Event class by its ``kind``.
EVENT_TYPES: dict[str, type[Event]] = {
    "opened": Opened,
    "assigned": Assigned,
    "status_changed": StatusChanged,
    "commented": Commented,
    "response_attached": ResponseAttached,
    "response_updated": ResponseUpdated,
    "escalated": Escalated,
    "notice_failed": NoticeFailed,
    "erased": Erased,
}


@frozen(kw_only=True)
class ResponseRecord:
    """What closeloop remembers of an ingested survey response.

    Every ingested response is recorded, matched or not, so ingesting the same id
    again is recognised. ``outcome`` is ``"opened"`` (it opened ``case_id``),
    ``"attached"`` (it was attached to ``case_id``) or ``"ignored"`` (no trigger
    matched; ``case_id`` is ``None``). ``content`` is the response's score, contact
    box, comment and answers as canonical JSON (see
    :func:`~closeloop.response_content.response_content`): a later delivery with other content
    is an update, with the same content a duplicate. It is ``None`` for records
    written before closeloop kept it; a repeat of those is taken as a duplicate.
    """

    response_id: str = field(validator=attrs_validator(check_id))
    customer_id: str = field(validator=attrs_validator(check_id))
    outcome: Literal["opened", "attached", "ignored"]
    received_at: datetime = field(validator=attrs_validator(stored_datetime))
    submitted_at: datetime = field(validator=attrs_validator(stored_datetime))
    score: int | None = field(default=None, validator=attrs_validator(check_score))
    case_id: str | None = field(default=None, validator=attrs_validator(check_optional_id))
    content: str | None = None


def _frozen_content(value: Any) -> Mapping[str, Any] | None:
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise InvalidInput("content", value, "must be a mapping (a NoticeContent's to_dict()) or None")
    frozen = _freeze_json(value)
    assert isinstance(frozen, FrozenDict)
    return frozen


def _freeze_json(value: Any) -> Any:
    # JSON-like data held read-only and comparable however it was read back:
    # mappings as FrozenDict, lists as tuples (a store's JSON gives lists). The
    # common leaves and dicts are told by their exact type first: the abstract
    # Mapping check is the slow one, and every notice's content passes through here.
    kind = type(value)
    if kind is str or kind is int or kind is float or kind is bool or value is None:
        return value
    if kind is dict or kind is FrozenDict or isinstance(value, Mapping):
        return FrozenDict({key: _freeze_json(item) for key, item in value.items()})
    if isinstance(value, list | tuple):
        return tuple(_freeze_json(item) for item in value)
    return value


def _same_id(notice: Notice) -> str:
    return notice.id


@frozen(kw_only=True)
class Notice:
    """One delivery in the outbox: a notice on its way through one channel.

    A notice (an assignment, an escalation, a case event) is written in the same
    transaction as its change, as one Notice per channel that takes it. Each
    delivery has its own attempts, lease (``next_attempt_at``) and back-off, so a
    failing channel never makes another send again. The deliveries of one notice
    share ``message_id``, which a notifier turns into the email's Message-ID or
    the ``webhook-id``: a receiver can drop a repeat after a crash.

    Attributes:
        id: this delivery's id.
        case_id: the case the notice is about.
        kind: ``"assigned"``, ``"escalated"``, or a case-event kind (``"opened"``…).
        to: the user id it is addressed to; ``None`` for a case event sent to a
            channel that needs no recipient (a webhook).
        channel: the name of the channel (``CloseLoop(notifiers={name: ...})``);
            ``"default"`` for a loop with one ``notifier``.
        message_id: shared by every delivery of the same notice; default ``id``.
        content: what the notice is about, as plain data
            (:meth:`closeloop.notify.NoticeContent.to_dict`), rendered by templates
            when it is delivered. Held read-only (mappings as ``FrozenDict``, lists as
            tuples). ``None`` for a notice written before notices were data.
        subject, text, html: the text of a notice written before notices were data
            (an older closeloop rendered it when writing); empty otherwise.
        created_at: when it was written.
        next_attempt_at: no deliverer takes it before this time (its current claim
            or back-off).
        attempts: failed attempts so far.
        last_error: the last failure, for people reading the outbox.
        sent_at: when it was delivered; ``None`` while pending.
        failed_at: when it was given up (its recipient is unknown); ``None`` otherwise.
    """

    id: str = field(validator=attrs_validator(check_id))
    case_id: str = field(validator=attrs_validator(check_id))
    kind: str = field(validator=attrs_validator(check_id))
    to: str | None = field(validator=attrs_validator(check_optional_id))
    created_at: datetime = field(validator=attrs_validator(stored_datetime))
    next_attempt_at: datetime = field(validator=attrs_validator(stored_datetime))
    channel: str = field(default="default", validator=attrs_validator(check_id))
    message_id: str = field(
        default=attrs.Factory(_same_id, takes_self=True), validator=attrs_validator(check_id)
    )
    content: Mapping[str, Any] | None = field(default=None, converter=_frozen_content)
    subject: str = field(default="")
    text: str = ""
    html: str = ""
    attempts: int = 0
    last_error: str | None = None
    sent_at: datetime | None = None
    failed_at: datetime | None = None

    @subject.validator
    def _check_subject(self, attribute: Any, value: Any) -> None:
        if not isinstance(value, str) or "\r" in value or "\n" in value:
            raise InvalidInput("subject", value, "must be a single line of text")

    @property
    def pending(self) -> bool:
        """Neither delivered nor given up."""
        return self.sent_at is None and self.failed_at is None


# -- trusted construction ---------------------------------------------------------------

_T = TypeVar("_T")
_DEFAULTS: dict[type[Any], tuple[tuple[str, Any], ...]] = {}
_BUILDERS: dict[type[Any], Callable[[Mapping[str, Any]], Any]] = {}
_MISSING = object()


def _defaults(cls: type[Any]) -> tuple[tuple[str, Any], ...]:
    known = _DEFAULTS.get(cls)
    if known is None:
        known = _DEFAULTS[cls] = tuple(
            (attribute.name, attribute.default) for attribute in attrs.fields(cls)
        )
    return known


def _builder(cls: type[_T]) -> Callable[[Mapping[str, Any]], _T]:
    """A function building ``cls`` from a mapping of checked values, generated once.

    One line per field, each setting the slot directly (a loop over the fields
    costs twice as much, and this runs twice on every status change). Fields are
    set in order, so a ``takes_self`` default sees the fields before it. A missing
    field without a default raises KeyError.
    """
    known = _BUILDERS.get(cls)
    if known is not None:
        return known
    source = _Source()
    new, klass, missing = (source.constant(value) for value in (object.__new__, cls, _MISSING))
    lines = ["def build(values):", f"    self = {new}({klass})", "    get = values.get"]
    for name, default in _defaults(cls):
        setter = source.constant(getattr(cls, name).__set__)
        key = source.constant(name)
        if default is attrs.NOTHING:
            lines.append(f"    {setter}(self, values[{key}])")
        elif isinstance(default, attrs.Factory):  # type: ignore[arg-type]
            factory = source.constant(default.factory)
            made = f"{factory}(self)" if default.takes_self else f"{factory}()"
            lines += [f"    value = get({key}, {missing})",
                      f"    {setter}(self, {made} if value is {missing} else value)"]
        else:
            lines.append(f"    {setter}(self, get({key}, {source.constant(default)}))")
    lines.append("    return self")
    built: Callable[[Mapping[str, Any]], _T] = source.compile(lines, "build")
    _BUILDERS[cls] = built
    return built


def trusted(cls: type[_T], values: Mapping[str, Any]) -> _T:
    """Build ``cls`` from values that were already validated, without validating them again.

    For closeloop's own hot paths only: values computed from objects that were
    validated when they were made (a case read back and a new ``updated_at``),
    or rows a store wrote itself. Missing fields take their defaults. Anything
    that comes from outside goes through the normal constructor.
    """
    try:
        return _builder(cls)(values)
    except KeyError as exc:
        if exc.args and exc.args[0] in values:  # not a missing field: a factory's own error
            raise
        raise TypeError(f"{cls.__name__} needs {exc.args[0]!r}") from None


def evolve_trusted(case: Case, **changes: Any) -> Case:
    """``attrs.evolve(case, **changes)`` for changes closeloop computed itself.

    Only the cross-field rules (``closed_at`` set exactly when Closed, and those on
    ``custom_status``, ``close_reason`` and ``paused_at``) are checked again; each
    changed value must already be valid.
    """
    values = dict(zip(_CASE_FIELDS, _case_values(case), strict=True))
    values.update(changes)
    updated = _builder(Case)(values)
    updated.__attrs_post_init__()
    return updated


_CASE_FIELDS: tuple[str, ...] = tuple(attribute.name for attribute in attrs.fields(Case))
_case_values: Callable[[Case], tuple[Any, ...]] = attrgetter(*_CASE_FIELDS)
