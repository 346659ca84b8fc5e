"""Redis Streams dispatch's relay: the job table (the outbox) to the queues' streams.

Every worker process runs a relay thread; the one whose session holds the relay's advisory lock
relays, the others wait to take over (a relay that dies frees the lock with its connection).
A round reads, per queue, the first WINDOW jobs a worker could claim now, in claim order
(relay_candidates), and publishes those not published yet, or published more than
REPUBLISH_AFTER seconds ago and still there (their entry was lost, or read by a worker that
could not take the job then). What it published is kept in memory: a new relay starts by
publishing its whole window (duplicates are harmless: a delivery of a job no longer claimable
is skipped). Rounds run when an enqueue notifies, every RELAY_INTERVAL while a queue has more
jobs than the window, and every POLL_INTERVAL (jobs whose run_after came).
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from typing import Any

import psycopg
import psycopg.sql
import redis

from ..conf import taskengine_settings
from ..store.flow_source import task_limits
from ..store.postgres_notices import own_connection_params
from ..store.postgres_session import START_FENCE_LOCK_ID, engine_lock_key
from ..store.sql import query
from .options import RedisDispatch
from .streams import (
    GROUP,
    REDIS_ERRORS,
    STREAMS,
    client,
    first_key,
    prefix,
    stream_key,
    workers_group,
)

logger = logging.getLogger("django_taskengine.worker")

#: Low 32 bits of the relay's advisory lock key (see postgres_session.RESCUER_LOCK_ID).
RELAY_LOCK_ID = 4
#: A relay that is not the leader tries to become it this often (seconds).
LEADER_RETRY = 1.0
#: After an error, the relay waits this long (seconds) before trying again.
ERROR_PAUSE = 0.5
#: Consumers (worker processes) with nothing pending and idle this long are dropped from the
#: streams' group, looked at this often (seconds).
CONSUMER_IDLE_MS, CONSUMER_SWEEP = 600_000, 60.0


class Relay:
    """One worker process's relay thread (see the module's notes)."""

    def __init__(self, options: RedisDispatch, alias: str, worker_id: uuid.UUID) -> None:
        self.options = options
        self.alias = alias
        self.worker_id = str(worker_id)
        self.base = prefix(options, alias)
        self.leader = False
        self._conn: psycopg.Connection[Any] | None = None
        self._redis: redis.Redis | None = None
        #: Job id -> time.monotonic() it was last published, for the jobs of the last window.
        self._published: dict[int, float] = {}
        self._queues: set[str] = set()
        #: Per queue, the claim order (-priority, run_after, id) of the last job published to its
        #: stream.
        self._last_key: dict[str, tuple[int, float, int]] = {}
        #: Per queue, entries of its stream no worker had read at the last round (None: unknown).
        self._undelivered: dict[str, int | None] = {}
        self._published_total = 0
        self._next_sweep = 0.0
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="taskengine-relay", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        self._thread.join(timeout=5.0)
        self._close_database()
        if self._redis is not None:
            self._redis.close()

    def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                if self._conn is None:
                    self._connect()
                if not self.leader:
                    self.leader = self._try_lead()
                    if not self.leader:
                        self._stopping.wait(LEADER_RETRY)
                        continue
                    self._listen()
                    logger.info("worker %s: relaying jobs to Redis streams", self.worker_id)
                full = self.round()
                self._wait(
                    self.options.relay_interval if full else taskengine_settings.POLL_INTERVAL
                )
            except psycopg.Error as exc:
                self._lost("the database", exc)
                self._close_database()
            except REDIS_ERRORS as exc:
                self._lost("Redis", exc)
                if self._redis is not None:
                    self._redis.close()
                    self._redis = None
            except Exception:  # a relay must outlive any one bad round
                logger.exception("worker %s: relay round failed", self.worker_id)
                self._stopping.wait(ERROR_PAUSE)

    def _lost(self, what: str, exc: BaseException) -> None:
        if self.leader:
            logger.warning("worker %s: relay lost %s (%s)", self.worker_id, what, exc)
        # What it published may be lost with Redis; publishing it again costs a little.
        self._forget_streams()
        self._stopping.wait(ERROR_PAUSE)

    def _forget_streams(self, keep: dict[int, float] | None = None) -> None:
        """Forget what this relay knows of the streams (Redis may have lost them): the jobs it
        published but ``keep``, the queues it registered, the order and unread counts."""
        self._published = keep or {}
        self._queues.clear()
        self._last_key.clear()
        self._undelivered.clear()

    def _connect(self) -> None:
        params = own_connection_params(self.alias)
        params.setdefault(
            "application_name", f"taskengine-relay {socket.gethostname()}:{os.getpid()}"
        )
        self._conn = psycopg.connect(**params)
        self._conn.execute(query("plan_settings"))

    def _listen(self) -> None:
        """Be woken by enqueues: the leader only (before its first round, so that none is
        missed). Relays that wait to lead do not listen: every enqueue would wake each of them
        for nothing, a thread per worker process."""
        assert self._conn is not None
        channel = psycopg.sql.Identifier(taskengine_settings.NOTIFY_CHANNEL)
        self._conn.execute(psycopg.sql.SQL(query("listen")).format(channel=channel))

    def _close_database(self) -> None:
        self.leader = False
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.close()
            except Exception:  # noqa: BLE001 - closing a broken connection must not raise
                pass

    def _try_lead(self) -> bool:
        assert self._conn is not None
        row = self._conn.execute(
            query("relay_lock"), {"key": engine_lock_key(RELAY_LOCK_ID)}
        ).fetchone()
        return bool(row and row[0])

    def _wait(self, seconds: float) -> None:
        """Until an enqueue (or a resume, a rescue) notifies, ``seconds`` pass, or a stop."""
        conn = self._conn
        deadline = time.monotonic() + seconds
        while not self._stopping.is_set():
            left = deadline - time.monotonic()
            if left <= 0 or conn is None:
                return
            if any(True for _ in conn.notifies(timeout=min(left, 0.25), stop_after=1)):
                # Take the rest: one round serves them all.
                for _ in conn.notifies(timeout=0):
                    pass
                return

    def round(self) -> bool:
        """Publish what the window holds that is not published; True if a queue has more
        claimable jobs than its window (look again soon)."""
        assert self._conn is not None
        rows = self._conn.execute(
            query("relay_candidates"),
            {
                "fence": engine_lock_key(START_FENCE_LOCK_ID),
                "window": self.options.window,
                "all_queues": True,
                "queues": [],
                "flow_tasks": sorted(task_limits()),
            },
        ).fetchall()
        if self._redis is None:
            self._redis = client(self.options)
        now = time.monotonic()
        published: dict[int, float] = {}
        per_queue: dict[str, int] = {}
        pipe = self._redis.pipeline(transaction=False)
        pipe.exists(f"{self.base}:epoch")
        lag = 0.0
        new_queues = []
        count = 0
        for queue, job_id, priority, run_at, due_for in rows:
            per_queue[queue] = per_queue.get(queue, 0) + 1
            last = self._published.get(job_id)
            if last is not None and (
                now - last < self.options.republish_after
                # Entries of its stream wait for a worker: it is likely among them.
                or self._undelivered.get(queue, 0)
            ):
                published[job_id] = last
                continue
            if last is None:
                lag = max(lag, due_for)
            if queue not in self._queues:
                new_queues.append(queue)
                self._queues.add(queue)
            pipe.xadd(
                self._stream_for(queue, (-priority, run_at, job_id)),
                {"id": job_id, "p": priority, "t": run_at},
                maxlen=self.options.maxlen,
                approximate=True,
            )
            published[job_id] = now
            count += 1
        if new_queues:
            pipe.sadd(f"{self.base}:queues", *new_queues)
            # The group from the streams' start, so that their unread count is known at once;
            # one that exists already answers BUSYGROUP, ignored below.
            for queue in new_queues:
                for key in STREAMS:
                    pipe.xgroup_create(key(self.base, queue), GROUP, id="0", mkstream=True)
        pipe.hset(f"{self.base}:relay", mapping={"leader": self.worker_id, "round_at": time.time()})
        if count:
            # The lag of the jobs published last: kept while rounds publish none.
            pipe.hset(f"{self.base}:relay", "lag", lag)
            pipe.hincrby(f"{self.base}:relay", "published", count)
        streams = sorted(per_queue)
        for queue in streams:
            pipe.xinfo_groups(stream_key(self.base, queue))
        results = pipe.execute(raise_on_error=False)
        for result in results:
            if isinstance(result, Exception) and not isinstance(result, redis.ResponseError):
                raise result
        self._undelivered = {
            queue: undelivered(groups)
            for queue, groups in zip(streams, results[len(results) - len(streams) :], strict=True)
        }
        self._published = published
        self._published_total += count
        if not results[0]:
            # No epoch: Redis lost its data (or never had ours). What this round published is
            # there; what earlier ones did goes out again at the next round, at once. The set
            # of queues went too, and this round added only queues new to this relay: workers
            # of all queues would not read the streams of the others.
            self._redis.set(f"{self.base}:epoch", self.worker_id)
            if per_queue:
                self._redis.sadd(f"{self.base}:queues", *per_queue)
            if self._published_total > count:
                logger.warning(
                    "worker %s: Redis lost the streams; publishing again", self.worker_id
                )
                self._forget_streams(keep={job: at for job, at in published.items() if at == now})
                return True
        if now >= self._next_sweep:
            self._next_sweep = now + CONSUMER_SWEEP
            self._sweep_consumers()
        return any(n >= self.options.window for n in per_queue.values())

    def _stream_for(self, queue: str, key: tuple[int, float, int]) -> str:
        """The queue's stream, or its stream of jobs that sort first: for a job that sorts
        before the last one published (a higher priority, a rescued or given-back job keeping
        its place) while entries of the queue's stream still wait for workers. Readers read
        that stream first, and run what they read in claim order."""
        last = self._last_key.get(queue)
        if last is not None and key < last and self._undelivered.get(queue):
            return first_key(self.base, queue)
        self._last_key[queue] = key if last is None else max(last, key)
        return stream_key(self.base, queue)

    def _sweep_consumers(self) -> None:
        """Drop the consumers of workers long gone (nothing pending, idle for long)."""
        assert self._redis is not None
        for stream in [key(self.base, q) for q in sorted(self._queues) for key in STREAMS]:
            try:
                consumers: Any = self._redis.xinfo_consumers(stream, GROUP)
            except redis.ResponseError:
                continue
            for consumer in consumers:
                if consumer["pending"] == 0 and consumer["idle"] > CONSUMER_IDLE_MS:
                    self._redis.xgroup_delconsumer(stream, GROUP, consumer["name"])


def undelivered(groups: Any) -> int | None:
    """The entries no consumer of the workers' group has read (XINFO GROUPS' lag; None when
    Redis cannot tell, or the stream or group does not exist)."""
    group = workers_group(groups)
    lag = None if group is None else group.get("lag")
    return None if lag is None else int(lag)
