"""``closeloop erase``, ``export`` and ``purge``: a customer's personal data from the shell.

Usage::

    closeloop erase  (--db … | --app …) CUSTOMER --by dpo@crm.example [--dry-run] [--vacuum]
    closeloop export (--db … | --app …) CUSTOMER [--dry-run] [--output FILE]
    closeloop purge  (--db … | --app …) --closed-before 2024-12-01 --by retention-job
                     [--dry-run] [--vacuum]

Each runs :meth:`CloseLoop.erase_customer <closeloop.CloseLoop.erase_customer>`,
:meth:`~closeloop.CloseLoop.export_customer` or :meth:`~closeloop.CloseLoop.purge`.
``--dry-run`` writes nothing: ``erase`` and ``purge`` say what they would erase,
``export`` counts what it would export without printing any of it. ``--vacuum``
(SQLite only) runs ``VACUUM`` after the erasure, so the file's free pages keep no
old copy of what was erased (docs/security.md, "Personal data"). ``purge``'s
output names customers only by their new pseudonyms: a cron log keeps no ids.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from closeloop.cli.options import Instant, UsageError, parse_instant, parse_name
from closeloop.cli.output import json_text, table, to_json
from closeloop.loop import CloseLoop
from closeloop.storage.sqlite import SQLiteStore

__all__ = ["PERSONAL_COMMANDS", "add_personal_options", "run_personal_command"]

#: Each command's one-line help.
PERSONAL_COMMANDS = {
    "erase": "erase a customer's personal data everywhere closeloop keeps it (reports stay exact)",
    "export": "print everything held on a customer as JSON",
    "purge": "erase every customer whose cases all closed before a date (the retention rule)",
}


def add_personal_options(name: str, parser: argparse.ArgumentParser) -> None:
    """Add the options of ``erase``, ``export`` or ``purge`` to its subcommand parser."""
    if name in ("erase", "export"):
        parser.add_argument("customer", type=parse_name, metavar="CUSTOMER",
                            help="the customer's id, as your surveys send it")
    if name == "purge":
        parser.add_argument("--closed-before", type=parse_instant, metavar="WHEN", required=True,
                            help="erase customers all of whose cases closed, and responses "
                                 "arrived, before this ISO 8601 date/time, UTC without an offset "
                                 "(required)")
    if name in ("erase", "purge"):
        parser.add_argument("--by", type=parse_name, required=True,
                            help="who erases, recorded on each case's erased event (required)")
        parser.add_argument("--vacuum", action="store_true",
                            help="SQLite: run VACUUM afterwards so no freed page keeps old "
                                 "copies (default: off; see docs/security.md)")
    if name == "export":
        parser.add_argument("--output", type=Path, metavar="FILE",
                            help="write the JSON to this file instead of stdout (default: stdout)")
    parser.add_argument("--dry-run", action="store_true",
                        help="write nothing: say what would be erased or exported (default: off)")


def run_personal_command(loop: CloseLoop, args: argparse.Namespace) -> int:
    """Run ``erase``, ``export`` or ``purge`` on ``loop``; returns the exit code."""
    runners: dict[str, Callable[[CloseLoop, argparse.Namespace], int]] = {
        "erase": _erase, "export": _export, "purge": _purge,
    }
    if getattr(args, "vacuum", False) and not isinstance(loop.store, SQLiteStore):
        raise UsageError(f"--vacuum: only for a SQLite store (this loop's is a "
                         f"{type(loop.store).__name__})")
    return runners[args.command](loop, args)


def _erase(loop: CloseLoop, args: argparse.Namespace) -> int:
    erasure = loop.erase_customer(args.customer, by=args.by, dry_run=args.dry_run)
    if erasure.found and not erasure.dry_run:
        _vacuum(loop, args)
    if args.format == "json":
        print(json_text(erasure))
    elif not erasure.found:
        print(f"nothing held on {args.customer}: nothing to erase")
    else:
        verb = "would erase" if erasure.dry_run else "erased"
        print(f"{verb} {erasure.cases} case(s), {erasure.responses} response(s) and "
              f"{erasure.notices} notice(s) ({erasure.cancelled} pending notice(s) cancelled)")
        if erasure.pseudonym is not None:
            print(f"the customer is now {erasure.pseudonym}")
    return 0


def _export(loop: CloseLoop, args: argparse.Namespace) -> int:
    held = loop.export_customer(args.customer)
    if args.dry_run:
        counts = _export_counts(held)
        if args.format == "json":
            print(json.dumps(counts, indent=2))
        else:
            print(table([list(counts), [str(n) for n in counts.values()]]))
        return 0
    text = json.dumps(held, indent=2, ensure_ascii=False) + "\n"
    if args.output is None:
        sys.stdout.write(text)
    else:
        try:
            args.output.write_text(text, encoding="utf-8")
        except OSError as exc:
            raise UsageError(f"--output: cannot write {args.output}: {exc.strerror}") from None
    return 0


def _export_counts(held: dict[str, Any]) -> dict[str, int]:
    cases = held["cases"]
    return {
        "cases": len(cases),
        "events": sum(len(case["history"]) for case in cases),
        "notices": sum(len(case["notices"]) for case in cases),
        "responses": len(held["responses"]),
    }


def _purge(loop: CloseLoop, args: argparse.Namespace) -> int:
    when: Instant = args.closed_before
    summary = loop.purge(when.at, by=args.by, dry_run=args.dry_run)
    if summary.customers and not summary.dry_run:
        _vacuum(loop, args)
    if args.format == "json":
        data = to_json(summary)
        if not summary.dry_run:  # a cron log keeps no customer ids
            for erasure in data["erasures"]:
                del erasure["customer_id"]
        print(json.dumps(data, indent=2))
        return 0
    # A dry run names the customers it would erase; a real one only their pseudonyms.
    rows = [["customer", "cases", "responses", "notices"]] + [
        [(e.customer_id if summary.dry_run else e.pseudonym) or "-", str(e.cases),
         str(e.responses), str(e.notices)] for e in summary.erasures]
    print(table(rows))
    verb = "would erase" if summary.dry_run else "erased"
    print(f"\n{verb} {summary.customers} customer(s) whose data is older than {when.text}; "
          f"{summary.skipped} skipped (changing meanwhile: the next purge takes them up)")
    return 0


def _vacuum(loop: CloseLoop, args: argparse.Namespace) -> None:
    if args.vacuum and isinstance(loop.store, SQLiteStore):
        loop.store.vacuum()
