"""A writer that the crash test kills with SIGKILL at random moments.

Run as ``python tests/crash_child.py DB SEED``. It ingests batches of responses and
moves cases through the workflow forever, printing one line per *committed* change
(after the call returned), so the parent knows what must survive a kill.
"""

from __future__ import annotations

import random
import sys

from closeloop import CloseLoop, ConcurrentUpdate, Status, SurveyResponse, TransitionNotAllowed
from closeloop.notify import MemoryNotifier
from closeloop.storage import SQLiteStore
from closeloop.triggers import Trigger, nps_between

NEXT = {Status.OPEN: Status.PROGRESS, Status.PROGRESS: Status.CLOSED, Status.CLOSED: Status.OPEN}


def main(path: str, seed: int) -> None:
    """Write until killed."""
    rng = random.Random(seed)
    loop = CloseLoop(store=SQLiteStore(path), notifier=MemoryNotifier(), dedupe="none",
                     triggers=[Trigger("detractor", nps_between(0, 6), assign_to="alice")])
    batch = 0
    while True:
        batch += 1
        responses = [
            SurveyResponse(id=f"s{seed}-b{batch}-{i}", customer_id=f"c{rng.randrange(500)}",
                           score=rng.randrange(11))
            for i in range(rng.randrange(1, 60))
        ]
        summary = loop.ingest_many(responses, batch_size=25)
        print("batch", *responses_ids(summary.cases), flush=True)
        for case_id in [c for c in summary.cases.values() if c][:5]:
            case = loop.get(case_id)
            try:
                case = loop.set_status(case_id, NEXT[case.status], by="alice", comment="step")
            except (ConcurrentUpdate, TransitionNotAllowed):
                continue
            print("case", case.id, case.version, flush=True)


def responses_ids(cases: dict[str, str | None]) -> list[str]:
    """The ingested response ids."""
    return list(cases)


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
