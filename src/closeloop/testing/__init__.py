"""Test kit for applications and for authors of their own store or notifier.

- :class:`StoreContract`: the store contract as a pytest test class. Subclass it and
  provide a ``store`` fixture to check your own :class:`~closeloop.storage.Store`
  (:class:`ReportContract`, the report rules, is part of it).
- :class:`CorruptedRowContract`: for a store that decodes rows, mixed in beside
  :class:`StoreContract`: a damaged row is a ``StoreError``, never a wrong Case.
- :class:`NotifierContract`: the same for a :class:`~closeloop.notify.Notifier`.
- :class:`FixedClock`: a clock you set and advance, so expiry and SLA logic can be
  tested without sleeping.
- Builders for a store's own tests: :func:`make_case`, :func:`make_notice`,
  :func:`make_record`, :func:`opened_change`; :func:`protocol_problems` names each
  method a store lacks or cannot be called as; :func:`report_fields` lists a
  report's figures by name.

Example::

    from closeloop.testing import StoreContract

    class TestRedisStore(StoreContract):
        @pytest.fixture
        def store(self):
            store = RedisStore(url=...)
            yield store
            store.close()

The contracts need pytest and hypothesis (``pip install "closeloop[contract]"``);
:class:`FixedClock` needs neither. The contract classes are imported on first
use, so that the pytest plugin (:mod:`closeloop.testing.plugin`, loaded by pytest
on its own) registers assertion rewriting for them first: a failing contract test
then shows the values it compared, not a bare ``AssertionError``.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from closeloop.protocol_check import protocol_problems
from closeloop.testing.clock import FixedClock

if TYPE_CHECKING:
    from closeloop.testing.notifier_contract import NotifierContract
    from closeloop.testing.query_contract import CorruptedRowContract
    from closeloop.testing.report_contract import ReportContract, report_fields
    from closeloop.testing.store_contract import (
        StoreContract,
        make_case,
        make_notice,
        make_record,
        opened_change,
    )

__all__ = [
    "CorruptedRowContract",
    "FixedClock",
    "NotifierContract",
    "ReportContract",
    "StoreContract",
    "make_case",
    "make_notice",
    "make_record",
    "opened_change",
    "protocol_problems",
    "report_fields",
]

#: Names imported on first use, by the module that defines them.
_LAZY = {
    "CorruptedRowContract": "closeloop.testing.query_contract",
    "NotifierContract": "closeloop.testing.notifier_contract",
    "ReportContract": "closeloop.testing.report_contract",
    "report_fields": "closeloop.testing.report_contract",
    "StoreContract": "closeloop.testing.store_contract",
    "make_case": "closeloop.testing.store_contract",
    "make_notice": "closeloop.testing.store_contract",
    "make_record": "closeloop.testing.store_contract",
    "opened_change": "closeloop.testing.store_contract",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
