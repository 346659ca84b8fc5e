"""What an attempt is while it runs and when it ends: the claimed job a worker owns, and the
outcome a store writes. The rules that decide an outcome are in :mod:`.lifecycle`."""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass
from typing import Any

from .statuses import TERMINAL_STATUSES, JobStatus


@dataclass
class ClaimedJob:
    """A job a worker owns for one attempt, identified for fencing by ``(id, token)``."""

    id: int
    task_name: str
    queue: str
    args: Any
    kwargs: Any
    attempt: int
    max_attempts: int
    retry_backoff: float
    timeout: float | None
    token: uuid.UUID
    #: When the attempt started (the database's clock); None while the job is only reserved:
    #: claimed ahead, still queued, waiting for one of its worker's threads to be free.
    started_at: dt.datetime | None
    checkpoint: Any = None
    #: Whether this worker's connection holds the job's advisory lock.
    locked: bool = False
    #: The job's random uid (the idempotency key's); None where a caller built the job by hand.
    uid: uuid.UUID | None = None
    #: The job's pending stop request as last read from the database ("" for none).
    stop_requested: str = ""
    #: The durable waits its run has done (``ctx.sleep``), in call order; None for none.
    waits: list[Any] | None = None
    #: When the job became due, ``max(created_at, run_after)`` as claimed: its wait until an
    #: attempt starts counts from here (the console's charts). None where unknown.
    due_at: dt.datetime | None = None

    @property
    def reserved(self) -> bool:
        """Claimed ahead and not started: no attempt is counted and none can end yet."""
        return self.started_at is None

    def attempt_started_at(self) -> dt.datetime:
        """When the attempt started; a reserved job has no attempt to end."""
        if self.started_at is None:
            raise ValueError(f"job {self.id} is reserved, not started: it has no attempt")
        return self.started_at


@dataclass
class Outcome:
    """How an attempt ended and the job's next state, to be written fenced by ``token``."""

    job_id: int
    token: uuid.UUID
    #: The attempt's number, as its record keeps it.
    attempt: int
    #: The job's next status.
    status: str
    #: The attempt record's outcome (:class:`~.statuses.AttemptOutcome`).
    outcome: str
    started_at: dt.datetime
    #: When the attempt ended.
    finished_at: dt.datetime
    result_json: str | None = None
    error: str = ""
    traceback: str = ""
    #: A requeued job is due this many seconds after the write (by the database's clock).
    retry_delay: float = 0.0
    #: The attempt does not count towards ``max_attempts`` (it was stopped, not failed).
    refund_attempt: bool = False
    #: The worker that ran the attempt, when it is not the one writing (a rescue).
    worker_id: uuid.UUID | None = None
    #: A requeued job keeps its ``run_after``, its place in the queue (a rescue: the worker
    #: failed, not the job, so the job is not sent behind the work enqueued after it).
    keeps_place: bool = False
    #: The job's pending stop request this outcome was decided with (see
    #: :func:`apply_stop_request`). Stores apply the outcome only if the job's request is still
    #: this one; otherwise the store reports the current one in :attr:`stop_request_now`.
    stop_request: str = ""
    #: Set by a store that fenced the outcome out only because the job's stop request changed
    #: (the attempt still owns the job): the request to decide again with.
    stop_request_now: str | None = None
    #: The job's durable waits after this attempt (JSON), when it ended in one; None keeps them.
    waits_json: str | None = None
    #: The event the job is parked waiting for (``ctx.wait_for_event``); None for none.
    waiting_for: str | None = None

    def copy(self) -> Outcome:
        """A shallow copy: a worker makes one per finished attempt, and this costs a fraction
        of ``copy.copy`` or ``dataclasses.replace``."""
        clone = object.__new__(Outcome)
        clone.__dict__.update(self.__dict__)
        return clone

    @property
    def stop_requested_after(self) -> str:
        """The job's ``stop_requested`` once the outcome is written: a paused job keeps the
        request that paused it (it says which pause stopped it, for its resume); every other
        outcome releases it (carried out, or moot once the job is finished)."""
        return self.stop_request if self.status == JobStatus.PAUSED else ""

    @property
    def job_finished_at(self) -> dt.datetime | None:
        """The job's ``finished_at``: set once it is terminal, cleared otherwise."""
        return self.finished_at if self.status in TERMINAL_STATUSES else None

    @property
    def due_in(self) -> float | None:
        """Seconds until a requeued job is due again; None leaves ``run_after`` as it is."""
        if self.status != JobStatus.QUEUED or self.keeps_place:
            return None
        return self.retry_delay
