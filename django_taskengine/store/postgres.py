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

import psycopg
from django.conf import settings
from django.db import connections, transaction
from django.db.models.base import ModelState
from django.utils import timezone
from django.utils.asyncio import async_unsafe

from ..conf import taskengine_settings
from ..core.lifecycle import ORPHAN_ERROR
from ..models import ACTIVE_STATUSES, Job
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

_ACTIVE = "('queued', 'running', 'paused')"
_LOCK_KEY = "({id})::bit(32)::int4"

ENQUEUE_SQL = f"""
WITH ins AS (
    INSERT INTO taskengine_job (
        task_name, queue, args, kwargs, status, priority, run_after, dedup_key, attempts,
        max_attempts, retry_backoff, timeout, error, traceback, created_at, stop_requested)
    SELECT %(task_name)s, %(queue)s, t.call -> 0, t.call -> 1, 'queued', %(priority)s,
        COALESCE(%(run_after)s, now()), %(dedup_key)s, 0, %(max_attempts)s, %(retry_backoff)s,
        %(timeout)s, '', '', now(), ''
    FROM jsonb_array_elements(%(calls)s::jsonb) WITH ORDINALITY AS t(call, n)
    ORDER BY t.n
    ON CONFLICT (dedup_key) WHERE dedup_key IS NOT NULL AND status IN {_ACTIVE} DO NOTHING
    RETURNING id, run_after, created_at
)
SELECT ARRAY(SELECT id FROM ins ORDER BY id),
    (SELECT run_after FROM ins LIMIT 1), (SELECT created_at FROM ins LIMIT 1),
    (SELECT count(*) FROM (SELECT pg_notify(%(channel)s, %(queue)s)) AS n
     WHERE EXISTS (SELECT 1 FROM ins WHERE ins.run_after <= now()))
"""

# The common case, one job without a dedup key: a function (migration 0008) whose INSERT and
# NOTIFY are planned once per session. It returns {id, created_at in µs since the epoch}.
ENQUEUE_ONE_SQL = "SELECT taskengine_enqueue_job(%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)

CLAIM_SQL = f"""
WITH picked AS (
    SELECT j.id FROM taskengine_job j
    WHERE j.status = 'queued' AND j.run_after <= now()
      AND (%(all_queues)s OR j.queue = ANY(%(queues)s))
      AND NOT EXISTS (
          SELECT 1 FROM taskengine_queue q
          WHERE q.name = j.queue AND q.paused AND (q.paused_until IS NULL OR q.paused_until > now()))
      AND NOT EXISTS (
          SELECT 1 FROM taskengine_pause p
          WHERE (p.scope = 'engine' OR (p.scope = 'task' AND p.target = j.task_name))
            AND (p.paused_until IS NULL OR p.paused_until > now()))
    ORDER BY j.priority DESC, j.run_after, j.id
    LIMIT %(limit)s
    FOR UPDATE OF j SKIP LOCKED
)
UPDATE taskengine_job j
SET status = 'running', attempts = j.attempts + 1, started_at = now(), finished_at = NULL,
    worker_id = %(worker)s, token = gen_random_uuid(), lease_expires_at = NULL
WHERE j.id = ANY(ARRAY(SELECT id FROM picked))
RETURNING j.id, j.task_name, j.queue, j.args, j.kwargs, j.attempts, j.max_attempts,
    j.retry_backoff, j.timeout, j.token, j.started_at, j.checkpoint,
    pg_try_advisory_lock(%(ns)s, {_LOCK_KEY.format(id="j.id")}), j.priority, j.run_after
"""

FINISH_SQL = f"""
WITH o AS (
    SELECT * FROM unnest(
        %(ids)b::bigint[], %(tokens)b::uuid[], %(statuses)b::text[], %(outcomes)b::text[],
        %(results)b::text[], %(errors)b::text[], %(tracebacks)b::text[], %(delays)b::float8[],
        %(refunds)b::bool[], %(numbers)b::int[], %(started)b::timestamptz[],
        %(finished)b::timestamptz[])
    AS o(id, token, status, outcome, result, error, traceback, delay, refund, number,
         started, finished)
),
upd AS (
    UPDATE taskengine_job j SET
        status = o.status,
        result = o.result::jsonb,
        error = o.error,
        traceback = o.traceback,
        finished_at = CASE WHEN o.status IN ('succeeded', 'failed', 'cancelled')
                           THEN o.finished END,
        run_after = CASE WHEN o.status = 'queued'
                         THEN now() + o.delay * interval '1 second' ELSE j.run_after END,
        attempts = CASE WHEN o.refund THEN j.attempts - 1 ELSE j.attempts END,
        worker_id = NULL, token = NULL, lease_expires_at = NULL, stop_requested = ''
    FROM o
    WHERE j.id = o.id AND j.token = o.token AND j.status = 'running'
    RETURNING j.id
),
att AS (
    INSERT INTO taskengine_attempt (job_id, number, worker_id, started_at, finished_at, outcome,
                                    error, traceback)
    SELECT o.id, o.number, %(worker)s, o.started, o.finished,
        CASE WHEN upd.id IS NULL THEN 'superseded' ELSE o.outcome END, o.error, o.traceback
    FROM o LEFT JOIN upd ON upd.id = o.id
    WHERE upd.id IS NOT NULL OR EXISTS (SELECT 1 FROM taskengine_job x WHERE x.id = o.id)
),
unlocked AS (
    SELECT pg_advisory_unlock(%(ns)s, {_LOCK_KEY.format(id="u.id")})
    FROM unnest(%(unlock)b::bigint[]) AS u(id)
)
SELECT ARRAY(SELECT id FROM upd), (SELECT count(*) FROM unlocked)
"""

FINISH_ONE_SQL = """
WITH upd AS (
    UPDATE taskengine_job SET status = 'succeeded', result = %(result)s::jsonb, error = '',
        traceback = '', finished_at = %(finished)s, worker_id = NULL, token = NULL,
        lease_expires_at = NULL, stop_requested = ''
    WHERE id = %(id)s AND token = %(token)s AND status = 'running'
    RETURNING id
),
att AS (
    INSERT INTO taskengine_attempt (job_id, number, worker_id, started_at, finished_at, outcome,
                                    error, traceback)
    SELECT id, %(number)s, %(worker)s, %(started)s, %(finished)s, 'succeeded', '', '' FROM upd
)
SELECT count(*) FROM upd
"""

RESCUE_SQL = """
WITH guard AS (
    SELECT pg_try_advisory_xact_lock(%(rescuer_key)s) AS ok
),
held AS (
    SELECT l.objid::bigint AS k FROM pg_locks l
    WHERE l.locktype = 'advisory' AND l.classid = %(ns)s::oid AND l.objsubid = 2 AND l.granted
      AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
),
orphan AS (
    SELECT j.id, j.worker_id, j.started_at FROM taskengine_job j
    LEFT JOIN taskengine_worker w ON w.id = j.worker_id
    WHERE (SELECT ok FROM guard) AND j.status = 'running'
      AND (w.id IS NULL OR w.stopped_at IS NOT NULL
           OR w.last_heartbeat_at < now() - %(grace)s * interval '1 second')
      AND (j.id & 4294967295) NOT IN (SELECT k FROM held)
    FOR UPDATE OF j SKIP LOCKED
),
upd AS (
    UPDATE taskengine_job j SET
        status = CASE WHEN j.attempts >= j.max_attempts OR j.task_name = ANY(%(park)s)
                      THEN 'failed' ELSE 'queued' END,
        finished_at = CASE WHEN j.attempts >= j.max_attempts OR j.task_name = ANY(%(park)s)
                           THEN now() END,
        error = %(error)s, traceback = '', run_after = now(),
        worker_id = NULL, token = NULL, lease_expires_at = NULL, stop_requested = ''
    FROM orphan WHERE j.id = orphan.id
    RETURNING j.id, j.task_name, j.attempts, j.status, j.queue, orphan.worker_id,
        orphan.started_at
),
att AS (
    INSERT INTO taskengine_attempt (job_id, number, worker_id, started_at, finished_at, outcome,
                                    error, traceback)
    SELECT id, attempts, worker_id, started_at, now(), 'orphaned', %(error)s, '' FROM upd
)
SELECT id, task_name, attempts, status,
    (SELECT count(*) FROM (SELECT pg_notify(%(channel)s, q.queue)
                           FROM (SELECT DISTINCT queue FROM upd WHERE status = 'queued') AS q) AS n)
FROM upd
"""

#: A freshly enqueued job's field values, before the ones each enqueue sets.
_JOB_TEMPLATE: dict[str, Any] = {
    **dict.fromkeys(field.attname for field in Job._meta.concrete_fields),
    "status": "queued",
    "attempts": 0,
    "error": "",
    "traceback": "",
    "stop_requested": "",
}


class PostgresStore(Store):
    vendor = "postgresql"

    def __init__(self, alias: str) -> None:
        super().__init__(alias)
        self._known_queues: set[str] = set()
        self._kept = threading.local()

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
        channel = taskengine_settings.NOTIFY_CHANNEL
        loads = json.loads
        cursor = self._cursor()
        self._ensure_queue(cursor, queue)
        if dedup_key is None and len(calls) == 1:
            # The most common call: one job, through the function of migration 0008.
            args_json, kwargs_json = to_json(calls[0][0]), to_json(calls[0][1])
            cursor.execute(
                ENQUEUE_ONE_SQL,
                (
                    task_name,
                    queue,
                    args_json,
                    kwargs_json,
                    priority,
                    run_after,
                    max_attempts,
                    retry_backoff,
                    timeout,
                    channel,
                ),
            )
            job_id, created_us = cursor.fetchone()[0]
            created_at = _EPOCH + dt.timedelta(microseconds=created_us)
            if not settings.USE_TZ:  # as Django reads timestamps without time zone support
                created_at = timezone.make_naive(created_at, timezone.get_default_timezone())
            inserted = [(job_id, created_at if run_after is None else run_after, created_at)]
            stored = [(loads(args_json), loads(kwargs_json))]
        else:
            # Every call's [args, kwargs] in one JSON parameter: one string to encode and
            # quote, and one to parse back for the returned jobs, however many there are.
            calls_json = to_json(calls)
            inserted = self._insert_many(
                cursor,
                calls_json,
                len(calls),
                {
                    "task_name": task_name,
                    "queue": queue,
                    "priority": priority,
                    "run_after": run_after,
                    "dedup_key": dedup_key,
                    "max_attempts": max_attempts,
                    "retry_backoff": retry_backoff,
                    "timeout": timeout,
                    "channel": channel,
                },
            )
            if inserted and isinstance(inserted[0], Job):
                return inserted  # an active job already held the dedup key
            stored = loads(calls_json)
        template: dict[str, Any] = dict(_JOB_TEMPLATE)
        template.update(
            task_name=task_name,
            queue=queue,
            priority=priority,
            dedup_key=dedup_key,
            max_attempts=max_attempts,
            retry_backoff=retry_backoff,
            timeout=timeout,
        )
        jobs = self._jobs(template, stored, inserted)
        if len(jobs) < len(calls):
            # With a dedup key, the first call was inserted and the rest repeat its key.
            duplicate = self._jobs(template, loads(to_json(calls[:1])), inserted[:1])[0]
            duplicate.created = False
            jobs.extend([duplicate] * (len(calls) - len(jobs)))
        return jobs

    def _insert_many(
        self, cursor: Any, calls_json: str, count: int, params: dict[str, Any]
    ) -> list[Any]:
        """Insert the calls in one statement: their ``(id, run_after, created_at)``, or, when an
        active job already holds the dedup key, that job ``count`` times."""
        params["calls"] = calls_json
        dedup_key = params["dedup_key"]
        for _ in range(10):
            cursor.execute(ENQUEUE_SQL, params)
            # The rows share run_after and created_at, so only the ids come back per row.
            ids, job_run_after, created_at, _ = cursor.fetchone()
            if ids or dedup_key is None:
                return [(job_id, job_run_after, created_at) for job_id in ids or ()]
            # Conflict: an active job holds the key. Return it, unless it finished meanwhile.
            existing = (
                Job.objects.using(self.alias)
                .filter(dedup_key=dedup_key, status__in=ACTIVE_STATUSES)
                .first()
            )
            if existing is not None:
                existing.created = False
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
        for (args, kwargs), row in zip(stored, inserted):
            values = dict(template)
            values["id"], values["run_after"], values["created_at"] = row[0], row[1], row[2]
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
        cursor.execute(
            "INSERT INTO taskengine_queue (name, paused, paused_by, pause_reason, created_at) "
            "VALUES (%s, false, '', '', now()) ON CONFLICT (name) DO NOTHING",
            [queue],
        )
        # Remember it only once it is committed: a rolled-back enqueue must not hide the row.
        transaction.on_commit(lambda: self._known_queues.add(queue), using=self.alias)

    def finish_atomic(self, outcome: Outcome, worker_id: uuid.UUID) -> bool:
        with connections[self.alias].cursor() as cursor:
            cursor.execute(
                FINISH_ONE_SQL,
                {
                    "result": outcome.result_json,
                    "finished": outcome.finished_at,
                    "id": outcome.job_id,
                    "token": outcome.token,
                    "number": outcome.attempt,
                    "worker": worker_id,
                    "started": outcome.started_at,
                },
            )
            return bool(cursor.fetchone()[0])

    def open_session(self, worker: WorkerInfo) -> PostgresWorkerSession:
        return PostgresWorkerSession(self, worker)


class PostgresWorkerSession(WorkerSession):
    def __init__(self, store: PostgresStore, worker: WorkerInfo) -> None:
        self.store = store
        self.worker = worker
        wrapper = connections[store.alias]
        params = dict(wrapper.get_connection_params())
        params.pop("cursor_factory", None)
        params.pop("pool", None)
        # Our own adapters: psycopg's defaults (Django's context leaves jsonb undecoded).
        params.pop("context", None)
        params["autocommit"] = True
        # A direct connection of our own: prepared statements save re-planning every claim.
        params["prepare_threshold"] = 5
        params.setdefault("application_name", f"taskengine-worker {worker.hostname}:{worker.pid}")
        self.conn: psycopg.Connection[Any] = psycopg.connect(**params)
        self.ns = taskengine_settings.ADVISORY_LOCK_NAMESPACE
        self.conn.execute(f'LISTEN "{taskengine_settings.NOTIFY_CHANNEL}"')
        # The claim and finish statements are planned once: a custom plan per call costs as much
        # as running them, and the generic plan is the index plan.
        self.conn.execute("SET plan_cache_mode = force_generic_plan")
        self.queues = list(worker.queues)

    def register(self) -> None:
        self.conn.execute(
            """
            INSERT INTO taskengine_worker (id, hostname, pid, queues, concurrency, started_at,
                                           last_heartbeat_at, stopped_at, jobs_succeeded,
                                           jobs_failed)
            VALUES (%s, %s, %s, %s::jsonb, %s, now(), now(), NULL, 0, 0)
            ON CONFLICT (id) DO UPDATE SET last_heartbeat_at = now(), stopped_at = NULL
            """,
            [
                self.worker.id,
                self.worker.hostname,
                self.worker.pid,
                json.dumps(self.worker.queues),
                self.worker.concurrency,
            ],
        )

    def claim(self, limit: int) -> list[ClaimedJob]:
        rows = self.conn.execute(
            CLAIM_SQL,
            {
                "queues": self.queues,
                "all_queues": not self.queues,
                "limit": limit,
                "worker": self.worker.id,
                "ns": self.ns,
            },
        ).fetchall()
        # RETURNING has no order: run them in claim order.
        rows.sort(key=lambda row: (-row[13], row[14], row[0]))
        return [
            ClaimedJob(
                id=row[0],
                task_name=row[1],
                queue=row[2],
                args=row[3],
                kwargs=row[4],
                attempt=row[5],
                max_attempts=row[6],
                retry_backoff=row[7],
                timeout=row[8],
                token=row[9],
                started_at=row[10],
                checkpoint=row[11],
                locked=row[12],
            )
            for row in rows
        ]

    def finish(self, outcomes: list[Outcome], unlock: list[int]) -> set[int]:
        if not outcomes and not unlock:
            return set()
        row = self.conn.execute(
            FINISH_SQL,
            {
                "ids": [o.job_id for o in outcomes],
                "tokens": [o.token for o in outcomes],
                "statuses": [o.status for o in outcomes],
                "outcomes": [o.outcome for o in outcomes],
                "results": [o.result_json for o in outcomes],
                "errors": [o.error for o in outcomes],
                "tracebacks": [o.traceback for o in outcomes],
                "delays": [o.retry_delay for o in outcomes],
                "refunds": [o.refund_attempt for o in outcomes],
                "numbers": [o.attempt for o in outcomes],
                "started": [o.started_at for o in outcomes],
                "finished": [o.finished_at for o in outcomes],
                "worker": self.worker.id,
                "ns": self.ns,
                "unlock": unlock,
            },
        ).fetchone()
        return set(row[0] or ())

    def heartbeat(self, running: list[ClaimedJob], succeeded: int, failed: int) -> dict[int, str]:
        row = self.conn.execute(
            """
            WITH w AS (
                UPDATE taskengine_worker SET last_heartbeat_at = now(), jobs_succeeded = %(ok)s,
                    jobs_failed = %(failed)s
                WHERE id = %(worker)s RETURNING id
            )
            SELECT (SELECT count(*) FROM w),
                ARRAY(SELECT j.id FROM taskengine_job j
                      WHERE j.worker_id = %(worker)s AND j.status = 'running'
                        AND j.stop_requested <> '' ORDER BY j.id),
                ARRAY(SELECT j.stop_requested FROM taskengine_job j
                      WHERE j.worker_id = %(worker)s AND j.status = 'running'
                        AND j.stop_requested <> '' ORDER BY j.id)
            """,
            {"ok": succeeded, "failed": failed, "worker": self.worker.id},
        ).fetchone()
        if row[0] == 0:
            self.register()
        return dict(zip(row[1], row[2]))

    def save_state(self, writes: list[StateWrite]) -> dict[int, str]:
        if not writes:
            return {}
        rows = self.conn.execute(
            """
            UPDATE taskengine_job j SET
                checkpoint = CASE WHEN w.has_checkpoint THEN w.checkpoint::jsonb
                                  ELSE j.checkpoint END,
                progress_current = COALESCE(w.current, j.progress_current),
                progress_total = COALESCE(w.total, j.progress_total)
            FROM unnest(%(ids)s::bigint[], %(tokens)s::uuid[], %(has)s::bool[],
                        %(checkpoints)s::text[], %(currents)s::bigint[], %(totals)s::bigint[])
                AS w(id, token, has_checkpoint, checkpoint, current, total)
            WHERE j.id = w.id AND j.token = w.token AND j.status = 'running'
            RETURNING j.id, j.stop_requested
            """,
            {
                "ids": [w.job_id for w in writes],
                "tokens": [w.token for w in writes],
                "has": [w.checkpoint_json is not None for w in writes],
                "checkpoints": [w.checkpoint_json for w in writes],
                "currents": [w.progress_current for w in writes],
                "totals": [w.progress_total for w in writes],
            },
        ).fetchall()
        return {row[0]: row[1] for row in rows}

    def rescue(self, park: list[str]) -> list[RescuedJob]:
        rows = self.conn.execute(
            RESCUE_SQL,
            {
                "rescuer_key": (self.ns << 32) | 1,
                "ns": self.ns,
                "grace": taskengine_settings.RESCUE_GRACE,
                "park": park,
                "error": ORPHAN_ERROR,
                "channel": taskengine_settings.NOTIFY_CHANNEL,
            },
        ).fetchall()
        return [RescuedJob(id=r[0], task_name=r[1], attempt=r[2], status=r[3]) for r in rows]

    def relock(self, running: list[ClaimedJob]) -> None:
        # A claim whose reply was lost with the connection left jobs running under this worker
        # that it does not know about; nobody would rescue them while it heartbeats.
        self.conn.execute(
            "UPDATE taskengine_job SET status = 'queued', attempts = attempts - 1, "
            "worker_id = NULL, token = NULL, started_at = NULL "
            "WHERE worker_id = %s AND status = 'running' AND NOT (id = ANY(%s))",
            [self.worker.id, [j.id for j in running]],
        )
        if not running:
            return
        rows = self.conn.execute(
            f"""
            SELECT j.id, pg_try_advisory_lock(%(ns)s, {_LOCK_KEY.format(id="j.id")})
            FROM taskengine_job j
            JOIN unnest(%(ids)s::bigint[], %(tokens)s::uuid[]) AS r(id, token)
              ON j.id = r.id AND j.token = r.token
            WHERE j.status = 'running'
            """,
            {"ns": self.ns, "ids": [j.id for j in running], "tokens": [j.token for j in running]},
        ).fetchall()
        relocked = {row[0] for row in rows if row[1]}
        for job in running:
            job.locked = job.id in relocked

    def wait_fileno(self) -> int | None:
        return self.conn.fileno()

    def drain_notifications(self) -> bool:
        return sum(1 for _ in self.conn.notifies(timeout=0)) > 0

    def unregister(self) -> None:
        self.conn.execute(
            "UPDATE taskengine_worker SET stopped_at = now(), last_heartbeat_at = now() "
            "WHERE id = %s",
            [self.worker.id],
        )

    def close(self) -> None:
        try:
            self.conn.close()
        except Exception:  # noqa: BLE001 - closing a broken connection must not raise
            pass

    def is_usable(self) -> bool:
        if self.conn.closed or self.conn.broken:
            return False
        try:
            self.conn.execute("SELECT 1")
        except psycopg.Error:
            return False
        return True
