"""The trusted construction path builds exactly what the validating constructor builds."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from attrs import evolve
from hypothesis import given
from hypothesis import strategies as st

from closeloop import Case, InvalidInput, Status, StatusChanged
from closeloop.model import evolve_trusted, trusted

T0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
BASE = Case(id="case-1", customer_id="c-1", status=Status.OPEN, opened_at=T0, updated_at=T0,
            opened_by="agent", version=1, reasons=("detractor",))


@given(
    status=st.sampled_from(list(Status)),
    minutes=st.integers(min_value=0, max_value=10**6),
    version=st.integers(min_value=1, max_value=10**6),
    assignee=st.one_of(st.none(), st.sampled_from(["alice", "bob"])),
)
def test_evolve_trusted_equals_evolve(
    status: Status, minutes: int, version: int, assignee: str | None
) -> None:
    """For valid changes, evolve_trusted gives an equal case to attrs.evolve."""
    now = T0 + timedelta(minutes=minutes)
    changes = {"status": status, "updated_at": now, "version": version, "assignee": assignee,
               "closed_at": now if status is Status.CLOSED else None}
    assert evolve_trusted(BASE, **changes) == evolve(BASE, **changes)


def test_evolve_trusted_still_checks_closed_at() -> None:
    """The cross-field rule (closed_at exactly when Closed) holds on the trusted path too."""
    with pytest.raises(InvalidInput, match="closed_at"):
        evolve_trusted(BASE, status=Status.CLOSED)


def test_trusted_fills_defaults_and_requires_the_rest() -> None:
    """Missing fields take their defaults; a field without a default must be given."""
    event = trusted(StatusChanged, {"case_id": "case-1", "actor": "alice", "at": T0, "seq": 2,
                                    "from_status": Status.OPEN, "to_status": Status.PROGRESS})
    assert event == StatusChanged(case_id="case-1", actor="alice", at=T0, seq=2,
                                  from_status=Status.OPEN, to_status=Status.PROGRESS)
    with pytest.raises(TypeError, match="seq"):
        trusted(StatusChanged, {"case_id": "case-1", "actor": "alice", "at": T0})
