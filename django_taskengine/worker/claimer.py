"""What a worker holds: the jobs it claimed, and how many more to claim.

A worker claims a little ahead of its threads, so that very short jobs come in batches of up to
MAX_PREFETCH per round trip, while long jobs are not hoarded (a claimed job that waits for a
thread is one another worker could have run). Claimed jobs wait in the inbox for a thread.
"""

from __future__ import annotations

import queue as queue_module
import time
from dataclasses import dataclass, field

from ..core.lifecycle import ClaimedJob
from ..store import WorkerSession

#: A worker claims ahead about this many seconds of work per thread (for jobs of a few
#: milliseconds, batches of up to MAX_PREFETCH jobs per round trip).
PREFETCH_WINDOW = 0.05
MAX_PREFETCH = 100
#: A job claimed ahead is given back to the queue once it has waited this many seconds while
#: every thread runs a job that has run at least as long (one that may never return).
STALLED_AFTER = 2.0


@dataclass
class Running:
    """A job this worker claimed, from the claim until its outcome is handed to the completer."""

    job: ClaimedJob
    #: time.monotonic() when the job was claimed.
    claimed: float = field(default_factory=time.monotonic)
    #: time.monotonic() when a thread started the task; None while waiting for a thread.
    started: float | None = None
    #: The worker gave up on it (timeout, shutdown); its thread's result is ignored.
    abandoned: bool = False
    #: Why the task should stop at its next checkpoint: "pause", "cancel" or "shutdown".
    stop_reason: str = ""


class Claimer:
    """Claims jobs up to the free capacity and hands them to the runner threads' inbox."""

    def __init__(self, *, concurrency: int, max_jobs: int | None = None) -> None:
        self.concurrency = concurrency
        self.max_jobs = max_jobs
        # Jobs claimed beyond the running threads, so that short jobs come in batches. Adapted
        # to how long jobs take (see adapt_prefetch); none until a job has finished: a worker
        # that does not know yet how long jobs take must not hold jobs an idle worker could run.
        self.prefetch = 0
        self._mean_run_time: float | None = None
        #: Every job claimed and not yet finished, started or not, by job id.
        self.running: dict[int, Running] = {}
        #: Claimed jobs waiting for a runner thread; None tells a thread to exit.
        self.inbox: queue_module.Queue[Running | None] = queue_module.Queue()
        self.claimed_total = 0
        self._next_stall_check = 0.0

    def room(self) -> int:
        """How many jobs to claim now: refill once half the prefetched buffer is used."""
        in_flight = len(self.running)
        if in_flight > self.concurrency + self.prefetch // 2:
            return 0
        room = self.concurrency + self.prefetch - in_flight
        if self.max_jobs is not None:
            room = min(room, self.max_jobs - self.claimed_total)
        return max(0, room)

    def adapt_prefetch(self, run_time: float) -> None:
        """Prefetch about PREFETCH_WINDOW seconds of work: many very short jobs per claim, none
        beyond the threads for long ones (a prefetched job waits; others could have run it)."""
        mean = self._mean_run_time
        mean = run_time if mean is None else 0.8 * mean + 0.2 * run_time
        self._mean_run_time = mean
        window = PREFETCH_WINDOW * self.concurrency
        self.prefetch = max(0, min(MAX_PREFETCH, int(window / max(mean, 1e-5))))

    def claim(self, session: WorkerSession) -> bool:
        """Claim up to the free capacity; return True if fewer due jobs were found than asked."""
        room = self.room()
        if room <= 0:
            return False
        jobs = session.claim(room)
        for job in jobs:
            entry = Running(job)
            self.running[job.id] = entry
            self.inbox.put(entry)
        self.claimed_total += len(jobs)
        return len(jobs) < room

    def take_stalled(self, now: float) -> list[Running]:
        """Take back the jobs claimed ahead if they are stuck behind overrunning jobs.

        That is when the oldest waited STALLED_AFTER seconds while every thread runs a job
        started at least that long ago: a task with no timeout that never returns would hold
        them for good, and no rescue frees a job of a live worker. Claiming ahead stops until
        a job finishes (then the prefetch adapts to the run times again).
        """
        if len(self.running) <= self.concurrency or now < self._next_stall_check:
            return []  # nothing waits beyond the threads, or looked a moment ago
        # Called every turn of the worker's loop: a quarter of the bound is precise enough.
        self._next_stall_check = now + STALLED_AFTER / 4
        started = [entry.started for entry in self.running.values() if entry.started is not None]
        waiting = [entry.claimed for entry in self.running.values() if entry.started is None]
        if not waiting or now - min(waiting) < STALLED_AFTER:
            return []
        if len(started) < self.concurrency or now - max(started) < STALLED_AFTER:
            return []
        self.prefetch = 0
        return self.take_unstarted()

    def take_unstarted(self) -> list[Running]:
        """Take back the claimed jobs no thread has started yet."""
        unstarted = []
        while True:
            try:
                entry = self.inbox.get_nowait()
            except queue_module.Empty:
                break
            if entry is not None:
                unstarted.append(entry)
        return unstarted
