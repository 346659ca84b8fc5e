"""The job table and its companions: queues, attempts and workers, as plain Django models; the
hot path (claim, complete, rescue) reaches them through :mod:`django_taskengine.store`'s SQL."""

from __future__ import annotations

import time
import uuid

from django.db import models
from django.db.models import Q
from django.utils import timezone

from .audit_trail import AuditEntry
from .core.limits import (
    ACTOR_MAX,
    DEDUP_KEY_MAX,
    FLOW_KEY_MAX,
    GROUP_KEY_MAX,
    QUEUE_NAME_MAX,
    SEQUENCE_KEY_MAX,
    TASK_NAME_MAX,
)
from .core.statuses import ACTIVE_STATUSES, TERMINAL_STATUSES, AttemptOutcome, JobStatus
from .job_indexes import AT_REST
from .schedule_models import CatchUp, PeriodicTick, Schedule

__all__ = [
    "ACTIVE_STATUSES",
    "TERMINAL_STATUSES",
    "Attempt",
    "AttemptOutcome",
    "AuditEntry",
    "CatchUp",
    "Job",
    "JobStatus",
    "JobTimeoutError",
    "Overview",
    "Pause",
    "PauseScope",
    "PeriodicTick",
    "Queue",
    "RateWindow",
    "Schedule",
    "Worker",
]


class Queue(models.Model):
    """A named lane of jobs. Rows are created on first use; an operator pauses and resumes them."""

    name = models.CharField(max_length=QUEUE_NAME_MAX, primary_key=True)
    paused = models.BooleanField(default=False)
    paused_at = models.DateTimeField(null=True, blank=True)
    paused_by = models.CharField(max_length=ACTOR_MAX, blank=True, default="")
    pause_reason = models.TextField(blank=True, default="")
    #: A timed pause ends by itself at this moment; claims treat the queue as running after it.
    paused_until = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    #: The limits in force (django_taskengine/core/flow.py), fleet-wide: each knob's runtime
    #: value if one is set, else its setting. None and "" mean no limit.
    concurrency = models.IntegerField(null=True, blank=True)
    # Defaults in the database too: enqueue inserts queue rows with its own SQL, and so do
    # processes of the previous release during a deploy.
    rate_limit = models.CharField(max_length=32, blank=True, default="", db_default="")
    #: ``TASKENGINE["QUEUES"][name]`` as the last worker to start read it.
    settings_limits = models.JSONField(default=dict, blank=True, db_default={})
    #: The knobs set at runtime ("concurrency", "rate_limit"; a None value: no limit), which
    #: override the setting until cleared.
    runtime_limits = models.JSONField(default=dict, blank=True, db_default={})
    limits_changed_at = models.DateTimeField(null=True, blank=True)
    limits_changed_by = models.CharField(
        max_length=ACTOR_MAX, blank=True, default="", db_default=""
    )

    class Meta:
        db_table = "taskengine_queue"
        ordering = ["name"]
        permissions = [
            ("pause_queue", "Can pause and resume queues and task types"),
            ("limit_queue", "Can set queue limits"),
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def is_paused(self) -> bool:
        """Paused now: a timed pause whose end has passed no longer counts."""
        return self.paused and (self.paused_until is None or self.paused_until > timezone.now())


class PauseScope(models.TextChoices):
    ENGINE = "engine", "every queue"
    TASK = "task", "task type"


class Pause(models.Model):
    """A pause wider than one queue: the whole engine, or one task type across all queues.

    A row means "paused" (until ``paused_until``, if set); resuming deletes it. Queue pauses
    live on :class:`Queue` itself.
    """

    scope = models.CharField(max_length=16, choices=PauseScope.choices)
    #: The task name for a task pause; empty for the engine-wide pause.
    target = models.CharField(max_length=255, blank=True, default="")
    paused_at = models.DateTimeField(default=timezone.now)
    paused_by = models.CharField(max_length=ACTOR_MAX, blank=True, default="")
    pause_reason = models.TextField(blank=True, default="")
    paused_until = models.DateTimeField(null=True, blank=True)

    class Meta:
        db_table = "taskengine_pause"
        ordering = ["scope", "target"]
        constraints = [
            models.UniqueConstraint(fields=["scope", "target"], name="taskengine_pause_unique")
        ]

    def __str__(self) -> str:
        return "all queues" if self.scope == PauseScope.ENGINE else f"task {self.target}"

    @property
    def is_active(self) -> bool:
        return self.paused_until is None or self.paused_until > timezone.now()


class JobTimeoutError(TimeoutError):
    """Raised by :meth:`Job.wait` when the job is not finished within the timeout."""


class Job(models.Model):
    """One request to run a registered task with JSON arguments."""

    id = models.BigAutoField(primary_key=True)
    task_name = models.CharField(max_length=TASK_NAME_MAX)
    queue = models.CharField(max_length=QUEUE_NAME_MAX, default="default")
    args = models.JSONField(default=list)
    kwargs = models.JSONField(default=dict)
    status = models.CharField(max_length=16, choices=JobStatus.choices, default=JobStatus.QUEUED)
    priority = models.IntegerField(default=0, help_text="Higher runs first.")
    run_after = models.DateTimeField(default=timezone.now)
    # NULL, not "": jobs without a key stay out of the unique index.
    dedup_key = models.CharField(max_length=DEDUP_KEY_MAX, null=True, blank=True)  # noqa: DJ001
    attempts = models.IntegerField(default=0, help_text="Attempts started so far.")
    max_attempts = models.IntegerField(default=3)
    retry_backoff = models.FloatField(default=1.0)
    timeout = models.FloatField(null=True, blank=True)
    result = models.JSONField(null=True, blank=True)
    error = models.TextField(blank=True, default="")
    traceback = models.TextField(blank=True, default="")
    created_at = models.DateTimeField(default=timezone.now)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    #: The worker process running the current attempt (random per process start).
    worker_id = models.UUIDField(null=True, blank=True)
    #: Fencing token of the current attempt: every write an attempt makes is conditional on it.
    token = models.UUIDField(null=True, blank=True)
    #: Databases without advisory locks: the running attempt owns the job until this moment.
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    #: Last state saved by ``ctx.checkpoint()``; a retry or resume starts from it.
    checkpoint = models.JSONField(null=True, blank=True)
    progress_current = models.BigIntegerField(null=True, blank=True)
    progress_total = models.BigIntegerField(null=True, blank=True)
    #: Set by an operator to ask a running attempt to stop at its next checkpoint.
    stop_requested = models.CharField(max_length=16, blank=True, default="")
    #: Random, set at enqueue and renewed by an operator's retry: what ``ctx.idempotency_key``
    #: is made of, so it never repeats across databases, a recreated database, or a retry.
    #: Not unique-indexed: a random UUID does not collide, and an index would slow enqueue.
    uid = models.UUIDField(default=uuid.uuid4, editable=False)
    #: Flow control (django_taskengine/core/flow.py): the group and the sequence the job was
    #: enqueued with, and its lane, the most specific limited scope it belongs to. Only the
    #: flow claim takes a job with a lane; NULL (most jobs): none.
    group_key = models.CharField(max_length=GROUP_KEY_MAX, null=True, blank=True)  # noqa: DJ001
    sequence_key = models.CharField(  # noqa: DJ001
        max_length=SEQUENCE_KEY_MAX, null=True, blank=True
    )
    flow_key = models.CharField(max_length=FLOW_KEY_MAX, null=True, blank=True)  # noqa: DJ001

    class Meta:
        db_table = "taskengine_job"
        ordering = ["-id"]
        permissions = [
            ("pause_job", "Can pause and resume jobs"),
            ("retry_job", "Can retry jobs and run them now"),
            ("cancel_job", "Can cancel jobs"),
        ]
        indexes = [
            # Serves the claim: due queued jobs no worker reserved, in priority, then
            # run_after, then FIFO order; those under flow control are left to the next two.
            models.Index(
                models.F("priority").desc(),
                "run_after",
                "id",
                name="taskengine_job_claimable_idx",
                condition=Q(status="queued", token__isnull=True, flow_key__isnull=True),
            ),
            # Serves the flow claim: the same, lane by lane.
            models.Index(
                "flow_key",
                models.F("priority").desc(),
                "run_after",
                "id",
                name="taskengine_job_flow_idx",
                condition=Q(status="queued", token__isnull=True, flow_key__isnull=False),
            ),
            # What the flow limits count: jobs under flow control a worker owns (a token: started
            # or claimed ahead). Not by status, so that no status index serves the count too.
            models.Index(
                fields=["flow_key"],
                name="taskengine_job_flow_active_idx",
                condition=Q(flow_key__isnull=False, token__isnull=False),
            ),
            # A sequence's next job: its first one not finished, in enqueue order.
            models.Index(
                fields=["sequence_key", "id"],
                name="taskengine_job_sequence_idx",
                condition=Q(sequence_key__isnull=False, status__in=["queued", "running", "paused"]),
            ),
            # Serves rescue and the admin's running view.
            models.Index(
                fields=["worker_id"],
                name="taskengine_job_running_idx",
                condition=Q(status="running"),
            ),
            # Serves rescue: jobs a worker reserved (claimed ahead, not started).
            models.Index(
                fields=["worker_id"],
                name="taskengine_job_reserved_idx",
                condition=Q(status="queued", token__isnull=False),
            ),
            # Jobs at rest (paused or finished) by status and queue, and by task: a job that
            # a worker takes from queued to running gets no entry in these until it finishes
            # (django_taskengine/job_indexes.py says how queries reach the others).
            models.Index(
                fields=["status", "queue"],
                name="taskengine_job_rest_status_idx",
                condition=Q(status__in=AT_REST),
            ),
            models.Index(
                fields=["task_name", "status"],
                name="taskengine_job_rest_task_idx",
                condition=Q(status__in=AT_REST),
            ),
            models.Index(
                fields=["finished_at"],
                name="taskengine_job_finished_idx",
                condition=Q(finished_at__isnull=False),
            ),
            # Serves the admin's search by dedup key over finished jobs too (the unique
            # constraint below covers active jobs only).
            models.Index(
                fields=["dedup_key"],
                name="taskengine_job_dedup_idx",
                condition=Q(dedup_key__isnull=False),
            ),
        ]
        constraints = [
            # Dedup is enforced here, not by a check-then-insert race.
            models.UniqueConstraint(
                fields=["dedup_key"],
                # Jobs without a key stay out of the index: nothing to maintain for them.
                condition=Q(dedup_key__isnull=False, status__in=["queued", "running", "paused"]),
                name="taskengine_job_active_dedup_key",
            ),
            models.CheckConstraint(
                condition=Q(status__in=[s.value for s in JobStatus]),
                name="taskengine_job_status_valid",
            ),
        ]

    #: Set by enqueue: False when an active job with the same dedup key was returned instead.
    created: bool = True

    def __str__(self) -> str:
        return f"Job {self.pk} {self.task_name} [{self.status}]"

    @property
    def reserved(self) -> bool:
        """Queued and claimed ahead by a worker (``worker_id``): it starts when one of that
        worker's threads is free, unless a pause or an operator takes it back first."""
        return self.status == JobStatus.QUEUED and self.token is not None

    @property
    def is_finished(self) -> bool:
        return self.status in TERMINAL_STATUSES

    @property
    def duration(self) -> float | None:
        """Seconds the last attempt ran, once the job has finished."""
        if self.started_at and self.finished_at:
            return (self.finished_at - self.started_at).total_seconds()
        return None

    def wait(self, timeout: float | None = 30.0, poll_interval: float = 0.5) -> Job:
        """Block until this job is finished (succeeded, failed or cancelled); return it refreshed.

        Polls the database, starting at 5 ms and backing off to ``poll_interval``. Raises
        :class:`JobTimeoutError` if the job is not finished after ``timeout`` seconds
        (``None`` waits forever). Call it outside a transaction, or it cannot see the worker's
        commits.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        delay = 0.005
        while True:
            self.refresh_from_db()
            if self.is_finished:
                return self
            if deadline is not None and time.monotonic() >= deadline:
                raise JobTimeoutError(
                    f"Job {self.pk} ({self.task_name}) is still {self.status} after "
                    f"{timeout} s; is a worker running for queue {self.queue!r}?"
                )
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            time.sleep(delay if remaining is None else min(delay, remaining))
            delay = min(delay * 2, poll_interval)


class Attempt(models.Model):
    """One execution of a job by one worker, written when the attempt ends."""

    id = models.BigAutoField(primary_key=True)
    # No index of its own: taskengine_attempt_job_idx (job, number) serves lookups by job.
    job = models.ForeignKey(
        Job, on_delete=models.CASCADE, related_name="attempt_set", db_index=False
    )
    number = models.IntegerField()
    worker_id = models.UUIDField(null=True, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(default=timezone.now)
    outcome = models.CharField(max_length=16, choices=AttemptOutcome.choices)
    error = models.TextField(blank=True, default="")
    traceback = models.TextField(blank=True, default="")

    class Meta:
        db_table = "taskengine_attempt"
        ordering = ["job", "number", "id"]
        indexes = [models.Index(fields=["job", "number"], name="taskengine_attempt_job_idx")]

    def __str__(self) -> str:
        return f"Attempt {self.number} of job {self.job_id}: {self.outcome}"

    @property
    def duration(self) -> float | None:
        if self.started_at and self.finished_at:
            return (self.finished_at - self.started_at).total_seconds()
        return None


class RateWindow(models.Model):
    """The recent starts of one rate-limited scope (a queue's or a task type's): what makes a
    rate limit a sliding window. Written by the flow claim, under its lock."""

    scope = models.CharField(max_length=FLOW_KEY_MAX, primary_key=True)
    #: [time, starts] entries, one per claim that started jobs (close ones merged into the
    #: later: see django_taskengine/core/flow.py), seconds since the epoch by the database's
    #: clock, the oldest first.
    starts = models.JSONField(default=list)

    class Meta:
        db_table = "taskengine_rate_window"

    def __str__(self) -> str:
        return self.scope


class Worker(models.Model):
    """A worker process, as it reports itself through heartbeats."""

    id = models.UUIDField(primary_key=True)
    hostname = models.CharField(max_length=255)
    pid = models.IntegerField()
    queues = models.JSONField(default=list)
    concurrency = models.IntegerField(default=1)
    started_at = models.DateTimeField(default=timezone.now)
    last_heartbeat_at = models.DateTimeField(default=timezone.now)
    stopped_at = models.DateTimeField(null=True, blank=True)
    jobs_succeeded = models.BigIntegerField(default=0)
    jobs_failed = models.BigIntegerField(default=0)

    class Meta:
        db_table = "taskengine_worker"
        ordering = ["-started_at"]

    def __str__(self) -> str:
        return f"Worker {self.hostname}:{self.pid} ({self.id})"


class Overview(Queue):
    """The admin's overview page. A proxy model (no table of its own) only so that the page is
    listed on the admin index next to queues, jobs and workers."""

    class Meta:
        proxy = True
        verbose_name = "overview"
        verbose_name_plural = "overview"
