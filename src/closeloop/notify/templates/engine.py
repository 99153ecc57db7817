"""Render a notice's facts into subject, text and HTML with Jinja2.

Template names are ``<part>.j2`` (``subject``, ``text``, ``html``), optionally
narrowed to one notice kind (``assigned.subject.j2``) and to one locale
(``subject.de.j2``, ``assigned.html.pt-BR.j2``). For a recipient with locale
``pt-BR`` and an ``assigned`` notice, the subject is the first that exists of::

    assigned.subject.pt-BR.j2   subject.pt-BR.j2
    assigned.subject.pt.j2      subject.pt.j2
    assigned.subject.j2         subject.j2

looked up first in the host's loader or directory, then in the defaults shipped
with closeloop. The defaults are also reachable as ``closeloop/<name>``, so a
host template can ``{% extends "closeloop/html.j2" %}`` and change one block.
"""

from __future__ import annotations

import re
from datetime import datetime
from os import PathLike
from pathlib import Path
from typing import Any, Final

import jinja2
from attrs import frozen
from jinja2.sandbox import SandboxedEnvironment

from closeloop.errors import InvalidInput, NotifierError
from closeloop.notify.base import Message
from closeloop.notify.content import NoticeContent
from closeloop.notify.directory import (
    Customer,
    CustomerDirectory,
    NoCustomers,
    User,
    UserDirectory,
)
from closeloop.notify.templates.legacy import one_line

__all__ = ["DEFAULT_TEMPLATES", "PARTS", "Rendered", "Templates", "quote_lines"]

#: The package holding the default templates (``importlib.resources`` finds them there).
DEFAULT_TEMPLATES: Final = "closeloop.notify.templates"
#: The three parts of a notice, each its own template.
PARTS: Final = ("subject", "text", "html")

# Control characters (tab and line feed aside) and every line break but "\n":
# a customer's CR or U+2028 could otherwise start a line a reader takes for ours.
_UNQUOTABLE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
_OTHER_BREAKS = re.compile(r"\r\n?|[\u2028\u2029\x85]")

_WHY = {"overdue": "overdue", "untouched": "untouched for too long"}


def quote_lines(value: str | None) -> str:
    """Quote someone's words for a plain-text body: every line starts with ``"> "``.

    Carriage returns and other line breaks become ``"\\n"`` first and control
    characters are dropped, so no line of the quote can pass for one of the
    notice's own lines (a ``Change: https://…`` link line, say).
    """
    if not value:
        return ""
    text = _UNQUOTABLE.sub("", _OTHER_BREAKS.sub("\n", value)).strip("\n")
    return "\n".join("> " + line if line else ">" for line in text.split("\n"))


@frozen
class Rendered:
    """A notice rendered for one recipient."""

    subject: str
    text: str
    html: str


def _is_html(name: str | None) -> bool:
    return name is not None and "html" in name.rsplit("/", 1)[-1].split(".")


def _locale_chain(locale: str | None) -> list[str]:
    """``"pt-BR"`` → ``["pt-BR", "pt"]``; ``"de_AT"`` is read as ``"de-AT"``."""
    if not locale:
        return []
    parts = locale.replace("_", "-").split("-")
    return ["-".join(parts[:n]) for n in range(len(parts), 0, -1)]


class Templates:
    """Renders notices from Jinja2 templates: the defaults, or the host's.

    Templates run in Jinja2's sandbox; ``.html`` templates are autoescaped, so
    a customer's name such as ``<b>`` shows as text. Every template sees:

    ``notice`` (the :class:`~closeloop.notify.NoticeContent`), ``kind``, ``case``,
    ``note``, ``response``, ``links``, ``customer`` (the :class:`Customer` the
    customer directory returned, or ``None``), ``customer_name`` (their name,
    else their id), ``actor_name`` (the actor's display name, else their id),
    ``recipient`` (a :class:`User`), ``recipient_id``, ``recipient_name``, and
    ``why_text`` (``"overdue"``…). Filters: ``when`` (an aware time in the
    recipient's zone, ``"Wed 7 Jan 2026, 10:00 CET"``), ``quoted``
    (:func:`quote_lines`) and ``one_line``.

    Args:
        directory: a folder of templates that take precedence over the defaults.
        loader: a Jinja2 loader that takes precedence over ``directory`` and the
            defaults (``jinja2.DictLoader({...})``, a ``PackageLoader`` …).
        customers: where customer names and contact details come from; default
            none (notices show the customer id).
        users: where the actor's display name comes from; the recipient is passed
            to :meth:`render` by the notifier that knows them.

    Raises:
        InvalidInput: an argument is unusable; ``field`` names it.

    Example::

        templates = Templates(directory="templates/closeloop", customers=CrmCustomers())
        rendered = templates.render(content, User(time_zone="Europe/Berlin", locale="de"))
    """

    def __init__(
        self,
        *,
        directory: str | PathLike[str] | None = None,
        loader: jinja2.BaseLoader | None = None,
        customers: CustomerDirectory | None = None,
        users: UserDirectory | None = None,
    ) -> None:
        loaders: list[jinja2.BaseLoader] = []
        if loader is not None:
            if not isinstance(loader, jinja2.BaseLoader):
                raise InvalidInput("loader", loader, "must be a jinja2 loader")
            loaders.append(loader)
        if directory is not None:
            if not isinstance(directory, str | PathLike) or not Path(directory).is_dir():
                raise InvalidInput("directory", directory, "must be an existing directory")
            loaders.append(jinja2.FileSystemLoader(Path(directory)))
        defaults = jinja2.PackageLoader(DEFAULT_TEMPLATES, "")
        loaders += [defaults, jinja2.PrefixLoader({"closeloop": defaults})]
        if customers is not None and not callable(getattr(customers, "lookup", None)):
            raise InvalidInput("customers", customers, "must have a lookup(customer_id) method")
        if users is not None and not callable(getattr(users, "lookup", None)):
            raise InvalidInput("users", users, "must have a lookup(user_id) method")
        self.customers: CustomerDirectory = customers if customers is not None else NoCustomers()
        self.users = users
        self.environment = SandboxedEnvironment(
            loader=jinja2.ChoiceLoader(loaders),
            autoescape=_is_html,
            trim_blocks=True,
            lstrip_blocks=True,
            keep_trailing_newline=True,
            undefined=jinja2.StrictUndefined,
        )
        self.environment.filters["quoted"] = quote_lines
        self.environment.filters["one_line"] = one_line
        self.environment.filters["when"] = _when

    def names(self, kind: str, part: str, locale: str | None) -> list[str]:
        """The template names tried for this kind, part and locale, first match wins."""
        names = []
        for tag in _locale_chain(locale):
            names += [f"{kind}.{part}.{tag}.j2", f"{part}.{tag}.j2"]
        return [*names, f"{kind}.{part}.j2", f"{part}.j2"]

    def render(
        self, content: NoticeContent, recipient: User | None = None, *,
        recipient_id: str | None = None,
    ) -> Rendered:
        """Render ``content`` for ``recipient`` (default: UTC, no locale).

        The subject is folded to one line of at most 200 characters.

        Raises:
            InvalidInput: ``content`` is not a NoticeContent.
            NotifierError: a template is missing, broken, or raised while rendering
                (the cause is chained); a notice stays pending until it is fixed.
        """
        if not isinstance(content, NoticeContent):
            raise InvalidInput("content", content, "must be a NoticeContent")
        user = recipient if recipient is not None else User()
        context = self._context(content, user, recipient_id)
        parts: dict[str, str] = {}
        for part in PARTS:
            names = self.names(content.kind, part, user.locale)
            try:
                template = self.environment.select_template(names)
                parts[part] = template.render(context)
            except jinja2.TemplateError as exc:
                raise NotifierError(
                    f"could not render the {part} of a {content.kind!r} notice "
                    f"(tried {', '.join(names)}): {exc}"
                ) from exc
        return Rendered(one_line(parts["subject"]), parts["text"], parts["html"])

    def message(
        self, content: NoticeContent, *, to: str, notice_id: str, recipient: User | None = None,
    ) -> Message:
        """Render ``content`` for ``recipient`` and wrap it as a :class:`Message` to ``to``."""
        rendered = self.render(content, recipient, recipient_id=to)
        return Message.from_content(content, to=to, notice_id=notice_id, subject=rendered.subject,
                                    text=rendered.text, html=rendered.html)

    def _context(self, content: NoticeContent, user: User, recipient_id: str | None) -> dict[str, Any]:
        customer = self._customer(content.case.customer_id)
        return {
            "notice": content,
            "kind": content.kind,
            "case": content.case,
            "note": content.note,
            "response": content.response,
            "links": content.links,
            "customer": customer,
            "customer_name": (customer.name if customer and customer.name
                              else content.case.customer_id),
            "actor_name": self._user_name(content.actor),
            "note_author": self._user_name(content.note.by) if content.note else "",
            "details": _details(content, customer, user),
            "recipient": user,
            "recipient_id": recipient_id,
            "recipient_name": user.display_name or recipient_id or "",
            "why_text": _WHY.get(content.why or "", content.why or ""),
        }

    def _user_name(self, user_id: str) -> str:
        found = self.users.lookup(user_id) if self.users is not None else None
        return found.display_name if isinstance(found, User) and found.display_name else user_id

    def _customer(self, customer_id: str) -> Customer | None:
        found = self.customers.lookup(customer_id)
        return found if isinstance(found, Customer) else None


def _details(content: NoticeContent, customer: Customer | None, user: User) -> list[tuple[str, str]]:
    """The (label, value) rows the default templates show, each value folded to one line."""
    case = content.case
    name = customer.name if customer is not None and customer.name else None
    rows = [("Customer", f"{name} ({case.customer_id})" if name else case.customer_id)]
    if customer is not None:
        rows += [(label, value) for label, value in (("Email", customer.email),
                                                    ("Phone", customer.phone)) if value]
        rows += list(customer.account.items())
    rows += [("Status", case.status_label), ("Priority", case.priority.capitalize())]
    if case.reasons:
        rows.append(("Reasons", ", ".join(case.reasons)))
    if case.due_at is not None:
        rows.append(("Due", _format_time(case.due_at.astimezone(user.zone))))
    if case.assignee is not None and content.kind != "assigned":
        rows.append(("Assignee", case.assignee))
    rows += [("Case", case.id), ("Sent", _format_time(content.created_at.astimezone(user.zone)))]
    return [(one_line(label, 80), one_line(value, 500)) for label, value in rows]


@jinja2.pass_context
def _when(context: jinja2.runtime.Context, at: datetime | None) -> str:
    """An aware time in the recipient's zone (read from the context: thread-safe)."""
    if at is None:
        return ""
    recipient = context.get("recipient")
    zone = recipient.zone if isinstance(recipient, User) else None
    return _format_time(at.astimezone(zone) if zone is not None else at)


def _format_time(at: datetime) -> str:
    return f"{at:%a} {at.day} {at:%b %Y}, {at:%H:%M} {at.tzname()}"
