"""closeloop: closed-loop customer feedback as an embeddable library.

Survey responses open cases, people work them Open → Progress → Closed, and
managers see how fast the loop gets closed. Start with :class:`CloseLoop`.
"""

from closeloop.errors import (
    CaseNotFound,
    CloseLoopError,
    CommentRequired,
    ConcurrentUpdate,
    InvalidInput,
    NothingToChange,
    NotifierError,
    RecipientUnknown,
    SignatureInvalid,
    StoreError,
    TokenError,
    TokenExpired,
    TokenInvalid,
    TokenUsed,
    TransitionNotAllowed,
    WorkflowError,
)
from closeloop.escalation import EscalationPolicy
from closeloop.intake import IngestOutcome
from closeloop.loop import CloseLoop, DeliveryReport
from closeloop.model import (
    Assigned,
    Case,
    Commented,
    Erased,
    Escalated,
    Event,
    Notice,
    NoticeFailed,
    Opened,
    Priority,
    ResponseAttached,
    ResponseUpdated,
    Status,
    StatusChanged,
    SurveyResponse,
)
from closeloop.query import UNASSIGNED, CaseCounts, CasePage, CaseQuery
from closeloop.workflow import CommentPolicy

__all__ = [
    "UNASSIGNED",
    "Assigned",
    "Case",
    "CaseCounts",
    "CaseNotFound",
    "CasePage",
    "CaseQuery",
    "CloseLoop",
    "CloseLoopError",
    "CommentPolicy",
    "CommentRequired",
    "Commented",
    "ConcurrentUpdate",
    "DeliveryReport",
    "Erased",
    "Escalated",
    "EscalationPolicy",
    "Event",
    "IngestOutcome",
    "InvalidInput",
    "NothingToChange",
    "Notice",
    "NoticeFailed",
    "NotifierError",
    "Opened",
    "Priority",
    "RecipientUnknown",
    "ResponseAttached",
    "ResponseUpdated",
    "SignatureInvalid",
    "Status",
    "StatusChanged",
    "StoreError",
    "SurveyResponse",
    "TokenError",
    "TokenExpired",
    "TokenInvalid",
    "TokenUsed",
    "TransitionNotAllowed",
    "WorkflowError",
]
