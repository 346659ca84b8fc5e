"""A PostgreSQL worker session: one worker process's own direct connection.

Claims (``SKIP LOCKED``, advisory lock per job), batched fenced writes of outcomes, heartbeats,
checkpoints, rescue of orphans and LISTEN wake-ups; see :mod:`.postgres` for the protocol.
"""

from __future__ import annotations

import json
from collections.abc import Collection
from typing import Any, cast

import psycopg
import psycopg.sql

from ..conf import taskengine_settings
from ..core import lifecycle
from ..core.statuses import JobStatus
from .base import (
    ClaimedJob,
    ClaimFailedAfterWrite,
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
from .postgres_claims import (
    PostgresFlowSource,
    Riding,
    orphan_job,
    outcome_params,
)
from .postgres_dependencies import decide_ready
from .postgres_notices import own_connection_params, wake_if_sent
from .postgres_plain_claim import (
    RESCUER_LOCK_ID,
    START_FENCE_LOCK_ID,
    PlainClaims,
    engine_lock_key,
)
from .sql import query

#: One rescue in this many (the first included) also looks for the jobs of workers that have no
#: row (see select_orphans): a scan of every running job.
RESCUES_PER_SWEEP = 30


class PostgresWorkerSession(PlainClaims, FlowClaims, WorkerSession):
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
        self.conn.execute(query("plan_settings"))
        self.queues = list(worker.queues)
        self._rescues = 0
        #: Waiting jobs whose dependencies the last writes marked done (not yet decided for).
        self._followed: list[int] = []
        # Every job made due now is told of on the channel this session listens to.
        self.flow = FlowClaimer(notified=True)
        self._riding = Riding()
        self._flow_source = PostgresFlowSource(
            self.conn,
            worker=worker.id,
            queues=self.queues,
            ns=self.ns,
            lock_key=engine_lock_key(FLOW_LOCK_ID),
            fence_key=engine_lock_key(START_FENCE_LOCK_ID),
            riding=self._riding,
        )

    def register(self) -> None:
        info = self.worker
        self.conn.execute(
            query("register_worker"),
            [info.id, info.hostname, info.pid, json.dumps(info.queues), info.concurrency],
        )

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
        self._finishing(outcomes)
        return self._written(outcomes, self._write(outcomes, unlock))

    def finish_then_claim(
        self,
        outcomes: list[Outcome],
        unlock: list[int],
        limit: int,
        *,
        free: int,
        start: int,
        park: Collection[str] = (),
    ) -> tuple[set[int], list[ClaimedJob] | None]:
        """The write rides with the first claim statement, plain or flow (whose counts then
        see it), in its transaction."""
        if not outcomes and not unlock:
            return set(), None
        self._finishing(outcomes)
        if self.deliveries is not None:
            return self._written(outcomes, self._write(outcomes, unlock)), None
        riding = self._riding
        riding.params = outcome_params(outcomes, self.worker.id, self.ns, unlock)
        try:
            jobs = self.claim(limit, free=free, start=start, park=park)
        except BaseException as exc:
            if riding.row is None:
                raise
            # Written with the first claim statement; a later one failed.
            raise ClaimFailedAfterWrite(self._take_row(riding.row, outcomes)) from exc
        finally:
            row, riding.params, riding.row = riding.row, None, None
        if row is None:  # no claim statement was made after all
            return self._written(outcomes, self._write(outcomes, unlock)), jobs
        applied = self._take_row(row, outcomes)
        followed = bool(self._followed)
        self._written(outcomes, applied)
        if followed and len(jobs) < limit:
            # Jobs that waited for those it finished may be due now, after the claim: one more.
            started = sum(1 for job in jobs if not job.reserved)
            jobs += self.claim(
                limit - len(jobs),
                free=max(0, free - started),
                start=max(0, start - started),
                park=park,
            )
        return applied, jobs

    def _finishing(self, outcomes: list[Outcome]) -> None:
        flow = self.flow
        flow.finished(o.job_id for o in outcomes)
        flow.scans.requeued(o.due_in for o in outcomes if o.due_in)

    def _written(self, outcomes: list[Outcome], applied: set[int]) -> set[int]:
        """Once outcomes are committed: wake the workers of the jobs they parked, decide for
        the jobs that waited for the ones they finished."""
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
        return self._take_row(cursor.fetchone(), outcomes)

    def _take_row(self, written: Any, outcomes: list[Outcome]) -> set[int]:
        """write_outcomes' row: the ids applied; the current stop request of each outcome
        fenced out by a changed one (``stop_request_now``)."""
        # Exactly one row (a SELECT without FROM), which psycopg's Optional cannot know.
        row = cast("tuple[list[int], int, list[int], list[str], int, list[int]]", written)
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
        params = {
            "rescuer_key": engine_lock_key(RESCUER_LOCK_ID),
            "ns": self.ns,
            "grace": taskengine_settings.RESCUE_GRACE,
            "everyone": self._rescues % RESCUES_PER_SWEEP == 0,
        }
        self._rescues += 1
        # Nearly every round finds none: the look is made alone first (one round trip, where
        # a transaction is three), and again in one that holds the orphans' locks if it found
        # some (gone by then, or taken by another rescuer: that one finds none).
        if self.conn.execute(query("select_orphans"), params).fetchone() is None:
            return []
        with self.conn.transaction():
            rows = self.conn.execute(query("select_orphans"), params).fetchall()
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
            self.flow.scans.woken()
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
