"""Directory ports: who a customer is, and how to reach a closeloop user.

closeloop stores only ids. What a notice shows about a customer (their name)
and where it goes for a user (their address, time zone, language) comes from
the host's own records at delivery time, through two small ports:

- :class:`CustomerDirectory`: customer id → :class:`Customer` (default: none).
- :class:`UserDirectory`: user id → :class:`User`; :class:`StaticUserDirectory`
  is a dict-backed one.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Protocol, TypeAlias, runtime_checkable
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from attrs import field, frozen

from closeloop.errors import InvalidInput

__all__ = [
    "AddressBook",
    "AddressBookDirectory",
    "Customer",
    "CustomerDirectory",
    "NoCustomers",
    "StaticUserDirectory",
    "User",
    "UserDirectory",
]

#: Maps a closeloop user id to an email address: a mapping, or a callable that
#: returns ``None`` for a user it does not know (the older ``address_of=`` form).
AddressBook: TypeAlias = Mapping[str, str] | Callable[[str], str | None]


def _optional_text(name: str) -> Callable[[Any, Any, Any], None]:
    def validate(instance: Any, attribute: Any, value: Any) -> None:
        if value is not None and not isinstance(value, str):
            raise InvalidInput(name, value, "must be a string or None")

    return validate


def _zone(instance: Any, attribute: Any, value: Any) -> None:
    if not isinstance(value, str) or not value:
        raise InvalidInput("time_zone", value, "must be an IANA time zone name such as 'Europe/Berlin'")
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise InvalidInput("time_zone", value, f"is not a known IANA time zone ({exc})") from None


def _locale(instance: Any, attribute: Any, value: Any) -> None:
    if value is None:
        return
    if not isinstance(value, str) or not value.replace("-", "").replace("_", "").isalnum():
        raise InvalidInput("locale", value, "must be a language tag such as 'de' or 'pt-BR'")


def _fields(value: Any) -> Mapping[str, str]:
    if not isinstance(value, Mapping) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise InvalidInput("account", value, "must be a mapping of string to string")
    return dict(value)


@frozen(kw_only=True)
class Customer:
    """What the host knows about a customer, for display in notices.

    Attributes:
        name: how to call the customer (``"Jürgen Weber"``, ``"Acme GmbH"``).
        email: their email address, shown to the assignee.
        phone: their phone number, shown to the assignee.
        account: further fields to show (``{"plan": "Gold", "account manager": "Eve"}``),
            in the order given.
    """

    name: str | None = field(default=None, validator=_optional_text("name"))
    email: str | None = field(default=None, validator=_optional_text("email"))
    phone: str | None = field(default=None, validator=_optional_text("phone"))
    account: Mapping[str, str] = field(factory=dict, converter=_fields)


@frozen(kw_only=True)
class User:
    """How to reach a closeloop user and how to show them times and text.

    Attributes:
        address: where notices go (an email address for SMTP); ``None`` when the
            user has none, which a notifier reports as
            :class:`~closeloop.errors.RecipientUnknown`.
        display_name: how to name the user in notices (``"Alice Doe"``).
        time_zone: an IANA zone name; times in notices are shown in it.
        locale: a language tag (``"de"``, ``"pt-BR"``) choosing template variants.
    """

    address: str | None = field(default=None, validator=_optional_text("address"))
    display_name: str | None = field(default=None, validator=_optional_text("display_name"))
    time_zone: str = field(default="UTC", validator=_zone)
    locale: str | None = field(default=None, validator=_locale)

    @property
    def zone(self) -> ZoneInfo:
        """The :class:`~zoneinfo.ZoneInfo` for :attr:`time_zone`."""
        return ZoneInfo(self.time_zone)


@runtime_checkable
class CustomerDirectory(Protocol):
    """Protocol: looks up a customer's display data by customer id.

    ``lookup`` returns ``None`` for a customer it does not know; templates then
    show the customer id. It is called at delivery, outside any store
    transaction, and may be called from several threads at once. It should be
    quick and must not raise for an unknown id.

    Example::

        class CrmCustomers:
            def lookup(self, customer_id: str) -> Customer | None:
                row = crm.find(customer_id)
                return None if row is None else Customer(name=row.name, email=row.email)
    """

    def lookup(self, customer_id: str) -> Customer | None:
        """The customer with this id, or ``None``."""
        ...


@runtime_checkable
class UserDirectory(Protocol):
    """Protocol: looks up a closeloop user (an assignee, an assigner) by user id.

    ``lookup`` returns ``None`` for a user it does not know; a notifier then
    raises :class:`~closeloop.errors.RecipientUnknown`. Called at delivery,
    outside any store transaction, possibly from several threads at once.
    """

    def lookup(self, user_id: str) -> User | None:
        """The user with this id, or ``None``."""
        ...


class NoCustomers:
    """The default customer directory: knows nobody, so notices show customer ids."""

    def lookup(self, customer_id: str) -> Customer | None:
        """Always ``None``."""
        return None


class StaticUserDirectory:
    """A user directory backed by a mapping of user id to :class:`User`.

    The mapping is read at each lookup, so later changes to it apply.

    Example::

        users = StaticUserDirectory({
            "alice": User(address="alice@example.com", time_zone="Europe/Berlin", locale="de"),
        })
        assert users.lookup("alice").locale == "de"
    """

    def __init__(self, users: Mapping[str, User]) -> None:
        if not isinstance(users, Mapping) or not all(isinstance(u, User) for u in users.values()):
            raise InvalidInput("users", users, "must be a mapping of user id to User")
        self.users = users

    def lookup(self, user_id: str) -> User | None:
        """The user with this id, or ``None``."""
        return self.users.get(user_id)


class AddressBookDirectory:
    """Adapts an address book (``{"alice": "alice@example.com"}`` or a callable) into a directory.

    Each user found gets the address and the defaults for everything else (UTC,
    no locale). This is what ``SmtpNotifier(address_of=...)`` uses internally.
    """

    def __init__(self, address_of: AddressBook) -> None:
        if not isinstance(address_of, Mapping) and not callable(address_of):
            raise InvalidInput(
                "address_of", address_of, "must be a mapping or a callable from user id to address"
            )
        self.address_of = address_of

    def lookup(self, user_id: str) -> User | None:
        """A :class:`User` with the address found, or ``None``."""
        address_of = self.address_of
        found = address_of.get(user_id) if isinstance(address_of, Mapping) else address_of(user_id)
        # Anything but a string counts as no address: the recipient is unknown.
        return User(address=found) if isinstance(found, str) else None
