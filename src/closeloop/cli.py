"""The ``closeloop`` command: reports, escalation and home pages from a SQLite file.

Usage::

    closeloop report   --db closeloop.db [--since 2026-01-01] [--format table|json|csv]
    closeloop escalate --db closeloop.db [--dry-run] [--fallback cx-lead]
    closeloop cases    --db closeloop.db --assignee alice [--status open]

Exit codes: 0 success, 1 the work failed (a foreign or damaged database, a
store error), 2 bad usage (unknown option, bad date, missing database file).
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import sys
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from closeloop.convert import unstructure
from closeloop.errors import CloseLoopError
from closeloop.escalation import EscalationPolicy
from closeloop.loop import CloseLoop
from closeloop.model import Case, Status
from closeloop.reporting import Durations, Report
from closeloop.rules import parse_duration
from closeloop.storage.sqlite import SQLiteStore

__all__ = ["main"]

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


class _UsageError(Exception):
    """Bad arguments: exit code 2."""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="closeloop", description="Closed-loop feedback: reports, escalation, home pages."
    )
    commands = parser.add_subparsers(dest="command", required=True)

    report = commands.add_parser("report", help="print the KPIs")
    report.add_argument("--since", help="cases opened at or after this date/time (ISO 8601)")
    report.add_argument("--until", help="cases opened before this date/time (ISO 8601)")
    report.add_argument("--assignee", help="only this assignee's cases")
    report.add_argument("--reason", help="only cases with this reason (trigger)")
    report.add_argument("--format", choices=["table", "json", "csv"], default="table")

    escalate = commands.add_parser(
        "escalate",
        help="escalate overdue cases; notices go to the outbox for your app's deliver_pending()",
    )
    escalate.add_argument("--dry-run", action="store_true", help="only list what would happen")
    escalate.add_argument("--fallback", help="who is told about unassigned cases")
    escalate.add_argument("--untouched-for", help="also escalate cases unchanged this long (PT48H)")
    escalate.add_argument("--resend-after", default="PT24H", help="interval between escalations")
    escalate.add_argument("--format", choices=["table", "json", "csv"], default="table")

    cases = commands.add_parser("cases", help="list cases, e.g. an assignee's home page")
    cases.add_argument("--assignee")
    cases.add_argument("--status", choices=[s.value for s in Status])
    cases.add_argument("--customer")
    cases.add_argument("--format", choices=["table", "json", "csv"], default="table")

    for sub in (report, escalate, cases):
        sub.add_argument("--db", required=True, help="the closeloop SQLite file")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code."""
    parser = _parser()
    args = parser.parse_args(argv)  # exits with 2 on bad usage
    try:
        return _run(args)
    except _UsageError as exc:
        print(f"closeloop: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except CloseLoopError as exc:
        print(f"closeloop: error: {exc}", file=sys.stderr)
        return EXIT_FAILED


def _run(args: argparse.Namespace) -> int:
    path = Path(args.db)
    if not path.is_file():
        raise _UsageError(f"no database file at {path} (closeloop creates it when your app first "
                          "opens a SQLiteStore there)")
    store = SQLiteStore(path)
    try:
        loop = CloseLoop(store=store, deliver_notices=False, escalation=_policy(args))
        if args.command == "report":
            report = loop.report(since=_when(args.since, "--since"),
                                 until=_when(args.until, "--until"),
                                 assignee=args.assignee, reason=args.reason)
            _print(args.format, _report_rows(report), report)
        elif args.command == "escalate":
            run = loop.escalate(dry_run=args.dry_run)
            rows = [[e.case_id, e.to or "-", e.why] for e in run.escalated]
            _print(args.format, [["case", "notified", "why"], *rows], run)
            if args.format == "table":
                verb = "would escalate" if run.dry_run else "escalated"
                print(f"\n{verb} {len(rows)} case(s); skipped {run.skipped} changed meanwhile")
        else:
            found = loop.cases(assignee=args.assignee, status=args.status,
                               customer_id=args.customer)
            _print(args.format, _case_rows(found), found)
    finally:
        store.close()
    return EXIT_OK


def _policy(args: argparse.Namespace) -> EscalationPolicy | None:
    if args.command != "escalate":
        return None
    untouched = None if args.untouched_for is None else _duration(args.untouched_for, "--untouched-for")
    return EscalationPolicy(untouched_for=untouched, fallback=args.fallback,
                            resend_after=_duration(args.resend_after, "--resend-after"))


def _duration(value: str, option: str) -> timedelta:
    try:
        return parse_duration(value, option)
    except CloseLoopError as exc:
        raise _UsageError(str(exc)) from None


def _when(value: str | None, option: str) -> datetime | None:
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise _UsageError(f"{option}: not an ISO 8601 date or date-time: {value!r}") from None
    # A bare date or a time without offset means UTC on the command line.
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


# -- output -------------------------------------------------------------------------------


def _print(fmt: str, rows: list[list[str]], value: Any) -> None:
    if fmt == "json":
        print(json.dumps(unstructure(value), indent=2, default=str))
    elif fmt == "csv":
        buffer = io.StringIO()
        csv.writer(buffer, lineterminator="\n").writerows(rows)
        print(buffer.getvalue(), end="")
    else:
        print(_table(rows))


def _table(rows: list[list[str]]) -> str:
    if len(rows) <= 1:
        return "(nothing)" if not rows else "  ".join(rows[0]) + "\n(nothing)"
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
             for row in rows]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(lines)


def _span(value: timedelta | None) -> str:
    if value is None:
        return "-"
    minutes = int(value.total_seconds() // 60)
    days, minutes = divmod(minutes, 24 * 60)
    hours, minutes = divmod(minutes, 60)
    return f"{days}d {hours:02}h {minutes:02}m" if days else f"{hours}h {minutes:02}m"


def _share(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


def _report_rows(report: Report) -> list[list[str]]:
    """The report as (section, item, value) rows: the table and CSV formats."""
    rows = [["section", "item", "value"]]
    rows += [["status", s.display_name, str(report.status_counts[s])] for s in Status]
    rows.append(["status", "Unassigned", str(report.unassigned)])
    for user, stats in sorted(report.by_assignee.items()):
        counts = ", ".join(f"{s.display_name} {stats.status_counts[s]}" for s in Status)
        rows.append(["assignee", user,
                     f"{counts}; median to close {_span(stats.median_time_to_close)}"])
    for reason, by_status in sorted(report.by_reason.items()):
        rows.append(["reason", reason,
                     ", ".join(f"{s.display_name} {by_status[s]}" for s in Status)])
    for name, durations in (("time to first action", report.time_to_first_action),
                            ("time to close", report.time_to_close)):
        rows.append(["kpi", name, _durations(durations)])
    rows.append(["kpi", "overdue", str(report.overdue)])
    rows.append(["kpi", "closed within SLA", _share(report.closed_within_sla)])
    rows += [["aging", bucket, str(count)] for bucket, count in report.aging.items()]
    recovery = report.recovery
    rows.append(["recovery", "customers back", str(recovery.customers)])
    rows.append(["recovery", "detractors recovered",
                 f"{recovery.recovered} of {recovery.detractors} ({_share(recovery.rate)})"])
    return rows


def _durations(value: Durations) -> str:
    if not value.count:
        return "no cases"
    return (f"n={value.count} mean {_span(value.mean)}, median {_span(value.median)}, "
            f"p90 {_span(value.p90)}")


def _case_rows(cases: list[Case]) -> list[list[str]]:
    rows = [["case", "customer", "status", "assignee", "priority", "opened", "due"]]
    for case in cases:
        rows.append([
            case.id, case.customer_id, case.status.display_name, case.assignee or "-",
            case.priority.value, case.opened_at.isoformat(timespec="minutes"),
            case.due_at.isoformat(timespec="minutes") if case.due_at else "-",
        ])
    return rows
