"""A PostgreSQL worker session's plain claim: the jobs not under flow control (claim_jobs,
claim_ids), scanned from the claim's cursor or from the head of the queue."""

from __future__ import annotations

import time
from collections.abc import Collection
from typing import TYPE_CHECKING, Any

import psycopg

from ..conf import taskengine_settings
from ..core.lifecycle import ClaimedJob
from .base import Deliveries, WorkerInfo
from .postgres_claims import Riding, claim_order, claim_rows, claimed_job
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
#: after FULL_SCAN_GAP (see PlainClaims._claim_plain).
CHEAP_HEAD_SCAN = 0.02
#: The gap between scans from the head, in multiples of the last one's duration (so that they
#: take at most about 5% of the time spent claiming), and at most FULL_SCAN_GAP_MAX seconds:
#: how late a job that sorts before the cursor can be claimed while scans from the head are
#: slow.
FULL_SCAN_GAP = 20
FULL_SCAN_GAP_MAX = 5.0


def claim_params(after: tuple[int, Any, int] = CLAIM_FROM_HEAD) -> dict[str, Any]:
    """The claim statement's cursor parameters (see claim_jobs in store/sql/postgres.sql)."""
    return {"after_priority": after[0], "after_run": after[1], "after_id": after[2]}


def engine_lock_key(lock_id: int) -> int:
    """The bigint advisory lock key of one of the engine's own locks."""
    return (taskengine_settings.ADVISORY_LOCK_NAMESPACE << 32) | lock_id


class PlainClaims:
    """The plain claim of :class:`~.postgres_session.PostgresWorkerSession` (a mixin)."""

    conn: psycopg.Connection[Any]
    queues: list[str]
    worker: WorkerInfo
    ns: int
    deliveries: Deliveries | None
    #: Outcomes the next claim statement writes first (see finish_then_claim).
    _riding: Riding
    #: The claim's cursor: (priority, run_after, id) of the last job claimed; when claims
    #: scan from the head of the queue again, and how long the last such scan took.
    _after: tuple[int, Any, int] = CLAIM_FROM_HEAD
    _head_scan_due = 0.0
    _head_scan_took = 0.0

    if TYPE_CHECKING:

        def flow_tasks(self) -> list[str]: ...

    def _claim_plain(
        self,
        limit: int,
        *,
        free: int,
        start: int,
        park: Collection[str],
        scan: bool = True,
    ) -> list[ClaimedJob]:
        """Jobs not under flow control (see claim_jobs): those delivered, and those a scan of
        the job table finds, if ``scan`` (and, under a dispatch backend, if it is time to)."""
        deliveries = self.deliveries
        if deliveries is None and not scan:
            return []
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
        missed: list[Any] = []
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
                if len(delivered) < len(taken):
                    claimed = {job.id for job in delivered}
                    missed = [d for d in taken if d.job_id not in claimed]
            scan = scan and len(delivered) < limit and deliveries.should_scan()
            if scan:
                # The delivered ones came first: the scan adds to them.
                n = len(delivered)
                params |= {"limit": limit - n, "free": max(0, free - n), "start": max(0, start - n)}
        jobs = delivered
        if scan:
            jobs = delivered + [claimed_job(row) for row in self._scan(params)]
        if missed and len(jobs) < limit and deliveries is not None:
            # A short claim (the worker waits next) that missed deliveries: those whose jobs
            # are claimable still were passed by, locked, and are held for the next claim. Not
            # looked at after a full claim: the next comes at once, and in a drain most
            # misses are of jobs a scan took, a statement per claim for nothing.
            held = self._claimable_still(params, missed)
            if held:
                deliveries.held([d for d in missed if d.job_id in held])
        return jobs

    def _scan(self, params: dict[str, Any]) -> list[Any]:
        """The claim's scan of the job table (claim_jobs), from the cursor or the head."""
        # A scan from the head steps over the dead index entries of every job claimed since
        # the last vacuum, or since a transaction began to hold the xmin horizon. While that
        # is slow, claims scan from the cursor, and from the head only every so often. (A
        # claim that writes outcomes first is timed with their write: a few milliseconds.)
        began = time.monotonic()
        if began < self._head_scan_due:
            return self._claim_after(params, self._after)
        rows = self._claim_after(params, CLAIM_FROM_HEAD)
        took = time.monotonic() - began
        if min(took, self._head_scan_took) > CHEAP_HEAD_SCAN:
            self._head_scan_due = began + min(took * FULL_SCAN_GAP, FULL_SCAN_GAP_MAX)
        self._head_scan_took = took
        return rows

    def _claim_ids(self, params: dict[str, Any], ids: list[int]) -> list[ClaimedJob]:
        """The jobs ``ids`` (delivered by the dispatch backend) that are claimable now."""
        rows = self.conn.execute(
            query("claim_ids"), params | {"ids": ids, "limit": min(params["limit"], len(ids))}
        ).fetchall()
        rows.sort(key=claim_order)
        return [claimed_job(row) for row in rows]

    def _claimable_still(self, params: dict[str, Any], missed: list[Any]) -> set[int]:
        """Of the jobs delivered and not claimed, those claimable still: their rows were
        locked by another transaction (a job.wait() marking one, an operator's edit) when the
        claim came. Their deliveries are used up: without a new look, they would wait for the
        relay to publish them again. (If the look fails, the jobs this claim took are given
        back as any claim's are: the reconnect's relock releases what the worker never got.)"""
        rows = self.conn.execute(
            query("claimable_ids"), params | {"ids": [d.job_id for d in missed]}
        ).fetchall()
        return {row[0] for row in rows}

    def _claim_after(self, params: dict[str, Any], after: tuple[int, Any, int]) -> list[Any]:
        rows = claim_rows(
            self.conn, self._riding, query("claim_jobs"), params | claim_params(after)
        )
        rows.sort(key=claim_order)
        if rows:
            self._after = (rows[-1][13], rows[-1][14], rows[-1][0])
        return rows
