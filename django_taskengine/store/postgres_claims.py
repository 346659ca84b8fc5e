"""A PostgreSQL worker session's claims: the jobs the claim statements return (claim_jobs,
flow_start, select_orphans), and the statements of the flow claim (see :mod:`.flow_claim`) on
the session's own connection; the parameters of the statement that writes outcomes."""

from __future__ import annotations

import json
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from operator import itemgetter
from typing import Any, TypeVar

import psycopg
from psycopg.pq import TransactionStatus

from ..conf import taskengine_settings
from ..core.flow import (
    COARSE_GRAIN,
    COARSE_SHARE,
    QUEUE,
    QUOTA_SECONDS,
    QUOTA_SHARE,
    WINDOW_GRAIN,
    FlowJob,
    Window,
)
from ..core.lifecycle import ClaimedJob, Outcome
from .decoding import load_column
from .flow_source import MAX_LANES, Ask, Fast, FlowRead, Quota, lanes_of
from .postgres_notices import FINISHED_CHANNEL
from .sql import query

T = TypeVar("T")


class Riding:
    """Outcomes that a worker session's next claim writes first (PostgresWorkerSession.
    finish_then_claim): write_outcomes' parameters until a claim sends them, then the
    write's row once committed."""

    def __init__(self) -> None:
        self.params: dict[str, Any] | None = None
        self.row: tuple[Any, ...] | None = None

    def write_alone(self, conn: psycopg.Connection[Any]) -> None:
        """The write, if one waits, in a transaction of its own (autocommit)."""
        if self.params is not None:
            params, self.params = self.params, None
            self.row = conn.execute(query("write_outcomes"), params).fetchone()


def claim_rows(
    conn: psycopg.Connection[Any], riding: Riding, sql: str, params: dict[str, Any]
) -> list[tuple[Any, ...]]:
    """The rows of the claim statement ``sql`` (one statement); after ``riding``'s write, if
    one waits, in one round trip and one transaction.

    That transaction is the pipeline's implicit one (no BEGIN): it commits at the pipeline's
    Sync, and the server says so before it reads anything more. With an explicit COMMIT in the
    pipeline, a session terminated during the commit's WAL flush commits and then fails at
    the Sync: the client sees an error for a transaction that committed, and would write the
    outcomes again.
    """
    if riding.params is None:
        return conn.execute(sql, params).fetchall()
    write, riding.params = riding.params, None
    with conn.pipeline():
        written = conn.execute(query("write_outcomes"), write)
        cursor = conn.execute(sql, params)
    riding.row = written.fetchone()
    return cursor.fetchall()


def claim_order(row: tuple[Any, ...]) -> tuple[Any, ...]:
    """A taken job's place in claim order (priority first, then due time, then id), from the
    columns taken_job_columns returns: UPDATE ... RETURNING gives its rows in no order."""
    return (-row[13], row[14], row[0])


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
        due_at=row[17],
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
        riding: Riding,
    ) -> None:
        self.conn = conn
        self.riding = riding
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
        # Outcomes waiting to be written go first, on their own: the counts read under the
        # lock must see the slots they free, and this transaction ends with a COMMIT in its
        # pipeline (see claim_rows).
        self.riding.write_alone(conn)
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
        return self.conn.execute(query("flow_candidates"), self._ask(ask))

    def _ask(self, ask: Ask) -> dict[str, Any]:
        return {
            "fence": self.fence_key,
            "after": ask.after,
            "max_lanes": MAX_LANES,
            "per_lane": ask.per_lane,
            "rooms": json.dumps(ask.rooms),
            "prefixes": json.dumps(ask.prefixes),
            "cap": ask.cap,
            "all_queues": not self.queues,
            "queues": self.queues,
        }

    def fast(self, ask: Ask, *, start: int, park: list[str], policy: str, quota: int = 0) -> Fast:
        params = self._ask(ask)
        params.update(
            lock=self.lock_key,
            start=start,
            park=park,
            policy=policy,
            grain=WINDOW_GRAIN,
            coarse_grain=COARSE_GRAIN,
            coarse_share=COARSE_SHARE,
            quota=quota,
            quota_seconds=QUOTA_SECONDS,
            quota_share=QUOTA_SHARE,
            worker=self.worker,
            ns=self.ns,
        )
        # One statement, its own transaction (after the outcomes riding with it, if any): the
        # candidates, the lock, the counts and the starts; a row with no job holds the counts
        # and the claim order (see flow_claim).
        rows = claim_rows(self.conn, self.riding, query("flow_claim"), params)
        meta = next(row[21] for row in rows if row[0] is None)
        # In claim order: each id the statement chose, if it started (an operator may have
        # taken one meanwhile).
        by_id = {row[0]: row for row in rows if row[0] is not None}
        rows = [row for row in map(by_id.get, meta["order"]) if row is not None]
        read = FlowRead(
            now=meta["now"],
            running=[(FlowJob(0, q, t, g, s), n) for q, t, g, s, n in meta["running"]],
            queues=[(name, concurrency, rate) for name, concurrency, rate in meta["queues"]],
            windows=meta["windows"],
        )
        return Fast(
            read=read,
            offered=meta["offered"],
            started=meta["fast"],
            jobs=[claimed_job(row) for row in rows],
            # (queue, task, group, sequence) of each.
            kinds=Counter(map(itemgetter(2, 1, 18, 19), rows)),
            last_lane=rows[-1][20] if rows else None,
            quota=None if meta["quota"] is None else Quota(*meta["quota"]),
        )

    def quota_claim(self, quota: Quota, *, limit: int, tasks: list[str]) -> list[ClaimedJob]:
        params = {
            "fence": self.fence_key,
            "lane": quota.lane,
            "queue": quota.lane[len(QUEUE) :],
            "tasks": tasks,
            "limit": limit,
            "lock": self.lock_key,
            "until": quota.until,
            "worker": self.worker,
            "ns": self.ns,
        }
        # One statement, its own transaction, after the outcomes riding with it, if any.
        rows = claim_rows(self.conn, self.riding, query("flow_quota_claim"), params)
        rows.sort(key=claim_order)
        return [claimed_job(row) for row in rows]

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


def any_other_worker(outcomes: list[Outcome]) -> bool:
    """Whether any outcome records an attempt of a worker other than the writer's."""
    return any(o.worker_id is not None for o in outcomes)


def outcome_params(
    outcomes: list[Outcome], worker: uuid.UUID, ns: int, unlock: list[int]
) -> dict[str, Any]:
    """write_outcomes' parameters: one array element per outcome, written by ``worker``,
    releasing the advisory locks (namespace ``ns``) of the jobs in ``unlock``."""
    return {
        "ids": [o.job_id for o in outcomes],
        "tokens": [o.token for o in outcomes],
        "statuses": [o.status for o in outcomes],
        "outcomes": [o.outcome for o in outcomes],
        "results": [o.result_json for o in outcomes],
        "errors": unless_all_empty([o.error for o in outcomes]),
        "tracebacks": unless_all_empty([o.traceback for o in outcomes]),
        "due_in": [o.due_in for o in outcomes],
        "refunds": unless_all_empty([o.refund_attempt for o in outcomes]),
        "numbers": [o.attempt for o in outcomes],
        "started": [o.started_at for o in outcomes],
        "finished": [o.finished_at for o in outcomes],
        "terminal": [o.job_finished_at is not None for o in outcomes],
        # Only a rescue writes for other workers.
        "workers": [o.worker_id for o in outcomes] if any_other_worker(outcomes) else [],
        "stops": unless_all_empty([o.stop_request for o in outcomes]),
        "stops_after": unless_all_empty([o.stop_requested_after for o in outcomes]),
        "waits": unless_all_empty([o.waits_json for o in outcomes]),
        "waiting_for": unless_all_empty([o.waiting_for for o in outcomes]),
        "finished_channel": FINISHED_CHANNEL,
        "channel": taskengine_settings.NOTIFY_CHANNEL,
        "worker": worker,
        "ns": ns,
        "unlock": unlock,
    }


def unless_all_empty(values: list[T]) -> list[T]:
    """``values``, or none when every one is falsy ("", False): write_outcomes reads a missing
    element as its column's default, and an array not sent is one not encoded."""
    return values if any(values) else []
