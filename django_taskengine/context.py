"""The context a ``@task(takes_context=True)`` receives as its first argument: who the attempt
is, its last checkpoint, and how it saves progress and learns that it should stop."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any, Protocol

from .serialization import dump_checkpoint

if TYPE_CHECKING:
    from .store import ClaimedJob


class StopJob(BaseException):
    """Raised by :meth:`TaskContext.checkpoint` to stop the task there.

    ``reason`` is "pause", "cancel" or "shutdown" (the job goes back to the queue), or
    "superseded" (the attempt lost its job). It derives from BaseException, like
    KeyboardInterrupt, so that a task's ``except Exception`` does not swallow it.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class ContextChannel(Protocol):
    """How a context talks to whoever runs it (a worker process, or an in-process runner)."""

    def save_checkpoint(self, job: ClaimedJob, state_json: str) -> str | None:
        """Durably save; return a stop reason ("" or None for none)."""

    def report_progress(self, job: ClaimedJob, current: int, total: int | None) -> None: ...

    def stop_reason(self, job: ClaimedJob) -> str | None: ...


class TaskContext:
    """What a running attempt knows about itself, and its checkpoints.

    ``job_id``; ``attempt`` (1 on the first run); ``idempotency_key`` (below), for external
    APIs that deduplicate requests; ``checkpoint_state``, the state the last :meth:`checkpoint`
    saved (``None`` on a first run); ``should_stop``, True once a pause, cancel or shutdown has
    been asked for.
    """

    def __init__(
        self, job: ClaimedJob, channel: ContextChannel | None = None, atomic: bool = False
    ) -> None:
        self._job = job
        self._channel = channel
        self._atomic = atomic
        self.job_id: int = job.id
        self.attempt: int = job.attempt
        self.queue: str = job.queue
        self.task_name: str = job.task_name
        self.checkpoint_state: Any = job.checkpoint
        self._uid: uuid.UUID | None = job.uid

    @property
    def idempotency_key(self) -> str:
        """``taskengine-<job uid>``: the same for every attempt of one run of the job (automatic
        retries, rescues after a worker died, pauses and resumes), a new one when an operator
        retries the job, and never the same for two jobs, even across databases. The claim
        carries the uid.
        """
        if self._uid is None:
            raise RuntimeError(
                f"job {self.job_id} was handed to its task without its uid: a ClaimedJob made "
                "by hand needs uid= (the job row's) for ctx.idempotency_key"
            )
        return f"taskengine-{self._uid}"

    @property
    def should_stop(self) -> bool:
        return bool(self._channel and self._channel.stop_reason(self._job))

    def checkpoint(self, state: Any) -> None:
        """Save ``state`` (JSON) durably, in its own transaction, before returning.

        A retry after a crash or an error, and a resume after a pause, start with
        ``ctx.checkpoint_state`` set to it. If a pause, cancel or shutdown was asked for, the
        task stops here (this raises :class:`StopJob`; let it propagate).
        """
        if self._atomic:
            raise TypeError(
                f"{self.task_name}: ctx.checkpoint() is not available in an atomic task: its "
                "database writes roll back on a crash, so a checkpoint saved apart from them "
                "would claim work that was undone. Drop atomic=True, or commit in smaller jobs."
            )
        state_json = dump_checkpoint(state)
        self.checkpoint_state = state
        if self._channel is None:
            return
        reason = self._channel.save_checkpoint(self._job, state_json)
        if reason:
            raise StopJob(reason)

    def progress(self, current: int, total: int | None = None) -> None:
        """Report progress (shown in the admin); cheap: written with the next batch."""
        if isinstance(current, bool) or not isinstance(current, int):
            raise TypeError(f"progress(current) takes an int, not {current!r}")
        if total is not None and (isinstance(total, bool) or not isinstance(total, int)):
            raise TypeError(f"progress(total) takes an int or None, not {total!r}")
        if self._channel is not None:
            self._channel.report_progress(self._job, current, total)

    def __repr__(self) -> str:
        return f"<TaskContext job={self.job_id} attempt={self.attempt}>"
