"""The per-minute statistics of the console's charts, counted in memory and added in batches.

Each process that runs jobs counts, per queue and minute (UTC), what its attempts did: jobs
that succeeded, jobs that failed for good, attempts that failed and will be retried (at the
minute the attempt ended), and the wait before each attempt started (in the histogram of
:mod:`~..core.wait_histogram`, at the minute it started). A job's wait counts from when it was
due, ``max(created_at, run_after)``, to the attempt's start: time held by a paused queue, a
limit or busy workers counts; time before its ``run_after`` does not.

The cost on the hot path is a dictionary update per finished attempt (:meth:`MinuteRecorder.
record`, called by :func:`~.report.report_outcome`). A worker process adds its counts to the
table every :data:`FLUSH_INTERVAL` seconds and when it stops, with one upsert per (queue,
minute) row it touched and one per minute for all queues together, sent in one batch
(:meth:`MinuteRecorder.flush`): the table takes a few statements per process every few
seconds, whatever the throughput.

**Running jobs.** Each attempt adds the seconds it ran to the minutes they fell in: a row's
``running_seconds / 60`` is the mean number of jobs running in that minute, summed over the
processes, exactly. A job still running is not left out until it ends: at every flush, a worker
process adds the time its running jobs ran since the last flush, and remembers how far it
counted each (the attempt's end adds the rest). No process queries the job table for it, and
no leader is needed.

What is not counted: attempts ended by a rescue (their worker died: the rescuer writes them),
and jobs run by eager mode. ``testing.run_jobs`` counts, so that tests see charts.

Rows older than :data:`KEEP_FOR` are deleted by a worker duty (:func:`prune_minute_stats`).
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from django.db import connections, transaction
from django.db.models import F

from ..core.lifecycle import ClaimedJob, Outcome
from ..core.statuses import AttemptOutcome, JobStatus
from ..core.wait_histogram import BUCKETS, bucket_of
from ..stats_models import ALL_QUEUES, WAIT_COLUMNS, MinuteStats
from ..store.sql import query
from .claimer import Running
from .maintenance import register

logger = logging.getLogger("django_taskengine.worker")

#: Seconds between two flushes of a worker process's counts.
FLUSH_INTERVAL = 5.0
#: How long the per-minute rows are kept: the charts show a day at most.
KEEP_FOR = dt.timedelta(days=2)
#: Seconds between two runs of the pruning duty in a worker process.
PRUNE_INTERVAL = 600.0
#: Counts that could not be written (the database is away) are kept for a retry, but not
#: beyond this many (queue, minute) rows: a long outage costs a gap, never the memory.
MAX_PENDING_ROWS = 20_000

_FAILED = (AttemptOutcome.FAILED, AttemptOutcome.TIMED_OUT)
# Looked up once: an enum member costs an attribute lookup on its class each time.
_SUCCEEDED, _SUPERSEDED = AttemptOutcome.SUCCEEDED, AttemptOutcome.SUPERSEDED
_JOB_FAILED, _JOB_QUEUED = JobStatus.FAILED, JobStatus.QUEUED


@dataclass
class MinuteCounts:
    """What one queue's attempts did in one minute, in one process, since the last flush."""

    succeeded: int = 0
    failed: int = 0
    retried: int = 0
    running_seconds: float = 0.0
    waits: list[int] = field(default_factory=lambda: [0] * BUCKETS)

    def add(self, other: MinuteCounts) -> None:
        self.succeeded += other.succeeded
        self.failed += other.failed
        self.retried += other.retried
        self.running_seconds += other.running_seconds
        self.waits = [a + b for a, b in zip(self.waits, other.waits, strict=True)]

    def row(self, queue: str, minute: int) -> tuple[Any, ...]:
        """The parameters of the upsert ``add_minute_stats``."""
        return (
            queue,
            minute,
            self.succeeded,
            self.failed,
            self.retried,
            self.running_seconds,
            *self.waits,
        )


def minute_of(moment: dt.datetime) -> int:
    """Whole minutes since 1970-01-01 00:00 UTC: the table's ``minute``."""
    return minute_at(moment.timestamp())


def minute_at(seconds: float) -> int:
    """:func:`minute_of` a moment given in seconds since the epoch."""
    return int(seconds // 60)


class MinuteRecorder:
    """Counts per (queue, minute) in memory, for :meth:`flush` to add to the table.

    Records only while a runner that will flush is active (a worker process, ``run_jobs``):
    nothing accumulates in a process that never writes the counts.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: dict[tuple[str, int], MinuteCounts] = {}
        #: Running jobs whose running time is counted up to a moment (epoch seconds).
        self._counted_until: dict[int, float] = {}
        #: How many runners in this process record now.
        self.active = 0

    def _at(self, queue: str, minute: int) -> MinuteCounts:
        counts = self._counts.get((queue, minute))
        if counts is None:
            counts = self._counts[queue, minute] = MinuteCounts()
        return counts

    def record(self, outcome: Outcome, job: ClaimedJob) -> None:
        """Count a finished attempt: its end by kind, its wait before it started, and the
        time it ran (what a flush did not count yet)."""
        if not self.active:
            return
        # Once per attempt, on the worker's main thread: the start and the end are converted
        # to epoch seconds once each, and their minutes computed from those. Most attempts
        # start and end in one minute: one row of counts takes all they add.
        kind = outcome.outcome
        start = outcome.started_at.timestamp()
        end = outcome.finished_at.timestamp()
        wait = None if job.due_at is None else (outcome.started_at - job.due_at).total_seconds()
        queue = job.queue
        with self._lock:
            counted = self._counted_until.pop(job.id, None) if self._counted_until else None
            if kind == _SUPERSEDED:
                return
            first = minute_at(start)
            at_start = self._at(queue, first)
            if counted is None and end <= (first + 1) * 60.0:
                at_start.running_seconds += max(end - start, 0.0)
            else:
                self._add_running(queue, max(start, counted or start), end)
            if wait is not None:
                at_start.waits[bucket_of(wait)] += 1
            last = minute_at(end)
            at_end = at_start if last == first else self._at(queue, last)
            if kind == _SUCCEEDED:
                at_end.succeeded += 1
            elif outcome.status == _JOB_FAILED:
                at_end.failed += 1
            elif kind in _FAILED and outcome.status == _JOB_QUEUED:
                at_end.retried += 1

    def count_running(self, jobs: Iterable[ClaimedJob], now: float) -> None:
        """Add the time ``jobs`` (running now) ran since they were last counted, up to
        ``now`` (``time.time()``)."""
        with self._lock:
            for job in jobs:
                if job.started_at is None:
                    continue
                start = job.started_at.timestamp()
                counted = self._counted_until.get(job.id)
                self._add_running(job.queue, max(start, counted or start), now)
                self._counted_until[job.id] = now

    def _add_running(self, queue: str, start: float, end: float) -> None:
        """Add the seconds from ``start`` to ``end`` (epoch seconds) to the minutes they
        cover."""
        while start < end:
            minute = minute_at(start)
            until = min(end, (minute + 1) * 60.0)
            self._at(queue, minute).running_seconds += until - start
            start = until

    def take(self) -> dict[tuple[str, int], MinuteCounts]:
        """The counts so far, and start afresh."""
        with self._lock:
            counts, self._counts = self._counts, {}
        return counts

    def give_back(self, counts: dict[tuple[str, int], MinuteCounts]) -> None:
        """Counts a flush could not write, kept for the next (the newest, up to a bound)."""
        with self._lock:
            for key, value in counts.items():
                self._at(*key).add(value)
            if len(self._counts) > MAX_PENDING_ROWS:
                newest = sorted(self._counts, key=lambda key: key[1])[-MAX_PENDING_ROWS:]
                self._counts = {key: self._counts[key] for key in newest}

    def flush(self, alias: str) -> int:
        """Add the counts so far to the table; how many rows. Never raises: counts that could
        not be written are kept for the next flush."""
        counts = self.take()
        if not counts:
            return 0
        try:
            write_counts(alias, counts)
        except Exception as exc:  # noqa: BLE001 - statistics must never stop a worker or a test
            # One line, not a traceback every few seconds while the database is away.
            logger.warning("chart statistics not written, kept for the next try: %s", exc)
            connections[alias].close_if_unusable_or_obsolete()
            self.give_back(counts)
            return 0
        return len(counts)


#: The recorder of this process (:func:`~.report.report_outcome` counts into it).
RECORDER = MinuteRecorder()


def write_counts(alias: str, counts: dict[tuple[str, int], MinuteCounts]) -> None:
    """Add ``counts`` to their rows, and their sums to the rows of every queue
    (:data:`~..stats_models.ALL_QUEUES`), in (queue, minute) order, in one transaction."""
    counts = dict(counts)
    for (queue, minute), value in list(counts.items()):
        if queue != ALL_QUEUES:
            total = counts.get((ALL_QUEUES, minute))
            if total is None:
                total = counts[ALL_QUEUES, minute] = MinuteCounts()
            total.add(value)
    keys = sorted(counts)
    vendor = connections[alias].vendor
    with transaction.atomic(using=alias):
        if vendor in ("postgresql", "sqlite"):
            with connections[alias].cursor() as cursor:
                cursor.executemany(
                    query("add_minute_stats"), [counts[key].row(*key) for key in keys]
                )
            return
        for queue, minute in keys:
            _add_with_orm(alias, queue, minute, counts[queue, minute])


def _add_with_orm(alias: str, queue: str, minute: int, counts: MinuteCounts) -> None:
    """The upsert on other databases: lock the row (or create it), then add."""
    rows = MinuteStats.objects.using(alias)
    row, _ = rows.select_for_update().get_or_create(queue=queue, minute=minute)
    changes: dict[str, Any] = {
        "succeeded": F("succeeded") + counts.succeeded,
        "failed": F("failed") + counts.failed,
        "retried": F("retried") + counts.retried,
        "running_seconds": F("running_seconds") + counts.running_seconds,
    }
    changes.update(
        {column: F(column) + n for column, n in zip(WAIT_COLUMNS, counts.waits, strict=True)}
    )
    rows.filter(pk=row.pk).update(**changes)


@contextmanager
def recording(alias: str, enabled: bool = True) -> Iterator[None]:
    """Record the attempts reported inside the block, and add them to the table at its end
    (the in-process runner of ``testing.run_jobs``)."""
    if not enabled:
        yield
        return
    RECORDER.active += 1
    try:
        yield
    finally:
        RECORDER.active -= 1
        RECORDER.flush(alias)


class ProcessStats:
    """A worker process's part: count its running jobs and flush every FLUSH_INTERVAL s."""

    def __init__(self, alias: str, running: Mapping[int, Running]) -> None:
        self.alias = alias
        self.running = running
        self._next_flush = time.monotonic() + FLUSH_INTERVAL
        self._started = False

    def start(self) -> None:
        """Begin recording this process's attempts."""
        if not self._started:
            self._started = True
            RECORDER.active += 1

    def tick(self, now: float) -> None:
        """Flush if FLUSH_INTERVAL seconds passed (``now``: ``time.monotonic()``)."""
        if now < self._next_flush:
            return
        self._next_flush = now + FLUSH_INTERVAL
        self._sample()
        RECORDER.flush(self.alias)

    def stop(self) -> None:
        """A last sample and flush, then stop recording."""
        if self._started:
            self._sample()
            RECORDER.flush(self.alias)
            self._started = False
            RECORDER.active -= 1

    def _sample(self) -> None:
        jobs = [entry.job for entry in self.running.values() if entry.ended is None]
        RECORDER.count_running(jobs, time.time())


@register("prune chart statistics", PRUNE_INTERVAL)
def prune_minute_stats(alias: str) -> int:
    """Delete the per-minute rows older than KEEP_FOR; how many."""
    cutoff = minute_of(dt.datetime.now(dt.UTC) - KEEP_FOR)
    # No relation and no signal: Django deletes with one DELETE … WHERE, loading no row.
    deleted, _ = MinuteStats.objects.using(alias).filter(minute__lt=cutoff).delete()
    return deleted
