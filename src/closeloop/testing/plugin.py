"""The contract kit's pytest plugin: contract failures show the values they compared.

pytest rewrites ``assert`` statements only in test modules and in modules it is told
about before they are imported. The contract suites live in :mod:`closeloop.testing`,
inside an installed package, so without this plugin a failing contract test would
show a bare ``AssertionError``. The plugin registers every module of the kit for
rewriting; the kit's ``__init__`` imports them lazily, so none is imported before.

pytest loads the plugin by itself: closeloop declares it as the ``pytest11`` entry
point ``closeloop``. When plugin autoloading is off
(``PYTEST_DISABLE_PLUGIN_AUTOLOAD=1``), load it by name: ``pytest -p
closeloop.testing.plugin``, or ``pytest_plugins = ["closeloop.testing.plugin"]`` in
your top-level ``conftest.py``.
"""

from __future__ import annotations

import pkgutil
import sys

import pytest

import closeloop.testing

__all__ = ["KIT_MODULES"]

#: The kit's modules (the contract suites among them), registered for assertion rewriting.
KIT_MODULES = tuple(
    f"{closeloop.testing.__name__}.{module.name}"
    for module in pkgutil.iter_modules(closeloop.testing.__path__)
    if module.name != "plugin"
)

# A module already imported cannot be rewritten any more (pytest would warn about
# it): that is only the clock, which the kit's __init__ needs and which asserts nothing.
pytest.register_assert_rewrite(*(name for name in KIT_MODULES if name not in sys.modules))
