"""What a worker holds: the jobs it claimed, and how many more to claim and to start.

A worker claims a little ahead of its threads, so that very short jobs come in batches of up to
MAX_PREFETCH per round trip, while long jobs are not hoarded (a claimed job that waits for a
thread is one another worker could have run).

A job claimed ahead is *reserved*: it stays queued (no attempt counted, no ``started_at``),
owned by this worker, until a thread is free for it; then the worker starts it, fenced, unless
its queue or task was paused meanwhile (then it goes back untouched, as it does if the worker
dies). Only short jobs are started ahead, about START_WINDOW seconds of work per thread: for
them a round trip per start would cost more than the job. Sub-millisecond ones are not reserved
at all: a worker claims only what it starts.
Started jobs wait in the inbox for a thread.
"""

from __future__ import annotations

import queue as queue_module
import time
from collections import deque
from collections.abc import Collection
from dataclasses import dataclass, field

from ..core.lifecycle import ClaimedJob
from ..store import WorkerSession

#: A worker claims ahead about this many seconds of work per thread (for jobs of a few
#: milliseconds, batches of up to MAX_PREFETCH jobs per round trip).
PREFETCH_WINDOW = 0.05
#: For jobs of tens of microseconds the windows allow thousands: this bounds a claim's size
#: (the rows a worker holds, the jobs its death sends to rescue, one statement's arrays).
#: Each claim and outcome write has a fixed cost (statements, a commit, the worker's loop):
#: 250 rather than 100 took a 2 × 4 drain of 30,000 no-op jobs from 103 to 220 jobs a claim,
#: ×1.11 the rate and 9% less CPU per job (benchmarks page).
MAX_PREFETCH = 250
#: A worker starts ahead of its free threads about this many seconds of work per thread: a
#: started job waits at most about this long for a thread (it counts as running meanwhile).
START_WINDOW = 0.01
#: Jobs shorter than this (a moving mean) are claimed only as far as they are started ahead.
TINY_JOB = 0.001
#: A job claimed ahead is given back to the queue once it has waited this many seconds while
#: every thread runs a job that has run at least as long (one that may never return).
STALLED_AFTER = 2.0


@dataclass
class ClaimAsk:
    """A claim to make (see WorkerSession.claim): up to ``limit`` jobs, ``free`` of them for
    idle threads, ``start`` started in all, none of ``park`` started ahead."""

    limit: int
    free: int
    start: int
    park: list[str]


@dataclass
class Running:
    """A job this worker claimed, from the claim until its outcome is handed to the completer."""

    job: ClaimedJob
    #: time.monotonic() when the job was claimed.
    claimed: float = field(default_factory=time.monotonic)
    #: time.monotonic() when a thread started the task; None while waiting for a thread.
    started: float | None = None
    #: time.monotonic() when its thread finished it (the main thread collects the result).
    ended: float | None = None
    #: The worker gave up on it (timeout, shutdown); its thread's result is ignored.
    abandoned: bool = False
    #: Why the task should stop at its next checkpoint: "pause", "cancel" or "shutdown".
    stop_reason: str = ""


class Claimer:
    """Claims jobs up to the free capacity and hands them to the runner threads' inbox."""

    def __init__(
        self, *, concurrency: int, max_jobs: int | None = None, park: Collection[str] = ()
    ) -> None:
        self.concurrency = concurrency
        self.max_jobs = max_jobs
        #: The tasks parked when their worker dies: never started ahead of a free thread.
        self.park = list(park)
        # Jobs claimed beyond the running threads, so that short jobs come in batches. Adapted
        # to how long jobs take (see adapt_prefetch); none until a job has finished: a worker
        # that does not know yet how long jobs take must not hold jobs an idle worker could run.
        self.prefetch = 0
        #: Jobs started beyond the idle threads (see START_WINDOW).
        self.start_ahead = 0
        self._mean_run_time: float | None = None
        #: Every job claimed and not yet finished, reserved or started, by job id.
        self.running: dict[int, Running] = {}
        #: Reserved jobs, in claim order, waiting to be started.
        self.reserved: deque[Running] = deque()
        #: Started jobs waiting for a runner thread; None tells a thread to exit.
        # A SimpleQueue: a put costs a fraction of a Queue's (one per started job).
        self.inbox: queue_module.SimpleQueue[Running | None] = queue_module.SimpleQueue()
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
        per_job = max(mean, 1e-5)
        # Sub-millisecond jobs are claimed only as far as they are started ahead: reserving one
        # (a row update and a start round trip more) would cost more than running it.
        window = PREFETCH_WINDOW if mean >= TINY_JOB else START_WINDOW
        self.prefetch = max(0, min(MAX_PREFETCH, int(window * self.concurrency / per_job)))
        self.start_ahead = min(self.prefetch, int(START_WINDOW * self.concurrency / per_job))

    def _started(self) -> int:
        """Jobs started and not finished: running in a thread or waiting in the inbox."""
        finished = sum(1 for entry in self.running.values() if entry.ended is not None)
        return len(self.running) - len(self.reserved) - finished

    def can_start(self) -> bool:
        """Whether a job claimed now would start (jobs under flow control only ever do)."""
        return self._to_start() > 0

    def _to_start(self) -> int:
        """How many more jobs to start now: one per idle thread, and up to ``start_ahead``."""
        return max(0, self.concurrency + self.start_ahead - self._started())

    def claim(self, session: WorkerSession, *, poll: bool = False) -> bool:
        """Start reserved jobs for the idle threads, then claim up to the free capacity; return
        True if fewer due jobs were found than asked. ``poll``: see WorkerSession.claim."""
        self.start_reserved(session)
        ask = self.ask()
        if ask is None:
            return False
        jobs = session.claim(ask.limit, free=ask.free, start=ask.start, park=ask.park, poll=poll)
        return self.took(ask, jobs)

    def ask(self) -> ClaimAsk | None:
        """What to claim now (after :meth:`start_reserved`), or None if there is no room."""
        room = self.room()
        if room <= 0:
            return None
        return ClaimAsk(
            limit=room,
            free=max(0, self.concurrency - self._started()),
            start=self._to_start(),
            park=self.park,
        )

    def took(self, ask: ClaimAsk, jobs: list[ClaimedJob]) -> bool:
        """Hold the jobs claimed for ``ask``; True if fewer were found than asked."""
        for job in jobs:
            entry = Running(job)
            self.running[job.id] = entry
            if job.reserved:
                self.reserved.append(entry)
            else:
                self.inbox.put(entry)
        self.claimed_total += len(jobs)
        return len(jobs) < ask.limit

    def start_reserved(self, session: WorkerSession) -> None:
        """Start reserved jobs for the idle threads (and ``start_ahead``): those whose queue or
        task was paused, or that an operator took, went back to the queue and are dropped."""
        count = min(len(self.reserved), self._to_start())
        if count <= 0:
            return
        batch = [self.reserved[index] for index in range(count)]
        started = {job.id for job in session.start([entry.job for entry in batch])}
        # Only now: if the start failed (a lost connection), they are still reserved and owned.
        for entry in batch:
            self.reserved.popleft()
            if entry.job.id in started:
                self.inbox.put(entry)
            else:
                del self.running[entry.job.id]
                self.claimed_total -= 1

    def release_reserved(self, session: WorkerSession) -> int:
        """Give every reserved job back to the queue untouched; how many."""
        if not self.reserved:
            return 0
        batch = list(self.reserved)
        session.release([entry.job for entry in batch])
        self.reserved.clear()
        for entry in batch:
            del self.running[entry.job.id]
        self.claimed_total -= len(batch)
        return len(batch)

    def stalled(self, now: float) -> bool:
        """Whether the jobs claimed ahead are stuck behind overrunning jobs (then claiming and
        starting ahead stop until a job finishes and the prefetch adapts again).

        That is when the oldest waited STALLED_AFTER seconds while every thread runs a job
        started at least that long ago: a task with no timeout that never returns would hold
        them for good, and no rescue frees a job of a live worker.
        """
        if len(self.running) <= self.concurrency or now < self._next_stall_check:
            return False  # nothing waits beyond the threads, or looked a moment ago
        # Called every turn of the worker's loop: a quarter of the bound is precise enough.
        self._next_stall_check = now + STALLED_AFTER / 4
        started = [entry.started for entry in self.running.values() if entry.started is not None]
        waiting = [entry.claimed for entry in self.running.values() if entry.started is None]
        if not waiting or now - min(waiting) < STALLED_AFTER:
            return False
        if len(started) < self.concurrency or now - max(started) < STALLED_AFTER:
            return False
        self.prefetch = self.start_ahead = 0
        return True

    def take_unstarted(self) -> list[Running]:
        """Take back the started jobs no thread has taken yet (reserved ones: see
        :meth:`release_reserved`)."""
        unstarted = []
        while True:
            try:
                entry = self.inbox.get_nowait()
            except queue_module.Empty:
                break
            if entry is not None:
                unstarted.append(entry)
        return unstarted
