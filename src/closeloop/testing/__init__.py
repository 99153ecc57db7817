"""Test kit for applications and for authors of their own store or notifier.

- :class:`StoreContract`: the store contract as a pytest test class. Subclass it and
  provide a ``store`` fixture to check your own :class:`~closeloop.storage.Store`.
- :class:`NotifierContract`: the same for a :class:`~closeloop.notify.Notifier`.
- :class:`FixedClock`: a clock you set and advance, so expiry and SLA logic can be
  tested without sleeping.

Example::

    from closeloop.testing import StoreContract

    class TestRedisStore(StoreContract):
        @pytest.fixture
        def store(self):
            store = RedisStore(url=...)
            yield store
            store.close()

This module needs pytest (``pip install closeloop[test]``).
"""

from closeloop.testing.clock import FixedClock
from closeloop.testing.notifier_contract import NotifierContract
from closeloop.testing.store_contract import StoreContract

__all__ = ["FixedClock", "NotifierContract", "StoreContract"]
