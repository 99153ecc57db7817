"""Custom trigger: try new rules on last month's survey export before switching them on.

How to run:  python examples/custom_trigger.py [--rows N] [--seed S]
(it writes a CSV of N generated responses, default 2000, to a temporary directory,
reads it back, and prints what the rules would have done; nothing is stored)

The scenario: the CX team wants a rule of its own, "the customer is on the
Business plan or above", next to the built-in ones. The rules come from plain
data, as a JSON or TOML file would give them, and cases go to the account
manager named in the survey (or to "cx-team" when there is none). Before the
rules go live, ``loop.backtest`` runs the exported responses through them
without writing anything, and ``loop.explain`` shows why one response matched.
"""

from __future__ import annotations

import argparse
import csv
import random
import tempfile
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

from closeloop import CloseLoop, InvalidInput, SurveyResponse
from closeloop.rules import default_registry, load_triggers
from closeloop.storage import MemoryStore
from closeloop.triggers import predicate

#: Plans from cheapest to dearest; the custom predicate compares positions in this list.
PLANS = ("free", "pro", "business", "enterprise")
ACCOUNT_MANAGERS = ("ana", "ben", "chloe")
FALLBACK = "cx-team"
COLUMNS = ("id", "customer_id", "score", "contact_requested", "comment", "plan",
           "account_manager", "submitted_at")
COMMENTS = (
    "Great service, thanks",
    "Delivery was late again",
    "Support took three days to answer",
    "Thinking about switching to a competitor",
    "Please cancel my subscription",
    "The new dashboard is confusing",
    "Invoice was wrong, I want a refund",
    "All good",
)

# -- the custom predicate ---------------------------------------------------------

registry = default_registry.copy()  # the built-ins, plus what we register below


@registry.register("plan_at_least")
def plan_at_least(minimum: str) -> Callable[[SurveyResponse], bool]:
    """Match responses whose "plan" answer is ``minimum`` or a dearer plan."""
    if minimum not in PLANS:
        # load_triggers adds the path to the message: triggers[0].when.plan_at_least: ...
        raise InvalidInput("minimum", minimum, f"must be one of {', '.join(PLANS)}")
    enough = PLANS[PLANS.index(minimum):]  # a tuple: an unhashable (list) answer is just "no"
    return predicate(lambda response: response.answers.get("plan") in enough,
                     f"plan is {minimum} or above")


# -- the rules, as plain data (what json.load would return) ----------------------

ROUTE = {"from_answer": "account_manager", "fallback": FALLBACK}

RULES = [
    {
        "name": "key-account-at-risk",
        "when": {"all_of": [
            {"plan_at_least": "business"},
            {"any_of": [{"nps_between": [0, 6]},
                        {"comment_contains": ["cancel", "competitor", "refund"]}]},
        ]},
        "priority": "urgent",
        "assign_to": ROUTE,
        "due_in": "PT24H",
    },
    {"name": "detractor", "when": {"nps_between": [0, 6]}, "priority": "high",
     "assign_to": ROUTE, "due_in": "PT48H"},
    {"name": "contact-request", "when": "contact_requested",
     "assign_to": ROUTE, "due_in": "PT48H"},
    {"name": "silent-complaint",
     "when": {"all_of": ["score_missing", {"comment_contains": ["late", "wrong", "confusing"]}]},
     "priority": "low", "assign_to": FALLBACK},
]


# -- a survey export: write it, read it back ------------------------------------


def write_export(path: Path, rows: int, seed: int) -> None:
    """Write ``rows`` generated responses as the survey tool's CSV export."""
    rng = random.Random(seed)
    customers = [f"cust-{n:05}" for n in range(max(1, rows // 3))]
    plan_of = {c: rng.choices(PLANS, weights=(4, 3, 2, 1))[0] for c in customers}
    manager_of = {c: rng.choice(ACCOUNT_MANAGERS) if plan_of[c] in PLANS[2:] else ""
                  for c in customers}
    zones = (UTC, timezone(timedelta(hours=1)), timezone(timedelta(hours=-5)))
    start = datetime(2026, 10, 1, tzinfo=UTC)
    written: list[list[str]] = []
    with path.open("w", newline="", encoding="utf-8") as file:
        writer = csv.writer(file)
        writer.writerow(COLUMNS)
        for n in range(rows):
            if written and rng.random() < 0.01:  # the survey tool sent a response twice
                writer.writerow(rng.choice(written))
                continue
            customer = rng.choice(customers)
            score = "" if rng.random() < 0.06 else str(rng.choices(range(11), weights=(
                2, 1, 1, 2, 2, 3, 4, 8, 10, 12, 10))[0])
            submitted = start + timedelta(minutes=rng.randrange(30 * 24 * 60))
            row = [
                f"resp-{n:06}",
                customer,
                score,
                "yes" if rng.random() < 0.12 else "no",
                rng.choice(COMMENTS) if rng.random() < 0.5 else "",
                plan_of[customer],
                manager_of[customer],
                submitted.astimezone(rng.choice(zones)).isoformat(),
            ]
            writer.writerow(row)
            written.append(row)


def read_export(path: Path) -> list[SurveyResponse]:
    """Read the CSV back into SurveyResponse objects; a bad row stops with its line number."""
    responses = []
    with path.open(newline="", encoding="utf-8") as file:
        reader = csv.DictReader(file)
        if tuple(reader.fieldnames or ()) != COLUMNS:
            raise SystemExit(f"{path}: expected columns {', '.join(COLUMNS)}")
        for row in reader:
            try:
                responses.append(parse_row(row))
            except ValueError as error:  # closeloop's InvalidInput is a ValueError too
                raise SystemExit(f"{path}, line {reader.line_num}: {error}") from None
    return responses


def parse_row(row: dict[str, str]) -> SurveyResponse:
    """One CSV row as a SurveyResponse: blank score is None, blank answers are left out."""
    submitted_at = datetime.fromisoformat(row["submitted_at"])
    if submitted_at.tzinfo is None:
        raise ValueError(f"submitted_at {row['submitted_at']!r} has no time zone")
    if row["contact_requested"] not in ("yes", "no"):
        raise ValueError(f"contact_requested must be yes or no, not {row['contact_requested']!r}")
    answers = {key: row[key] for key in ("plan", "account_manager") if row[key].strip()}
    return SurveyResponse(
        id=row["id"],
        customer_id=row["customer_id"],
        score=int(row["score"]) if row["score"].strip() else None,
        contact_requested=row["contact_requested"] == "yes",
        comment=row["comment"] or None,
        answers=answers,
        submitted_at=submitted_at,
    )


# -- printing --------------------------------------------------------------------


def table(title: str, rows: Sequence[tuple[str, ...]], header: tuple[str, ...]) -> str:
    """A small left/right aligned text table: first column left, the others right."""
    widths = [max(len(cells[i]) for cells in (header, *rows)) for i in range(len(header))]
    lines = [title]
    for cells in (header, *rows):
        first, *rest = cells
        lines.append("  " + "  ".join([first.ljust(widths[0]),
                                      *(c.rjust(w) for c, w in zip(rest, widths[1:], strict=True))]))
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    """Generate the export, backtest the rules on it, explain one response."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=2000, help="responses to generate (default 2000)")
    parser.add_argument("--seed", type=int, default=7, help="random seed (default 7)")
    args = parser.parse_args(argv)
    if args.rows < 1:
        parser.error("--rows must be at least 1")

    triggers = load_triggers(RULES, registry=registry)
    # A fixed clock keeps the output the same on every run; leave it out in an app.
    loop = CloseLoop(store=MemoryStore(), triggers=triggers,
                     clock=lambda: datetime(2026, 11, 1, 9, 0, tzinfo=UTC))

    with tempfile.TemporaryDirectory(prefix="closeloop-example-") as tmp:
        export = Path(tmp) / "responses.csv"
        write_export(export, args.rows, args.seed)
        responses = read_export(export)

    summary = loop.backtest(responses)
    print(f"Backtest of {summary.responses} responses (seed {args.seed}); nothing was written.\n")
    print(table("By trigger (a case is opened by the first trigger that matches):", [
        (t.name, str(summary.opened_by_trigger.get(t.name, 0)),
         str(summary.matched_by_trigger.get(t.name, 0)))
        for t in loop.triggers
    ], ("trigger", "would open", "matched")))
    print()
    by_assignee = sorted(summary.opened_by_assignee.items(), key=lambda item: (-item[1], str(item[0])))
    print(table("By assignee:", [(str(who or "(nobody)"), str(n)) for who, n in by_assignee],
                ("assignee", "would open")))
    print()
    print(table("Overall:", [
        ("cases opened", str(summary.would_open)),
        ("attached to a case already open", str(summary.would_attach)),
        ("ignored (no trigger matched)", str(summary.ignored)),
        ("duplicates (same response id again)", str(summary.duplicates)),
    ], ("outcome", "responses")))

    # Explain the first response that several triggers match: the most instructive one.
    opened = [d for d in summary.decisions if d.outcome == "open"]
    if not opened:
        return
    chosen = next((d for d in opened if len(d.reasons) > 1), opened[0])
    response = next(r for r in responses if r.id == chosen.response_id)
    decision = loop.explain(response)
    print(f"\nWhy {response.id} would open a case (score {response.score}, "
          f"comment {response.comment!r}, answers {dict(response.answers)}):")
    for explanation in decision.triggers:
        verdict = "matched" if explanation.matched else "no match"
        print(f"  {explanation.name:<20} {verdict:<8}  {explanation.why}")
    due = decision.due_at.isoformat(timespec="minutes") if decision.due_at else "-"
    print(f"  -> {decision.outcome}: assigned to {decision.assignee}, priority {decision.priority}, "
          f"due {due}, reasons {', '.join(decision.reasons)}")

    # A mistake in the rules is caught when they load, with the path to it.
    typo = [{"name": "vip", "when": {"any_of": ["contact_requested", {"plan_at_least": "platinum"}]}}]
    try:
        load_triggers(typo, registry=registry)
    except InvalidInput as error:
        print(f"\nA bad rule is refused when it loads:\n  {error}")


if __name__ == "__main__":
    main()
