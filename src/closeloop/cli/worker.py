"""``closeloop worker``: deliver the outbox and escalate due cases until SIGTERM.

Usage::

    closeloop worker --app myapp.feedback:make_loop [--deliver-every 5] [--escalate-every PT5M]
                     [--no-escalate] [--batch 100]

It runs :meth:`CloseLoop.run_worker <closeloop.CloseLoop.run_worker>` on the
host's own configured loop (its store, channels, templates, directories and
one-touch links), logs to stderr unless the host's factory configured logging,
and on SIGTERM or SIGINT finishes the delivery in flight, prints what it did and
exits 0. Several workers may run at once.
"""

from __future__ import annotations

import argparse
import logging
import sys
from datetime import timedelta

from closeloop.cli.options import parse_duration_option, parse_limit
from closeloop.cli.output import json_text
from closeloop.loop import CloseLoop

__all__ = ["WORKER_HELP", "add_worker_options", "run_worker_command"]

#: The command's one-line help.
WORKER_HELP = ("deliver the outbox and escalate due cases until SIGTERM (needs --app for your "
               "notifiers)")


def add_worker_options(parser: argparse.ArgumentParser) -> None:
    """Add the worker's own options to its subcommand parser."""
    parser.add_argument("--deliver-every", type=parse_duration_option, metavar="DURATION",
                        default=timedelta(seconds=5),
                        help="pause between delivery rounds: ISO 8601 or seconds (default: 5)")
    parser.add_argument("--escalate-every", type=parse_duration_option, metavar="DURATION",
                        default=timedelta(minutes=5),
                        help="pause between escalation rounds: ISO 8601 or seconds (default: PT5M)")
    parser.add_argument("--no-escalate", action="store_true",
                        help="only deliver; leave escalation to another process (default: escalate)")
    parser.add_argument("--batch", type=parse_limit, default=100,
                        help="deliveries claimed per round (default: 100)")


def run_worker_command(loop: CloseLoop, args: argparse.Namespace) -> int:
    """Run the worker until a signal stops it; print what it did; exit code 0."""
    root = logging.getLogger()
    if not root.handlers:  # the host's factory did not configure logging: show ours
        logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                            format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    stats = loop.run_worker(
        deliver_every=args.deliver_every,
        escalate_every=None if args.no_escalate else args.escalate_every,
        batch=args.batch,
    )
    if args.format == "json":
        print(json_text(stats))
    else:
        print(f"worker stopped after {stats.rounds} round(s): sent {stats.sent}, failed "
              f"{stats.failed}, abandoned {stats.abandoned}, escalated {stats.escalated}, "
              f"{stats.errors} error(s)")
    return 0
