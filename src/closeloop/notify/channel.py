"""A channel: a notifier, and which notices it is sent.

``CloseLoop(notifiers={"email": SmtpNotifier(...), "chat": WebhookNotifier(...)})``
makes each notifier a channel that takes the notices addressed to people
(assignments and escalations). Wrap a notifier in :class:`Channel` to choose
otherwise, such as a webhook that receives case events instead::

    CloseLoop(notifiers={
        "email": SmtpNotifier("smtp.example.com", sender="care@example.com"),
        "crm": Channel(WebhookNotifier("https://crm.example/hooks/closeloop", secret=SECRET),
                       people=False, events=CASE_EVENTS),
    })

Each notice is delivered once per channel that takes it, each delivery with its
own attempts, lease and back-off, so a failing channel never makes another one
send again.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from attrs import field, frozen

from closeloop.errors import InvalidInput
from closeloop.notify.base import Notifier
from closeloop.notify.content import CASE_EVENTS
from closeloop.notify.log import LogNotifier
from closeloop.notify.templates import Templates
from closeloop.validate import attrs_validator, check_id, check_optional_id

__all__ = ["DEFAULT_CHANNEL", "Channel", "channels_of"]

#: The name of the one channel of a loop made with ``notifier=``, and the channel of
#: every notice an older closeloop wrote.
DEFAULT_CHANNEL = "default"


def _notifier(instance: Any, attribute: Any, value: Any) -> None:
    if not isinstance(value, Notifier):
        raise InvalidInput("notifier", value, "must have a send(message) method")


def _people(instance: Any, attribute: Any, value: Any) -> None:
    if not isinstance(value, bool):
        raise InvalidInput("people", value, "must be True or False")


def _events(value: Any) -> frozenset[str]:
    if isinstance(value, str) or not isinstance(value, Iterable):
        raise InvalidInput("events", value,
                           f"must be a list of case-event kinds ({', '.join(CASE_EVENTS)})")
    kinds = frozenset(value)
    unknown = sorted(kind for kind in kinds if kind not in CASE_EVENTS)
    if unknown:
        raise InvalidInput("events", unknown,
                           f"unknown case-event kind; expected some of {', '.join(CASE_EVENTS)}")
    return kinds


def _templates(instance: Any, attribute: Any, value: Any) -> None:
    if value is not None and not isinstance(value, Templates):
        raise InvalidInput("templates", value, "must be a closeloop.notify.Templates or None")


@frozen
class Channel:
    """A notifier and what it is sent.

    Args:
        notifier: delivers the messages.
        people: takes the notices addressed to a person: the assignee's assignment
            notice, an escalation to the assignee or the policy's fallback. Each
            carries that person's one-touch Change link when one-touch is on.
        events: the case-event kinds it subscribes to (some of
            :data:`~closeloop.notify.CASE_EVENTS`): one message per event, with the
            app's case link but never a one-touch link (it is nobody's in particular).
        recipient: the user id case-event messages are addressed to (a team inbox
            the user directory knows, for an email channel); ``None`` sends them to
            nobody in particular, which suits a webhook.
        templates: the templates for this channel's messages; default the loop's.

    Raises:
        InvalidInput: an argument is unusable; ``field`` names it.
    """

    notifier: Notifier = field(validator=_notifier)
    people: bool = field(default=True, kw_only=True, validator=_people)
    events: frozenset[str] = field(default=frozenset(), kw_only=True, converter=_events)
    recipient: str | None = field(
        default=None, kw_only=True, validator=attrs_validator(check_optional_id)
    )
    templates: Templates | None = field(default=None, kw_only=True, validator=_templates)

    def __attrs_post_init__(self) -> None:
        if not self.people and not self.events:
            raise InvalidInput("events", sorted(self.events),
                               "the channel would never be sent anything: give people=True "
                               "or some events")


def channels_of(
    notifier: Notifier | None, notifiers: Mapping[str, Notifier | Channel] | None
) -> dict[str, Channel]:
    """A loop's channels by name, from its ``notifier=`` or ``notifiers=`` (checked).

    One ``notifier`` (default :class:`~closeloop.notify.LogNotifier`) is the channel
    :data:`DEFAULT_CHANNEL`; each notifier in ``notifiers`` that is not a
    :class:`Channel` becomes one that takes the notices to people.

    Raises:
        InvalidInput: both or neither are usable; ``field`` names the bad one.
    """
    if notifier is not None and notifiers is not None:
        raise InvalidInput("notifiers", sorted(notifiers) if isinstance(notifiers, Mapping)
                           else notifiers, "give notifier= or notifiers=, not both")
    if notifiers is None:
        single = LogNotifier() if notifier is None else notifier
        if not isinstance(single, Notifier):
            raise InvalidInput("notifier", notifier, "must have a send(message) method")
        return {DEFAULT_CHANNEL: Channel(single)}
    if not isinstance(notifiers, Mapping) or not notifiers:
        raise InvalidInput("notifiers", notifiers,
                           "must be a non-empty mapping of channel name to notifier or Channel")
    channels: dict[str, Channel] = {}
    for name, value in notifiers.items():
        check_id("notifiers", name)
        if isinstance(value, Channel):
            channels[name] = value
        elif isinstance(value, Notifier):
            channels[name] = Channel(value)
        else:
            raise InvalidInput(f"notifiers[{name!r}]", value,
                               "must be a notifier (a send(message) method) or a Channel")
    return channels
