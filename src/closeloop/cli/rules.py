"""``closeloop rules check`` and ``closeloop rules backtest``: rule sets checked before they run.

Usage::

    closeloop rules check RULES.toml [--responses export.jsonl] [--format table|json]
    closeloop rules backtest RULES.toml --responses export.jsonl|csv [--db closeloop.db] [--format table|json]

``RULES`` is TOML (``[[triggers]]`` tables) or JSON, as :func:`closeloop.rules.load_triggers`
reads. ``--responses`` is JSON Lines (one survey response object per line, the
fields of :class:`~closeloop.SurveyResponse`) or CSV (a header row: ``id``,
``customer_id``, ``score``, ``contact_requested``, ``comment``, ``submitted_at``;
any other column is an answer of that name; empty cells are left out).

Exit codes: 0 no findings; 1 findings (or a file whose content cannot be read);
2 bad usage (a missing file, an unknown format).
"""

from __future__ import annotations

import argparse
import csv
import json
import tomllib
from pathlib import Path
from typing import Any

from closeloop.cli.options import UsageError, check_database
from closeloop.cli.output import json_text, table
from closeloop.convert import structure
from closeloop.errors import InvalidInput
from closeloop.loop import CloseLoop
from closeloop.model import SurveyResponse
from closeloop.rulecheck import Finding
from closeloop.rules import check, load_and_check
from closeloop.storage.memory import MemoryStore
from closeloop.storage.sqlite import SQLiteStore

__all__ = ["add_rules_command", "read_responses", "read_rules"]

EXIT_OK, EXIT_FINDINGS = 0, 1
_CSV_FIELDS = ("id", "customer_id", "score", "contact_requested", "comment", "submitted_at")
_TRUE, _FALSE = ("true", "yes", "1", "y"), ("false", "no", "0", "n")


def add_rules_command(commands: Any) -> None:
    """Add ``rules check`` and ``rules backtest`` to the ``closeloop`` parser's subcommands."""
    rules = commands.add_parser("rules", help="check a rule set, or backtest it on exported responses",
                                description="Check a rule set, or backtest it on exported responses.",
                                allow_abbrev=False)
    actions = rules.add_subparsers(dest="rules_command", required=True, metavar="ACTION")
    checking = actions.add_parser(
        "check", allow_abbrev=False,
        help="report triggers that never match, are shadowed, or read unknown answers",
        description="Report triggers that can never match, that an earlier trigger shadows, "
                    "and (with --responses) answers no response has. Exit 1 on findings.")
    backtest = actions.add_parser(
        "backtest", allow_abbrev=False,
        help="what the rules would do with exported responses; writes nothing",
        description="What the rules would do with exported responses, then the check's "
                    "findings on them. Writes nothing. Exit 1 on findings.")
    for sub in (checking, backtest):
        sub.add_argument("rules", metavar="RULES", type=Path,
                         help="the rule set: a .toml or .json file (no default)")
        sub.add_argument("--format", choices=("table", "json"), default="table",
                         help="output: table or json (default: table)")
    checking.add_argument("--responses", metavar="FILE", type=Path,
                          help="a .jsonl or .csv export of responses, to check answer names "
                               "against (default: none)")
    backtest.add_argument("--responses", metavar="FILE", type=Path, required=True,
                          help="a .jsonl or .csv export of responses (required)")
    backtest.add_argument("--db", metavar="PATH", type=Path,
                          help="a closeloop SQLite file, read only: responses and cases already "
                               "there count (default: an empty store)")
    checking.set_defaults(handler=_check)
    backtest.set_defaults(handler=_backtest)


def read_rules(path: Path) -> Any:
    """The plain data of a ``.toml`` or ``.json`` rule file.

    Raises:
        UsageError: no such file, or another suffix.
        InvalidInput: the file is not valid TOML/JSON (``field`` is the file name).
    """
    text = _text(path, "RULES", (".toml", ".json"))
    try:
        return tomllib.loads(text) if path.suffix == ".toml" else json.loads(text)
    except ValueError as exc:  # TOMLDecodeError and JSONDecodeError are ValueErrors
        raise InvalidInput(str(path), None, f"cannot be read: {exc}") from None


def read_responses(path: Path) -> list[SurveyResponse]:
    """The survey responses in a ``.jsonl`` or ``.csv`` export.

    Raises:
        UsageError: no such file, or another suffix.
        InvalidInput: a bad line or row; ``field`` is ``FILE:LINE``.
    """
    text = _text(path, "--responses", (".jsonl", ".csv"))
    if path.suffix == ".jsonl":
        responses = []
        for number, line in enumerate(text.splitlines(), start=1):
            if line.strip():
                try:
                    data = json.loads(line)
                except ValueError as exc:
                    raise InvalidInput(f"{path}:{number}", line[:40], f"is not JSON: {exc}") from None
                responses.append(_response(data, f"{path}:{number}"))
        return responses
    rows = csv.DictReader(text.splitlines())
    return [_response(_csv_fields(row, f"{path}:{number}"), f"{path}:{number}")
            for number, row in enumerate(rows, start=2)]


def _text(path: Path, option: str, suffixes: tuple[str, ...]) -> str:
    if path.suffix not in suffixes:
        raise UsageError(f"{option}: {path} must end in {' or '.join(suffixes)}")
    if not path.is_file():
        raise UsageError(f"{option}: no file at {path}")
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidInput(str(path), None, f"cannot be read: {exc}") from None


def _csv_fields(row: dict[str, Any], where: str) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    answers: dict[str, Any] = {}
    for name, value in row.items():
        if name is None:
            raise InvalidInput(where, value, "has more cells than the header")
        if value is None or value == "":
            continue
        if name == "score":
            fields[name] = int(value) if value.strip().isdigit() else value
        elif name == "contact_requested":
            lowered = value.strip().lower()
            fields[name] = True if lowered in _TRUE else False if lowered in _FALSE else value
        elif name in _CSV_FIELDS:
            fields[name] = value
        else:
            answers[name] = value
    if answers:
        fields["answers"] = answers
    return fields


def _response(data: Any, where: str) -> SurveyResponse:
    try:
        return structure(data, SurveyResponse, "survey response")
    except InvalidInput as exc:
        raise InvalidInput(where, exc.value, str(exc)) from None


def _findings_rows(findings: list[Finding]) -> list[list[str]]:
    return [["trigger", "finding", "detail"],
            *([f.trigger, f.kind.replace("_", " "), f.message] for f in findings)]


def _report(args: argparse.Namespace, findings: list[Finding], subject: str) -> int:
    if args.format == "table":
        print(f"{args.rules}: {subject}: no findings" if not findings else table(_findings_rows(findings)))
    return EXIT_FINDINGS if findings else EXIT_OK


def _check(args: argparse.Namespace) -> int:
    data = read_rules(args.rules)
    sample = None if args.responses is None else read_responses(args.responses)
    findings = check(data, sample=sample)
    if args.format == "json":
        print(json_text({"rules": str(args.rules), "findings": findings}))
    count = len(data.get("triggers", ())) if isinstance(data, dict) else len(data)
    return _report(args, findings, f"{count} trigger(s)")


def _backtest(args: argparse.Namespace) -> int:
    data = read_rules(args.rules)
    responses = read_responses(args.responses)
    # A rule that cannot be read is a finding; the others are backtested (one with an
    # empty score range is left out, which changes nothing: it never matches).
    triggers, findings = load_and_check(data, sample=responses)
    if args.db is not None:
        check_database(args.db, read_only=True)
        store: Any = SQLiteStore(args.db)
    else:
        store = MemoryStore()
    try:
        summary = CloseLoop(store=store, triggers=triggers).backtest(responses)
    finally:
        store.close()
    if args.format == "json":
        print(json_text({"rules": str(args.rules), "summary": summary, "findings": findings}))
        return EXIT_FINDINGS if findings else EXIT_OK
    rows = [["what", "item", "responses"],
            ["responses", "examined", str(summary.responses)],
            ["outcome", "would open a case", str(summary.would_open)],
            ["outcome", "would join a case", str(summary.would_attach)],
            ["outcome", "of which an existing case", str(summary.attached_to_existing)],
            ["outcome", "would update a response", str(summary.updated)],
            ["outcome", "matches no trigger", str(summary.ignored)],
            ["outcome", "duplicate", str(summary.duplicates)]]
    rows += [["matched", t.name, str(summary.matched_by_trigger.get(t.name, 0))] for t in triggers]
    rows += [["opened by", t.name, str(summary.opened_by_trigger.get(t.name, 0))] for t in triggers]
    rows += [["assigned to", user or "(nobody)", str(count)]
             for user, count in sorted(summary.opened_by_assignee.items(), key=lambda i: str(i[0]))]
    print(table(rows))
    print()
    return _report(args, findings, f"{len(triggers)} trigger(s) on {len(responses)} response(s)")
