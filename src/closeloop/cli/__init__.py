"""The ``closeloop`` command: reports, escalation, home pages and delivery.

Usage::

    closeloop report   (--db closeloop.db | --app myapp:make_loop) [--since 2026-01-01] [--format csv]
    closeloop escalate (--db … | --app …) [--dry-run] [--fallback cx-lead] [--resend-after PT24H]
    closeloop cases    (--db … | --app …) [--assignee alice] [--status Open]
    closeloop deliver  --app myapp:make_loop [--limit 100]
    closeloop rules check RULES.toml [--responses export.jsonl]   (see closeloop.cli.rules)
    closeloop worker   --app myapp:make_loop [--deliver-every 5] [--escalate-every PT5M]
    closeloop erase    (--db … | --app …) CUSTOMER --by dpo [--dry-run] [--vacuum]
    closeloop export   (--db … | --app …) CUSTOMER [--dry-run] [--output FILE]
    closeloop purge    (--db … | --app …) --closed-before 2024-12-01 --by job [--dry-run]
    closeloop --version

``--db`` opens a SQLite file with a bare loop (no notifier: notices wait in the
outbox); ``--app module:function`` calls the host's function for its own
configured :class:`~closeloop.CloseLoop` (store, notifiers, one-touch, templates).

Exit codes: 0 success; 1 the work failed (an empty, foreign or damaged database,
a store error, a notice that could not be delivered); 2 bad usage (an unknown or
malformed option, a missing database file, a bad ``--app``), the message naming
the option as typed. A closed pipe (``closeloop cases | head -1``) ends the
command quietly with 141, as a Unix tool ended by SIGPIPE. ``report``, ``cases``,
``export`` and every ``--dry-run`` never write to the database.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from importlib import metadata
from pathlib import Path

import attrs

from closeloop.cli.options import (
    Instant,
    UsageError,
    check_database,
    load_app,
    parse_duration_option,
    parse_instant,
    parse_limit,
    parse_name,
    parse_status,
)
from closeloop.cli.output import case_rows, csv_text, json_text, report_metrics, report_rows, table
from closeloop.cli.personal import PERSONAL_COMMANDS, add_personal_options, run_personal_command
from closeloop.cli.rules import add_rules_command
from closeloop.cli.worker import WORKER_HELP, add_worker_options, run_worker_command
from closeloop.errors import CloseLoopError, InvalidInput
from closeloop.loop import CloseLoop
from closeloop.storage.sqlite import SQLiteStore

__all__ = ["build_parser", "main"]

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_PIPE = 0, 1, 2, 141
#: Library fields that come straight from an option: a refusal is the user's usage error.
_OPTION_OF_FIELD = {"assignee": "--assignee", "customer_id": "--customer", "reason": "--reason",
                    "fallback": "--fallback", "limit": "--limit", "status": "--status",
                    "by": "--by", "closed_before": "--closed-before"}


def _version() -> str:
    try:
        return metadata.version("closeloop")
    except metadata.PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown (not installed)"


def _format_choice(*choices: str) -> Callable[[str], str]:
    def parse(text: str) -> str:
        if text.lower() not in choices:
            raise argparse.ArgumentTypeError(f"{text} is not one of {', '.join(choices)}")
        return text.lower()

    return parse


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every command; each option's help states its default."""
    parser = argparse.ArgumentParser(
        prog="closeloop", description="Closed-loop feedback: reports, escalation, home pages.",
        allow_abbrev=False,
    )
    parser.add_argument("--version", action="version", version=f"closeloop {_version()}",
                        help="print closeloop's version and exit")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, help_text: str, formats: tuple[str, ...]) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help_text, description=help_text, allow_abbrev=False)
        where = sub.add_mutually_exclusive_group(required=True)
        where.add_argument("--db", metavar="PATH", type=Path,
                           help="the closeloop SQLite file (no default; this or --app is required)")
        where.add_argument("--app", metavar="MODULE:FUNCTION",
                           help="call this function for your app's configured CloseLoop instead of "
                                "opening --db (no default)")
        sub.add_argument("--format", type=_format_choice(*formats), default=formats[0],
                         help=f"output: {', '.join(formats)} (default: {formats[0]})")
        return sub

    report = command("report", "print the KPIs", ("table", "json", "csv"))
    report.add_argument("--since", type=parse_instant, metavar="WHEN",
                        help="cases opened at or after this ISO 8601 date/time, UTC without an "
                             "offset (default: no lower bound)")
    report.add_argument("--until", type=parse_instant, metavar="WHEN",
                        help="cases opened before this ISO 8601 date/time (default: no upper bound)")
    report.add_argument("--assignee", type=parse_name, help="only this assignee's cases (default: all)")
    report.add_argument("--reason", type=parse_name,
                        help="only cases with this reason, a trigger's name (default: all)")

    escalate = command("escalate", "escalate overdue cases; with --db the notices wait in the "
                       "outbox for closeloop deliver or your app", ("table", "json", "csv"))
    escalate.add_argument("--dry-run", action="store_true",
                          help="only list what would happen; writes nothing (default: escalate)")
    escalate.add_argument("--fallback", type=parse_name,
                          help="who is told about unassigned cases (default: the app's policy, "
                               "else nobody)")
    escalate.add_argument("--untouched-for", type=parse_duration_option, metavar="DURATION",
                          help="also escalate cases unchanged this long: ISO 8601 (PT48H, P2D) or "
                               "seconds (default: the app's policy, else off)")
    escalate.add_argument("--resend-after", type=parse_duration_option, metavar="DURATION",
                          help="escalate a case again only after this long: ISO 8601 or seconds "
                               "(default: the app's policy, else PT24H)")
    escalate.add_argument("--limit", type=parse_limit, default=500,
                          help="escalate at most this many cases (default: 500)")

    cases = command("cases", "list cases, e.g. an assignee's home page", ("table", "json", "csv"))
    cases.add_argument("--assignee", type=parse_name, help="only this assignee's cases (default: all)")
    cases.add_argument("--status", type=parse_status,
                       help="only this status: open, progress or closed, any case, or one of "
                            "your workflow's statuses, e.g. waiting (default: all)")
    cases.add_argument("--customer", type=parse_name, help="only this customer's cases (default: all)")
    cases.add_argument("--limit", type=parse_limit, help="at most this many cases (default: all)")

    deliver = command("deliver", "deliver the notices waiting in the outbox, once (needs --app "
                      "for your notifiers)", ("table", "json"))
    deliver.add_argument("--limit", type=parse_limit, default=100,
                         help="deliver at most this many notices (default: 100)")
    add_rules_command(commands)
    add_worker_options(command("worker", WORKER_HELP, ("table", "json")))
    for name, help_text in PERSONAL_COMMANDS.items():
        add_personal_options(name, command(name, help_text, ("table", "json")))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code."""
    args = build_parser().parse_args(argv)  # exits with 2 on bad usage
    try:
        code = _run(args)
        sys.stdout.flush()  # inside the try: a closed pipe shows here, not at interpreter exit
        return code
    except UsageError as exc:
        print(f"closeloop {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except InvalidInput as exc:
        option = _OPTION_OF_FIELD.get(exc.field)
        if exc.field == "customer_id" and args.command in ("erase", "export"):
            option = "CUSTOMER"
        if option is None:
            print(f"closeloop {args.command}: error: {exc}", file=sys.stderr)
            return EXIT_FAILED
        print(f"closeloop {args.command}: error: {option}: {exc.reason} (got {exc.value})",
              file=sys.stderr)
        return EXIT_USAGE
    except CloseLoopError as exc:
        print(f"closeloop {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except BrokenPipeError:
        # The reader went away (| head): nothing more to say. Point stdout at /dev/null so
        # the interpreter's final flush does not raise again.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
        return EXIT_PIPE


def _run(args: argparse.Namespace) -> int:
    handler = getattr(args, "handler", None)
    if handler is not None:  # a command with its own module (closeloop rules …)
        return int(handler(args))
    since: Instant | None = getattr(args, "since", None)
    until: Instant | None = getattr(args, "until", None)
    if since is not None and until is not None and until.at <= since.at:
        raise UsageError(f"--until {until.text} must be later than --since {since.text}")
    loop = _open_loop(args)
    try:
        if args.command == "report":
            return _report(loop, args, since, until)
        if args.command == "escalate":
            return _escalate(loop, args)
        if args.command == "deliver":
            return _deliver(loop, args)
        if args.command == "worker":
            return run_worker_command(loop, args)
        if args.command in PERSONAL_COMMANDS:
            return run_personal_command(loop, args)
        found = loop.cases(assignee=args.assignee, status=args.status, customer_id=args.customer,
                           limit=args.limit)
        _emit(args.format, case_rows(found), found)
        return EXIT_OK
    finally:
        loop.store.close()


def _open_loop(args: argparse.Namespace) -> CloseLoop:
    if args.app is not None:
        return load_app(args.app)
    if args.command in ("deliver", "worker"):
        raise UsageError("--app is required: a loop opened from --db alone has no notifier to "
                         "deliver with (give --app module:function returning your CloseLoop)")
    read_only = args.command in ("report", "cases", "export") or getattr(args, "dry_run", False)
    check_database(args.db, read_only=read_only)
    return CloseLoop(store=SQLiteStore(args.db), deliver_notices=False)


def _report(loop: CloseLoop, args: argparse.Namespace, since: Instant | None,
            until: Instant | None) -> int:
    report = loop.report(since=None if since is None else since.at,
                         until=None if until is None else until.at,
                         assignee=args.assignee, reason=args.reason)
    if args.format == "csv":
        print(csv_text(report_metrics(report)), end="")
    else:
        _emit(args.format, report_rows(report), report)
    return EXIT_OK


def _escalate(loop: CloseLoop, args: argparse.Namespace) -> int:
    changes = {name: value for name, value in (("fallback", args.fallback),
                                               ("untouched_for", args.untouched_for),
                                               ("resend_after", args.resend_after))
               if value is not None}
    if changes:
        loop.escalation = attrs.evolve(loop.escalation, **changes)
    run = loop.escalate(dry_run=args.dry_run, limit=args.limit)
    rows = [[e.case_id, e.to or "-", e.why] for e in run.escalated]
    _emit(args.format, [["case", "notified", "why"], *rows], run)
    if args.format == "table":
        verb = "would escalate" if run.dry_run else "escalated"
        print(f"\n{verb} {len(rows)} case(s); skipped {run.skipped} changed meanwhile")
    return EXIT_OK


def _deliver(loop: CloseLoop, args: argparse.Namespace) -> int:
    delivered = loop.deliver_pending(limit=args.limit)
    if args.format == "json":
        print(json_text(delivered))
    else:
        print(f"sent {delivered.sent} notice(s); {delivered.failed} failed and stay in the outbox "
              f"for a retry; {delivered.abandoned} given up (recipient unknown)")
    return EXIT_FAILED if delivered.failed or delivered.abandoned else EXIT_OK


def _emit(fmt: str, rows: list[list[str]], value: object) -> None:
    if fmt == "json":
        print(json_text(value))
    elif fmt == "csv":
        print(csv_text(rows), end="")
    else:
        print(table(rows))
