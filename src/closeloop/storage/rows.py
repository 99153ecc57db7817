"""Domain objects to SQL rows and back, shared by the SQL stores.

The stores agree on column order and differ only in how a time, a list of ids
and an event's kind-specific data are held (SQLite: integer microseconds and
JSON text; PostgreSQL: ``timestamptz``, ``text[]`` and ``jsonb``). A
:class:`RowCodec` takes those few conversions and does the rest.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any

import attrs
from attrs import frozen

from closeloop.convert import event_extra, structure_event
from closeloop.errors import StoreError
from closeloop.model import (
    CATEGORY_NAMES,
    Case,
    Event,
    Notice,
    Priority,
    ResponseRecord,
    Status,
    StatusChanged,
)
from closeloop.validate import MAX_ID_LENGTH, check_id, check_status_name, thaw

__all__ = [
    "CASE_COLUMNS",
    "CASE_PLACEHOLDERS",
    "EVENT_COLUMNS",
    "NOTICE_COLUMNS",
    "RESPONSE_COLUMNS",
    "RowCodec",
    "case_filters",
]

CASE_COLUMNS = (
    "id, customer_id, status, assignee, reasons, response_ids, priority, due_at, "
    "opened_at, updated_at, closed_at, opened_by, version, custom_status, close_reason, paused_at"
)
#: One placeholder per column of :data:`CASE_COLUMNS` (``?``; a store swaps in its own).
CASE_PLACEHOLDERS = ", ".join("?" for _ in CASE_COLUMNS.split(","))
#: The columns an update may change: customer_id, opened_at and opened_by never do.
CASE_UPDATE_COLUMNS = (
    "status", "assignee", "reasons", "response_ids", "priority", "due_at", "updated_at",
    "closed_at", "version", "custom_status", "close_reason", "paused_at",
)
#: Columns every update writes; the others only when :attr:`Change.fields` names them.
ALWAYS_UPDATED = frozenset({"updated_at", "version"})
EVENT_COLUMNS = "kind, case_id, actor, at, seq, comment, via, data"
_EVENT_COMMON = ("kind", "case_id", "actor", "at", "seq", "comment", "via")
NOTICE_COLUMNS = (
    "id, case_id, kind, recipient, subject, text, html, created_at, next_attempt_at, "
    "attempts, last_error, sent_at, channel, message_id, content, failed_at"
)
RESPONSE_COLUMNS = (
    "response_id, customer_id, outcome, case_id, score, submitted_at, received_at, content"
)


def case_filters(
    placeholder: str,
    *,
    assignee: str | None,
    status: Status | None,
    customer_id: str | None,
) -> tuple[str, list[Any]]:
    """The ``WHERE`` clause (or ``""``) and parameters of ``Store.find``'s filters."""
    clauses: list[str] = []
    params: list[Any] = []
    for column, value in (
        ("assignee", assignee),
        ("status", None if status is None else status.value),
        ("customer_id", customer_id),
    ):
        if value is not None:
            clauses.append(f"{column} = {placeholder}")
            params.append(value)
    return (f"WHERE {' AND '.join(clauses)}" if clauses else ""), params


def _same(value: Any) -> Any:
    return value


#: Column of :data:`CASE_UPDATE_COLUMNS` -> its value for a case, through a codec.
_UPDATE_VALUE: dict[str, Callable[[RowCodec, Case], Any]] = {
    "status": lambda codec, case: case.status.value,
    "assignee": lambda codec, case: case.assignee,
    "reasons": lambda codec, case: codec.ids_out(case.reasons),
    "response_ids": lambda codec, case: codec.ids_out(case.response_ids),
    "priority": lambda codec, case: case.priority.value,
    "due_at": lambda codec, case: None if case.due_at is None else codec.time_out(case.due_at),
    "updated_at": lambda codec, case: codec.time_out(case.updated_at),
    "closed_at": lambda codec, case: (
        None if case.closed_at is None else codec.time_out(case.closed_at)),
    "version": lambda codec, case: case.version,
    "custom_status": lambda codec, case: codec._workflow_out(case)[0],
    "close_reason": lambda codec, case: case.close_reason,
    "paused_at": lambda codec, case: (
        None if case.paused_at is None else codec.time_out(case.paused_at)),
}


_STATUSES = {status.value: status for status in Status}
_PRIORITIES = {priority.value: priority for priority in Priority}
#: Decoded lists of ids by their JSON text: reasons repeat across most cases.
_ID_LISTS: dict[str, tuple[str, ...]] = {}
_ID_LISTS_KEPT = 4096


def _status_name(field: str, value: Any) -> str:
    """``value`` if :func:`~closeloop.validate.check_status_name` accepts it, else ValueError."""
    if type(value) is not str:
        raise ValueError(f"{field} is a {type(value).__name__}, not a string")
    return check_status_name(field, value)


def _id(field: str, value: Any) -> str:
    """``value`` if :func:`~closeloop.validate.check_id` accepts it, else ValueError.

    Plain printable ids take the fast path; any other string gets the full check.
    A printable string has no control character and no lone surrogate.
    """
    if (type(value) is str and 0 < len(value) <= MAX_ID_LENGTH and value.isprintable()
            and not value.isspace()):
        return value
    if type(value) is not str:  # a str subclass would compare, but is not what was written
        raise ValueError(f"{field} is a {type(value).__name__}, not a string")
    return check_id(field, value)


#: What decoding a value closeloop never writes raises (InvalidInput is a ValueError).
_NOT_OURS = (ValueError, TypeError, KeyError, AttributeError, OverflowError)


def _corrupt(kind: str, key: Any, exc: Exception) -> StoreError:
    return StoreError(
        f"the {kind} row of {key!r} holds a value closeloop never writes ({exc}); "
        "it was changed outside closeloop or is damaged"
    )


#: The case fields :meth:`RowCodec.case_from_row` decodes, in the order it passes them.
_DECODED = ("id", "customer_id", "status", "assignee", "reasons", "response_ids", "priority",
            "due_at", "opened_at", "updated_at", "closed_at", "opened_by", "version",
            "custom_status", "close_reason", "paused_at")
_SETTERS = tuple(getattr(Case, name).__set__ for name in _DECODED)
def _default_of(field: attrs.Attribute[Any]) -> Callable[[], Any]:
    default: Any = field.default
    if isinstance(default, attrs.Factory):  # type: ignore[arg-type]
        factory: Callable[[], Any] = default.factory
        return factory
    return lambda: default


#: Any field a row does not hold gets its default (the columns may lag the model).
_REST = tuple(
    (getattr(Case, f.name).__set__, _default_of(f))
    for f in attrs.fields(Case) if f.name not in _DECODED
)


def _case(values: tuple[Any, ...]) -> Case:
    """A Case from checked values in :data:`_DECODED` order, without running validators.

    Unrolled on purpose: a loop over the setters costs twice as much, on every case read.
    """
    case: Case = object.__new__(Case)
    s0, s1, s2, s3, s4, s5, s6, s7, s8, s9, s10, s11, s12, s13, s14, s15 = _SETTERS
    v0, v1, v2, v3, v4, v5, v6, v7, v8, v9, v10, v11, v12, v13, v14, v15 = values
    s0(case, v0)
    s1(case, v1)
    s2(case, v2)
    s3(case, v3)
    s4(case, v4)
    s5(case, v5)
    s6(case, v6)
    s7(case, v7)
    s8(case, v8)
    s9(case, v9)
    s10(case, v10)
    s11(case, v11)
    s12(case, v12)
    s13(case, v13)
    s14(case, v14)
    s15(case, v15)
    if _REST:
        for setter, make in _REST:
            setter(case, make())
    return case


@functools.lru_cache(maxsize=256)
def update_columns(fields: frozenset[str] | None) -> tuple[str, ...]:
    """The case columns an update writes for :attr:`Change.fields`, in table order.

    ``None`` (any field may have changed) is every one of :data:`CASE_UPDATE_COLUMNS`.
    Setting a column to its own value still costs an update of every index on it
    (and, in PostgreSQL, the conversion of its parameter), so a status change does
    not rewrite the assignee or due-date columns.
    """
    if fields is None:
        return CASE_UPDATE_COLUMNS
    return tuple(column for column in CASE_UPDATE_COLUMNS
                 if column in fields or column in ALWAYS_UPDATED)


@frozen
class RowCodec:
    """Row conversions for one SQL dialect.

    Attributes:
        time_out / time_in: an aware datetime to the column value and back (the
            value read back must be an aware datetime equal to the one written).
        ids_out / ids_in: a tuple of ids (reasons, response ids) to the column value
            and back.
        data_out / data_in: an event's kind-specific dict to the column value and back.
        content_out: a notice's frozen content to the column value; by default
            ``data_out`` of its thawed copy.
    """

    time_out: Callable[[datetime], Any]
    time_in: Callable[[Any], datetime]
    ids_out: Callable[[tuple[str, ...]], Any]
    ids_in: Callable[[Any], Sequence[str]] = _same
    data_out: Callable[[dict[str, Any]], Any] = _same
    data_in: Callable[[Any], dict[str, Any]] = _same
    content_out: Callable[[Mapping[str, Any]], Any] | None = None
    #: Stored data of status changes, by their fields (see :meth:`_event_data`).
    _status_data: dict[tuple[Any, ...], Any] = attrs.field(factory=dict, init=False, eq=False,
                                                           repr=False)

    def _content_out(self, content: Mapping[str, Any] | None) -> Any:
        if content is None:
            return None
        if self.content_out is not None:
            return self.content_out(content)
        return self.data_out(thaw(content))

    def _optional_out(self, value: datetime | None) -> Any:
        return None if value is None else self.time_out(value)

    def _optional_in(self, value: Any) -> datetime | None:
        return None if value is None else self.time_in(value)

    def case_row(self, case: Case) -> tuple[Any, ...]:
        """All of :data:`CASE_COLUMNS`, in order."""
        return (
            case.id, case.customer_id, case.status.value, case.assignee,
            self.ids_out(case.reasons), self.ids_out(case.response_ids), case.priority.value,
            self._optional_out(case.due_at), self.time_out(case.opened_at),
            self.time_out(case.updated_at), self._optional_out(case.closed_at),
            case.opened_by, case.version, *self._workflow_out(case),
        )

    def case_update_row(self, case: Case) -> tuple[Any, ...]:
        """The values of :data:`CASE_UPDATE_COLUMNS`, in order."""
        return (
            case.status.value, case.assignee, self.ids_out(case.reasons),
            self.ids_out(case.response_ids), case.priority.value,
            self._optional_out(case.due_at), self.time_out(case.updated_at),
            self._optional_out(case.closed_at), case.version, *self._workflow_out(case),
        )

    def _workflow_out(self, case: Case) -> tuple[Any, Any, Any]:
        # custom_status is NULL when it is the category's own name (every case of the
        # standard workflow), so rows written before the column existed read the same.
        custom = None if case.custom_status == case.status.value else case.custom_status
        return custom, case.close_reason, self._optional_out(case.paused_at)

    def case_update_values(self, case: Case, columns: Sequence[str]) -> tuple[Any, ...]:
        """The values of some of :data:`CASE_UPDATE_COLUMNS`, in the order given.

        For an update that writes only what a change set: the columns it leaves
        alone are not even converted (the lists would cost a JSON encoding each).
        """
        return tuple(_UPDATE_VALUE[column](self, case) for column in columns)

    def case_from_row(self, row: Sequence[Any]) -> Case:
        """A case from a row of :data:`CASE_COLUMNS`; StoreError if the row is not one closeloop wrote.

        Reading cases is on every status change's path and every list, so the row is
        not passed through the validating constructor again: it is checked with
        cheap tests that accept exactly what the constructor accepts (the types, the
        id rules with a fast path for plain printable ids, the enums, the lists, the
        version, closed_at set exactly when Closed) and the case is built without
        validators (as :func:`~closeloop.model.trusted` does). A row changed outside
        closeloop, or damaged, is refused rather than becoming a wrong Case.
        """
        try:
            (case_id, customer_id, status, assignee, reasons, response_ids, priority, due_at,
             opened_at, updated_at, closed_at, opened_by, version, custom_status, close_reason,
             paused_at) = row
            status = _STATUSES[status]
            closed = self._optional_in(closed_at)
            paused = self._optional_in(paused_at)
            if (status is Status.CLOSED) != (closed is not None):
                raise ValueError("closed_at must be set exactly when the status is closed")
            if close_reason is not None and status is not Status.CLOSED:
                raise ValueError("close_reason is set only while the case is closed")
            if paused is not None and status is Status.CLOSED:
                raise ValueError("paused_at is set only while the case is not closed")
            if type(version) is not int or version < 1:
                raise ValueError(f"version {version!r} is not a positive integer")
            # NULL (or the category's own name) is the category's name: see _workflow_out.
            custom = status.value if custom_status is None else _status_name(
                "custom_status", custom_status)
            if custom in CATEGORY_NAMES:
                custom = status.value
            return _case((
                _id("id", case_id), _id("customer_id", customer_id), status,
                None if assignee is None else _id("assignee", assignee),
                self._ids("reasons", reasons), self._ids("response_ids", response_ids),
                _PRIORITIES[priority], self._optional_in(due_at), self.time_in(opened_at),
                self.time_in(updated_at), closed, _id("opened_by", opened_by), version,
                custom, None if close_reason is None else _status_name("close_reason", close_reason),
                paused,
            ))
        except _NOT_OURS as exc:
            raise _corrupt("case", row[0], exc) from exc

    def _ids(self, field: str, value: Any) -> tuple[str, ...]:
        """A list of ids from its column value, checked; repeated JSON texts are decoded once."""
        if type(value) is str:
            known = _ID_LISTS.get(value)
            if known is not None:
                return known
        items = self.ids_in(value)
        if type(items) is not list:
            raise ValueError(f"{field} is not a list")
        ids = tuple(_id(field, item) for item in items)
        if type(value) is str:
            if len(_ID_LISTS) >= _ID_LISTS_KEPT:
                _ID_LISTS.clear()
            _ID_LISTS[value] = ids
        return ids

    def event_row(self, event: Event) -> tuple[Any, ...]:
        """All of :data:`EVENT_COLUMNS`, in order."""
        return (
            event.kind, event.case_id, event.actor, self.time_out(event.at), event.seq,
            event.comment, event.via, self._event_data(event),
        )

    def _event_data(self, event: Event) -> Any:
        """An event's kind-specific fields as stored. A status change, the commonest
        event, leaves out what decoding restores (custom names equal to the
        categories', no close reason), and its few distinct texts are encoded once."""
        if type(event) is not StatusChanged:
            return self.data_out(event_extra(event))
        key = (event.from_status, event.to_status, event.from_custom_status,
               event.to_custom_status, event.close_reason)
        known = self._status_data.get(key)
        if known is None:
            data: dict[str, Any] = {"from_status": event.from_status.value,
                                    "to_status": event.to_status.value}
            if event.from_custom_status != event.from_status.value:
                data["from_custom_status"] = event.from_custom_status
            if event.to_custom_status != event.to_status.value:
                data["to_custom_status"] = event.to_custom_status
            if event.close_reason is not None:
                data["close_reason"] = event.close_reason
            if len(self._status_data) >= _ID_LISTS_KEPT:
                self._status_data.clear()
            known = self._status_data[key] = self.data_out(data)
        return known

    def event_from_row(self, row: Sequence[Any]) -> Event:
        """An event from a row of :data:`EVENT_COLUMNS`."""
        try:
            data = dict(zip(_EVENT_COMMON, row[:7], strict=True))
            data["at"] = self.time_in(row[3])
            data.update(self.data_in(row[7]))
            return structure_event(data)
        except _NOT_OURS as exc:
            raise _corrupt("event", row[1], exc) from exc

    def notice_row(self, notice: Notice) -> tuple[Any, ...]:
        """All of :data:`NOTICE_COLUMNS`, in order."""
        return (
            notice.id, notice.case_id, notice.kind, notice.to, notice.subject, notice.text,
            notice.html, self.time_out(notice.created_at), self.time_out(notice.next_attempt_at),
            notice.attempts, notice.last_error, self._optional_out(notice.sent_at),
            notice.channel, notice.message_id,
            self._content_out(notice.content),
            self._optional_out(notice.failed_at),
        )

    def notice_from_row(self, row: Sequence[Any]) -> Notice:
        """A notice from a row of :data:`NOTICE_COLUMNS`."""
        try:
            return Notice(
                id=row[0], case_id=row[1], kind=row[2], to=row[3], subject=row[4], text=row[5],
                html=row[6], created_at=self.time_in(row[7]),
                next_attempt_at=self.time_in(row[8]), attempts=row[9], last_error=row[10],
                sent_at=self._optional_in(row[11]), channel=row[12], message_id=row[13],
                content=None if row[14] is None else self.data_in(row[14]),
                failed_at=self._optional_in(row[15]),
            )
        except _NOT_OURS as exc:
            raise _corrupt("notice", row[0], exc) from exc

    def response_row(self, record: ResponseRecord) -> tuple[Any, ...]:
        """All of :data:`RESPONSE_COLUMNS`, in order."""
        return (
            record.response_id, record.customer_id, record.outcome, record.case_id, record.score,
            self.time_out(record.submitted_at), self.time_out(record.received_at), record.content,
        )

    def response_from_row(self, row: Sequence[Any]) -> ResponseRecord:
        """A response record from a row of :data:`RESPONSE_COLUMNS`."""
        try:
            return ResponseRecord(
                response_id=row[0], customer_id=row[1], outcome=row[2], case_id=row[3],
                score=row[4], submitted_at=self.time_in(row[5]), received_at=self.time_in(row[6]),
                content=row[7],
            )
        except _NOT_OURS as exc:
            raise _corrupt("response", row[0], exc) from exc

    @staticmethod
    def response_update_row(old: ResponseRecord, new: ResponseRecord) -> tuple[Any, ...]:
        """The parameters of an update guarded by the old record (see ``UPDATE_RESPONSE``).

        In order: the new outcome, case id, score, content and customer id; then the
        response id and the old content, outcome, case id and customer id the stored
        row must still have.
        """
        return (new.outcome, new.case_id, new.score, new.content, new.customer_id,
                old.response_id, old.content, old.outcome, old.case_id, old.customer_id)
