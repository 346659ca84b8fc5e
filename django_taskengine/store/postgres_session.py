"""A PostgreSQL worker session: one worker process's own direct connection.

Claims (``SKIP LOCKED``, advisory lock per job), batched fenced writes of outcomes, heartbeats,
checkpoints, rescue of orphans and LISTEN wake-ups; see :mod:`.postgres` for the protocol.
"""

from __future__ import annotations

import json
import time
from collections.abc import Collection
from typing import Any, cast

import psycopg
import psycopg.sql

from ..conf import taskengine_settings
from ..core import lifecycle
from ..core.statuses import JobStatus
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
from .flow_source import FLOW_LOCK_ID, FLOW_NOTICE
from .postgres_claims import PostgresFlowSource, claimed_job, orphan_job, outcome_params
from .postgres_dependencies import decide_ready
from .postgres_notices import own_connection_params, wake_if_sent
from .sql import query

#: Low 32 bits of the engine's own advisory lock keys (single bigint keys whose high 32 bits are
#: ADVISORY_LOCK_NAMESPACE; retention's pruning lock is 0x7072): one rescuer at a time, and the
#: start fence a pause waits on (see the function taskengine_pauses_in_force).
RESCUER_LOCK_ID = 1
START_FENCE_LOCK_ID = 2


#: The claim's cursor that starts its scan at the head of the queue: before every job.
CLAIM_FROM_HEAD = (2**31 - 1, None, 0)
#: A claim scans the queue from its head while that is cheap: while one of the last two such
#: scans took at most this long (seconds). Then from its cursor, and from the head again
#: after FULL_SCAN_GAP (see PostgresWorkerSession.claim).
CHEAP_HEAD_SCAN = 0.02
#: The gap between scans from the head, in multiples of the last one's duration (so that they
#: take at most about 5% of the time spent claiming), and at most FULL_SCAN_GAP_MAX seconds:
#: how late a job that sorts before the cursor can be claimed while scans from the head are
#: slow.
FULL_SCAN_GAP = 20
FULL_SCAN_GAP_MAX = 5.0


#: One rescue in this many (the first included) also looks for the jobs of workers that have no
#: row (see select_orphans): a scan of every running job.
RESCUES_PER_SWEEP = 30


def claim_params(after: tuple[int, Any, int] = CLAIM_FROM_HEAD) -> dict[str, Any]:
    """The claim statement's cursor parameters (see claim_jobs in store/sql/postgres.sql)."""
    return {"after_priority": after[0], "after_run": after[1], "after_id": after[2]}


def engine_lock_key(lock_id: int) -> int:
    """The bigint advisory lock key of one of the engine's own locks."""
    return (taskengine_settings.ADVISORY_LOCK_NAMESPACE << 32) | lock_id


class PostgresWorkerSession(FlowClaims, WorkerSession):
    def __init__(self, store: Store, worker: WorkerInfo) -> None:
        self.store = store
        self.worker = worker
        params = own_connection_params(store.alias)
        # A direct connection of our own: prepared statements save re-planning every claim.
        params["prepare_threshold"] = 5
        params.setdefault("application_name", f"taskengine-worker {worker.hostname}:{worker.pid}")
        self.conn: psycopg.Connection[Any] = psycopg.connect(**params)
        self.ns = taskengine_settings.ADVISORY_LOCK_NAMESPACE
        channel = psycopg.sql.Identifier(taskengine_settings.NOTIFY_CHANNEL)
        self.conn.execute(psycopg.sql.SQL(query("listen")).format(channel=channel))
        self.conn.execute(query("plan_generic"))
        self.queues = list(worker.queues)
        # The claim's cursor: (priority, run_after, id) of the last job claimed; when claims
        # scan from the head of the queue again, and how long the last such scan took.
        self._after: tuple[int, Any, int] = CLAIM_FROM_HEAD
        self._head_scan_due = 0.0
        self._head_scan_took = 0.0
        self._rescues = 0
        #: Waiting jobs whose dependencies the last writes marked done (not yet decided for).
        self._followed: list[int] = []
        self.flow = FlowClaimer()
        self._flow_source = PostgresFlowSource(
            self.conn,
            worker=worker.id,
            queues=self.queues,
            ns=self.ns,
            lock_key=engine_lock_key(FLOW_LOCK_ID),
            fence_key=engine_lock_key(START_FENCE_LOCK_ID),
        )

    def register(self) -> None:
        info = self.worker
        self.conn.execute(
            query("register_worker"),
            [info.id, info.hostname, info.pid, json.dumps(info.queues), info.concurrency],
        )

    def _claim_plain(
        self, limit: int, *, free: int, start: int, park: Collection[str]
    ) -> list[ClaimedJob]:
        """Jobs not under flow control (see claim_jobs)."""
        params = {
            "queues": self.queues,
            "all_queues": not self.queues,
            "limit": limit,
            "free": free,
            "start": start,
            "park": list(park),
            "worker": self.worker.id,
            "ns": self.ns,
            "fence": engine_lock_key(START_FENCE_LOCK_ID),
            "flow_tasks": self.flow_tasks(),
        }
        delivered: list[ClaimedJob] = []
        deliveries = self.deliveries
        if deliveries is not None:
            taken = deliveries.take(limit)
            if taken:
                try:
                    delivered = self._claim_ids(params, [d.job_id for d in taken])
                except BaseException:
                    # Claimed or not (a reply lost with the connection: the reconnect's relock
                    # gives them back), they are claimed again from the deliveries after it.
                    deliveries.keep(taken)
                    raise
                deliveries.done(taken)
            if len(delivered) >= limit or not deliveries.should_scan():
                return delivered
            # The delivered ones came first: the scan adds to them.
            n = len(delivered)
            params |= {"limit": limit - n, "free": max(0, free - n), "start": max(0, start - n)}
        # A scan from the head steps over the dead index entries of every job claimed since
        # the last vacuum, or since a transaction began to hold the xmin horizon. While that
        # is slow, claims scan from the cursor, and from the head only every so often.
        began = time.monotonic()
        if began < self._head_scan_due:
            rows = self._claim_after(params, self._after)
        else:
            rows = self._claim_after(params, CLAIM_FROM_HEAD)
            took = time.monotonic() - began
            if min(took, self._head_scan_took) > CHEAP_HEAD_SCAN:
                self._head_scan_due = began + min(took * FULL_SCAN_GAP, FULL_SCAN_GAP_MAX)
            self._head_scan_took = took
        return delivered + [claimed_job(row) for row in rows]

    def _claim_ids(self, params: dict[str, Any], ids: list[int]) -> list[ClaimedJob]:
        """The jobs ``ids`` (delivered by the dispatch backend) that are claimable now."""
        rows = self.conn.execute(
            query("claim_ids"), params | {"ids": ids, "limit": min(params["limit"], len(ids))}
        ).fetchall()
        rows.sort(key=lambda row: (-row[13], row[14], row[0]))
        return [claimed_job(row) for row in rows]

    def _claim_after(self, params: dict[str, Any], after: tuple[int, Any, int]) -> list[Any]:
        rows = self.conn.execute(query("claim_jobs"), params | claim_params(after)).fetchall()
        # RETURNING has no order: run them in claim order.
        rows.sort(key=lambda row: (-row[13], row[14], row[0]))
        if rows:
            self._after = (rows[-1][13], rows[-1][14], rows[-1][0])
        return rows

    def start(self, jobs: list[ClaimedJob]) -> list[ClaimedJob]:
        return self._start_or_release(jobs, start=True, unlock=[j.id for j in jobs if j.locked])

    def release(self, jobs: list[ClaimedJob]) -> None:
        self._start_or_release(jobs, start=False, unlock=[j.id for j in jobs if j.locked])

    def _start_or_release(
        self, jobs: list[ClaimedJob], *, start: bool, unlock: list[int]
    ) -> list[ClaimedJob]:
        if not jobs:
            return []
        cursor = self.conn.execute(
            query("start_jobs"),
            {
                "ids": [j.id for j in jobs],
                "tokens": [j.token for j in jobs],
                "start": start,
                "unlock": unlock,
                "ns": self.ns,
                "fence": engine_lock_key(START_FENCE_LOCK_ID),
                "channel": taskengine_settings.NOTIFY_CHANNEL,
            },
        )
        # Exactly one row (a SELECT without FROM), which psycopg's Optional cannot know.
        row = cast("tuple[list[int], list[int], list[Any], int, int]", cursor.fetchone())
        started = {
            job_id: (attempt, started_at)
            for job_id, attempt, started_at in zip(row[0], row[1], row[2], strict=True)
        }
        for job in jobs:
            if job.id in started:
                job.attempt, job.started_at = started[job.id]
            elif job.id in unlock:
                job.locked = False
        return [job for job in jobs if job.id in started]

    def finish(self, outcomes: list[Outcome], unlock: list[int]) -> set[int]:
        if not outcomes and not unlock:
            return set()
        self.flow.finished(o.job_id for o in outcomes)
        applied = self._write(outcomes, unlock)
        wake_if_sent(self.conn, self.ns, parked_jobs(outcomes, applied))
        self._resolve_followed()
        return applied

    def _resolve_followed(self) -> None:
        """Once the outcomes are committed: decide for the waiting jobs whose last dependency
        they finished (store/postgres_dependencies.py)."""
        if self._followed:
            waiting, self._followed = self._followed, []
            decide_ready(self.conn, waiting)

    def _write(self, outcomes: list[Outcome], unlock: list[int]) -> set[int]:
        """Write outcomes as they were decided, each fenced by its token and stop request; the
        ids applied. An outcome fenced out only by a changed stop request gets the current
        one in ``stop_request_now``."""
        cursor = self.conn.execute(
            query("write_outcomes"), outcome_params(outcomes, self.worker.id, self.ns, unlock)
        )
        # Exactly one row (a SELECT without FROM), which psycopg's Optional cannot know.
        row = cast("tuple[list[int], int, list[int], list[str], int, list[int]]", cursor.fetchone())
        self._followed.extend(row[5] or ())
        current = dict(zip(row[2] or (), row[3] or (), strict=True))
        for o in outcomes:
            if o.job_id in current:
                o.stop_request_now = current[o.job_id]
        return set(row[0] or ())

    def heartbeat(self, running: list[ClaimedJob], succeeded: int, failed: int) -> dict[int, str]:
        cursor = self.conn.execute(
            query("heartbeat"),
            {
                "ok": succeeded,
                "failed": failed,
                "worker": self.worker.id,
                "ids": [job.id for job in running],
            },
        )
        # Exactly one row (a SELECT without FROM), which psycopg's Optional cannot know.
        row = cast("tuple[int, list[int], list[str], str | None]", cursor.fetchone())
        self.control_requested = row[3] or ""
        if row[0] == 0:
            self.register()
        return dict(zip(row[1], row[2], strict=True))

    def save_state(self, writes: list[StateWrite]) -> dict[int, str]:
        if not writes:
            return {}
        rows = self.conn.execute(
            query("save_state"),
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
        parked = set(park)
        with self.conn.transaction():
            rows = self.conn.execute(
                query("select_orphans"),
                {
                    "rescuer_key": engine_lock_key(RESCUER_LOCK_ID),
                    "ns": self.ns,
                    "grace": taskengine_settings.RESCUE_GRACE,
                    "everyone": self._rescues % RESCUES_PER_SWEEP == 0,
                },
            ).fetchall()
            self._rescues += 1
            if not rows:
                return []
            # The database's clock, as started_at's: a timeout is judged on one clock.
            now = rows[0][10]
            reserved = [orphan_job(row) for row in rows if row[12] == JobStatus.QUEUED]
            # A reserved job never started: it goes back as it was (its lock is not ours).
            self._start_or_release(reserved, start=False, unlock=[])
            running = [row for row in rows if row[12] == JobStatus.RUNNING]
            orphans = [(orphan_job(row), row[9]) for row in running]
            # Locked with their stop requests: the rescue carries out a pending one.
            outcomes = [
                lifecycle.apply_stop_request(
                    lifecycle.rescued(job, worker_id=worker, park=job.task_name in parked, now=now),
                    row[11],
                )
                for (job, worker), row in zip(orphans, running, strict=True)
            ]
            applied = self._write(outcomes, [])
            requeued = {
                job.queue
                for (job, _), outcome in zip(orphans, outcomes, strict=True)
                if job.id in applied and outcome.status == JobStatus.QUEUED
            }
            if requeued:
                self.conn.execute(
                    query("notify_queues"),
                    {"channel": taskengine_settings.NOTIFY_CHANNEL, "queues": sorted(requeued)},
                )
        self._resolve_followed()
        return [
            RescuedJob(
                id=job.id,
                task_name=job.task_name,
                attempt=job.attempt,
                status=JobStatus.QUEUED,
                reserved=True,
            )
            for job in reserved
        ] + [
            RescuedJob(id=o.job_id, task_name=job.task_name, attempt=o.attempt, status=o.status)
            for (job, _), o in zip(orphans, outcomes, strict=True)
            if o.job_id in applied
        ]

    def relock(self, owned: list[ClaimedJob]) -> None:
        # A claim whose reply was lost with the connection left jobs running under this worker
        # that it does not know about; nobody would rescue them while it heartbeats.
        self.conn.execute(query("release_unknown_claims"), [self.worker.id, [j.id for j in owned]])
        if not owned:
            return
        rows = self.conn.execute(
            query("relock_jobs"),
            {"ns": self.ns, "ids": [j.id for j in owned], "tokens": [j.token for j in owned]},
        ).fetchall()
        relocked = {row[0] for row in rows if row[1]}
        for job in owned:
            job.locked = job.id in relocked

    def wait_fileno(self) -> int | None:
        return self.conn.fileno()

    def drain_notifications(self) -> bool:
        payloads = [notice.payload for notice in self.conn.notifies(timeout=0)]
        if payloads:
            self.flow.woken()
        if any(payload.startswith(FLOW_NOTICE) for payload in payloads):
            self.flow.notified()
        return bool(payloads)

    def unregister(self) -> None:
        self.conn.execute(query("unregister_worker"), [self.worker.id])

    def close(self) -> None:
        try:
            self.conn.close()
        except Exception:  # noqa: BLE001 - closing a broken connection must not raise
            pass

    def is_usable(self) -> bool:
        if self.conn.closed or self.conn.broken:
            return False
        try:
            self.conn.execute(query("ping"))
        except psycopg.Error:
            return False
        return True
