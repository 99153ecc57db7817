"""Responses ingested per second: ``CloseLoop.ingest_many`` into SQLite vs raw sqlite3 ``executemany``.

``size × 50`` responses (100 000 at the default size) from
:func:`bench.triggers.make_responses`: about three responses per customer, and
0.5 % of them repeat an earlier response id (a survey tool retrying its webhook).
Three triggers open cases; each routes to the account manager named in the
answers, or to ``cx-team``:

- closeloop: ``loop.ingest_many(responses)`` on a ``CloseLoop`` over a fresh
  ``SQLiteStore`` (default ``synchronous=FULL``, WAL), default de-duplication
  (``"open-case"``), default batch of 500 responses per transaction, and
  ``deliver_notices=False``: the assignment notices are written to the outbox with
  their cases, for a worker to deliver (``run_worker``), as a web app that ingests
  webhooks is advised to run. Delivery (rendering the templates, sending) is not
  what this row measures.
- raw: one ``sqlite3`` connection with the same pragmas and closeloop's own schema
  (``MIGRATIONS``). It decides each response by hand (an if-chain for the three
  triggers, dicts for the responses already seen and each customer's open case),
  then per 500 responses, in one ``BEGIN IMMEDIATE`` transaction,
  ``executemany``-inserts the new cases (in their final state), updates the cases
  that earlier batches opened (``WHERE id = ? AND version = ?``), and inserts the
  events (opened, assigned, response_attached), the outbox notices (one delivery
  each, its content as the same JSON closeloop writes) and a row per response (with
  what it says, as closeloop records it to recognise updates). It reads nothing
  back from the database.

Both sides use the same fixed clock and the same id sequence, so they must
produce **identical tables**; the first timed run of each is compared row by row
and the benchmark fails if they differ. (An outbox row's own id is closeloop's
ordering counter, not from the id sequence; the rows are compared by their
shared message id, every other column included.)
"""

from __future__ import annotations

import itertools
import json
import re
import sqlite3
import tempfile
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

from bench.common import Row, peak_traced_kib, rate
from bench.triggers import RESPONSES_PER_SIZE, make_responses
from closeloop import CloseLoop, SurveyResponse
from closeloop.intake import DEFAULT_BATCH, IngestSummary
from closeloop.notify.base import Message
from closeloop.storage import SQLiteStore
from closeloop.storage.sqlite import MIGRATIONS
from closeloop.triggers import (
    Trigger,
    comment_contains,
    contact_requested,
    first_of,
    from_answer,
    nps_between,
)

__all__ = ["TRIGGERS", "run"]

#: Each side is timed this many times, on a fresh file each time, taking turns.
REPEATS = 3
TARGET = 0.7
NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
FALLBACK = "cx-team"

_ROUTE = first_of(from_answer("account_manager"), fallback=FALLBACK)
TRIGGERS = (
    Trigger("churn-risk", comment_contains("cancel", "cancelling", "switching", "competitor"),
            priority="urgent", assign_to=_ROUTE, due_in=timedelta(hours=24)),
    Trigger("detractor", nps_between(0, 6), priority="high", assign_to=_ROUTE,
            due_in=timedelta(hours=48)),
    Trigger("contact-request", contact_requested(), assign_to=FALLBACK, due_in=timedelta(hours=48)),
)

_CHURN = re.compile(r"\b(?:cancel|cancelling|switching|competitor)\b")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICRO = timedelta(microseconds=1)
_TABLES = {
    "cases": "id",
    "events": "case_id, seq",
    "outbox": "message_id, channel",
    "responses": "response_id",
    "rotations": "key",
}
#: The columns compared, where not all: a delivery's id is closeloop's own ordering counter.
_COLUMNS = {
    # Not seq: the order responses are recorded in within a batch is closeloop's own.
    "responses": "response_id, customer_id, outcome, case_id, score, submitted_at, received_at, "
                 "content",
    "outbox": "case_id, kind, recipient, subject, text, html, created_at, next_attempt_at, "
              "attempts, last_error, sent_at, channel, message_id, content, failed_at",
}


def run(size: int) -> list[Row]:
    """Ingest ``size × 50`` responses both ways; the tables each side writes must be equal."""
    responses = make_responses(size * RESPONSES_PER_SIZE, duplicates=0.005)
    best_closeloop = best_raw = 0.0
    result: dict[str, IngestSummary] = {}
    with tempfile.TemporaryDirectory(prefix="closeloop-bench-") as tmp:
        for attempt in range(REPEATS):
            # Interleaved, so a noisy neighbour slows both sides alike.
            closeloop_path, raw_path = Path(tmp) / f"cl-{attempt}.db", Path(tmp) / f"raw-{attempt}.db"
            loop = closeloop_loop(closeloop_path)
            best_closeloop = max(best_closeloop,
                                 rate(len(responses), partial(ingest_into, result, loop, responses)))
            loop.store.close()
            raw = RawIngest(raw_path)
            best_raw = max(best_raw, rate(len(responses), partial(raw.ingest, responses)))
            raw.close()
            if attempt == 0:
                check_same_outcome(closeloop_path, result["summary"], raw_path, raw.counts)
        loop = closeloop_loop(Path(tmp) / "cl-traced.db")
        peak = peak_traced_kib(partial(loop.ingest_many, responses))
        loop.store.close()
        raw = RawIngest(Path(tmp) / "raw-traced.db")
        raw_peak = peak_traced_kib(partial(raw.ingest, responses))
        raw.close()
    counts = raw.counts
    return [Row(
        operation=f"ingest_many into SQLite ({len(responses):,} responses, {counts['open']:,} "
                  "cases)",
        closeloop_rate=best_closeloop,
        baseline_rate=best_raw,
        baseline=("raw sqlite3, same schema and pragmas: per 500 responses one transaction of "
                  "executemany INSERT/UPDATE of the same rows; "
                  f"{counts['open']:,} opened, {counts['attach']:,} attached, "
                  f"{counts['ignore']:,} ignored, {counts['duplicate']:,} duplicates; "
                  f"its peak heap {raw_peak:,.0f} KiB"),
        peak_kib=peak,
        target=TARGET,
    )]


def closeloop_loop(path: Path) -> CloseLoop:
    """A CloseLoop over a fresh SQLiteStore, with the fixed clock and id sequence."""
    return CloseLoop(store=SQLiteStore(path), notifier=DiscardingNotifier(), clock=lambda: NOW,
                     triggers=TRIGGERS, id_factory=id_sequence(), deliver_notices=False)


def ingest_into(result: dict[str, IngestSummary], loop: CloseLoop,
                responses: Sequence[SurveyResponse]) -> None:
    """``loop.ingest_many(responses)``, keeping the summary in ``result["summary"]``."""
    result["summary"] = loop.ingest_many(responses)


def id_sequence() -> Callable[[], str]:
    """Ids ``00…0``, ``00…1``, … as 32 hex digits (the length of the default uuid4 hex)."""
    counter = itertools.count()
    return lambda: f"{next(counter):032x}"


class DiscardingNotifier:
    """Accepts every message and keeps none: delivery is not what is measured."""

    def send(self, message: Message) -> None:
        """Drop the message."""


def micros(value: datetime) -> int:
    """Microseconds since the epoch, as closeloop stores times."""
    return (value - _EPOCH) // _MICRO


class RawIngest:
    """The same ingest written by hand with sqlite3, for one process that owns the file."""

    def __init__(self, path: Path, timeout: float = 30.0) -> None:
        self.conn = sqlite3.connect(path, timeout=timeout, isolation_level=None,
                                    check_same_thread=False)
        self.conn.execute(f"PRAGMA busy_timeout = {int(timeout * 1000)}")
        self.conn.execute("PRAGMA synchronous = FULL")
        self.conn.execute("PRAGMA foreign_keys = ON")
        # executescript runs each migration as written (a CREATE TRIGGER body has ";" too).
        self.conn.executescript("BEGIN IMMEDIATE;\n" + "\n".join(MIGRATIONS)
                                + f"\nPRAGMA user_version = {len(MIGRATIONS)};\nCOMMIT;")
        self.conn.execute("PRAGMA journal_mode = WAL")
        self.new_id = id_sequence()
        #: Responses by outcome, as IngestSummary counts them: open, attach, ignore, duplicate.
        self.counts: Counter[str] = Counter()

    def ingest(self, responses: Sequence[SurveyResponse], batch_size: int = DEFAULT_BATCH) -> None:
        """Decide every response, then write each batch of rows with executemany."""
        conn = self.conn
        now = micros(NOW)
        seen: set[str] = set()
        # customer id -> their open case: [id, customer, assignee, reasons, response_ids,
        # priority, due_at, opened_by, version, version in the database (None: not yet)]
        open_case: dict[str, list[Any]] = {}
        for start in range(0, len(responses), batch_size):
            new: list[list[Any]] = []
            changed: dict[str, list[Any]] = {}
            events: list[tuple[Any, ...]] = []
            notices: list[tuple[Any, ...]] = []
            rows: list[tuple[Any, ...]] = []
            for r in responses[start:start + batch_size]:
                if r.id in seen:
                    self.counts["duplicate"] += 1
                    continue
                seen.add(r.id)
                submitted = micros(r.submitted_at) if r.submitted_at is not None else now
                names = matching(r)
                if not names:
                    self.counts["ignore"] += 1
                    rows.append((r.id, r.customer_id, "ignored", None, r.score, submitted, now,
                                 said(r)))
                    continue
                case = open_case.get(r.customer_id)
                if case is not None:  # the customer's case is open: attach (dedupe="open-case")
                    case[3] = list(dict.fromkeys(case[3] + names))
                    case[4].append(r.id)
                    case[8] += 1
                    if case[9] is not None:
                        changed[case[0]] = case
                    events.append(("response_attached", case[0], names[0], now, case[8], r.comment,
                                   "trigger", json.dumps({"response_id": r.id, "reasons": names},
                                                         separators=(",", ":"))))
                    rows.append((r.id, r.customer_id, "attached", case[0], r.score, submitted, now,
                                 said(r)))
                    self.counts["attach"] += 1
                    continue
                first = names[0]
                assignee = route(first, r)
                case_id = self.new_id()
                due_at = (r.submitted_at or NOW) + DUE_IN[first]
                case = [case_id, r.customer_id, assignee, names, [r.id], PRIORITY[first],
                        micros(due_at), first, 2, None]
                open_case[r.customer_id] = case
                new.append(case)
                events.append(("opened", case_id, first, now, 1, r.comment, "trigger",
                               '{"status":"open"}'))
                events.append(("assigned", case_id, first, now, 2, None, "trigger",
                               json.dumps({"assignee": assignee, "previous": None},
                                          separators=(",", ":"))))
                notice_id = self.new_id()
                data = content(case_id, r, assignee, PRIORITY[first], names, due_at, first)
                notices.append((notice_id, case_id, "assigned", assignee, "", "", "", now,
                                now, 0, None, None, "default", notice_id, data, None))
                rows.append((r.id, r.customer_id, "opened", case_id, r.score, submitted, now,
                             said(r)))
                self.counts["open"] += 1
            conn.execute("BEGIN IMMEDIATE")
            conn.executemany(
                "INSERT INTO cases (id, customer_id, status, assignee, reasons, response_ids, "
                "priority, due_at, opened_at, updated_at, closed_at, opened_by, version) "
                "VALUES (?, ?, 'open', ?, ?, ?, ?, ?, ?, ?, NULL, ?, ?)",
                [(c[0], c[1], c[2], json.dumps(c[3]), json.dumps(c[4]), c[5], c[6], now, now, c[7],
                  c[8]) for c in new],
            )
            updated = conn.executemany(
                "UPDATE cases SET reasons = ?, response_ids = ?, updated_at = ?, version = ? "
                "WHERE id = ? AND version = ?",
                [(json.dumps(c[3]), json.dumps(c[4]), now, c[8], c[0], c[9])
                 for c in changed.values()],
            ).rowcount
            if changed and updated != len(changed):
                conn.execute("ROLLBACK")
                raise RuntimeError("raw baseline lost track of a case version")
            conn.executemany(
                "INSERT INTO events (kind, case_id, actor, at, seq, comment, via, data) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?)", events)
            conn.executemany(
                "INSERT INTO outbox (id, case_id, kind, recipient, subject, text, html, created_at, "
                "next_attempt_at, attempts, last_error, sent_at, channel, message_id, content, "
                "failed_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", notices)
            conn.executemany(
                "INSERT INTO responses (response_id, customer_id, outcome, case_id, score, "
                "submitted_at, received_at, content) VALUES (?, ?, ?, ?, ?, ?, ?, ?)", rows)
            conn.execute("COMMIT")
            for c in (*new, *changed.values()):
                c[9] = c[8]

    def close(self) -> None:
        """Close the connection."""
        self.conn.close()


PRIORITY = {t.name: t.priority.value for t in TRIGGERS}
DUE_IN = {t.name: t.due_in or timedelta(0) for t in TRIGGERS}  # each has one


def plain(value: Any) -> Any:
    """Answers as the webhook's JSON had them: mappings as dicts, lists as lists."""
    if isinstance(value, Mapping):
        return {key: plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [plain(item) for item in value]
    return value


def said(r: SurveyResponse) -> str:
    """What the response says, as closeloop records it (so an update can be recognised)."""
    return json.dumps({"score": r.score, "contact_requested": r.contact_requested,
                       "comment": r.comment, "answers": plain(r.answers)},
                      sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def matching(r: SurveyResponse) -> list[str]:
    """The names of the triggers ``r`` matches, in trigger order (the if-chain)."""
    names = []
    if r.comment is not None and _CHURN.search(r.comment.casefold()):
        names.append("churn-risk")
    if r.score is not None and r.score <= 6:
        names.append("detractor")
    if r.contact_requested:
        names.append("contact-request")
    return names


def route(trigger: str, r: SurveyResponse) -> str:
    """Who a case opened by ``trigger`` goes to: the account manager, else cx-team."""
    if trigger == "contact-request":
        return FALLBACK
    manager = r.answers.get("account_manager")
    return manager if isinstance(manager, str) and manager.strip() else FALLBACK


def content(case_id: str, r: SurveyResponse, assignee: str, priority: str, reasons: list[str],
            due_at: datetime, trigger: str) -> str:
    """The assignment notice's content as closeloop stores it: compact JSON, fields in order."""
    data = {
        "kind": "assigned",
        "case": {"id": case_id, "customer_id": r.customer_id, "status": "open",
                 "opened_at": NOW.isoformat(), "status_label": "Open", "custom_status": None,
                 "priority": priority, "due_at": due_at.isoformat(), "reasons": reasons,
                 "assignee": assignee},
        "actor": trigger, "created_at": NOW.isoformat(), "via": "trigger", "note": None,
        "response": {"id": r.id, "score": r.score, "comment": r.comment,
                     "submitted_at": None if r.submitted_at is None else r.submitted_at.isoformat()},
        "links": {"change": None, "case_page": None},
        "from_status": None, "from_status_label": None, "why": None, "seq": None,
    }
    return json.dumps(data, separators=(",", ":"))


def check_same_outcome(closeloop_path: Path, summary: IngestSummary, raw_path: Path,
                       counts: Counter[str]) -> None:
    """Fail unless both sides count the same outcomes and hold the same rows in every table."""
    closeloop_counts = Counter(open=summary.opened, attach=summary.attached,
                               ignore=summary.ignored, duplicate=summary.duplicates)
    if +closeloop_counts != +counts:
        raise AssertionError(f"closeloop counted {closeloop_counts}, the raw baseline {counts}")
    for table, key in _TABLES.items():
        contents = []
        for path in (closeloop_path, raw_path):
            conn = sqlite3.connect(path)
            try:
                columns = _COLUMNS.get(table, "*")
                contents.append(
                    conn.execute(f"SELECT {columns} FROM {table} ORDER BY {key}").fetchall())
            finally:
                conn.close()
        if contents[0] != contents[1]:
            diff = next((pair for pair in zip(*contents, strict=False) if pair[0] != pair[1]),
                        (len(contents[0]), len(contents[1])))
            raise AssertionError(f"closeloop and the raw baseline wrote different {table}: {diff}")
