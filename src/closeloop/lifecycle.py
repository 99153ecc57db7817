"""Personal data: erase a customer, export what is held on them, purge by a retention date.

- :func:`erase_customer` (``loop.erase_customer``) removes a customer's personal
  data from every record closeloop keeps (see :mod:`closeloop.redaction` for what
  that is, and what stays): one atomic batch per round, a pseudonym in place of
  their id, an ``erased`` event on each case. Reports are exactly as before.
- :func:`export_customer` (``loop.export_customer``) returns everything held on a
  customer as plain JSON-able data.
- :func:`purge` (``loop.purge``) erases, the same way, every customer the
  retention rule (:mod:`closeloop.retention`) says is due.

**Atomic and consistent.** An erasure reads the customer's cases, their
histories, their notices and their response records, and commits the redacted
versions as one :meth:`~closeloop.storage.CaseLog.commit_many`: every case change
is checked against the version it was read at, every response record by
compare-and-swap. A change made meanwhile makes the batch fail as a whole, and
the erasure reads again and retries, with the same pseudonym. After a commit it
reads once more, so a case or response that arrived for the customer during the
erasure is erased too (again under the same pseudonym). A crash leaves each
round either done or not done.
"""

from __future__ import annotations

import contextlib
import itertools
import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from attrs import frozen

from closeloop.convert import unstructure
from closeloop.errors import ConcurrentUpdate
from closeloop.model import Case, Event, Notice, ResponseRecord
from closeloop.redaction import Why, is_pseudonym, new_pseudonym, redact_case, redact_record
from closeloop.service import CaseService
from closeloop.storage.base import Change, ResponseUpdate, check_change

__all__ = ["Erasure", "PurgeSummary", "erase_customer", "export_customer", "purge"]

#: Rounds an erasure makes before giving up on a customer whose records keep changing.
_ROUNDS = 5


@frozen
class Erasure:
    """What one erasure did (or, dry, would do) for one customer.

    Attributes:
        customer_id: the id that was erased.
        pseudonym: the id that replaced it everywhere; ``None`` when nothing was
            erased (nothing was found under the id, or a dry run).
        cases: cases redacted (each got an ``erased`` event).
        responses: survey response records redacted (with or without a case).
        notices: notices about those cases redacted, ``cancelled`` included.
        cancelled: notices that were still pending and are now cancelled, never sent.
        dry_run: nothing was written.
    """

    customer_id: str
    pseudonym: str | None
    cases: int = 0
    responses: int = 0
    notices: int = 0
    cancelled: int = 0
    dry_run: bool = False

    @property
    def found(self) -> bool:
        """Whether anything was (or would be) erased."""
        return bool(self.cases or self.responses)


@frozen
class PurgeSummary:
    """What one :func:`purge` did (or, dry, would do).

    Attributes:
        closed_before: the retention date it applied.
        erasures: one per customer erased, in customer id order.
        skipped: customers whose records kept changing while they were being
            erased; the next purge takes them up again.
        dry_run: nothing was written.
    """

    closed_before: datetime
    erasures: tuple[Erasure, ...]
    skipped: int = 0
    dry_run: bool = False

    @property
    def customers(self) -> int:
        """How many customers were erased."""
        return len(self.erasures)

    @property
    def cases(self) -> int:
        """How many cases were redacted, over every customer."""
        return sum(erasure.cases for erasure in self.erasures)

    @property
    def responses(self) -> int:
        """How many response records were redacted, over every customer."""
        return sum(erasure.responses for erasure in self.erasures)

    @property
    def notices(self) -> int:
        """How many notices were redacted (cancelled ones included), over every customer."""
        return sum(erasure.notices for erasure in self.erasures)


@frozen
class _Round:
    """One round of an erasure: what was read, and the batch that erases it."""

    cases: tuple[Case, ...]
    records: tuple[ResponseRecord, ...]
    changes: tuple[Change, ...]
    updates: tuple[ResponseUpdate, ...]
    notices: int
    cancelled: int

    def older_than(self, moment: datetime) -> bool:
        """Whether every case read is Closed before ``moment`` and every response received before it."""
        return all(case.closed_at is not None and case.closed_at < moment for case in self.cases
                   ) and all(record.received_at < moment for record in self.records)


def erase_customer(
    service: CaseService,
    customer_id: str,
    *,
    by: str,
    why: Why = "request",
    dry_run: bool = False,
    closed_before: datetime | None = None,
) -> Erasure:
    """Erase ``customer_id``'s personal data (see the module); arguments are assumed valid.

    ``closed_before`` is the retention rule of :func:`purge`: a round erases only if
    every case and response it read is older than that (a customer who came back
    meanwhile keeps their data).

    Raises:
        ConcurrentUpdate: the customer's records kept changing for :data:`_ROUNDS`
            rounds; every round that committed is whole, and a second call finishes.
    """
    store = service.store
    # A pseudonym is kept: erasing it again redacts what was added since, under the
    # same id, so the customer's records stay linked.
    pseudonym = customer_id if is_pseudonym(customer_id) else new_pseudonym()
    done = Erasure(customer_id, None, dry_run=dry_run)
    conflict: ConcurrentUpdate | None = None
    for rounds in itertools.count():
        erasing = _read_round(service, customer_id, pseudonym, by=by, why=why)
        if not erasing.changes and not erasing.updates:
            return done
        if closed_before is not None and not erasing.older_than(closed_before):
            return done
        if dry_run:
            return _counted(done, erasing)
        if rounds == _ROUNDS:
            first = erasing.changes[0].case.id if erasing.changes else None
            raise conflict or ConcurrentUpdate(first, None, None)
        for change in erasing.changes:
            check_change(change)
        try:
            store.commit_many(erasing.changes, (), erasing.updates)
        except ConcurrentUpdate as exc:
            conflict = exc
            continue
        done = _counted(done, erasing, pseudonym=pseudonym)
        conflict = None
    raise AssertionError("unreachable")  # pragma: no cover - the loop returns or raises


def _read_round(
    service: CaseService, customer_id: str, pseudonym: str, *, by: str, why: Why
) -> _Round:
    store = service.store
    now = service.now()
    cases = store.find(customer_id=customer_id)
    notices: dict[str, list[Notice]] = {case.id: [] for case in cases}
    if cases:
        for notice in store.find_notices(case_ids=list(notices)):
            notices[notice.case_id].append(notice)
    changes: list[Change] = []
    counts = [0, 0]
    for case in cases:
        redaction = redact_case(case, store.history(case.id), notices[case.id],
                                pseudonym=pseudonym, by=by, at=now, why=why)
        if redaction is not None:
            changes.append(redaction.change)
            counts[0] += redaction.notices
            counts[1] += redaction.cancelled
    records = store.find_responses(customer_ids=[customer_id])
    updates = []
    for record in records:
        redacted = redact_record(record, pseudonym)
        if redacted is not None:
            updates.append(ResponseUpdate(record, redacted))
    return _Round(tuple(cases), tuple(records), tuple(changes), tuple(updates), *counts)


def _counted(done: Erasure, erasing: _Round, *, pseudonym: str | None = None) -> Erasure:
    return Erasure(
        done.customer_id, pseudonym or done.pseudonym, done.cases + len(erasing.changes),
        done.responses + len(erasing.updates), done.notices + erasing.notices,
        done.cancelled + erasing.cancelled, done.dry_run,
    )


def export_customer(service: CaseService, customer_id: str) -> dict[str, Any]:
    """Everything held on ``customer_id`` as plain data that :func:`json.dumps` accepts.

    The shape: ``{"customer_id", "exported_at", "cases": [case fields, plus
    "history" (its events) and "notices" (its deliveries)], "responses": [response
    records, ``content`` as the JSON object it holds]}``. Times are ISO 8601 strings.
    """
    store = service.store
    exported_at = service.now()
    cases = store.find(customer_id=customer_id)
    notices: dict[str, list[Notice]] = {case.id: [] for case in cases}
    if cases:
        for notice in store.find_notices(case_ids=list(notices)):
            notices[notice.case_id].append(notice)
    return {
        "customer_id": customer_id,
        "exported_at": exported_at.isoformat(),
        "cases": [_case_data(case, store.history(case.id), notices[case.id]) for case in cases],
        "responses": [_record_data(record)
                      for record in store.find_responses(customer_ids=[customer_id])],
    }


def _case_data(case: Case, history: Sequence[Event], notices: Sequence[Notice]) -> dict[str, Any]:
    data: dict[str, Any] = unstructure(case)
    data["history"] = [unstructure(event) for event in history]
    data["notices"] = [unstructure(notice) for notice in notices]
    return data


def _record_data(record: ResponseRecord) -> dict[str, Any]:
    data: dict[str, Any] = unstructure(record)
    if record.content is not None:
        # Not closeloop's canonical JSON (written by hand?): hand it over as it is.
        with contextlib.suppress(ValueError):
            data["content"] = json.loads(record.content)
    return data


def purge(
    service: CaseService, closed_before: datetime, *, by: str, dry_run: bool = False
) -> PurgeSummary:
    """Erase every customer due under the retention rule at ``closed_before``.

    Each customer is one :func:`erase_customer` with ``why="retention"``; one whose
    records keep changing is skipped (counted) and left for the next purge.
    """
    erasures: list[Erasure] = []
    skipped = 0
    for customer in service.store.customers_to_purge(closed_before=closed_before):
        try:
            erasure = erase_customer(service, customer, by=by, why="retention", dry_run=dry_run,
                                     closed_before=closed_before)
        except ConcurrentUpdate:
            skipped += 1
            continue
        if erasure.found:
            erasures.append(erasure)
    return PurgeSummary(closed_before, tuple(erasures), skipped, dry_run)
