"""When a worker session's plain claim scans the job table (see :class:`ScanGate`)."""

from __future__ import annotations

import heapq
import time
from collections.abc import Iterable

from ..conf import taskengine_settings

#: A job this session sent back to the queue is looked for on every turn from when it falls
#: due (by this process's clock) until this many seconds after: its run_after is the
#: database's clock at the write, a little later.
REQUEUED_GRACE = 1.0


class ScanGate:
    """After a plain claim's scan found fewer jobs than asked, the next scan waits (a
    notification, or the poll interval, ends the wait): an idle worker scans the job table once
    a POLL_INTERVAL, not on every turn of its loop (a heartbeat, a rescue round), and a backlog
    of jobs under flow control does not cost an empty plain claim per round.

    A session told of every job made due now (``notified``: PostgreSQL's, by NOTIFY) waits so
    for a claim that polls (see WorkerSession.claim); the others only while jobs under flow
    control wait. Jobs the session's own writes sent back to the queue due later (a retry
    after its backoff) are told of by no notification: the wait ends when the soonest falls due.
    """

    def __init__(self, *, notified: bool) -> None:
        self.notified = notified
        #: time.monotonic() until which a scan waits.
        self.until = 0.0
        #: When the jobs this session requeued fall due, soonest first (those due within a
        #: poll interval: a poll finds the others).
        self._requeued: list[float] = []

    def open(self, now: float, *, poll: bool, flow_waiting: bool) -> bool:
        """Whether a plain claim made now scans."""
        return now >= self.until or not (flow_waiting or (poll and self.notified))

    def scanned(self, now: float, *, short: bool) -> None:
        """A scan was made; ``short``: it found fewer jobs than asked."""
        if not short:
            return
        dues = self._requeued
        while dues and dues[0] + REQUEUED_GRACE <= now:
            heapq.heappop(dues)
        self.until = now + taskengine_settings.POLL_INTERVAL
        if dues:
            self.until = min(self.until, dues[0])

    def woken(self) -> None:
        """A notification arrived: jobs may be due for the scan."""
        self.until = 0.0

    def requeued(self, delays: Iterable[float]) -> None:
        """Jobs this session's writes sent back to the queue, due in ``delays`` seconds."""
        now = time.monotonic()
        poll = taskengine_settings.POLL_INTERVAL
        dues = self._requeued
        for delay in delays:
            if delay < poll:
                heapq.heappush(dues, now + delay)
        if dues:
            self.until = min(self.until, dues[0])
