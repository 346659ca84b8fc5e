"""Storage through the Django ORM, for SQLite (development, demos, unit tests) and others.

Same tables and state machine as PostgreSQL, on one machine. There are no advisory locks and
no NOTIFY: a claim is one ``UPDATE … WHERE id IN (SELECT … LIMIT n)`` statement, which SQLite
serializes with its write lock; a running job carries a lease (``lease_expires_at``) that its
worker's heartbeats renew, and a job whose lease lapsed is rescued; idle workers poll. Not for
production: use PostgreSQL there.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import Sequence
from typing import Any

from django.db import IntegrityError, connections, transaction
from django.db.models import F, Q, Subquery
from django.utils import timezone

from ..conf import taskengine_settings
from ..core.lifecycle import ORPHAN_ERROR
from ..models import (
    ACTIVE_STATUSES,
    Attempt,
    AttemptOutcome,
    Job,
    JobStatus,
    Pause,
    PauseScope,
    Queue,
    Worker,
)
from ..serialization import to_json
from .base import (
    ClaimedJob,
    Outcome,
    RescuedJob,
    StateWrite,
    Store,
    WorkerInfo,
    WorkerSession,
)


class GenericStore(Store):
    vendor = "generic"

    def __init__(self, alias: str) -> None:
        super().__init__(alias)
        self._known_queues: set[str] = set()

    def enqueue(
        self,
        *,
        task_name: str,
        queue: str,
        priority: int,
        run_after: dt.datetime | None,
        dedup_key: str | None,
        max_attempts: int,
        retry_backoff: float,
        timeout: float | None,
        calls: list[tuple[Sequence[Any], dict[str, Any]]],
    ) -> list[Job]:
        if not calls:
            return []
        now = timezone.now()

        def build(args: Sequence[Any], kwargs: dict[str, Any]) -> Job:
            return Job(
                task_name=task_name,
                queue=queue,
                # As read back from JSON: lists for tuples, copies of the caller's objects.
                args=json.loads(to_json(args)),
                kwargs=json.loads(to_json(kwargs)),
                priority=priority,
                run_after=run_after or now,
                dedup_key=dedup_key,
                max_attempts=max_attempts,
                retry_backoff=retry_backoff,
                timeout=timeout,
                created_at=now,
            )

        with transaction.atomic(using=self.alias):
            if queue not in self._known_queues:
                Queue.objects.using(self.alias).get_or_create(name=queue)
                transaction.on_commit(lambda: self._known_queues.add(queue), using=self.alias)
            if dedup_key is None:
                return Job.objects.using(self.alias).bulk_create([build(*call) for call in calls])
            job = self._create_deduplicated(build(*calls[0]))
            if len(calls) == 1:
                return [job]
            duplicate = Job.objects.using(self.alias).get(pk=job.pk)
            duplicate.created = False
            return [job] + [duplicate] * (len(calls) - 1)

    def _create_deduplicated(self, job: Job) -> Job:
        for _ in range(10):
            try:
                with transaction.atomic(using=self.alias):
                    job.save(using=self.alias, force_insert=True)
                return job
            except IntegrityError:
                existing = (
                    Job.objects.using(self.alias)
                    .filter(dedup_key=job.dedup_key, status__in=ACTIVE_STATUSES)
                    .first()
                )
                if existing is not None:
                    existing.created = False
                    return existing
        raise RuntimeError(f"could not enqueue {job.task_name} with dedup_key {job.dedup_key!r}")

    def finish_atomic(self, outcome: Outcome, worker_id: uuid.UUID) -> bool:
        updated = (
            Job.objects.using(self.alias)
            .filter(id=outcome.job_id, token=outcome.token, status=JobStatus.RUNNING)
            .update(
                status=JobStatus.SUCCEEDED,
                result=json.loads(outcome.result_json or "null"),
                error="",
                traceback="",
                finished_at=outcome.finished_at,
                worker_id=None,
                token=None,
                lease_expires_at=None,
                stop_requested="",
            )
        )
        if updated:
            Attempt.objects.using(self.alias).create(
                job_id=outcome.job_id,
                number=outcome.attempt,
                worker_id=worker_id,
                started_at=outcome.started_at,
                finished_at=outcome.finished_at,
                outcome=AttemptOutcome.SUCCEEDED,
            )
        return bool(updated)

    def open_session(self, worker: WorkerInfo) -> GenericWorkerSession:
        return GenericWorkerSession(self, worker)


class GenericWorkerSession(WorkerSession):
    uses_leases = True

    def __init__(self, store: GenericStore, worker: WorkerInfo) -> None:
        self.store = store
        self.alias = store.alias
        self.worker = worker
        connections[self.alias].ensure_connection()

    def _jobs(self) -> Any:
        return Job.objects.using(self.alias)

    def register(self) -> None:
        now = timezone.now()
        Worker.objects.using(self.alias).update_or_create(
            id=self.worker.id,
            defaults={
                "hostname": self.worker.hostname,
                "pid": self.worker.pid,
                "queues": self.worker.queues,
                "concurrency": self.worker.concurrency,
                "last_heartbeat_at": now,
                "stopped_at": None,
            },
            create_defaults={
                "hostname": self.worker.hostname,
                "pid": self.worker.pid,
                "queues": self.worker.queues,
                "concurrency": self.worker.concurrency,
                "started_at": now,
                "last_heartbeat_at": now,
            },
        )

    def claim(self, limit: int) -> list[ClaimedJob]:
        now = timezone.now()
        token = uuid.uuid4()
        paused = Queue.objects.using(self.alias).filter(
            Q(paused=True), Q(paused_until__isnull=True) | Q(paused_until__gt=now)
        )
        candidates = self._jobs().filter(status=JobStatus.QUEUED, run_after__lte=now)
        if self.worker.queues:
            candidates = candidates.filter(queue__in=self.worker.queues)
        pauses = Pause.objects.using(self.alias).filter(
            Q(paused_until__isnull=True) | Q(paused_until__gt=now)
        )
        if pauses.filter(scope=PauseScope.ENGINE).exists():
            return []
        candidates = (
            candidates.exclude(queue__in=Subquery(paused.values("name")))
            .exclude(task_name__in=Subquery(pauses.filter(scope=PauseScope.TASK).values("target")))
            .order_by("-priority", "run_after", "id")
            .values("id")[:limit]
        )
        count = (
            self._jobs()
            .filter(id__in=Subquery(candidates), status=JobStatus.QUEUED)
            .update(
                status=JobStatus.RUNNING,
                attempts=F("attempts") + 1,
                started_at=now,
                finished_at=None,
                worker_id=self.worker.id,
                token=token,
                lease_expires_at=now + dt.timedelta(seconds=taskengine_settings.LEASE_SECONDS),
            )
        )
        if not count:
            return []
        rows = (
            self._jobs()
            .filter(token=token, status=JobStatus.RUNNING)
            .order_by("-priority", "run_after", "id")
        )
        return [
            ClaimedJob(
                id=job.id,
                task_name=job.task_name,
                queue=job.queue,
                args=job.args,
                kwargs=job.kwargs,
                attempt=job.attempts,
                max_attempts=job.max_attempts,
                retry_backoff=job.retry_backoff,
                timeout=job.timeout,
                token=token,
                started_at=job.started_at or now,
                checkpoint=job.checkpoint,
            )
            for job in rows
        ]

    def finish(self, outcomes: list[Outcome], unlock: list[int]) -> set[int]:
        applied: set[int] = set()
        if not outcomes:
            return applied
        now = timezone.now()
        with transaction.atomic(using=self.alias):
            existing = set(
                self._jobs()
                .filter(id__in=[o.job_id for o in outcomes])
                .values_list("id", flat=True)
            )
            attempts = []
            for o in outcomes:
                if o.job_id not in existing:
                    continue
                changes: dict[str, Any] = {
                    "status": o.status,
                    "result": json.loads(o.result_json) if o.result_json is not None else None,
                    "error": o.error,
                    "traceback": o.traceback,
                    "finished_at": o.finished_at
                    if o.status in ("succeeded", "failed", "cancelled")
                    else None,
                    "worker_id": None,
                    "token": None,
                    "lease_expires_at": None,
                    "stop_requested": "",
                }
                if o.status == JobStatus.QUEUED:
                    changes["run_after"] = now + dt.timedelta(seconds=o.retry_delay)
                if o.refund_attempt:
                    changes["attempts"] = F("attempts") - 1
                updated = (
                    self._jobs()
                    .filter(id=o.job_id, token=o.token, status=JobStatus.RUNNING)
                    .update(**changes)
                )
                if updated:
                    applied.add(o.job_id)
                attempts.append(
                    Attempt(
                        job_id=o.job_id,
                        number=o.attempt,
                        worker_id=self.worker.id,
                        started_at=o.started_at,
                        finished_at=o.finished_at,
                        outcome=o.outcome if updated else AttemptOutcome.SUPERSEDED,
                        error=o.error,
                        traceback=o.traceback,
                    )
                )
            Attempt.objects.using(self.alias).bulk_create(attempts)
        return applied

    def save_state(self, writes: list[StateWrite]) -> dict[int, str]:
        applied: dict[int, str] = {}
        with transaction.atomic(using=self.alias):
            for w in writes:
                changes: dict[str, Any] = {}
                if w.checkpoint_json is not None:
                    changes["checkpoint"] = json.loads(w.checkpoint_json)
                if w.progress_current is not None:
                    changes["progress_current"] = w.progress_current
                if w.progress_total is not None:
                    changes["progress_total"] = w.progress_total
                jobs = self._jobs().filter(id=w.job_id, token=w.token, status=JobStatus.RUNNING)
                if changes:
                    if not jobs.update(**changes):
                        continue
                stop = jobs.values_list("stop_requested", flat=True).first()
                if stop is not None:
                    applied[w.job_id] = stop
        return applied

    def heartbeat(self, running: list[ClaimedJob], succeeded: int, failed: int) -> dict[int, str]:
        now = timezone.now()
        with transaction.atomic(using=self.alias):
            updated = (
                Worker.objects.using(self.alias)
                .filter(id=self.worker.id)
                .update(last_heartbeat_at=now, jobs_succeeded=succeeded, jobs_failed=failed)
            )
            if running:
                self._jobs().filter(
                    id__in=[j.id for j in running],
                    token__in={j.token for j in running},
                    status=JobStatus.RUNNING,
                ).update(
                    lease_expires_at=now + dt.timedelta(seconds=taskengine_settings.LEASE_SECONDS)
                )
        if not updated:
            self.register()
        return dict(
            self._jobs()
            .filter(worker_id=self.worker.id, status=JobStatus.RUNNING)
            .exclude(stop_requested="")
            .values_list("id", "stop_requested")
        )

    def rescue(self, park: list[str]) -> list[RescuedJob]:
        now = timezone.now()
        rescued = []
        orphans = list(
            self._jobs()
            .filter(status=JobStatus.RUNNING, lease_expires_at__lt=now)
            .values(
                "id", "token", "task_name", "attempts", "max_attempts", "worker_id", "started_at"
            )
        )
        for orphan in orphans:
            give_up = orphan["attempts"] >= orphan["max_attempts"] or orphan["task_name"] in set(
                park
            )
            status = JobStatus.FAILED if give_up else JobStatus.QUEUED
            with transaction.atomic(using=self.alias):
                updated = (
                    self._jobs()
                    .filter(
                        id=orphan["id"],
                        token=orphan["token"],
                        status=JobStatus.RUNNING,
                        lease_expires_at__lt=now,
                    )
                    .update(
                        status=status,
                        finished_at=now if give_up else None,
                        error=ORPHAN_ERROR,
                        traceback="",
                        run_after=now,
                        worker_id=None,
                        token=None,
                        lease_expires_at=None,
                        stop_requested="",
                    )
                )
                if updated:
                    Attempt.objects.using(self.alias).create(
                        job_id=orphan["id"],
                        number=orphan["attempts"],
                        worker_id=orphan["worker_id"],
                        started_at=orphan["started_at"],
                        finished_at=now,
                        outcome=AttemptOutcome.ORPHANED,
                        error=ORPHAN_ERROR,
                    )
                    rescued.append(
                        RescuedJob(orphan["id"], orphan["task_name"], orphan["attempts"], status)
                    )
        return rescued

    def relock(self, running: list[ClaimedJob]) -> None:
        # Requeue jobs claimed by a statement whose reply was lost with the connection.
        self._jobs().filter(worker_id=self.worker.id, status=JobStatus.RUNNING).exclude(
            id__in=[j.id for j in running]
        ).update(
            status=JobStatus.QUEUED,
            attempts=F("attempts") - 1,
            worker_id=None,
            token=None,
            started_at=None,
            lease_expires_at=None,
        )
        self.heartbeat(running, 0, 0)

    def wait_fileno(self) -> int | None:
        return None

    def drain_notifications(self) -> bool:
        return False

    def unregister(self) -> None:
        now = timezone.now()
        Worker.objects.using(self.alias).filter(id=self.worker.id).update(
            stopped_at=now, last_heartbeat_at=now
        )

    def close(self) -> None:
        connections[self.alias].close()

    def is_usable(self) -> bool:
        connection = connections[self.alias]
        return connection.connection is not None and connection.is_usable()
