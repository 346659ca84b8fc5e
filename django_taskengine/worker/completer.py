"""Finishing attempts: the outcomes of the runner threads, written in batches.

Runner threads append ``(entry, result)`` to ``done``; the main thread collects them, and writes
every pending outcome and advisory-lock release in one ``session.finish`` round trip. An outcome
the store fenced out (the job was rescued or changed meanwhile) is reported as superseded.

Until its outcome is written a job is still this worker's: after a lost connection the pending
outcomes wait for the reconnect, whose relock keeps their jobs (:meth:`Completer.unwritten`).
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Container

from ..core import lifecycle
from ..core.lifecycle import ClaimedJob, Outcome
from ..core.statuses import AttemptOutcome, JobStatus
from ..store import ClaimFailedAfterWrite, WorkerSession
from .claimer import ClaimAsk, Claimer, Running
from .report import report_outcome
from .runner import RunResult

logger = logging.getLogger("django_taskengine.worker")

#: A job's stop request changes at most twice while it runs ("" → a pause → a cancel), so an
#: outcome is decided again at most twice; more rounds mean a store that misreports.
MAX_STOP_REDECISIONS = 4

#: In burst mode a worker waits for retries (and snoozes) it scheduled itself if they fall due
#: within this many seconds, so a script's quick retries finish in the same run.
BURST_RETRY_WAIT = 10.0


class Completer:
    """Collects finished attempts, writes their outcomes in batches, and counts them."""

    def __init__(self, claimer: Claimer, *, burst: bool = False) -> None:
        self.claimer = claimer
        self.burst = burst
        #: Attempts the runner threads finished, not yet collected by the main thread.
        self.done: deque[tuple[Running, RunResult]] = deque()
        #: Outcomes to write with the next flush.
        self.outcomes: list[tuple[Outcome, ClaimedJob]] = []
        #: Jobs whose advisory locks to release with the next flush (those the session holds).
        self._releasing: list[ClaimedJob] = []
        self.succeeded = 0
        self.failed = 0
        #: Burst mode also waits for retries it scheduled that fall due within BURST_RETRY_WAIT.
        self.burst_retry_until = 0.0

    @property
    def unlock(self) -> list[int]:
        """Ids of the advisory locks to release with the next flush: those the session holds
        (a reconnect's relock says which it took again)."""
        return [job.id for job in self._releasing if job.locked]

    def unwritten(self) -> list[ClaimedJob]:
        """The jobs whose attempt ended but whose outcome or lock release is not yet written:
        still this worker's, to keep across a reconnect."""
        return [job for _, job in self.outcomes] + self._releasing

    @property
    def idle(self) -> bool:
        """Nothing runs and nothing waits to be written."""
        return not self.claimer.running and not self.outcomes and not self.done

    def collect(self, overran: Container[int] = ()) -> None:
        """Take the attempts the runner threads finished: queue their outcomes for the flush.

        An attempt of a job in ``overran`` ran past its timeout or was hard-stopped by an
        operator: it timed out or was stopped (:func:`~..core.lifecycle.overran`), whatever it
        returned (unless it already committed, as an atomic task's success does, or — after a
        hard stop — it succeeded).
        """
        running = self.claimer.running
        while self.done:
            entry, result = self.done.popleft()
            job = entry.job
            if entry.abandoned:
                continue  # its outcome was queued when the worker gave up on it
            running.pop(job.id, None)
            if entry.started is not None:
                # How long the task ran, not how long until this thread collected it.
                ended = entry.ended if entry.ended is not None else time.monotonic()
                self.claimer.adapt_prefetch(ended - entry.started)
            self._releasing.append(job)
            if not result.committed:
                late = job.id in overran
                outcome = lifecycle.overran(job, result.outcome) if late else result.outcome
                self.outcomes.append((outcome, job))
            else:
                report_outcome(result.outcome, job)
                self.count(result.outcome)

    def give_up(self, entry: Running, outcome: Outcome) -> None:
        """Finish an attempt without waiting for its thread (a timeout, a shutdown): its
        thread's result will be ignored, and ``outcome`` is written with the next flush."""
        job = entry.job
        self.claimer.running.pop(job.id, None)
        entry.abandoned = True
        self._releasing.append(job)
        self.outcomes.append((outcome, job))

    def flush(self, session: WorkerSession | None, claim: ClaimAsk | None = None) -> bool | None:
        """Write the pending outcomes and lock releases in one round trip, then report them.

        With ``claim``, the store may claim in the same transaction (one round trip and one
        commit for the turn): then the jobs are handed to the claimer, and whether fewer were
        found than asked is returned. None: nothing was claimed.

        On a database error they stay pending, for the flush after the reconnect.
        """
        unlock = self.unlock
        if not self.outcomes and not unlock:
            self._releasing = []
            return None
        assert session is not None
        written, jobs, error = write_outcomes(session, self.outcomes, unlock, claim)
        exhausted = None if jobs is None or claim is None else self.claimer.took(claim, jobs)
        for outcome, (_, job) in zip(written, self.outcomes, strict=True):
            if (
                outcome.outcome != AttemptOutcome.SUPERSEDED
                and self.burst
                and outcome.status == JobStatus.QUEUED
                and outcome.outcome != AttemptOutcome.INTERRUPTED
                and outcome.retry_delay <= BURST_RETRY_WAIT
            ):
                self.burst_retry_until = max(
                    self.burst_retry_until, time.monotonic() + outcome.retry_delay + 0.05
                )
            report_outcome(outcome, job)
            self.count(outcome)
        self.outcomes = []
        self._releasing = []
        if error is not None:
            raise error  # the outcomes are written: the error is the claim's
        return exhausted

    def count(self, outcome: Outcome) -> None:
        """Count jobs, not attempts: a job that succeeded, or that ended failed (its attempts
        used up, or its error not retryable). A failed attempt that is retried is neither."""
        if outcome.outcome == AttemptOutcome.SUPERSEDED:
            return
        if outcome.outcome == AttemptOutcome.SUCCEEDED:
            self.succeeded += 1
        elif outcome.status == JobStatus.FAILED:
            self.failed += 1


def write_outcomes(
    session: WorkerSession,
    pending: list[tuple[Outcome, ClaimedJob]],
    unlock: list[int],
    claim: ClaimAsk | None = None,
) -> tuple[list[Outcome], list[ClaimedJob] | None, BaseException | None]:
    """Write the outcomes of ended attempts in one round trip; return them as written, the
    jobs claimed with them for ``claim`` (None if none was made: see
    WorkerSession.finish_then_claim), and the error of a claim that failed after the write.

    Each is decided with its job's pending stop request as this worker last read it
    (:func:`~..core.lifecycle.apply_stop_request`), and the store writes it only if the job's
    request is still that one. One fenced out because an operator changed the request
    meanwhile is decided again with the current request and written again (a round trip more,
    only then). An outcome that lost its job is returned marked superseded.
    """
    decided = [
        lifecycle.apply_stop_request(outcome, job.stop_requested) for outcome, job in pending
    ]
    jobs, error = None, None
    if claim is None:
        applied = session.finish(decided, unlock)
    else:
        try:
            applied, jobs = session.finish_then_claim(
                decided, unlock, claim.limit, free=claim.free, start=claim.start, park=claim.park
            )
        except ClaimFailedAfterWrite as failed:
            # Written: the claim's error is raised once they are reported (an outcome fenced
            # out by a changed stop request is written again first, if the connection works).
            applied, error = failed.applied, failed.__cause__ or failed
    for _ in range(MAX_STOP_REDECISIONS):
        again = [
            i
            for i, outcome in enumerate(decided)
            if outcome.job_id not in applied and outcome.stop_request_now is not None
        ]
        if not again:
            break
        for i in again:
            base, job = pending[i]
            job.stop_requested = decided[i].stop_request_now or ""
            decided[i] = lifecycle.apply_stop_request(base, job.stop_requested)
        applied |= session.finish([decided[i] for i in again], [])
    return _as_written(decided, applied), jobs, error


def _as_written(decided: list[Outcome], applied: set[int]) -> list[Outcome]:
    """The outcomes decided, those not applied marked superseded."""
    for outcome in decided:
        if outcome.job_id not in applied:
            if outcome.stop_request_now is not None:
                logger.error(
                    "job %s: its outcome was fenced out by a changed stop request %s times in "
                    "a row; it is left unwritten",
                    outcome.job_id,
                    MAX_STOP_REDECISIONS + 1,
                )
            outcome.outcome = AttemptOutcome.SUPERSEDED
    return decided
