"""The lists people look at: which cases (:class:`CaseQuery`), in what order, page by page.

A :class:`CaseQuery` holds filters (every one given must hold) and a sort.
``loop.page(query)`` returns a :class:`CasePage` of cases and an opaque cursor
for the next page; ``loop.count(query)`` returns :class:`CaseCounts` per status.

This module is also the **reference**: :func:`select_page` and
:func:`count_matching` compute the answer from plain cases in Python. The default
store methods (:class:`~closeloop.storage.BaseStore`) are built on them, and the
store contract holds every store's own, faster answer to them.

Orders (``sort=``; a leading ``-`` reverses the whole order):

============  ==============================================================
``opened``    oldest opened first (the default)
``updated``   least recently changed first
``due``       soonest due first, cases without a due date last; then oldest opened
``priority``  most urgent first (Urgent, High, Normal, Low); then oldest opened
============  ==============================================================

Ties are broken by the case id, so every order is total and a page boundary is
exact: that is what makes keyset pagination (see :mod:`closeloop.cursor`) stable.

Example::

    >>> from closeloop import CloseLoop
    >>> from closeloop.query import CaseQuery, UNASSIGNED
    >>> loop = CloseLoop()
    >>> case = loop.open_case("c-1", by="agent", priority="urgent")
    >>> [c.id for c in loop.page(CaseQuery(assignee=UNASSIGNED, sort="priority")).cases] == [case.id]
    True
"""

from __future__ import annotations

import enum
import hashlib
import json
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, Final, Literal, TypeAlias, TypeVar

import attrs
from attrs import field, frozen

from closeloop.errors import InvalidInput
from closeloop.model import Case, Priority, Status
from closeloop.reporting import full_counts, is_overdue
from closeloop.validate import (
    MAX_ID_LENGTH,
    attrs_validator,
    check_optional_id,
    check_status_name,
    optional_aware_datetime,
)

__all__ = [
    "MAX_PAGE_SIZE",
    "MAX_TEXT_LENGTH",
    "SORTS",
    "SORT_FIELDS",
    "UNASSIGNED",
    "URGENCY",
    "CaseCounts",
    "CasePage",
    "CaseQuery",
    "Position",
    "Sort",
    "Unassigned",
    "ascii_lower",
    "count_matching",
    "select_page",
]

#: Most cases one page may hold.
MAX_PAGE_SIZE = 500
#: Longest text a query may search comments for, in characters.
MAX_TEXT_LENGTH = MAX_ID_LENGTH

#: Sort name -> the case fields that order it, most significant first. The id comes
#: last in every order, so no two cases tie.
SORT_FIELDS: Mapping[str, tuple[str, ...]] = {
    "opened": ("opened_at", "id"),
    "updated": ("updated_at", "id"),
    "due": ("due_at", "opened_at", "id"),
    "priority": ("priority", "opened_at", "id"),
}
#: Every accepted ``sort=`` value.
SORTS: tuple[str, ...] = tuple(name for base in SORT_FIELDS for name in (base, f"-{base}"))

#: How a priority sorts under ``sort="priority"``: the most urgent first.
URGENCY: Mapping[Priority, int] = {
    Priority.URGENT: 0, Priority.HIGH: 1, Priority.NORMAL: 2, Priority.LOW: 3,
}

#: Where a page ends: the values of the sort's fields (:attr:`Sort.fields`) of the
#: last case listed. A store lists the cases that come after it.
Position: TypeAlias = tuple[Any, ...]

_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")
_T = TypeVar("_T")
#: Stands in for "no due date" in a Python sort key (the flag before it does the work).
_NO_TIME = datetime(1970, 1, 1, tzinfo=UTC)


class Unassigned(enum.Enum):
    """The type of :data:`UNASSIGNED`."""

    UNASSIGNED = "unassigned"

    def __repr__(self) -> str:
        return "UNASSIGNED"


#: ``CaseQuery(assignee=UNASSIGNED)``: cases nobody holds (``assignee=None`` means any).
UNASSIGNED: Final = Unassigned.UNASSIGNED


def ascii_lower(text: str) -> str:
    """``text`` with the ASCII letters A–Z lowered and every other character as it is.

    The comment search ignores the case of ASCII letters only, so that every store
    (SQLite without ICU, PostgreSQL in any locale, Python) agrees on what matches.
    """
    return text.translate(_ASCII_LOWER)


@frozen
class Sort:
    """A parsed ``sort=`` value: which order (:data:`SORT_FIELDS`) and whether reversed."""

    name: Literal["opened", "updated", "due", "priority"]
    descending: bool = False

    @classmethod
    def parse(cls, value: Any) -> Sort:
        """The sort named by ``value`` (``"due"``, ``"-opened"``, or a Sort), or InvalidInput."""
        if isinstance(value, Sort):
            return value
        if isinstance(value, str):
            name = value.removeprefix("-")
            if name in SORT_FIELDS:
                return cls(name, value.startswith("-"))  # type: ignore[arg-type]
        names = ", ".join(repr(name) for name in SORTS)
        raise InvalidInput("sort", value, f"unknown sort; expected one of {names}")

    def __str__(self) -> str:
        return f"-{self.name}" if self.descending else self.name

    @property
    def fields(self) -> tuple[str, ...]:
        """The case fields this order compares, most significant first (the id last)."""
        return SORT_FIELDS[self.name]

    def position(self, case: Case) -> Position:
        """Where ``case`` stands in this order: its values of :attr:`fields`."""
        return tuple(getattr(case, name) for name in self.fields)

    def key(self, position: Position) -> tuple[Any, ...]:
        """A Python sort key for a position: ascending keys follow this order (not reversed)."""
        return tuple(_KEY_PART[name](value) for name, value in zip(self.fields, position, strict=True))

    def case_key(self, case: Case) -> tuple[Any, ...]:
        """:meth:`key` of ``case``'s position."""
        return self.key(self.position(case))


def _plain(value: Any) -> Any:
    return value


_KEY_PART: Mapping[str, Callable[[Any], Any]] = {
    "opened_at": _plain,
    "updated_at": _plain,
    "id": _plain,
    "due_at": lambda due: (due is None, _NO_TIME if due is None else due),
    "priority": URGENCY.__getitem__,
}


# -- validating converters -----------------------------------------------------------------


def _assignee(value: str | Unassigned | None) -> str | Unassigned | None:
    if isinstance(value, Unassigned):
        return value
    return check_optional_id("assignee", value)


def _members(
    field_name: str, parse: Callable[[Any, str], _T], value: Any
) -> frozenset[_T] | None:
    """One value or a collection of them, each checked by ``parse(item, field_name)``, as a
    frozenset; ``None`` means any. (A filter on custom statuses would parse with check_id.)"""
    if value is None:
        return None
    items = [value] if isinstance(value, str | enum.Enum) else value
    if not isinstance(items, Iterable) or isinstance(items, Mapping):
        raise InvalidInput(field_name, value, "must be one value or a list of them")
    parsed = frozenset(parse(item, field_name) for item in items)
    if not parsed:
        raise InvalidInput(field_name, value, "must name at least one value (None means any)")
    return parsed


def _statuses(value: Status | str | Iterable[Status | str] | None) -> frozenset[Status] | None:
    return _members("status", Status.parse, value)


def _status_name(value: Any, field_name: str) -> str:
    name: str = check_status_name(field_name, value)
    return name


def _custom_statuses(value: str | Iterable[str] | None) -> frozenset[str] | None:
    return _members("custom_status", _status_name, value)


def _priorities(value: Priority | str | Iterable[Priority | str] | None) -> frozenset[Priority] | None:
    return _members("priority", Priority.parse, value)


def _optional_bool(instance: Any, attribute: Any, value: Any) -> None:
    if value is not None and not isinstance(value, bool):
        raise InvalidInput(attribute.name, value, "must be True, False or None")


def _text(instance: Any, attribute: Any, value: Any) -> None:
    if value is None:
        return
    if not isinstance(value, str):
        raise InvalidInput("text", value, "must be a string or None")
    if not value.strip():
        raise InvalidInput("text", value, "must not be blank (None means any)")
    if len(value) > MAX_TEXT_LENGTH or "\x00" in value:
        raise InvalidInput("text", value, f"must be at most {MAX_TEXT_LENGTH} characters, no NUL")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidInput("text", value, "must be valid Unicode (no lone surrogates)") from None


def _sort(value: str | Sort) -> Sort:
    return Sort.parse(value)


@frozen(kw_only=True)
class CaseQuery:
    """Which cases a list shows, and in what order. Every filter given must hold.

    Attributes:
        assignee: only this user's cases; :data:`UNASSIGNED` for cases nobody holds.
        status: only cases in this status category, or in any of these
            (``status=["open", "progress"]`` is everything not Closed).
        custom_status: only cases in this workflow status (``case.custom_status``, see
            :class:`~closeloop.workflow.Workflow`), or in any of these:
            ``custom_status="waiting"``. In the standard workflow it is the category's
            value, as ``status``.
        priority: only cases of this priority, or of any of these.
        reason: only cases with this reason (trigger name) among their reasons.
        customer_id: only this customer's cases.
        overdue: ``True`` for overdue cases only, ``False`` for the others
            (:func:`closeloop.reporting.is_overdue` at the time of the call).
        due_before: only cases with a due date earlier than this.
        opened_since, opened_until: only cases opened in ``[opened_since, opened_until)``.
        text: only cases with a comment containing this text anywhere in their history
            (the opening survey comment included), ignoring the case of ASCII letters.
            Stores search it differently; see each store's documentation.
        sort: the order (see :mod:`closeloop.query`): ``"opened"`` (default),
            ``"updated"``, ``"due"``, ``"priority"``, each reversed with a leading ``-``.

    Raises:
        InvalidInput: a filter or the sort is not acceptable (the error names it).
    """

    assignee: str | Unassigned | None = field(default=None, converter=_assignee)
    status: frozenset[Status] | None = field(default=None, converter=_statuses)
    custom_status: frozenset[str] | None = field(default=None, converter=_custom_statuses)
    priority: frozenset[Priority] | None = field(default=None, converter=_priorities)
    reason: str | None = field(default=None, validator=attrs_validator(check_optional_id))
    customer_id: str | None = field(default=None, validator=attrs_validator(check_optional_id))
    overdue: bool | None = field(default=None, validator=_optional_bool)
    due_before: datetime | None = field(
        default=None, validator=attrs_validator(optional_aware_datetime)
    )
    opened_since: datetime | None = field(
        default=None, validator=attrs_validator(optional_aware_datetime)
    )
    opened_until: datetime | None = field(
        default=None, validator=attrs_validator(optional_aware_datetime)
    )
    text: str | None = field(default=None, validator=_text)
    sort: Sort = field(default=Sort("opened"), converter=_sort)

    def __attrs_post_init__(self) -> None:
        if (self.opened_since is not None and self.opened_until is not None
                and self.opened_since >= self.opened_until):
            raise InvalidInput("opened_until", self.opened_until, "must be later than opened_since")

    def matches(self, case: Case, now: datetime) -> bool:
        """Whether ``case`` passes every filter but :attr:`text` (see :meth:`matches_comments`)."""
        wanted = self.assignee
        return (
            (wanted is None or case.assignee == (None if wanted is UNASSIGNED else wanted))
            and (self.status is None or case.status in self.status)
            and (self.custom_status is None or case.custom_status in self.custom_status)
            and (self.priority is None or case.priority in self.priority)
            and (self.reason is None or self.reason in case.reasons)
            and (self.customer_id is None or case.customer_id == self.customer_id)
            and (self.overdue is None or is_overdue(case, now) is self.overdue)
            and (self.due_before is None
                 or (case.due_at is not None and case.due_at < self.due_before))
            and (self.opened_since is None or case.opened_at >= self.opened_since)
            and (self.opened_until is None or case.opened_at < self.opened_until)
        )

    def matches_comments(self, comments: Iterable[str | None]) -> bool:
        """Whether the :attr:`text` filter holds for a case with these comments (``True`` if unset)."""
        if self.text is None:
            return True
        needle = ascii_lower(self.text)
        return any(comment is not None and needle in ascii_lower(comment) for comment in comments)

    def fingerprint(self) -> str:
        """A short digest of the filters and the sort: a cursor is only valid for its query."""
        parts = [[attribute.name, _canonical(getattr(self, attribute.name))]
                 for attribute in attrs.fields(CaseQuery)]
        digest = hashlib.blake2b(json.dumps(parts).encode(), digest_size=12)
        return digest.hexdigest()


def _canonical(value: Any) -> Any:
    """``value`` as JSON data that is equal exactly when the values are (for the fingerprint)."""
    if value is None or isinstance(value, bool | str):
        return value
    if value is UNASSIGNED:
        return {"unassigned": True}  # never equal to a user id, which is a string
    if isinstance(value, frozenset):
        return sorted(str(item) for item in value)
    if isinstance(value, datetime):
        return (value - _NO_TIME) // timedelta(microseconds=1)
    return str(value)  # Sort


@frozen
class CasePage:
    """One page of a query's cases.

    Attributes:
        cases: the cases on this page, in the query's order.
        next_cursor: pass it as ``after=`` to get the next page; ``None`` on the last page.
    """

    cases: tuple[Case, ...]
    next_cursor: str | None


@frozen
class CaseCounts:
    """How many cases a query matches, per status (and per assignee when asked).

    Attributes:
        by_status: every status, with how many matching cases are in it.
        by_assignee: per assignee (``None`` for unassigned cases), the same counts;
            only assignees with a matching case appear. Empty unless the count was
            asked for ``by_assignee=True``.
    """

    by_status: Mapping[Status, int]
    by_assignee: Mapping[str | None, Mapping[Status, int]] = field(factory=dict)

    @property
    def total(self) -> int:
        """How many cases match in all."""
        return sum(self.by_status.values())

    @classmethod
    def from_groups(
        cls, groups: Iterable[tuple[Status, str | None, int]], *, by_assignee: bool
    ) -> CaseCounts:
        """Counts from ``(status, assignee, n)`` groups, as a store's ``GROUP BY`` returns them.

        Without ``by_assignee`` the assignee of each group is ignored.
        """
        statuses: Counter[Status] = Counter()
        people: dict[str | None, Counter[Status]] = {}
        for status, assignee, count in groups:
            statuses[status] += count
            if by_assignee:
                people.setdefault(assignee, Counter())[status] += count
        return cls(full_counts(statuses),
                   {person: full_counts(counts) for person, counts in people.items()})


# -- the reference ---------------------------------------------------------------------------

#: A case's comments, oldest first, by case id (for the ``text`` filter).
Comments: TypeAlias = Callable[[str], Iterable[str | None]]


def select_page(
    cases: Iterable[Case],
    query: CaseQuery,
    *,
    now: datetime,
    after: Position | None,
    limit: int,
    comments: Comments,
) -> list[Case]:
    """The reference page: the first ``limit`` of ``cases`` that match, in order, after ``after``.

    ``comments`` is asked only for cases that pass every other filter, and only
    until the page is full.
    """
    sort = query.sort
    found = [case for case in cases if query.matches(case, now)]
    if after is not None:
        bound = sort.key(after)
        if sort.descending:
            found = [case for case in found if sort.case_key(case) < bound]
        else:
            found = [case for case in found if sort.case_key(case) > bound]
    found.sort(key=sort.case_key, reverse=sort.descending)
    if query.text is None:
        return found[:limit]
    page: list[Case] = []
    for case in found:
        if len(page) == limit:
            break
        if query.matches_comments(comments(case.id)):
            page.append(case)
    return page


def count_matching(
    cases: Iterable[Case],
    query: CaseQuery,
    *,
    now: datetime,
    by_assignee: bool,
    comments: Comments,
) -> CaseCounts:
    """The reference count: the ``cases`` that match ``query``, per status (and assignee)."""
    groups = Counter(
        (case.status, case.assignee) for case in cases
        if query.matches(case, now) and query.matches_comments(
            comments(case.id) if query.text is not None else ()
        )
    )
    return CaseCounts.from_groups(
        ((status, assignee, n) for (status, assignee), n in groups.items()),
        by_assignee=by_assignee,
    )
