"""How a finished attempt is made known: one log line and a ``job_finished`` signal."""

from __future__ import annotations

import logging

from django.db import connections

from ..conf import taskengine_settings
from ..core.lifecycle import ClaimedJob, Outcome
from ..core.statuses import AttemptOutcome, JobStatus
from ..registry import find_task
from ..signals import job_finished, listened
from .stats import RECORDER

logger = logging.getLogger("django_taskengine.worker")


def report_outcome(outcome: Outcome, job: ClaimedJob) -> None:
    """One log line and a ``job_finished`` signal per finished attempt (a worker process, or
    the in-process runner of :mod:`django_taskengine.testing`), and its count in the
    console's per-minute statistics."""
    _log_outcome(outcome, job)
    RECORDER.record(outcome, job)
    if listened(job_finished):
        # Robust: one receiver's error neither stops the others nor the worker.
        responses = job_finished.send_robust(
            sender=find_task(job.task_name),
            job_id=job.id,
            task_name=job.task_name,
            queue=job.queue,
            attempt=job.attempt,
            outcome=str(outcome.outcome),
            status=str(outcome.status),
            duration=(outcome.finished_at - outcome.started_at).total_seconds(),
            error=outcome.error,
        )
        errors = [error for _, error in responses if isinstance(error, Exception)]
        for error in errors:
            logger.error("a job_finished receiver failed for job %s", job.id, exc_info=error)
        if errors:
            # A receiver that queried through a connection a database restart broke: close it,
            # or every later receiver would fail on it too (Django reconnects on next use).
            connection = connections[taskengine_settings.DATABASE]
            if connection.connection is not None and not connection.is_usable():
                connection.close()


def _log_outcome(outcome: Outcome, job: ClaimedJob) -> None:
    if outcome.outcome == AttemptOutcome.SUCCEEDED:
        # The most common line, and often below the logger's level: then nothing is built.
        if not logger.isEnabledFor(logging.INFO):
            return
        what, level = "succeeded", logging.INFO
    elif outcome.outcome in (AttemptOutcome.PAUSED, AttemptOutcome.CANCELLED):
        what, level = f"{outcome.status} at a checkpoint", logging.INFO
    elif outcome.outcome == AttemptOutcome.SUPERSEDED:
        what, level = "superseded (result discarded)", logging.WARNING
    elif outcome.outcome == AttemptOutcome.SNOOZED:
        # The task asked for it: "snoozed for 30 s", or the cancel or pause it met.
        what, level = outcome.error, logging.INFO
    elif outcome.status == JobStatus.QUEUED and outcome.outcome == AttemptOutcome.INTERRUPTED:
        what, level = f"requeued ({outcome.error})", logging.WARNING
    elif outcome.status == JobStatus.QUEUED:
        what = f"failed, retry in {outcome.retry_delay:.2f} s: {outcome.error}"
        level = logging.WARNING
    else:
        what, level = f"failed: {outcome.error}", logging.ERROR
    duration_ms = (outcome.finished_at - outcome.started_at).total_seconds() * 1000
    logger.log(
        level,
        "%s job %s attempt %s/%s %s (%.1f ms)",
        job.task_name,
        job.id,
        job.attempt,
        job.max_attempts,
        what,
        duration_ms,
        extra={
            "task_name": job.task_name,
            "job_id": job.id,
            "attempt": job.attempt,
            "queue": job.queue,
            "outcome": outcome.outcome,
            "job_status": outcome.status,
            "duration_ms": duration_ms,
        },
    )
