"""The job table and its companions: queues, attempts and workers, as plain Django models; the
hot path (claim, complete, rescue) reaches them through :mod:`django_taskengine.store`'s SQL."""

from __future__ import annotations

import uuid

from django.db import models
from django.db.models import Q
from django.utils import timezone

from . import finish_waiters
from .audit_trail import AuditEntry
from .conf import taskengine_settings
from .core.dedup import CREATED, MODE_MAX, SKIP
from .core.limits import (
    DEDUP_KEY_MAX,
    EVENT_NAME_MAX,
    FLOW_KEY_MAX,
    GROUP_KEY_MAX,
    QUEUE_NAME_MAX,
    SEQUENCE_KEY_MAX,
    STEP_NAME_MAX,
    TASK_NAME_MAX,
)
from .core.statuses import ACTIVE_STATUSES, TERMINAL_STATUSES, AttemptOutcome, JobStatus
from .dependency_models import Dependency, Workflow
from .event_models import Event
from .failure_models import Failures
from .job_indexes import AT_REST, DEDUP_HOLDER, LANE_AND_WAIT_INDEXES
from .queue_models import Pause, PauseScope, Queue
from .schedule_models import CatchUp, PeriodicTick, Schedule
from .stats_models import MinuteStats

__all__ = [
    "ACTIVE_STATUSES",
    "TERMINAL_STATUSES",
    "Attempt",
    "Dependency",
    "Event",
    "Failures",
    "FlowQuota",
    "AttemptOutcome",
    "AuditEntry",
    "CatchUp",
    "Job",
    "JobStatus",
    "JobTimeoutError",
    "MinuteStats",
    "Overview",
    "Pause",
    "PauseScope",
    "PeriodicTick",
    "Queue",
    "RateWindow",
    "Schedule",
    "Worker",
    "Workflow",
]


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
    #: How the key was asked for (core/dedup.py): "replace" and "debounce" hold it until start.
    dedup_mode = models.CharField(max_length=MODE_MAX, default=SKIP, db_default=SKIP)
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
    #: The durable waits (``ctx.sleep``) done, in call order: each returns at once on a rerun.
    waits = models.JSONField(default=list, blank=True, db_default=[])
    #: Set by ``job.wait()`` on PostgreSQL: the worker that ends the job's attempt says so.
    notify_finish = models.BooleanField(default=False, db_default=False)
    #: Waiting for its dependencies (``.using(after=…)``, core/dependencies.py): due never.
    blocked = models.BooleanField(default=False, db_default=False)
    #: The workflow whose step it is (django_taskengine/workflows.py), and the step's name.
    workflow_id = models.BigIntegerField(null=True, blank=True)
    step = models.CharField(max_length=STEP_NAME_MAX, null=True, blank=True)  # noqa: DJ001
    #: The event a parked job waits for (``ctx.wait_for_event``): ``send_event`` makes it due.
    waiting_for = models.CharField(max_length=EVENT_NAME_MAX, null=True, blank=True)  # noqa: DJ001
    progress_current = models.BigIntegerField(null=True, blank=True)
    progress_total = models.BigIntegerField(null=True, blank=True)
    #: Set by an operator to ask a running attempt to stop at its next checkpoint.
    stop_requested = models.CharField(max_length=16, blank=True, default="")
    #: Random, set at enqueue and renewed by an operator's retry: what ``ctx.idempotency_key``
    #: is made of, so it never repeats across databases, a recreated database, or a retry.
    #: Not unique-indexed: a random UUID does not collide, and an index would slow enqueue.
    uid = models.UUIDField(default=uuid.uuid4, editable=False)
    #: Flow control (core/flow.py): the job's group and sequence, and its lane, the most
    #: specific limited scope it belongs to (only the flow claim takes it); NULL for most jobs.
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
            *LANE_AND_WAIT_INDEXES,
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
            # Failed jobs by the time they ended: the failures page reads the newest ones of a
            # window (a few percent of finished jobs; through the finished index it had to
            # step over every job that succeeded in between).
            models.Index(
                fields=["finished_at", "id"],
                name="taskengine_job_failed_idx",
                condition=Q(status="failed"),
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
                condition=DEDUP_HOLDER,
                name="taskengine_job_active_dedup_key",
            ),
            models.CheckConstraint(
                condition=Q(status__in=[s.value for s in JobStatus]),
                name="taskengine_job_status_valid",
            ),
        ]

    #: Set by enqueue: False when an active job with the same dedup key was returned instead,
    #: and what the enqueue did (core/dedup.py): created, skipped, replaced, debounced, throttled.
    created: bool = True
    dedup_outcome: str = CREATED

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

        On PostgreSQL the worker that ends the job's attempt wakes it at once (and it looks
        again every ``poll_interval`` seconds, for the ends no worker writes: an operator's
        cancel); elsewhere it polls, from 5 ms up to ``poll_interval``. Raises
        :class:`JobTimeoutError` if the job is not finished after ``timeout`` seconds (``None``
        waits forever). Call it outside a transaction, or it cannot see the worker's commits.
        """

        def finished() -> bool:
            self.refresh_from_db()
            return self.is_finished

        alias = self._state.db or taskengine_settings.DATABASE
        if not finish_waiters.wait_until(
            finished, alias=alias, job_id=self.pk, timeout=timeout, poll_interval=poll_interval
        ):
            raise JobTimeoutError(
                f"Job {self.pk} ({self.task_name}) is still {self.status} after "
                f"{timeout} s; is a worker running for queue {self.queue!r}?"
            )
        return self


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
        indexes = [
            models.Index(fields=["job", "number"], name="taskengine_attempt_job_idx"),
            # A worker's history on its admin page (migration 0030 says what it costs).
            models.Index(fields=["worker_id", "id"], name="taskengine_attempt_worker_idx"),
        ]

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


class FlowQuota(models.Model):
    """Starts a worker may make in a queue's lane without the flow lock, until ``until``:
    granted by the flow claim while the queue's limits are far from binding
    (docs/guide/flow-control.md, "Quotas"). Until then the flow claims count ``starts`` jobs
    running in the queue for it, and the queue's rate window holds its starts at ``until``.
    Written by the flow claim, under its lock (PostgreSQL only)."""

    worker_id = models.UUIDField()
    #: The queue's scope, ``q:`` and its name.
    scope = models.CharField(max_length=FLOW_KEY_MAX)
    starts = models.IntegerField()
    #: The end of the quota: seconds since the epoch, by the database's clock.
    until = models.FloatField()

    class Meta:
        db_table = "taskengine_flow_quota"
        constraints = [
            models.UniqueConstraint(
                fields=["worker_id", "scope"], name="taskengine_flow_quota_worker_scope"
            )
        ]

    def __str__(self) -> str:
        return f"{self.scope} ({self.worker_id})"


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
    #: Jobs whose attempt in this process succeeded, and jobs that ended failed here (attempts
    #: that failed and were retried are not counted).
    jobs_succeeded = models.BigIntegerField(default=0)
    jobs_failed = models.BigIntegerField(default=0)
    #: An operator's request to this process, carried out at its next heartbeat:
    #: "drain", "stop" or "kill" (see django_taskengine/operations/workers.py); "" for none.
    control_requested = models.CharField(max_length=8, blank=True, default="")
    control_requested_at = models.DateTimeField(null=True, blank=True)
    control_requested_by = models.CharField(max_length=150, blank=True, default="")

    class Meta:
        db_table = "taskengine_worker"
        ordering = ["-started_at"]
        permissions = [("control_worker", "Can drain and stop worker processes")]

    def __str__(self) -> str:
        return f"Worker {self.hostname}:{self.pid} ({self.id})"


class Overview(Queue):
    """The admin's overview page. A proxy model (no table of its own) only so that the page is
    listed on the admin index next to queues, jobs and workers."""

    class Meta:
        proxy = True
        verbose_name = "overview"
        verbose_name_plural = "overview"
