"""Run every benchmark and print one table: ``python -m bench [--size N | --quick]``.

Run from the repository root (with closeloop importable, e.g. installed in the
virtualenv or ``PYTHONPATH=src``). A benchmark is a module of this package with
``run(size: int) -> list[Row]``; add its name to :data:`BENCHMARKS`.
"""

from __future__ import annotations

import argparse
import importlib
import os
import platform
import sqlite3
import sys
from collections.abc import Sequence
from datetime import date

from bench.common import Row, max_rss_mib, render_table

#: Benchmark modules, run in this order. Planned: trigger evaluation, ingest_many,
#: one-touch, report – each a module here with the same ``run(size)``.
BENCHMARKS: Sequence[str] = (
    "bench.status_changes",
    "bench.triggers",
    "bench.ingest",
    "bench.onetouch",
    "bench.postgres",
    "bench.report",
    "bench.query",
    "bench.peers",
)

DEFAULT_SIZE = 2000
QUICK_SIZE = 200


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the command line, run the benchmarks, print the table. Returns 0 (2 on bad usage)."""
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=None,
                        help=f"operations per benchmark (default {DEFAULT_SIZE})")
    parser.add_argument("--quick", action="store_true",
                        help=f"a smoke run with size {QUICK_SIZE}; figures are not meaningful")
    parser.add_argument("--only", action="append", default=None, metavar="MODULE",
                        help="run only this benchmark module (repeatable), e.g. status_changes")
    args = parser.parse_args(argv)
    if args.size is not None and args.size < 1:
        parser.error("--size must be at least 1")
    size = args.size or (QUICK_SIZE if args.quick else DEFAULT_SIZE)
    names = BENCHMARKS if not args.only else [
        name if name.startswith("bench.") else f"bench.{name}" for name in args.only
    ]
    unknown = [typed for typed, name in zip(args.only or [], names, strict=False)
               if name not in BENCHMARKS]
    if unknown:
        known = ", ".join(name.removeprefix("bench.") for name in BENCHMARKS)
        parser.error(f"--only: no benchmark named {', '.join(unknown)}; choose from {known}")

    print(f"closeloop benchmarks, {date.today().isoformat()}, size {size}")
    print(f"Python {platform.python_version()}, SQLite {sqlite3.sqlite_version}, "
          f"{platform.system()} {platform.machine()}, {os.cpu_count()} CPUs")
    print()
    rows: list[Row] = []
    for name in names:
        rows.extend(importlib.import_module(name).run(size))
    print(render_table(rows))
    print(f"process peak RSS (getrusage ru_maxrss): {max_rss_mib():.1f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
