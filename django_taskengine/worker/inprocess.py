"""Running jobs in this process, one after the other: eager mode and the test helpers.

Jobs run through the worker's own path: a claim that marks the job running with a fencing
token, :func:`~.runner.run_attempt`, then the fenced write of its outcome with an ``Attempt``
row, the ``job_started``/``job_finished`` signals and the worker's log line, all on the
caller's database connection, inside its transaction (see :mod:`django_taskengine.testing`).

A hard stop (``cancel_job(…, hard=True)``) cannot be carried out here: the task runs in the
caller's own thread, which nothing can end, and there is no worker process to replace. It acts
as the cooperative request: the task stops at its next checkpoint, or ``ctx.should_stop`` tells
it; a task that does neither finishes its attempt.
"""

from __future__ import annotations

import copy
import os
import socket
import uuid

from django.utils import timezone

from ..conf import taskengine_settings
from ..core.lifecycle import ClaimedJob
from ..core.statuses import AttemptOutcome, JobStatus
from ..models import Job
from ..store import StateWrite, WorkerInfo, get_store
from ..store.inprocess import InProcessSession
from .completer import write_outcomes
from .report import report_outcome
from .runner import run_attempt
from .stats import recording


class JobFailed(Exception):
    """Raised by ``enqueue()`` in eager mode with ``EAGER_PROPAGATE`` when the job ended failed.

    ``job`` is the failed job; the message carries its error and the last traceback.
    """

    def __init__(self, job: Job) -> None:
        self.job = job
        attempts = f"{job.attempts} attempt{'s' if job.attempts != 1 else ''}"
        message = f"Job {job.pk} ({job.task_name}) failed after {attempts}: {job.error}"
        if job.traceback:
            message += f"\n\nTraceback of the last attempt:\n{job.traceback.rstrip()}"
        super().__init__(message)


def run_enqueued_eagerly(jobs: list[Job], alias: str) -> list[Job]:
    """Eager mode's hook in ``bulk_enqueue``: run the jobs just created, to the end.

    Every attempt runs back to back (the retry backoff is not waited for) until the job is
    finished. A job not due yet (``run_after`` in the future), or in a paused queue, is not run
    and stays queued, as it would with a worker; so is one that a dedup key matched to an older
    job, and one whose task snoozed (run back to back, a task that snoozes until something
    happens would never end). Returns the jobs refreshed, in the order given.
    """
    created = list(dict.fromkeys(job.pk for job in jobs if job.created))
    if not created:
        return jobs
    InProcessRunner(alias, queues=[], retries=True, only_ids=created).run(None, stats=False)
    fresh = Job.objects.using(alias).in_bulk(created)
    refreshed = []
    for job in jobs:
        if job.pk in fresh:
            current = copy.copy(fresh[job.pk])
            current.created = job.created
            refreshed.append(current)
        else:
            refreshed.append(job)
    if taskengine_settings.EAGER_PROPAGATE:
        for job in refreshed:
            if job.created and job.status == JobStatus.FAILED:
                raise JobFailed(job)
    return refreshed


class InProcessRunner:
    """Claims and runs jobs one at a time; the channel of their task contexts."""

    def __init__(
        self, alias: str, *, queues: list[str], retries: bool, only_ids: list[int] | None = None
    ) -> None:
        self.alias = alias
        self.retries = retries
        self.store = get_store(alias)
        self.info = WorkerInfo(
            id=uuid.uuid4(),
            hostname=socket.gethostname(),
            pid=os.getpid(),
            queues=queues,
            concurrency=1,
        )
        self.session = InProcessSession(alias, self.info, only_ids)
        self.stops: dict[int, str] = {}

    def run(self, max_jobs: int | None, *, stats: bool = True) -> list[int]:
        """Run until nothing can be claimed (or ``max_jobs`` attempts); the ids run, in order.
        With ``stats``, the attempts are counted in the console's per-minute statistics."""
        with recording(self.alias, enabled=stats):
            return self._run(max_jobs)

    def _run(self, max_jobs: int | None) -> list[int]:
        ran: dict[int, None] = {}
        attempts = 0
        while max_jobs is None or attempts < max_jobs:
            claimed = self.session.claim(1)
            if not claimed:
                break
            job = claimed[0]
            attempts += 1
            ran[job.id] = None
            result = run_attempt(job, self.store, self.info.id, self, close_connections=False)
            outcome = result.outcome
            if not result.committed:
                (outcome,), _, _ = write_outcomes(self.session, [(outcome, job)], [])
            report_outcome(outcome, job)
            if outcome.status == JobStatus.QUEUED and outcome.outcome != AttemptOutcome.SUPERSEDED:
                if self.retries and outcome.outcome != AttemptOutcome.SNOOZED:
                    Job.objects.using(self.alias).filter(id=job.id, status=JobStatus.QUEUED).update(
                        run_after=timezone.now()
                    )
                else:
                    self.session.held_back.add(job.id)
        return list(ran)

    # ContextChannel: checkpoints and progress are written at once, fenced by the token.

    def save_checkpoint(self, job: ClaimedJob, state_json: str) -> str:
        applied = self.session.save_state([StateWrite(job.id, job.token, state_json)])
        if job.id not in applied:
            return "superseded"
        self.stops[job.id] = job.stop_requested = applied[job.id]
        return applied[job.id]

    def report_progress(self, job: ClaimedJob, current: int, total: int | None) -> None:
        applied = self.session.save_state([StateWrite(job.id, job.token, None, current, total)])
        if job.id in applied:
            self.stops[job.id] = job.stop_requested = applied[job.id]

    def stop_reason(self, job: ClaimedJob) -> str:
        return self.stops.get(job.id, "")
