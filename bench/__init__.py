"""Benchmarks: closeloop's throughput next to a hand-written baseline, in one run.

Run them all with ``python -m bench`` from the repository root (see
``docs/performance.md``). Each benchmark is a module with ``run(size) -> list[Row]``
listed in :data:`bench.__main__.BENCHMARKS`.
"""
