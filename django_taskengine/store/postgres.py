"""PostgreSQL storage: one-statement ``SKIP LOCKED`` claims, advisory-lock liveness, NOTIFY.

Each worker process keeps one direct (session) connection. Claiming a job takes a
session-level advisory lock ``(ADVISORY_LOCK_NAMESPACE, low 32 bits of job id)`` on it, in the
claiming statement itself. If the process dies, PostgreSQL ends the session and frees its locks;
a rescuer then requeues running jobs whose lock is free *and* whose worker has missed its
heartbeat for ``RESCUE_GRACE`` seconds. The heartbeat condition keeps a database restart (which
drops every lock at once) from requeueing jobs of live workers: they reconnect, take their locks
again and heartbeat within the grace. Job ids that differ by a multiple of 2**32 share a lock
key; that only makes a rescue wait for the other job, never run one twice.

Session locks and LISTEN need a direct connection: point workers at PostgreSQL itself (or a
session-mode pooler). Enqueueing works through a transaction-mode pooler.
"""

from __future__ import annotations

import datetime as dt
import json
import threading
import uuid
from collections.abc import Sequence
from typing import Any

from django.conf import settings
from django.db import connections, transaction
from django.db.models.base import ModelState
from django.utils import timezone
from django.utils.asyncio import async_unsafe

from .. import finish_waiters
from ..conf import taskengine_settings
from ..core.dedup import SKIP, SKIPPED
from ..models import Job
from ..serialization import to_json
from .base import (
    NewJobs,
    Outcome,
    Store,
    WorkerInfo,
    key_holder,
)
from .orm_dependencies import resolve
from .postgres_dedup import enqueue_by_mode
from .postgres_notices import FINISHED_CHANNEL, send_event
from .postgres_session import START_FENCE_LOCK_ID, PostgresWorkerSession, engine_lock_key
from .postgres_waiter import PostgresFinishWatch
from .sql import query

_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)

#: A freshly enqueued job's field values, before the ones each enqueue sets.
_JOB_TEMPLATE: dict[str, Any] = {
    **dict.fromkeys(field.attname for field in Job._meta.concrete_fields),
    "status": "queued",
    "attempts": 0,
    "error": "",
    "traceback": "",
    "stop_requested": "",
    "blocked": False,
}
#: Columns a returned job leaves to be read on first use (Django's deferred fields).
_DEFERRED = ("waits", "notify_finish", "waiting_for")


class PostgresStore(Store):
    vendor = "postgresql"

    def __init__(self, alias: str) -> None:
        super().__init__(alias)
        self._known_queues: set[str] = set()
        self._kept = threading.local()
        finish_waiters.register(alias, PostgresFinishWatch(alias))

    def _cursor(self) -> Any:
        """Django's cursor on the alias's connection, kept from one enqueue to the next.

        Making a cursor is a tenth of a single enqueue's time (Django's checks and wrappers).
        The kept one is reused only on the same thread, for the same open session, while the
        connection logs queries (or not) and reads times in the same zone as when it was made:
        statements still go through
        Django's cursor wrapper, so execute wrappers, query logging and error translation
        apply as usual.
        """
        connection = connections[self.alias]
        raw = connection.connection
        # A cursor reads timestamps in the connection's time zone as of its making.
        made_for = (connection.queries_logged, connection.timezone_name)
        kept = getattr(self._kept, "cursor", None)
        if (
            kept is not None
            and kept[0] is connection
            and kept[1] is raw
            and kept[2] == made_for
            and raw is not None
            and not raw.closed
        ):
            # What Django's cursor() does first (and what test runners hook to block access).
            connection.close_if_health_check_failed()
            connection.ensure_connection()
            if connection.connection is raw:
                return kept[3]
        cursor = connection.cursor()
        if not connection.allow_thread_sharing:
            self._kept.cursor = (connection, connection.connection, made_for, cursor)
        return cursor

    @async_unsafe
    def enqueue(self, new: NewJobs) -> list[Job]:
        calls, run_after = new.calls, new.run_after
        if not calls:
            return []
        channel = taskengine_settings.NOTIFY_CHANNEL
        loads = json.loads
        cursor = self._cursor()
        self._ensure_queue(cursor, new.queue)
        if new.dedup_mode != SKIP:
            return enqueue_by_mode(cursor, self.alias, new)
        if new.dedup_key is None and len(calls) == 1:
            # The most common call: one job, through the function of migration 0009. Its uid
            # is made here, so the returned job holds it without reading it back.
            args_json, kwargs_json = to_json(calls[0][0]), to_json(calls[0][1])
            uid = uuid.uuid4()
            cursor.execute(
                query("enqueue_one"),
                (
                    new.task_name,
                    new.queue,
                    args_json,
                    kwargs_json,
                    new.priority,
                    run_after,
                    new.max_attempts,
                    new.retry_backoff,
                    new.timeout,
                    channel,
                    uid,
                    new.group_key,
                    new.sequence_key,
                    new.flow_key,
                ),
            )
            job_id, created_us = cursor.fetchone()[0]
            created_at = _EPOCH + dt.timedelta(microseconds=created_us)
            if not settings.USE_TZ:  # as Django reads timestamps without time zone support
                created_at = timezone.make_naive(created_at, timezone.get_default_timezone())
            inserted = [(job_id, created_at if run_after is None else run_after, created_at, uid)]
            stored = [(loads(args_json), loads(kwargs_json))]
        else:
            # Every call's [args, kwargs] in one JSON parameter: one string to encode and
            # quote, and one to parse back for the returned jobs, however many there are.
            calls_json = to_json(calls)
            params = new.options()
            params["channel"] = channel
            inserted = self._insert_many(cursor, calls_json, len(calls), params)
            if inserted and isinstance(inserted[0], Job):
                return inserted  # an active job already held the dedup key
            stored = loads(calls_json)
        template: dict[str, Any] = dict(_JOB_TEMPLATE)
        template.update(new.options())
        del template["run_after"]  # each row's own, from `inserted`
        # Deferred: a job the caller gave no lane may have its queue's, which the database knows.
        del template["flow_key"]
        # Deferred too: a job just enqueued has no waits, no watcher and no event to wait for,
        # and setting them (a new list per job) made a bulk enqueue 7-23% slower.
        for deferred in _DEFERRED:
            del template[deferred]
        jobs = self._jobs(template, stored, inserted)
        if len(jobs) < len(calls):
            # With a dedup key, the first call was inserted and the rest repeat its key.
            duplicate = self._jobs(template, loads(to_json(calls[:1])), inserted[:1])[0]
            duplicate.created, duplicate.dedup_outcome = False, SKIPPED
            jobs.extend([duplicate] * (len(calls) - len(jobs)))
        return jobs

    def _insert_many(
        self, cursor: Any, calls_json: str, count: int, params: dict[str, Any]
    ) -> list[Any]:
        """Insert the calls in one statement: their ``(id, run_after, created_at, None)`` (the
        uids are not read back), or, when an active job already holds the dedup key, that job
        ``count`` times."""
        params["calls"] = calls_json
        dedup_key = params["dedup_key"]
        for _ in range(10):
            cursor.execute(query("enqueue_many"), params)
            # The rows share run_after and created_at, so only the ids come back per row.
            ids, job_run_after, created_at, _ = cursor.fetchone()
            if ids or dedup_key is None:
                return [(job_id, job_run_after, created_at, None) for job_id in ids or ()]
            # Conflict: an active job holds the key. Return it, unless it finished meanwhile.
            existing = key_holder(self.alias, dedup_key)
            if existing is not None:
                existing.created, existing.dedup_outcome = False, SKIPPED
                return [existing] * count
        raise RuntimeError(f"could not enqueue {params['task_name']} with dedup_key {dedup_key!r}")

    def _jobs(
        self,
        template: dict[str, Any],
        stored: list[Any],
        inserted: list[tuple[Any, ...]],
    ) -> list[Job]:
        """Job instances for inserted rows (``stored``: their args and kwargs as read back from
        JSON), built without a query."""
        jobs = []
        new_job = Job.__new__
        # With a dedup key, fewer rows than calls come back: the rest are added by the caller.
        for (args, kwargs), row in zip(stored, inserted, strict=False):
            values = dict(template)
            values["id"], values["run_after"], values["created_at"], values["uid"] = row
            if values["uid"] is None:
                # Deferred, as by .defer("uid"): Django reads it from the row when first used.
                del values["uid"]
            values["args"], values["kwargs"] = args, kwargs
            # What Model.from_db ends up with, without __init__'s per-field work and signals
            # (a bulk enqueue of 1,000 jobs spent a quarter of its time there).
            job = new_job(Job)
            job.__dict__.update(values)
            state = ModelState()
            state.adding = False
            state.db = self.alias
            job._state = state
            jobs.append(job)
        return jobs

    def _ensure_queue(self, cursor: Any, queue: str) -> None:
        if queue in self._known_queues:
            return
        cursor.execute(query("ensure_queue"), [queue])
        # Remember it only once it is committed: a rolled-back enqueue must not hide the row.
        transaction.on_commit(lambda: self._known_queues.add(queue), using=self.alias)

    def wake_workers(self, queues: Sequence[str]) -> None:
        if not queues:
            return
        with connections[self.alias].cursor() as cursor:
            cursor.execute(
                query("notify_queues"),
                {"channel": taskengine_settings.NOTIFY_CHANNEL, "queues": sorted(set(queues))},
            )

    def send_event(self, name: str, payload_json: str) -> int:
        with transaction.atomic(using=self.alias), connections[self.alias].cursor() as cursor:
            event_id, queues = send_event(cursor, name, payload_json)
            if queues:
                self.wake_workers(queues)
        return event_id

    def wait_for_starts(self) -> None:
        with transaction.atomic(using=self.alias), connections[self.alias].cursor() as cursor:
            cursor.execute(query("pause_fence"), {"fence": engine_lock_key(START_FENCE_LOCK_ID)})

    def finish_atomic(self, outcome: Outcome, worker_id: uuid.UUID) -> bool:
        with connections[self.alias].cursor() as cursor:
            cursor.execute(
                query("finish_atomic"),
                {
                    "status": outcome.status,
                    "result": outcome.result_json,
                    "error": outcome.error,
                    "job_finished": outcome.job_finished_at,
                    "id": outcome.job_id,
                    "token": outcome.token,
                    "number": outcome.attempt,
                    "worker": worker_id,
                    "started": outcome.started_at,
                    "finished": outcome.finished_at,
                    "outcome": outcome.outcome,
                    "finished_channel": FINISHED_CHANNEL,
                },
            )
            applied, _, followed = cursor.fetchone()
        if followed:
            # Once the task's transaction commits: its dependents see the job succeeded.
            transaction.on_commit(
                lambda: resolve(self.alias, self.wake_workers, finished=[outcome.job_id]),
                using=self.alias,
            )
        return bool(applied)

    def open_session(self, worker: WorkerInfo) -> PostgresWorkerSession:
        return PostgresWorkerSession(self, worker)
