#!/usr/bin/env python
"""An open-loop producer for the soak: enqueues no-op jobs at a fixed offered rate.

    python benchmarks/producer.py --rate 5000 --seconds 600 [--tick 0.01]

Every ``tick`` it enqueues, through the public API (``noop.bulk_enqueue``, one autocommit
transaction per tick), the jobs the schedule owes since the start: ``rate × elapsed`` minus
what it sent. A slow database does not slow the schedule down (the next tick sends more), as
with web requests that keep arriving. Prints one ``RESULT {json}`` line at the end: jobs sent,
seconds, and how far behind the schedule it ever was.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "benchmarks.settings")

#: One call never carries more than this many jobs (a producer that fell behind catches up in
#: several calls).
MAX_BATCH = 2000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=float, required=True, help="jobs per second")
    parser.add_argument("--seconds", type=float, required=True)
    parser.add_argument("--tick", type=float, default=0.01, help="seconds between enqueues")
    opts = parser.parse_args()

    import django

    django.setup()
    from benchmarks.benchapp.tasks import noop

    call = ((), {})
    sent = 0
    calls = 0
    worst_behind = 0.0
    start = time.monotonic()
    end = start + opts.seconds
    next_tick = start
    while True:
        now = time.monotonic()
        if now >= end:
            break
        owed = int(opts.rate * (now - start)) - sent
        worst_behind = max(worst_behind, owed / opts.rate)
        while owed > 0:
            n = min(owed, MAX_BATCH)
            noop.bulk_enqueue([call] * n)
            sent += n
            owed -= n
            calls += 1
        next_tick += opts.tick
        pause = next_tick - time.monotonic()
        if pause > 0:
            time.sleep(pause)
        else:
            next_tick = time.monotonic()
    elapsed = time.monotonic() - start
    result = {
        "sent": sent,
        "seconds": elapsed,
        "rate": sent / elapsed,
        "offered": opts.rate,
        "calls": calls,
        "worst_behind_seconds": worst_behind,
    }
    sys.stdout.write("RESULT " + json.dumps(result) + "\n")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
