"""The Django side of :mod:`bench.peers`: a Django 5 model with django-fsm-2 transitions.

Django is configured here, once per process, with the ``bench`` package as its one
app, a SQLite database in WAL mode with ``synchronous=NORMAL`` and
``transaction_mode="IMMEDIATE"`` (closeloop's ``BEGIN IMMEDIATE``). Each
:class:`DjangoSide` points the default connection at its own fresh file.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import django
from django.conf import settings

if not settings.configured:
    settings.configure(
        INSTALLED_APPS=["bench"],
        USE_TZ=True,
        DATABASES={"default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": ":memory:",
            "OPTIONS": {
                "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
                "transaction_mode": "IMMEDIATE",
            },
        }},
        DEFAULT_AUTO_FIELD="django.db.models.BigAutoField",
    )
    django.setup()

from django.db import connections, models, transaction
from django_fsm import ConcurrentTransitionMixin, FSMField, transition

from bench.peers import CASES, COMMENT, LISTED, seed, target_for
from closeloop import Status

__all__ = ["DjangoSide"]


class Case(ConcurrentTransitionMixin, models.Model):  # type: ignore[misc]
    """closeloop's case fields as a Django model; ``save()`` checks the status it was read in."""

    id = models.CharField(primary_key=True, max_length=200)
    customer_id = models.CharField(max_length=200, db_index=True)
    status = FSMField(default="open")
    assignee = models.CharField(max_length=200, null=True)
    reasons = models.JSONField(default=list)
    response_ids = models.JSONField(default=list)
    priority = models.CharField(max_length=10, default="normal")
    due_at = models.DateTimeField(null=True)
    opened_at = models.DateTimeField()
    updated_at = models.DateTimeField()
    closed_at = models.DateTimeField(null=True)
    opened_by = models.CharField(max_length=200)
    version = models.IntegerField(default=1)

    class Meta:
        app_label = "bench"
        indexes = [models.Index(fields=["assignee", "opened_at", "id"]),  # noqa: RUF012
                   models.Index(fields=["status"])]

    @transition(field=status, source="open", target="progress")
    def start(self) -> None:
        """Open → Progress."""

    @transition(field=status, source="progress", target="open")
    def reopen(self) -> None:
        """Progress → Open."""


class Event(models.Model):
    """One history row per change, as closeloop's events table."""

    case = models.ForeignKey(Case, on_delete=models.CASCADE, related_name="events")
    seq = models.IntegerField()
    kind = models.CharField(max_length=40)
    actor = models.CharField(max_length=200)
    at = models.DateTimeField()
    comment = models.TextField(null=True)
    data = models.JSONField(default=dict)

    class Meta:
        app_label = "bench"
        constraints = [models.UniqueConstraint(fields=["case", "seq"], name="event_seq")]  # noqa: RUF012


class DjangoSide:
    """The 500 cases in a fresh SQLite file through the Django ORM."""

    def __init__(self, path: Path) -> None:
        connections["default"].close()
        connections.settings["default"]["NAME"] = str(path)
        del connections["default"]  # the next use opens the new file
        with connections["default"].schema_editor() as editor:
            editor.create_model(Case)
            editor.create_model(Event)
        Case.objects.bulk_create([Case(status="open", version=1, **row) for row in seed()])
        Event.objects.bulk_create([
            Event(case_id=row["id"], seq=1, kind="opened", actor=row["opened_by"],
                  at=row["opened_at"], data={"status": "open"})
            for row in seed()
        ])
        self.ids = [row["id"] for row in seed()]

    def change_statuses(self, changes: int) -> None:
        ids = self.ids
        for change in range(changes):
            target = target_for(change)
            with transaction.atomic():
                case = Case.objects.get(pk=ids[change % CASES])
                source = case.status
                case.start() if target is Status.PROGRESS else case.reopen()
                case.version += 1
                case.updated_at = now = datetime.now(UTC)
                case.save()
                Event.objects.create(case=case, seq=case.version, kind="status_changed",
                                     actor="bench", at=now, comment=COMMENT,
                                     data={"from_status": source, "to_status": case.status})

    def list_cases(self, times: int) -> None:
        for _ in range(times):
            cases: list[Any] = list(
                Case.objects.filter(assignee=LISTED).order_by("opened_at", "id")[:100])
            if len(cases) != 100:
                raise AssertionError("Django listed the wrong cases")

    def count(self, times: int) -> None:
        for _ in range(times):
            counts = dict(Case.objects.values_list("status").annotate(n=models.Count("id"))
                          .order_by())
            if sum(counts.values()) != CASES:
                raise AssertionError("Django counted wrong")

    def close(self) -> None:
        connections["default"].close()
