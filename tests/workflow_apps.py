"""The issue's example workflow, and a host app for ``closeloop --app workflow_apps:make_loop``.

Tests set :data:`FACTORY` to build a loop over the store under test; the CLI,
run in-process, calls :func:`make_loop` as it would a host's own function.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from closeloop import CloseLoop
from closeloop.workflow import Workflow

#: The issue's example configuration, as written.
EXAMPLE: dict[str, Any] = {
    "statuses": [
        {"name": "open", "category": "open"},
        {"name": "progress", "category": "progress"},
        {"name": "waiting", "label": "Waiting on customer", "category": "progress", "pauses_sla": True},
        {"name": "closed", "category": "closed"},
    ],
    "transitions": {
        "open": ["progress", "waiting", "closed"],
        "progress": ["open", "waiting", "closed"],
        "waiting": ["progress", "closed"],
        "closed": ["open"],
    },
    "close_reasons": ["solved", "no-response"],
}

WORKFLOW = Workflow.from_dict(EXAMPLE)

#: Builds the loop the CLI should open; set by the test that runs the CLI.
FACTORY: Callable[[], CloseLoop] | None = None


def make_loop() -> CloseLoop:
    """The loop :data:`FACTORY` builds."""
    assert FACTORY is not None, "set workflow_apps.FACTORY first"
    return FACTORY()
