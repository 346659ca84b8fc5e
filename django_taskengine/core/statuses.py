"""Job statuses and attempt outcomes: the vocabulary of the lifecycle."""

from __future__ import annotations

from django.db import models


class JobStatus(models.TextChoices):
    QUEUED = "queued", "queued"
    RUNNING = "running", "running"
    SUCCEEDED = "succeeded", "succeeded"
    FAILED = "failed", "failed"
    CANCELLED = "cancelled", "cancelled"
    PAUSED = "paused", "paused"


class AttemptOutcome(models.TextChoices):
    SUCCEEDED = "succeeded", "succeeded"
    FAILED = "failed", "failed"  # an exception; retried if attempts remain
    ORPHANED = "orphaned", "worker died"  # the worker vanished mid-run; rescued
    INTERRUPTED = "interrupted", "interrupted"  # graceful shutdown returned it to the queue
    TIMED_OUT = "timed_out", "timed out"
    SUPERSEDED = "superseded", "superseded"  # a newer attempt owns the job; writes discarded
    PAUSED = "paused", "paused at a checkpoint"  # an operator paused the running job
    CANCELLED = "cancelled", "cancelled at a checkpoint"  # an operator cancelled it mid-run
    SNOOZED = "snoozed", "snoozed"  # the task raised Snooze: due again later, attempt not counted


#: States in which a job still has work ahead of it; a dedup key is unique among these.
ACTIVE_STATUSES = (JobStatus.QUEUED, JobStatus.RUNNING, JobStatus.PAUSED)
#: States a job never leaves on its own.
TERMINAL_STATUSES = (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED)


def is_terminal(status: str) -> bool:
    """Whether a job in ``status`` is finished for good (until an operator retries it)."""
    return status in TERMINAL_STATUSES
