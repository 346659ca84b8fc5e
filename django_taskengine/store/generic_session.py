"""A worker session through the Django ORM (SQLite and others): serialized claims, leases
that heartbeats renew, rescue of jobs whose lease lapsed, polling; see :mod:`.generic`."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import Collection
from typing import Any

from django.db import connections, transaction
from django.db.models import F, Subquery
from django.utils import timezone

from ..conf import taskengine_settings
from ..core import lifecycle
from ..core.ownership import RELEASED
from ..models import Job, JobStatus, Worker
from .base import (
    ClaimedJob,
    Outcome,
    RescuedJob,
    StateWrite,
    Store,
    WorkerInfo,
    WorkerSession,
    parked_jobs,
)
from .flow_claim import FlowClaimer, FlowClaims
from .generic_flow import GenericFlowSource, claimed_jobs, limited_queues, unpaused
from .orm_writes import wake_if_sent, write_outcomes

#: Seconds the leases of a stopping worker's last running jobs last: longer than the process
#: takes to exit after marking itself stopped.
STOPPED_WORKER_LEASE = 2.0


class GenericWorkerSession(FlowClaims, WorkerSession):
    uses_leases = True

    def __init__(self, store: Store, worker: WorkerInfo) -> None:
        self.store = store
        self.alias = store.alias
        self.worker = worker
        connections[self.alias].ensure_connection()
        self.flow = FlowClaimer()
        self._flow_source = GenericFlowSource(
            self.alias, worker=worker.id, queues=list(worker.queues)
        )

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

    def _claim_plain(
        self, limit: int, *, free: int, start: int, park: Collection[str], scan: bool = True
    ) -> list[ClaimedJob]:
        """Jobs not under flow control, nor of a queue or task type with a limit."""
        if not scan:
            return []
        now = timezone.now()
        token = uuid.uuid4()
        candidates = self._jobs().filter(
            status=JobStatus.QUEUED, token__isnull=True, flow_key__isnull=True, run_after__lte=now
        )
        if self.worker.queues:
            candidates = candidates.filter(queue__in=self.worker.queues)
        candidates = unpaused(self.alias, candidates, now)
        if candidates is None:
            return []
        candidates = candidates.exclude(task_name__in=self.flow_tasks()).exclude(
            queue__in=Subquery(limited_queues(self.alias))
        )
        if not candidates.exists():
            # A read first: an idle worker's poll does not take SQLite's write lock, which
            # every other writer (heartbeats, outcomes, task code) would wait for.
            return []
        # One statement reserves them all (the database serializes claims); the ones to run
        # now start next, through the same fenced start as later ones.
        count = (
            self._jobs()
            .filter(
                id__in=Subquery(
                    candidates.order_by("-priority", "run_after", "id").values("id")[:limit]
                ),
                status=JobStatus.QUEUED,
                token__isnull=True,
            )
            .update(
                worker_id=self.worker.id,
                token=token,
                lease_expires_at=now + dt.timedelta(seconds=taskengine_settings.LEASE_SECONDS),
            )
        )
        if not count:
            return []
        jobs = claimed_jobs(self._jobs().filter(status=JobStatus.QUEUED), token, None)
        to_start = [
            job
            for n, job in enumerate(jobs)
            if n < free or (n < start and job.task_name not in park)
        ]
        self._start(to_start, now)
        return jobs

    def start(self, jobs: list[ClaimedJob]) -> list[ClaimedJob]:
        return self._start(jobs, timezone.now())

    def _start(self, jobs: list[ClaimedJob], now: dt.datetime) -> list[ClaimedJob]:
        if not jobs:
            return []
        ids = [job.id for job in jobs]
        mine = self._jobs().filter(id__in=ids, token__in={job.token for job in jobs})
        with transaction.atomic(using=self.alias):
            startable = unpaused(self.alias, mine.filter(status=JobStatus.QUEUED), now)
            go = [] if startable is None else list(startable.values_list("id", flat=True))
            self._jobs().filter(id__in=go).update(
                status=JobStatus.RUNNING,
                attempts=F("attempts") + 1,
                started_at=now,
                finished_at=None,
                lease_expires_at=now + dt.timedelta(seconds=taskengine_settings.LEASE_SECONDS),
            )
            mine.filter(status=JobStatus.QUEUED).update(**RELEASED)
            started = dict(mine.filter(status=JobStatus.RUNNING).values_list("id", "attempts"))
        for job in jobs:
            if job.id in started:
                job.attempt = started[job.id]
                job.started_at = job.started_at or now
        return [job for job in jobs if job.id in started]

    def release(self, jobs: list[ClaimedJob]) -> None:
        if jobs:
            self._jobs().filter(
                id__in=[job.id for job in jobs],
                token__in={job.token for job in jobs},
                status=JobStatus.QUEUED,
            ).update(**RELEASED)

    def finish(self, outcomes: list[Outcome], unlock: list[int]) -> set[int]:
        self.flow.finished(o.job_id for o in outcomes)
        applied = write_outcomes(self._jobs(), self.alias, outcomes, self.worker.id)
        wake_if_sent(self.alias, parked_jobs(outcomes, applied))
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
                # Reserved jobs (queued, with this worker's token) keep their lease too.
                self._jobs().filter(
                    id__in=[j.id for j in running],
                    token__in={j.token for j in running},
                    status__in=(JobStatus.QUEUED, JobStatus.RUNNING),
                ).update(
                    lease_expires_at=now + dt.timedelta(seconds=taskengine_settings.LEASE_SECONDS)
                )
        if not updated:
            self.register()
        self.control_requested = (
            Worker.objects.using(self.alias)
            .filter(id=self.worker.id)
            .values_list("control_requested", flat=True)
            .first()
            or ""
        )
        return dict(
            self._jobs()
            .filter(worker_id=self.worker.id, status=JobStatus.RUNNING)
            .exclude(stop_requested="")
            .values_list("id", "stop_requested")
        )

    def rescue(self, park: list[str]) -> list[RescuedJob]:
        """Jobs whose lease lapsed: their worker stopped renewing it (it died)."""
        parked = set(park)
        now = timezone.now()
        # Jobs a dead worker had only reserved go back untouched: they never started.
        lapsed = self._jobs().filter(
            status=JobStatus.QUEUED, token__isnull=False, lease_expires_at__lt=now
        )
        released = [
            RescuedJob(job_id, task_name, attempts, JobStatus.QUEUED, reserved=True)
            for job_id, task_name, attempts in lapsed.values_list("id", "task_name", "attempts")
        ]
        lapsed.filter(id__in=[job.id for job in released]).update(**RELEASED)
        orphans = [
            (_orphan(row), row["worker_id"])
            for row in self._jobs()
            .filter(status=JobStatus.RUNNING, lease_expires_at__lt=now)
            .values(
                "id",
                "token",
                "task_name",
                "queue",
                "attempts",
                "max_attempts",
                "retry_backoff",
                "timeout",
                "worker_id",
                "started_at",
                "stop_requested",
            )
        ]
        # The rescue carries out a pending stop request.
        outcomes = [
            lifecycle.apply_stop_request(
                lifecycle.rescued(job, worker_id=worker, park=job.task_name in parked, now=now),
                job.stop_requested,
            )
            for job, worker in orphans
        ]
        # A job that finished (or was rescued by another worker) meanwhile is left alone, and
        # one whose stop request changed meanwhile waits for the next round.
        applied = write_outcomes(
            self._jobs(),
            self.alias,
            outcomes,
            self.worker.id,
            record_fenced=False,
            lease_expires_at__lt=now,
        )
        return released + [
            RescuedJob(o.job_id, job.task_name, o.attempt, o.status)
            for (job, _), o in zip(orphans, outcomes, strict=True)
            if o.job_id in applied
        ]

    def relock(self, owned: list[ClaimedJob]) -> None:
        # Requeue jobs claimed by a statement whose reply was lost with the connection.
        unknown = (
            self._jobs().filter(worker_id=self.worker.id).exclude(id__in=[j.id for j in owned])
        )
        unknown.filter(status=JobStatus.QUEUED).update(**RELEASED)
        self._jobs().filter(worker_id=self.worker.id, status=JobStatus.RUNNING).exclude(
            id__in=[j.id for j in owned]
        ).update(
            status=JobStatus.QUEUED,
            attempts=F("attempts") - 1,
            worker_id=None,
            token=None,
            started_at=None,
            lease_expires_at=None,
        )
        self.heartbeat(owned, 0, 0)

    def wait_fileno(self) -> int | None:
        return None

    def drain_notifications(self) -> bool:
        return False

    def unregister(self) -> None:
        now = timezone.now()
        with transaction.atomic(using=self.alias):
            Worker.objects.using(self.alias).filter(id=self.worker.id).update(
                stopped_at=now, last_heartbeat_at=now
            )
            # Jobs still running here are attempts past their timeout, which end with the
            # process, right after this: their leases lapse then, for a prompt rescue.
            self._jobs().filter(worker_id=self.worker.id, status=JobStatus.RUNNING).update(
                lease_expires_at=now + dt.timedelta(seconds=STOPPED_WORKER_LEASE)
            )

    def close(self) -> None:
        connections[self.alias].close()

    def is_usable(self) -> bool:
        connection = connections[self.alias]
        return connection.connection is not None and connection.is_usable()


def _orphan(row: dict[str, Any]) -> ClaimedJob:
    """An orphaned job as the attempt its dead worker was running."""
    return ClaimedJob(
        id=row["id"],
        task_name=row["task_name"],
        queue=row["queue"],
        args=None,
        kwargs=None,
        attempt=row["attempts"],
        max_attempts=row["max_attempts"],
        retry_backoff=row["retry_backoff"],
        timeout=row["timeout"],
        token=row["token"],
        started_at=row["started_at"],
        stop_requested=row["stop_requested"],
    )
