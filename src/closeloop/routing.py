"""Routing: who a case opened by a trigger is assigned to.

Pure domain logic: nothing here reads a clock, a database or the network. A
:class:`Router` picks a user id from the response; the only state it may touch
is the :class:`RotationState` it is handed (the facade passes its store), which
is how :func:`round_robin` stays fair across restarts and processes.

A trigger's ``assign_to`` is a user id, a :class:`Router`, a function
``(response) -> user id | None``, or ``None``; :func:`to_router` turns each
into a router. Routers compose::

    first_of(from_answer("account_manager"), round_robin(["ana", "ben"]), fallback="cx-team")

:mod:`closeloop.triggers` re-exports everything public here.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from typing import Any, Protocol, TypeAlias, runtime_checkable

import attrs
from attrs import field, frozen

from closeloop.errors import InvalidInput, StoreError
from closeloop.model import SurveyResponse
from closeloop.predicates import MAX_DEPTH
from closeloop.validate import (
    MAX_ID_LENGTH,
    attrs_validator,
    check_callable,
    check_id,
    check_optional_id,
)

__all__ = [
    "FirstOf",
    "FromAnswer",
    "FunctionRouter",
    "RotationState",
    "RoundRobin",
    "Router",
    "RouterLike",
    "ToUser",
    "first_of",
    "from_answer",
    "round_robin",
    "to_router",
]


@runtime_checkable
class RotationState(Protocol):
    """Protocol: where :func:`round_robin` routers keep whose turn it is.

    The facade passes its store, which implements this, so a rotation survives
    restarts and stays fair across processes sharing the store.
    """

    def next_in_rotation(self, key: str, size: int) -> int:
        """Return whose turn it is in rotation ``key`` of ``size`` members, and advance it.

        The result is an index ``0 <= i < size``. Successive calls for one key
        cycle through ``0, 1, …, size - 1, 0, …``: keep a count per key and
        return ``count % size`` (so a changed ``size`` just continues the count).
        Reading and advancing is one atomic step, so concurrent callers (threads
        or processes sharing the store) each get a turn of their own.
        """
        ...


@runtime_checkable
class Router(Protocol):
    """Protocol: chooses who a newly opened case is assigned to.

    Example, a router that sends Spanish responses to one team member::

        class BySurveyLanguage:
            def route(self, response, rotation):
                return "maria" if response.answers.get("language") == "es" else None
    """

    def route(self, response: SurveyResponse, rotation: RotationState) -> str | None:
        """Return the user id to assign the case to, or ``None`` to leave it unassigned."""
        ...


#: Anything a trigger accepts as ``assign_to``: a user id, a :class:`Router`,
#: a function ``(response) -> user id | None``, or ``None``.
RouterLike: TypeAlias = "str | Router | Callable[[SurveyResponse], str | None] | None"


@frozen
class ToUser:
    """Always the same user (what a plain user id in ``assign_to`` means)."""

    user: str = field(validator=attrs_validator(check_id))

    def route(self, response: SurveyResponse, rotation: RotationState) -> str | None:
        """Return the user."""
        return self.user


@frozen
class FromAnswer:
    """The user named by an answer of the response. See :func:`from_answer`."""

    key: str = field(validator=attrs_validator(check_id))

    def route(self, response: SurveyResponse, rotation: RotationState) -> str | None:
        """Return the answer if it is a usable user id, else ``None``."""
        answer = response.answers.get(self.key)
        try:
            return check_id(self.key, answer)
        except InvalidInput:
            return None


def _users(value: Any) -> tuple[str, ...]:
    if isinstance(value, str) or not isinstance(value, Sequence):
        raise InvalidInput("users", value, "must be a list of user ids")
    if not value:
        raise InvalidInput("users", value, "needs at least one user")
    return tuple(check_id(f"users[{index}]", user) for index, user in enumerate(value))


def _rotation_key(users: tuple[str, ...]) -> str:
    key = "round_robin:" + ",".join(users)
    if len(key) <= MAX_ID_LENGTH:
        return key
    digest = hashlib.sha256("\x00".join(users).encode()).hexdigest()
    return f"round_robin:sha256:{digest[:40]}"


def _default_rotation_key(router: RoundRobin) -> str:
    return _rotation_key(router.users)


@frozen
class RoundRobin:
    """Each user in turn, the turn kept in the store. See :func:`round_robin`."""

    users: tuple[str, ...] = field(converter=_users)
    key: str = field(
        default=attrs.Factory(_default_rotation_key, takes_self=True),
        validator=attrs_validator(check_id),
    )

    def route(self, response: SurveyResponse, rotation: RotationState) -> str | None:
        """Return the user whose turn it is, advancing the rotation."""
        size = len(self.users)
        index = rotation.next_in_rotation(self.key, size)
        if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < size:
            raise StoreError(
                f"rotation {self.key!r} returned turn {index!r}; expected 0 to {size - 1}"
            )
        return self.users[index]


def _routers(value: Any) -> tuple[Router, ...]:
    routers = tuple(to_router(item, f"routers[{index}]") for index, item in enumerate(value))
    if not routers or any(router is None for router in routers):
        raise InvalidInput("routers", value, "must be one or more routers (not None)")
    depth = 1 + max(_router_depth(router) for router in routers)
    if depth > MAX_DEPTH:
        raise InvalidInput("routers", depth, f"may nest at most {MAX_DEPTH} levels deep")
    return routers  # type: ignore[return-value]  # None was refused above


def _router_depth(router: Any) -> int:
    return 1 + max(map(_router_depth, router.routers)) if isinstance(router, FirstOf) else 1


@frozen
class FirstOf:
    """The first router that names someone, else ``fallback``. See :func:`first_of`."""

    routers: tuple[Router, ...] = field(converter=_routers)
    fallback: str | None = field(default=None, validator=attrs_validator(check_optional_id))

    def route(self, response: SurveyResponse, rotation: RotationState) -> str | None:
        """Ask each router in order; later routers (and their rotations) are not consulted."""
        for router in self.routers:
            user = router.route(response, rotation)
            if user is not None:
                return user
        return self.fallback


def _router_function(field_name: str, value: Any) -> None:
    check_callable(field_name, value, "callable: (SurveyResponse) -> user id | None")


@frozen
class FunctionRouter:
    """Your own routing function ``(response) -> user id | None``."""

    function: Callable[[SurveyResponse], str | None] = field(
        validator=attrs_validator(_router_function)
    )

    def route(self, response: SurveyResponse, rotation: RotationState) -> str | None:
        """Call the function; raise InvalidInput if it returns something other than an id or None."""
        user = self.function(response)
        if user is None:
            return None
        try:
            return check_id("user", user)
        except InvalidInput as exc:
            name = getattr(self.function, "__name__", type(self.function).__name__)
            raise InvalidInput(
                f"router {name!r}", user, f"must return a user id or None; {exc.reason}"
            ) from None


def from_answer(key: str) -> FromAnswer:
    """Route to the user id given in the response's answer to ``key``.

    An answer that is missing, not a string, or not a usable id routes nowhere
    (``None``), so a :func:`first_of` fallback applies::

        first_of(from_answer("account_manager"), fallback="cx-team")
    """
    return FromAnswer(key)


def round_robin(users: Sequence[str], *, key: str | None = None) -> RoundRobin:
    """Route to each of ``users`` in turn.

    The turn is kept in the :class:`RotationState` passed at routing time (the
    store), so it survives restarts and is fair across processes.

    Args:
        users: user ids, in rotation order (list one twice to give them two turns).
        key: names the rotation in the store; defaults to one derived from
            ``users``, so two triggers with the same list share one rotation.
    """
    if key is None:
        return RoundRobin(users)
    return RoundRobin(users, key)


def first_of(*routers: RouterLike, fallback: str | None = None) -> FirstOf:
    """Ask each router in order; the first that names a user wins, else ``fallback``."""
    return FirstOf(routers, fallback)


def to_router(value: Any, field_name: str = "assign_to") -> Router | None:
    """Normalise an ``assign_to`` value into a :class:`Router` (or ``None``).

    A string is a user id (:class:`ToUser`), a :class:`Router` is kept, any other
    callable is a routing function (:class:`FunctionRouter`).
    """
    if value is None:
        return None
    if isinstance(value, str):
        return ToUser(check_id(field_name, value))
    if isinstance(value, Router):
        return value
    if callable(value):
        return FunctionRouter(value)
    raise InvalidInput(
        field_name, value, "must be a user id, a router, a function (response) -> user id, or None"
    )
