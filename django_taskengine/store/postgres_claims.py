"""A PostgreSQL worker session's claims: the jobs the claim statements return (claim_jobs,
flow_start, select_orphans), and the statements of the flow claim (see :mod:`.flow_claim`) on
the session's own connection."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from typing import Any

import psycopg
from psycopg.pq import TransactionStatus

from ..core.flow import FlowJob, Window
from ..core.lifecycle import ClaimedJob
from .decoding import load_column
from .flow_claim import MAX_LANES, Ask, FlowRead, lanes_of
from .sql import query


def claimed_job(row: tuple[Any, ...]) -> ClaimedJob:
    """A job as claim_jobs and flow_start return it."""
    return ClaimedJob(
        id=row[0],
        task_name=row[1],
        queue=row[2],
        args=load_column("args", row[3]),
        kwargs=load_column("kwargs", row[4]),
        attempt=row[5],
        max_attempts=row[6],
        retry_backoff=row[7],
        timeout=row[8],
        token=row[9],
        started_at=row[10],
        checkpoint=load_column("checkpoint", row[11]),
        locked=row[12],
        uid=row[15],
        waits=load_column("waits", row[16]),
    )


class PostgresFlowSource:
    """A :class:`~.flow_claim.FlowSource` on a worker session's connection."""

    def __init__(
        self,
        conn: psycopg.Connection[Any],
        *,
        worker: Any,
        queues: list[str],
        ns: int,
        lock_key: int,
        fence_key: int,
    ) -> None:
        self.conn = conn
        self.worker = worker
        self.queues = queues
        self.ns = ns
        self.lock_key = lock_key
        self.fence_key = fence_key

    @contextmanager
    def locked(self) -> Iterator[None]:
        # One pipeline: BEGIN, the candidates, the lock and the counts go in one round trip
        # (read), flow_start and COMMIT in another, the pipeline's end (its rows are read after:
        # see start). BEGIN and COMMIT are statements of the pipeline: psycopg's transaction()
        # in a pipeline syncs as it opens and closes, five round trips in all.
        conn = self.conn
        try:
            with conn.pipeline():
                conn.execute(query("begin"))
                yield
                conn.execute(query("commit"))
        except BaseException:
            if not conn.closed and conn.info.transaction_status != TransactionStatus.IDLE:
                with suppress(psycopg.Error):
                    conn.execute(query("rollback"))
            raise

    def peek(self, ask: Ask) -> None:
        # The flow lock stops only other flow claims: no look first, one round trip less.
        return None

    def read(self, ask: Ask) -> tuple[FlowRead, list[tuple[FlowJob, str]]]:
        # The candidates first, before the lock: locked as they are read (SKIP LOCKED), so
        # that claims read theirs side by side and take turns only to count and start.
        candidates = self._candidates(ask)
        row = self.conn.execute(query("flow_usage"), {"lock": self.lock_key}).fetchone()
        assert row is not None  # a SELECT without FROM: one row
        now, running, queues, windows = row
        read = FlowRead(
            now=now,
            running=[(FlowJob(0, q, t, g, s), n) for q, t, g, s, n in running],
            queues=[(name, concurrency, rate) for name, concurrency, rate in queues],
            windows=windows,
        )
        return read, lanes_of(iter(candidates.fetchall()))

    def candidates(self, ask: Ask) -> list[tuple[FlowJob, str]]:
        return lanes_of(iter(self._candidates(ask).fetchall()))

    def _candidates(self, ask: Ask) -> Any:
        return self.conn.execute(
            query("flow_candidates"),
            {
                "fence": self.fence_key,
                "after": ask.after,
                "max_lanes": MAX_LANES,
                "per_lane": ask.per_lane,
                "rooms": json.dumps(ask.rooms),
                "prefixes": json.dumps(ask.prefixes),
                "cap": ask.cap,
                "all_queues": not self.queues,
                "queues": self.queues,
            },
        )

    def start(
        self, jobs: list[FlowJob], now: float, windows: dict[str, Window]
    ) -> Callable[[], list[ClaimedJob]]:
        if not jobs:
            return list
        cursor = self.conn.execute(
            query("flow_start"),
            {
                "ids": [job.id for job in jobs],
                "now": now,
                "worker": self.worker,
                "ns": self.ns,
                "windows": json.dumps(windows),
            },
        )
        order = {job.id: n for n, job in enumerate(jobs)}

        def started() -> list[ClaimedJob]:
            rows = cursor.fetchall()
            rows.sort(key=lambda row: order[row[0]])
            return [claimed_job(row) for row in rows]

        return started


def orphan_job(row: tuple[Any, ...]) -> ClaimedJob:
    """An orphaned job as the attempt its dead worker was running (select_orphans' row)."""
    return ClaimedJob(
        id=row[0],
        task_name=row[1],
        queue=row[2],
        args=None,
        kwargs=None,
        attempt=row[3],
        max_attempts=row[4],
        retry_backoff=row[5],
        timeout=row[6],
        token=row[7],
        started_at=row[8],
        stop_requested=row[11],
    )
