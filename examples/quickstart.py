"""Quickstart: open a case by hand, assign it, work it to Closed, print history and outbox.

How to run:  python examples/quickstart.py [path/to/closeloop.db]
(it writes the SQLite file given, default ./closeloop-quickstart.db, and runs again on it)
"""

from __future__ import annotations

import sys
from datetime import timedelta
from pathlib import Path

from closeloop import Assigned, CloseLoop, Status, StatusChanged
from closeloop.notify import MemoryNotifier
from closeloop.storage import SQLiteStore


def human(span: timedelta) -> str:
    """A duration as a person says it: "under a second", "4 min 05 s", "2 h 10 min", "3 d 4 h"."""
    seconds = int(span.total_seconds())
    if seconds < 1:
        return "under a second"
    minutes, seconds = divmod(seconds, 60)
    hours, minutes = divmod(minutes, 60)
    days, hours = divmod(hours, 24)
    if days:
        return f"{days} d {hours} h"
    if hours:
        return f"{hours} h {minutes:02} min"
    return f"{minutes} min {seconds:02} s" if minutes else f"{seconds} s"


def main(db_path: Path) -> None:
    """Walk one case through the whole loop and print what happened."""
    outbox = MemoryNotifier()  # swap for SmtpNotifier(...) to send real email
    loop = CloseLoop(store=SQLiteStore(db_path), notifier=outbox)

    case = loop.open_case("c-42", by="agent-1", comment="Called in upset about a late delivery")
    loop.assign(case.id, to="alice", by="bob")  # alice gets an email
    loop.set_status(case.id, Status.PROGRESS, by="alice", comment="Called the customer")
    loop.comment(case.id, "Offered a refund; customer accepted", by="alice")
    case = loop.set_status(case.id, Status.CLOSED, by="alice", comment="Refund issued")

    print(f"Case {case.id} for customer {case.customer_id}: {case.status.display_name}, "
          f"closed in {human(case.closed_at - case.opened_at) if case.closed_at else '-'}")
    print("\nHistory:")
    for event in loop.history(case.id):
        line = f"  {event.seq}. {event.at:%H:%M:%S} {event.kind:<15} by {event.actor}"
        match event:
            case Assigned():
                line += f" -> {event.assignee}"
            case StatusChanged():
                line += f" {event.from_status.display_name} -> {event.to_status.display_name}"
        if event.comment:
            line += f": {event.comment}"
        print(line)
    print("\nOutbox:")
    for message in outbox.sent:
        print(f"  to {message.to}: {message.subject}")
    print(f"\nAlice's home page: {len(loop.cases(assignee='alice'))} case(s); "
          f"all cases in {db_path}: {len(loop.cases())}")
    loop.store.close()


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path("closeloop-quickstart.db"))
