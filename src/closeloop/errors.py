"""Every error closeloop raises.

One base class, each subclass narrowing the last, each carrying the data a
caller needs to react (``case_id``, ``field``, ``value`` …)::

    CloseLoopError
     ├── InvalidInput            bad survey data, argument or configuration (field, value)
     ├── CaseNotFound            no case with that id (case_id)
     ├── WorkflowError           the workflow refuses the change (case_id)
     │    ├── TransitionNotAllowed   from_status → to_status is not a transition (or the same)
     │    ├── CommentRequired        this change needs a comment
     │    └── NothingToChange        assigning to the current assignee
     ├── ConcurrentUpdate        someone else changed the case first (case_id, expected, actual)
     ├── TokenError              a one-touch link or confirmation is refused
     │    ├── TokenInvalid           tampered, wrong key or purpose, case reassigned (reason)
     │    ├── TokenExpired           older than max_age (expired_at)
     │    └── TokenUsed              the link has already changed the case once
     ├── SignatureInvalid        a webhook's signature or timestamp does not check out (reason)
     ├── StoreError              the storage backend failed (the driver's error is chained)
     └── NotifierError           a notifier could not deliver a message
          └── RecipientUnknown       no address for this user (user_id); retrying cannot help

Adapters translate their driver's exceptions (sqlite3, psycopg, smtplib) into
these, so a caller never has to import a driver to handle a failure.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

__all__ = [
    "CaseNotFound",
    "CloseLoopError",
    "CommentRequired",
    "ConcurrentUpdate",
    "InvalidInput",
    "NothingToChange",
    "NotifierError",
    "RecipientUnknown",
    "SignatureInvalid",
    "StoreError",
    "TokenError",
    "TokenExpired",
    "TokenInvalid",
    "TokenUsed",
    "TransitionNotAllowed",
    "WorkflowError",
]


class CloseLoopError(Exception):
    """Base class of every error closeloop raises on purpose."""


class InvalidInput(CloseLoopError, ValueError):
    """A value given to closeloop is not acceptable; nothing was written.

    Attributes:
        field: dotted path of the offending field (``"score"``,
            ``"triggers[2].when.any_of[1]"``).
        value: the value that was refused.
        reason: what is wrong with it, in words.
    """

    def __init__(self, field: str, value: Any, reason: str) -> None:
        self.field = field
        self.value = value
        self.reason = reason
        super().__init__(f"{field}: {reason} (got {_short_repr(value)})")


class CaseNotFound(CloseLoopError, LookupError):
    """No case has this id."""

    def __init__(self, case_id: str) -> None:
        self.case_id = case_id
        super().__init__(f"no case with id {case_id!r}")


class WorkflowError(CloseLoopError):
    """The workflow refuses the change; the case is left as it was."""

    def __init__(self, case_id: str, message: str) -> None:
        self.case_id = case_id
        super().__init__(message)


class TransitionNotAllowed(WorkflowError):
    """The case cannot move from its current status to the one asked for.

    ``from_status`` and ``to_status`` are the statuses' names: the
    :class:`~closeloop.Status` itself for the standard ones, the workflow's name
    (``"waiting"``) for a team's own.
    """

    def __init__(
        self, case_id: str, from_status: Any, to_status: Any, *,
        labels: tuple[str, str] | None = None,
    ) -> None:
        self.from_status = from_status
        self.to_status = to_status
        # A workflow's own statuses are named by their labels ("Waiting on customer").
        from_name, to_name = labels or (_status_name(from_status), _status_name(to_status))
        if from_status == to_status:
            message = f"case {case_id!r} is already {to_name}"
        else:
            message = f"case {case_id!r} cannot move from {from_name} to {to_name}"
        super().__init__(case_id, message)


class CommentRequired(WorkflowError):
    """This change needs a non-blank comment."""

    def __init__(self, case_id: str, what: str) -> None:
        self.what = what
        super().__init__(case_id, f"a comment is required to {what} case {case_id!r}")


class NothingToChange(WorkflowError):
    """The change asked for would leave the case as it is (assigning to the current assignee)."""


class ConcurrentUpdate(CloseLoopError):
    """Someone else changed the case since it was read; nothing was written.

    Read the case again and decide whether the change still makes sense.

    Attributes:
        case_id: the case the change was to (or the case that blocked it); ``None``
            for a response that opened nothing.
        expected: the version the change was computed from (``None`` for a new case).
        actual: the version found (``None`` when unknown or not a version conflict).
        response_id: set when the conflict is a survey response that was already
            recorded (someone else ingested it first); ``None`` otherwise.
    """

    def __init__(
        self,
        case_id: str | None,
        expected: int | None,
        actual: int | None,
        *,
        response_id: str | None = None,
    ) -> None:
        self.case_id = case_id
        self.expected = expected
        self.actual = actual
        self.response_id = response_id
        if response_id is not None:
            about = "" if case_id is None else f" (recording it with case {case_id!r})"
            message = (
                f"response {response_id!r} was already recorded by a concurrent ingest{about}; "
                "nothing was written"
            )
        else:
            message = (
                f"case {case_id!r} was changed concurrently "
                f"(expected version {expected}, found {actual}); nothing was written"
            )
        super().__init__(message)


class TokenError(CloseLoopError):
    """A one-touch token is refused. Messages never reveal case details."""


class TokenInvalid(TokenError):
    """The token is not one closeloop issued for this purpose, or no longer applies."""

    def __init__(self, reason: str = "the link is not valid") -> None:
        self.reason = reason
        super().__init__(reason)


class TokenExpired(TokenError):
    """The token is older than the configured ``max_age``."""

    def __init__(self, expired_at: datetime, what: str = "link") -> None:
        self.expired_at = expired_at
        self.what = what
        super().__init__(f"the {what} expired at {expired_at.isoformat()}")


class TokenUsed(TokenError):
    """The link has already been used to change the case; use the full app."""

    def __init__(self) -> None:
        super().__init__("the link has already been used")


class SignatureInvalid(CloseLoopError):
    """A webhook delivery is not signed by the survey tool: nothing was parsed or written.

    Raised by the :mod:`closeloop.sources` adapters when given the vendor's
    secret: the signature header is missing, malformed or wrong, or its
    timestamp is outside the allowed window. It is not an InvalidInput: the
    sender is not trusted, so a webhook answers it with 401, not 400.

    Attributes:
        reason: what did not check out, in words (never the expected signature).
    """

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(f"webhook signature refused: {reason}")


class StoreError(CloseLoopError):
    """The storage backend failed; the driver's exception is chained as ``__cause__``."""


class NotifierError(CloseLoopError):
    """A notifier could not deliver a message; the notice stays pending."""


def _short_repr(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _status_name(status: Any) -> str:
    return str(getattr(status, "display_name", status))


class RecipientUnknown(NotifierError):
    """The notifier has no usable address for the recipient; a retry cannot succeed.

    An outbox can stop retrying such a notice (or route it elsewhere) instead of
    backing off forever.

    Attributes:
        user_id: the recipient the notifier could not reach; ``None`` when the
            message was addressed to nobody (a case event on an email channel).
    """

    def __init__(
        self, user_id: str | None, reason: str = "is not known to the user directory"
    ) -> None:
        self.user_id = user_id
        super().__init__(f"recipient {user_id!r} {reason}" if user_id is not None
                         else f"no recipient: {reason}")
