"""The retention rule: which customers :meth:`CloseLoop.purge <closeloop.CloseLoop.purge>` erases.

A customer's personal data is kept while any of it may still be needed, and
erased once all of it is older than the retention date. At a date ``closed_before``
a customer is **due** when:

- every case of theirs is Closed, with ``closed_at`` before ``closed_before``
  (a case still open, or closed later, keeps all of their data: erasing only
  some of a customer's records would split them in two for the reports);
- every survey response of theirs was received before ``closed_before``
  (a customer with no case is due once their last response is that old); and
- something of theirs is not erased yet: their id is not a pseudonym, or a case
  of theirs has events after its ``erased`` event, or a response of theirs still
  has its content. A customer erased before, with nothing added since, is never
  due again, so a purge run twice erases nothing the second time.

:func:`select_purge_candidates` states the rule once, in Python; it is the
default of :meth:`Store.customers_to_purge <closeloop.storage.Retention.customers_to_purge>`,
and the contract suite holds a store's own (SQL) answer to it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from datetime import datetime

from closeloop.model import Case, Event, ResponseRecord
from closeloop.redaction import is_pseudonym

__all__ = ["select_purge_candidates"]


def select_purge_candidates(
    cases: Iterable[Case],
    responses: Iterable[ResponseRecord],
    history: Callable[[str], Sequence[Event]],
    *,
    closed_before: datetime,
) -> list[str]:
    """The customers due for erasure at ``closed_before`` (see the module), in code point order.

    Args:
        cases: every stored case.
        responses: every recorded response.
        history: a case's events by case id; read only for customers whose id is
            already a pseudonym.
        closed_before: the retention date.
    """
    customers: dict[str, list[Case]] = {}
    for case in cases:
        customers.setdefault(case.customer_id, []).append(case)
    records: dict[str, list[ResponseRecord]] = {}
    for record in responses:
        records.setdefault(record.customer_id, []).append(record)
    due = []
    for customer in customers.keys() | records.keys():
        own_cases = customers.get(customer, [])
        own_records = records.get(customer, [])
        aged = all(case.closed_at is not None and case.closed_at < closed_before
                   for case in own_cases) and all(
            record.received_at < closed_before for record in own_records)
        if aged and (
            not is_pseudonym(customer)
            or any(record.content is not None for record in own_records)
            or any(history(case.id)[-1].kind != "erased" for case in own_cases)
        ):
            due.append(customer)
    return sorted(due)
