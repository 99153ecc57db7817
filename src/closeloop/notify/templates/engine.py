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
from closeloop.notify.directory import Customer, CustomerDirectory, User, UserDirectory
from closeloop.notify.templates.filters import one_line, quote_lines

__all__ = ["DEFAULT_TEMPLATES", "PARTS", "Rendered", "Templates"]

#: The package holding the default templates (``importlib.resources`` finds them there).
DEFAULT_TEMPLATES: Final = "closeloop.notify.templates"
#: The three parts of a notice, each its own template.
PARTS: Final = ("subject", "text", "html")

_WHY = {"overdue": "overdue", "untouched": "untouched for too long"}


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

    - ``notice`` (the :class:`~closeloop.notify.NoticeContent`), ``kind``, ``case``,
      ``note`` (an agent's note), ``response`` (the customer's), ``links``;
    - ``customer`` (the :class:`Customer` the customer directory returned, or
      ``None``) and ``customer_name`` (their name, else their id);
    - ``actor_name``, ``note_author`` and ``assignee_name``: display names from
      the user directory, else the user ids;
    - ``recipient`` (a :class:`User`), ``recipient_id``, ``recipient_name``, and
      ``to_assignee`` (the message goes to the case's assignee);
    - ``why_text`` (``"overdue"``…) and ``details``, the (label, value) rows the
      default templates show.

    Filters: ``when`` (an aware time in the recipient's zone,
    ``"Wed 7 Jan 2026, 10:00 CET"``), ``quoted``
    (:func:`~closeloop.notify.templates.quote_lines`) and ``one_line``.

    Templates are read once, when first used: restart the process to pick up a
    changed template file.

    Args:
        directory: a folder of templates that take precedence over the defaults.
        loader: a Jinja2 loader that takes precedence over ``directory`` and the
            defaults (``jinja2.DictLoader({...})``, a ``PackageLoader`` …).

    Raises:
        InvalidInput: an argument is unusable; ``field`` names it.

    Example::

        templates = Templates(directory="templates/closeloop")
        rendered = templates.render(content, User(time_zone="Europe/Berlin", locale="de"),
                                    customers=CrmCustomers())
    """

    def __init__(
        self,
        *,
        directory: str | PathLike[str] | None = None,
        loader: jinja2.BaseLoader | None = None,
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
        self.environment = SandboxedEnvironment(
            loader=jinja2.ChoiceLoader(loaders),
            # Templates are read once: no stat() of every file on every notice.
            auto_reload=False,
            autoescape=_is_html,
            trim_blocks=True,
            lstrip_blocks=True,
            keep_trailing_newline=True,
            undefined=jinja2.StrictUndefined,
        )
        self.environment.filters["quoted"] = quote_lines
        self.environment.filters["one_line"] = one_line
        self.environment.filters["when"] = _when
        # (kind, part, locale) -> the template chosen; a miss costs a search of every loader.
        self._chosen: dict[tuple[str, str, str | None], jinja2.Template] = {}

    def names(self, kind: str, part: str, locale: str | None) -> list[str]:
        """The template names tried for this kind, part and locale, first match wins."""
        names = []
        for tag in _locale_chain(locale):
            names += [f"{kind}.{part}.{tag}.j2", f"{part}.{tag}.j2"]
        return [*names, f"{kind}.{part}.j2", f"{part}.j2"]

    def render(
        self,
        content: NoticeContent,
        recipient: User | None = None,
        *,
        recipient_id: str | None = None,
        users: UserDirectory | None = None,
        customers: CustomerDirectory | None = None,
    ) -> Rendered:
        """Render ``content`` for a recipient.

        Args:
            content: what the notice is about.
            recipient: who reads it (time zone, locale, name); default: what ``users``
                says about ``recipient_id``, else UTC and no locale.
            recipient_id: the user id it is addressed to, if any.
            users: the user directory, for display names (and the recipient).
            customers: the customer directory, for the customer's name and details.

        The subject is folded to one line of at most
        :data:`~closeloop.notify.templates.MAX_SUBJECT` characters.

        Raises:
            InvalidInput: ``content`` is not a NoticeContent.
            NotifierError: a template is missing, broken, or raised while rendering
                (the cause is chained); a notice stays pending until it is fixed.
        """
        if not isinstance(content, NoticeContent):
            raise InvalidInput("content", content, "must be a NoticeContent")
        if recipient is None and users is not None and recipient_id is not None:
            recipient = _user(users, recipient_id)
        user = recipient if recipient is not None else User()
        context = _Context(content, user, recipient_id, users, customers).variables()
        parts: dict[str, str] = {}
        for part in PARTS:
            names = self.names(content.kind, part, user.locale)
            try:
                template = self._template(content.kind, part, user.locale, names)
                parts[part] = template.render(context)
            except jinja2.TemplateError as exc:
                raise NotifierError(
                    f"could not render the {part} of a {content.kind!r} notice "
                    f"(tried {', '.join(names)}): {exc}"
                ) from exc
        return Rendered(one_line(parts["subject"]), parts["text"], parts["html"])

    def _template(self, kind: str, part: str, locale: str | None,
                  names: list[str]) -> jinja2.Template:
        key = (kind, part, locale)
        template = self._chosen.get(key)
        if template is None:
            template = self._chosen[key] = self.environment.select_template(names)
        return template

    def message(
        self, content: NoticeContent, *, to: str | None, notice_id: str,
        recipient: User | None = None, users: UserDirectory | None = None,
        customers: CustomerDirectory | None = None, channel: str = "default",
    ) -> Message:
        """Render ``content`` for ``to`` and wrap it as a :class:`Message`."""
        if recipient is None and users is not None and to is not None:
            recipient = _user(users, to)
        rendered = self.render(content, recipient, recipient_id=to, users=users,
                               customers=customers)
        return Message.from_content(content, to=to, notice_id=notice_id, subject=rendered.subject,
                                    text=rendered.text, html=rendered.html, recipient=recipient,
                                    channel=channel)


def _user(users: UserDirectory, user_id: str) -> User | None:
    found = users.lookup(user_id)
    return found if isinstance(found, User) else None


class _Context:
    """The variables one rendering sees (names looked up once each)."""

    def __init__(self, content: NoticeContent, recipient: User, recipient_id: str | None,
                 users: UserDirectory | None, customers: CustomerDirectory | None) -> None:
        self.content = content
        self.recipient = recipient
        self.recipient_id = recipient_id
        self.users = users
        found = customers.lookup(content.case.customer_id) if customers is not None else None
        self.customer = found if isinstance(found, Customer) else None

    def name_of(self, user_id: str | None) -> str:
        if user_id is None:
            return ""
        if user_id == self.recipient_id and self.recipient.display_name:
            return self.recipient.display_name
        found = _user(self.users, user_id) if self.users is not None else None
        return found.display_name if found is not None and found.display_name else user_id

    def variables(self) -> dict[str, Any]:
        content, case = self.content, self.content.case
        customer = self.customer
        return {
            "notice": content,
            "kind": content.kind,
            "case": case,
            "note": content.note,
            "response": content.response,
            "links": content.links,
            "customer": customer,
            "customer_name": customer.name if customer and customer.name else case.customer_id,
            "actor_name": self.name_of(content.actor),
            "note_author": self.name_of(content.note.by) if content.note else "",
            "assignee_name": self.name_of(case.assignee),
            "details": _details(content, customer, self.recipient, self.recipient_id,
                                self.name_of(case.assignee)),
            "recipient": self.recipient,
            "recipient_id": self.recipient_id,
            "recipient_name": self.recipient.display_name or self.recipient_id or "",
            "to_assignee": self.recipient_id is not None and self.recipient_id == case.assignee,
            "why_text": _WHY.get(content.why or "", content.why or ""),
        }


def _details(content: NoticeContent, customer: Customer | None, user: User,
             recipient_id: str | None, assignee_name: str) -> list[tuple[str, str]]:
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
    if case.assignee is not None and case.assignee != recipient_id:
        rows.append(("Assignee", assignee_name))
    rows += [("Opened", _format_time(case.opened_at.astimezone(user.zone))), ("Case", case.id)]
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
