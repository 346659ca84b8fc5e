"""The context a ``@task(takes_context=True)`` receives as its first argument."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .store import ClaimedJob


class TaskContext:
    """What a running attempt knows about itself.

    ``job_id``; ``attempt`` (1 for the first run); ``idempotency_key``, stable across every
    attempt of the job, for external APIs that deduplicate requests; ``checkpoint_state``, the
    last state saved by a checkpoint, or None on a first run.
    """

    def __init__(self, job: ClaimedJob) -> None:
        self._job = job
        self.job_id: int = job.id
        self.attempt: int = job.attempt
        self.queue: str = job.queue
        self.task_name: str = job.task_name
        self.checkpoint_state: Any = job.checkpoint

    @property
    def idempotency_key(self) -> str:
        return f"taskengine-job-{self.job_id}"

    def __repr__(self) -> str:
        return f"<TaskContext job={self.job_id} attempt={self.attempt}>"
