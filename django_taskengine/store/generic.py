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
import time
import uuid
from collections.abc import Sequence
from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone

from ..core.dedup import (
    CREATED,
    DEBOUNCE,
    FOUND,
    SKIPPED,
    THROTTLE,
    THROTTLED,
    UNTIL_START,
)
from ..core.flow import QUEUE
from ..job_indexes import DEDUP_HOLDER
from ..models import Job, Queue
from ..serialization import to_json
from .base import (
    NewJobs,
    Outcome,
    Store,
    WorkerInfo,
    key_holder,
    per_call,
)
from .generic_flow import queue_limited
from .generic_session import GenericWorkerSession
from .orm_writes import send_event, write_outcomes

#: Seconds an enqueue relies on what it read of a queue's limits (see _queue_limited).
LIMITS_KNOWN_FOR = 1.0


class GenericStore(Store):
    vendor = "generic"

    def __init__(self, alias: str) -> None:
        super().__init__(alias)
        self._known_queues: set[str] = set()
        #: Whether each queue has a limit in force, and until when (time.monotonic()) that
        #: answer is used without asking the database again.
        self._limited: dict[str, tuple[bool, float]] = {}

    def enqueue(self, new: NewJobs) -> list[Job]:
        calls, queue = new.calls, new.queue
        if not calls:
            return []
        now = timezone.now()
        options = new.options()
        options["run_after"] = new.run_after or now

        def build(args: Sequence[Any], kwargs: dict[str, Any]) -> Job:
            # As read back from JSON: lists for tuples, copies of the caller's objects.
            args, kwargs = json.loads(to_json(args)), json.loads(to_json(kwargs))
            return Job(args=args, kwargs=kwargs, created_at=now, **options)

        with transaction.atomic(using=self.alias):
            if queue not in self._known_queues:
                Queue.objects.using(self.alias).get_or_create(name=queue)
                transaction.on_commit(lambda: self._known_queues.add(queue), using=self.alias)
            if new.flow_key is None and self._queue_limited(queue):
                options["flow_key"] = QUEUE + queue
            if new.dedup_key is None:
                return Job.objects.using(self.alias).bulk_create([build(*call) for call in calls])
            if new.dedup_mode in UNTIL_START:
                return self._replace(new, build(*calls[-1]))
            if new.dedup_mode == THROTTLE:
                held = (
                    Job.objects.using(self.alias)
                    .filter(
                        dedup_key=new.dedup_key,
                        created_at__gt=now - dt.timedelta(seconds=new.dedup_window or 0),
                    )
                    .order_by("-created_at", "-id")
                    .first()
                )
                if held is not None:
                    return per_call(held, THROTTLED, THROTTLE, len(calls))
            job = self._create_deduplicated(build(*calls[0]))
            first = CREATED if job.created else FOUND[new.dedup_mode]
            return per_call(job, first, new.dedup_mode, len(calls))

    def _replace(self, new: NewJobs, job: Job) -> list[Job]:
        """A replace or debounce (core/dedup.py): the key's waiting holder, if it never started,
        gets the last call's arguments, priority and run_after (taken back from a worker that
        reserved it); or the job is added. SQLite serializes writers, so nothing comes between
        the read and the write."""
        jobs = Job.objects.using(self.alias)
        if new.dedup_mode == DEBOUNCE:
            job.run_after = timezone.now() + dt.timedelta(seconds=new.dedup_window or 0)
        for _ in range(10):
            holder = key_holder(self.alias, new.dedup_key)
            if holder is None:
                added = self._create_deduplicated(job)
                if added is job:
                    return per_call(job, CREATED, new.dedup_mode, len(new.calls))
                continue  # another enqueue added it first: replace it
            if holder.dedup_mode not in UNTIL_START:
                return per_call(holder, SKIPPED, new.dedup_mode, len(new.calls))
            changes = {
                "args": job.args,
                "kwargs": job.kwargs,
                "priority": job.priority,
                "run_after": job.run_after,
                "worker_id": None,
                "token": None,
                "lease_expires_at": None,
            }
            if jobs.filter(DEDUP_HOLDER, pk=holder.pk).update(**changes):
                holder = jobs.get(pk=holder.pk)
                return per_call(holder, FOUND[new.dedup_mode], new.dedup_mode, len(new.calls))
        raise RuntimeError(f"could not enqueue {job.task_name} with dedup_key {job.dedup_key!r}")

    def _queue_limited(self, queue: str) -> bool:
        """Whether ``queue`` has a limit (its jobs get its lane), as the database said at most
        LIMITS_KNOWN_FOR seconds ago: an enqueue does not read the queue table every time. A
        job enqueued meanwhile without its lane is given it by the workers (adopt_strays)."""
        now = time.monotonic()
        known = self._limited.get(queue)
        if known is None or now >= known[1]:
            known = (queue_limited(self.alias, queue), now + LIMITS_KNOWN_FOR)
            self._limited[queue] = known
        return known[0]

    def wake_workers(self, queues: Sequence[str]) -> None:
        # A change of limits wakes workers: this process asks again at its next enqueue.
        for queue in queues:
            self._limited.pop(queue, None)

    def _create_deduplicated(self, job: Job) -> Job:
        for _ in range(10):
            try:
                with transaction.atomic(using=self.alias):
                    job.save(using=self.alias, force_insert=True)
                return job
            except IntegrityError:
                existing = key_holder(self.alias, job.dedup_key)
                if existing is not None:
                    existing.created = False
                    return existing
        raise RuntimeError(f"could not enqueue {job.task_name} with dedup_key {job.dedup_key!r}")

    def send_event(self, name: str, payload_json: str) -> int:
        return send_event(self.alias, name, payload_json)

    def finish_atomic(self, outcome: Outcome, worker_id: uuid.UUID) -> bool:
        jobs = Job.objects.using(self.alias)
        # What the task returned stands whatever was asked meanwhile: not fenced on the stop
        # request (see finish_atomic in sql/postgres.sql).
        applied = write_outcomes(jobs, self.alias, [outcome], worker_id, fence_stop=False)
        return outcome.job_id in applied

    def open_session(self, worker: WorkerInfo) -> GenericWorkerSession:
        return GenericWorkerSession(self, worker)
