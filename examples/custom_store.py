"""Your own closeloop store: everything in one JSON Lines file, shared by processes.

How to run: python examples/custom_store.py   (writes closeloop-journal.jsonl in the
current directory; run it again and the cases of the first run are still there)

``FileStore`` is written from ``docs/storage.md`` alone. It subclasses
``closeloop.storage.BaseStore`` and implements the eight abstract methods and
nothing else; closeloop builds the rest (escalation, the outbox, the report) on
them. It uses only the standard library:

- the file is a **journal**: one JSON object per line, appended by each write
  (a batch of changes, swapped notices, a rotation turn) and never rewritten.
  Every process replays the lines it has not seen yet into an in-memory copy,
  so a read costs only what was written since the last one;
- a **lock file** beside it (``fcntl.flock``, so POSIX only) makes each write
  atomic across threads and processes: take the lock, catch up with the
  journal, check (``check_batch`` for a commit), append one line, fsync;
- ``closeloop.convert`` turns cases, events, notices and responses into JSON
  and back.

The test suite runs the whole ``closeloop.testing.StoreContract`` against it
(``tests/test_store_contract.py``). A journal only grows: a real store would
compact it now and then (write the current state as one line, atomically
replace the file).
"""

from __future__ import annotations

import fcntl
import json
import os
import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from attrs import evolve

from closeloop import CloseLoop, Status, StoreError, SurveyResponse
from closeloop.convert import structure, structure_event, unstructure
from closeloop.errors import CaseNotFound
from closeloop.model import Case, Event, Notice, ResponseRecord
from closeloop.notify import MemoryNotifier
from closeloop.storage import BaseStore, Change, ResponseUpdate, check_batch
from closeloop.triggers import Trigger, nps_between


class _State:
    """What the journal's lines add up to; also the ``StoredState`` that check_batch reads."""

    def __init__(self) -> None:
        self.cases: dict[str, Case] = {}  # insertion order: creation order
        self.events: dict[str, list[Event]] = {}
        self.notices: dict[str, Notice] = {}
        self.responses: dict[str, ResponseRecord] = {}  # insertion order: recording order
        self.used_links: set[str] = set()
        self.rotations: dict[str, int] = {}

    def stored_case(self, case_id: str) -> Case | None:
        return self.cases.get(case_id)

    def customer_cases(self, customer_id: str) -> Iterable[Case]:
        return [case for case in self.cases.values() if case.customer_id == customer_id]

    def notice_exists(self, notice_id: str) -> bool:
        return notice_id in self.notices

    def stored_response(self, response_id: str) -> ResponseRecord | None:
        return self.responses.get(response_id)

    def link_consumed(self, link_id: str) -> bool:
        return link_id in self.used_links

    def apply(self, entry: dict[str, Any]) -> None:
        """Apply one journal line. Lines were checked before they were written."""
        if "commit" in entry:
            for change in entry["commit"]["changes"]:
                case = structure(change["case"], Case)
                self.cases[case.id] = case  # an existing key keeps its place
                events = [structure_event(event) for event in change["events"]]
                if change.get("redacts"):  # an erasure: the whole history, redacted
                    self.events[case.id] = events
                else:
                    self.events.setdefault(case.id, []).extend(events)
                for data in change["notices"]:
                    notice = structure(data, Notice)
                    self.notices[notice.id] = notice
                for data in change["responses"]:
                    record = structure(data, ResponseRecord)
                    self.responses[record.response_id] = record
                if change["consume_link"] is not None:
                    self.used_links.add(change["consume_link"])
            for data in entry["commit"]["ignored"]:
                record = structure(data, ResponseRecord)
                self.responses[record.response_id] = record
            for data in entry["commit"].get("updated", ()):
                record = structure(data, ResponseRecord)
                stored = self.responses[record.response_id]  # replacing keeps its place
                self.responses[record.response_id] = evolve(
                    stored, outcome=record.outcome, case_id=record.case_id, score=record.score,
                    content=record.content, customer_id=record.customer_id)
        elif "notices" in entry:
            for data in entry["notices"]:
                notice = structure(data, Notice)
                self.notices[notice.id] = notice
        elif "rotation" in entry:
            key = entry["rotation"]
            self.rotations[key] = self.rotations.get(key, 0) + 1


def _commit_entry(
    changes: Sequence[Change],
    ignored: Sequence[ResponseRecord],
    updated: Sequence[ResponseUpdate],
) -> dict[str, Any]:
    return {"commit": {
        "changes": [
            {
                "case": unstructure(change.case),
                "events": [unstructure(event) for event in change.events],
                "notices": [unstructure(notice) for notice in change.notices],
                "responses": [unstructure(record) for record in change.responses],
                "consume_link": change.consume_link,
                "redacts": change.redacts,
            }
            for change in changes
        ],
        "ignored": [unstructure(record) for record in ignored],
        "updated": [unstructure(update.new) for update in updated],
    }}


class FileStore(BaseStore):
    """A store in one JSON Lines journal at ``path``, with ``<path>.lock`` beside it.

    Example::

        loop = CloseLoop(store=FileStore("closeloop-journal.jsonl"))
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._lock_path = self.path.with_name(self.path.name + ".lock")
        self._mutex = threading.Lock()  # guards the in-memory copy within this process
        self._state = _State()
        self._offset = 0  # bytes of the journal applied to _state
        with self._io("creating the journal"):
            self.path.touch(exist_ok=True)

    # -- the journal ---------------------------------------------------------------

    @contextmanager
    def _io(self, doing: str) -> Iterator[None]:
        """Raise file errors as StoreError, as every closeloop store does."""
        try:
            yield
        except OSError as exc:
            raise StoreError(f"{doing} {self.path}: {exc}") from exc

    @contextmanager
    def _exclusive(self) -> Iterator[None]:
        """Hold this process's mutex and the lock file: no other writer, here or elsewhere."""
        with self._mutex, self._io("locking"):
            fd = os.open(self._lock_path, os.O_RDWR | os.O_CREAT, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                yield
            finally:
                os.close(fd)  # closing releases the lock

    def _catch_up(self) -> None:
        """Apply the complete lines written since the last call (the caller holds the mutex)."""
        with self._io("reading"), self.path.open("rb") as journal:
            journal.seek(self._offset)
            data = journal.read()
        end = data.rfind(b"\n") + 1  # a line still being written has no newline yet
        for number, line in enumerate(data[:end].splitlines()):
            try:
                self._state.apply(json.loads(line))
            except (ValueError, KeyError, TypeError) as exc:
                raise StoreError(f"{self.path}: unreadable journal line at byte "
                                 f"{self._offset} (+{number} lines): {exc}") from exc
        self._offset += end

    def _append(self, entry: dict[str, Any]) -> None:
        """Write one line durably and apply it (the caller holds the lock and has caught up)."""
        line = (json.dumps(entry, ensure_ascii=False, separators=(",", ":")) + "\n").encode()
        with self._io("writing"), self.path.open("r+b") as journal:
            journal.truncate(self._offset)  # drop half a line left by a writer that crashed
            journal.seek(self._offset)
            journal.write(line)
            journal.flush()
            os.fsync(journal.fileno())
        self._state.apply(entry)
        self._offset += len(line)

    def _read(self) -> _State:
        """The state with everything committed so far (the caller holds the mutex)."""
        self._catch_up()
        return self._state

    # -- the eight methods of BaseStore ------------------------------------------

    def commit_many(
        self,
        changes: Sequence[Change],
        ignored: Sequence[ResponseRecord] = (),
        updated: Sequence[ResponseUpdate] = (),
    ) -> None:
        with self._exclusive():
            check_batch(changes, self._read(), ignored, updated)  # raises before anything is written
            if changes or ignored or updated:
                self._append(_commit_entry(changes, ignored, updated))

    def query_cases(
        self, *, case_ids: Sequence[str] | None = None, customer_ids: Sequence[str] | None = None
    ) -> list[Case]:
        ids = None if case_ids is None else set(case_ids)
        customers = None if customer_ids is None else set(customer_ids)
        with self._mutex:
            cases = list(self._read().cases.values())
        return [case for case in cases
                if (ids is None or case.id in ids)
                and (customers is None or case.customer_id in customers)]

    def history(self, case_id: str) -> list[Event]:
        with self._mutex:
            state = self._read()
            if case_id not in state.cases:
                raise CaseNotFound(case_id)
            return list(state.events[case_id])

    def find_responses(
        self,
        *,
        response_ids: Sequence[str] | None = None,
        customer_ids: Sequence[str] | None = None,
    ) -> list[ResponseRecord]:
        ids = None if response_ids is None else set(response_ids)
        customers = None if customer_ids is None else set(customer_ids)
        with self._mutex:
            records = list(self._read().responses.values())
        return [record for record in records
                if (ids is None or record.response_id in ids)
                and (customers is None or record.customer_id in customers)]

    def find_notices(
        self, *, case_ids: Sequence[str] | None = None, pending_only: bool = False
    ) -> list[Notice]:
        cases = None if case_ids is None else set(case_ids)
        with self._mutex:
            notices = list(self._read().notices.values())
        found = [n for n in notices
                 if (cases is None or n.case_id in cases)
                 and not (pending_only and (n.sent_at is not None or n.failed_at is not None))]
        return sorted(found, key=lambda notice: (notice.created_at, notice.id))

    def swap_notices(self, swaps: Sequence[tuple[Notice, Notice]]) -> list[str]:
        with self._exclusive():
            stored = self._read().notices
            swapped = [new for old, new in swaps if stored.get(old.id) == old]
            if swapped:
                self._append({"notices": [unstructure(notice) for notice in swapped]})
        return [notice.id for notice in swapped]

    def link_used(self, link_id: str) -> bool:
        with self._mutex:
            return self._read().link_consumed(link_id)

    def next_in_rotation(self, key: str, size: int) -> int:
        with self._exclusive():
            turn = self._read().rotations.get(key, 0)
            self._append({"rotation": key})
        return turn % size


def main() -> None:
    """Work one case to Closed on a FileStore, then read it back through a second store."""
    path = Path("closeloop-journal.jsonl")
    outbox = MemoryNotifier()
    loop = CloseLoop(
        store=FileStore(path), notifier=outbox,
        triggers=[Trigger("detractor", nps_between(0, 6), assign_to="alice")],
    )
    run = len(loop.cases()) + 1  # a new response id on every run
    case = loop.ingest(SurveyResponse(id=f"r-{run}", customer_id="c-42", score=3,
                                      comment="Slow delivery"))
    assert case is not None
    loop.set_status(case.id, Status.PROGRESS, by="alice", comment="Called the customer")
    loop.set_status(case.id, Status.CLOSED, by="alice", comment="Refund issued")

    other = CloseLoop(store=FileStore(path))  # as another process would open the file
    print(f"case {case.id} as another process reads it from {path}:")
    for event in other.history(case.id):
        print(f"  {event.seq}. {event.kind:<15} by {event.actor}: {event.comment or ''}")
    print(f"emails sent: {len(outbox.sent)} (to {outbox.sent[0].to})")
    report = other.report()
    print(f"all cases in {path}: {report.total}; closed: {report.status_counts[Status.CLOSED]}")


if __name__ == "__main__":
    main()
