"""Faults under Redis Streams dispatch (django_taskengine/dispatch), each in the middle of a
drain: the Redis server killed and started again empty, flushed, cut off by a TCP proxy, and
PostgreSQL stopped at once and started again. Last, the relay after Redis lost its data, in
process.

What each proves: no job is lost, none runs twice (an atomic task's effects are committed once),
workers keep claiming (by scanning) while Redis is gone, the streams deliver again after the
fault (how soon is printed: run with ``-s``), and no delivered entry stays pending. Every test
has a Redis server of its own (devsupport/redisserver.py) and a key prefix of its own; the
machine's Redis is never touched.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from django.db import connection  # noqa: F401 - read by the skipif condition below
from django.db.models import Count

from devsupport.pgcluster import PrivateCluster
from devsupport.redisserver import RedisServer
from django_taskengine.models import Attempt, Job, JobStatus
from tests.faults.test_database_faults import RefusingProxy, StoppableCluster
from tests.helpers import REPO_ROOT, WorkerCommand, child_pids, wait_for, worker_env
from tests.testapp.models import LedgerEntry
from tests.testapp.tasks import record, record_atomic

redis = pytest.importorskip("redis")

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif("connection.vendor != 'postgresql'"),
    pytest.mark.skipif(
        RedisServer.unavailable_reason() is not None, reason=str(RedisServer.unavailable_reason())
    ),
]

#: The two queues the jobs go to (streams of their own).
PLAIN_QUEUE, ATOMIC_QUEUE = "default", "atomic"
#: Jobs enqueued before the fault, and after it (so that the relay has jobs to publish once
#: Redis is back, however fast the workers drained by scanning meanwhile).
PLAIN_JOBS, ATOMIC_JOBS = 600, 150
LATE_PLAIN_JOBS, LATE_ATOMIC_JOBS = 100, 25
#: Seconds each job sleeps: with 2 processes of 4 threads, a drain of several seconds.
JOB_SLEEP = 0.02
#: How long Redis is left unreachable in the outage tests (seconds).
OUTAGE = 1.5
#: Shorter than the defaults, so that a lost entry is published again, and an entry delivered
#: on a connection that was cut is taken over, within the test's time.
REPUBLISH_AFTER, STALE_AFTER = 1.0, 2.0
WINDOW = 200
WORKERS = ("--processes", "2", "--concurrency", "4")
#: Jobs a worker may have claimed from deliveries read before a fault (a claim's worth per
#: process): more claims than this during an outage were made by scanning the job table.
CLAIMED_FROM_OLD_DELIVERIES = 2 * 16
#: Entries pending at once, at most: a worker process holds about a claim's worth of deliveries
#: unacknowledged, and a cut connection strands what it was being sent; a window is far more.
MAX_PENDING = WINDOW


def _dispatch(url: str, prefix: str) -> dict[str, Any]:
    """``TASKENGINE["DISPATCH"]`` for Redis at ``url``, under the test's own key prefix."""
    return {
        "BACKEND": "redis-streams",
        "URL": url,
        "PREFIX": prefix,
        "WINDOW": WINDOW,
        "REPUBLISH_AFTER": REPUBLISH_AFTER,
        "STALE_AFTER": STALE_AFTER,
    }


def _overrides(url: str, prefix: str) -> dict[str, str]:
    """The environment that puts a worker subprocess under this dispatch."""
    return {"TASKENGINE_TEST_OVERRIDES": json.dumps({"DISPATCH": _dispatch(url, prefix)})}


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    server = RedisServer()
    server.start()
    yield server
    server.stop()


@pytest.fixture
def prefix(request: pytest.FixtureRequest) -> str:
    """The test's own key prefix: no two tests (or runs) share a stream."""
    return f"te-faults:{request.node.name}:{uuid.uuid4().hex[:8]}"


class Streams:
    """The dispatch's keys as the test reads them, on the server itself (never through the
    proxy the workers use). The server holds only this test's keys: every stream is one of the
    queues' streams."""

    def __init__(self, server: RedisServer, prefix: str) -> None:
        self.redis = server.client()
        self.prefix = prefix
        #: The most entries pending (delivered, not acknowledged) seen at once.
        self.max_pending = 0

    def _groups(self) -> Iterator[dict[str, Any]]:
        """The workers' group of every stream under the prefix (XINFO GROUPS)."""
        from django_taskengine.dispatch.streams import GROUP  # imports redis: not at collection

        for key in self.redis.scan_iter(match=f"{self.prefix}:*", _type="STREAM"):
            try:
                groups = self.redis.xinfo_groups(key)
            except redis.ResponseError:  # gone since the scan
                continue
            yield from (group for group in groups if group["name"] == GROUP)

    def published(self) -> int:
        """Jobs the relay published since the server lost its data, if it did."""
        return int(self.redis.hget(f"{self.prefix}:relay", "published") or 0)

    def entries_read(self) -> int:
        """Entries the workers' group read from the streams."""
        return sum(group.get("entries-read") or 0 for group in self._groups())

    def counters(self) -> tuple[int, int]:
        return self.published(), self.entries_read()

    def pending(self) -> int:
        """Entries delivered and not acknowledged, in every stream (XPENDING's count)."""
        total = sum(group["pending"] for group in self._groups())
        self.max_pending = max(self.max_pending, total)
        return total

    def sample(self) -> None:
        """Note the pending entries, if the server answers."""
        try:
            self.pending()
        except (redis.RedisError, OSError):
            pass

    def delivering_again(self, since: tuple[int, int]) -> bool:
        """Whether the relay published and the workers read since the counters were ``since``."""
        self.sample()
        published, read = self.counters()
        return published > since[0] and read > since[1]


def _enqueue(plain: int, atomic: int, label: str) -> list[Job]:
    return record.bulk_enqueue([((), {"label": label, "sleep": JOB_SLEEP})] * plain) + (
        record_atomic.using(queue=ATOMIC_QUEUE).bulk_enqueue(
            [((), {"label": label, "sleep": JOB_SLEEP})] * atomic
        )
    )


def _claimed() -> int:
    """Jobs claimed so far (reserved, started or finished)."""
    return Job.objects.exclude(status=JobStatus.QUEUED, token__isnull=True).count()


def _unfinished() -> int:
    return Job.objects.exclude(status__in=[JobStatus.SUCCEEDED, JobStatus.FAILED]).count()


def _hold(seconds: float, workers: WorkerCommand, streams: Streams) -> None:
    """Let ``seconds`` pass (the outage), checking that no worker process exits meanwhile."""
    end = time.monotonic() + seconds
    processes = child_pids(workers.pid)
    while time.monotonic() < end:
        assert workers.proc.poll() is None, workers.log()[-4000:]
        assert child_pids(workers.pid) == processes, "a worker process exited during the fault"
        streams.sample()
        time.sleep(0.05)


def _wait_drained(streams: Streams, workers: WorkerCommand, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while _unfinished():
        assert time.monotonic() < deadline, "jobs unfinished; log tail:\n" + workers.log()[-4000:]
        streams.sample()
        time.sleep(0.05)


def _assert_each_ran_once(jobs: list[Job]) -> None:
    statuses = dict(Job.objects.values_list("status").order_by().annotate(n=Count("id")))
    assert statuses == {JobStatus.SUCCEEDED: len(jobs)}, statuses
    runs = Counter(LedgerEntry.objects.values_list("job_id", flat=True))
    lost = {job.id for job in jobs} - set(runs)
    twice = sorted(job_id for job_id, n in runs.items() if n > 1)
    assert not lost, f"{len(lost)} jobs never ran"
    # Atomic tasks' rows are their committed effects; the others' rows are runs.
    assert twice == [], f"{len(twice)} jobs ran twice (ids {twice[:10]})"
    # Nor did any start twice (an atomic task's rolled-back run leaves no row, but an attempt).
    assert not Job.objects.exclude(attempts=1).exists()
    assert not Attempt.objects.filter(outcome__in=["superseded", "orphaned"]).exists()


def _wait_pending_cleared(streams: Streams) -> tuple[int, float]:
    """The entries pending once the drain ended, and how long they took to be acknowledged
    (an entry delivered on a connection that was then cut waits STALE_AFTER for a taker)."""
    began = time.monotonic()
    left = streams.pending()
    wait_for(
        lambda: streams.pending() == 0,
        timeout=3 * STALE_AFTER + 10,
        message="every delivered entry acknowledged",
    )
    return left, time.monotonic() - began


@dataclass
class Recovery:
    """What a fault in the middle of a drain cost; times in seconds from the fault."""

    name: str
    #: How long the fault lasted (Redis or PostgreSQL unreachable); 0: an instant (a flush).
    outage: float
    #: Jobs claimed while Redis was unreachable (by scanning the job table), when measured.
    claimed_during_outage: int | None
    #: Until the relay published and the workers read again.
    streams_back: float
    #: Until every job had finished.
    drained: float
    pending_at_drain_end: int
    #: From the drain's end until no entry was pending.
    pending_cleared: float
    max_pending: int

    def report(self) -> str:
        scanned = (
            ""
            if self.claimed_during_outage is None
            else f", {self.claimed_during_outage} jobs claimed by scanning meanwhile"
        )
        return (
            f"[{self.name}] outage {self.outage:.2f} s{scanned}; streams delivering again"
            f" {self.streams_back:.2f} s after the fault"
            f" ({self.streams_back - self.outage:.2f} s after the outage); all jobs done after"
            f" {self.drained:.2f} s; pending entries: at most {self.max_pending},"
            f" {self.pending_at_drain_end} at the drain's end, none {self.pending_cleared:.2f} s"
            " later"
        )


def _fault_mid_drain(
    name: str,
    start_workers: Callable[..., WorkerCommand],
    server: RedisServer,
    prefix: str,
    *,
    url: str,
    fault: Callable[[], None],
    restore: Callable[[], None],
    hold: float,
    data_lost: bool,
) -> tuple[Recovery, WorkerCommand]:
    """Drain jobs under Redis Streams dispatch through ``url``; a fifth of the way in, cause
    ``fault``, wait ``hold`` seconds, ``restore``, and measure until the streams deliver again
    and every job finished. ``data_lost``: the fault emptied Redis (counters start over)."""
    streams = Streams(server, prefix)
    jobs = _enqueue(PLAIN_JOBS, ATOMIC_JOBS, "before")
    workers = start_workers(*WORKERS, **_overrides(url, prefix))
    wait_for(
        lambda: streams.entries_read() > 0 and _claimed() >= len(jobs) // 5,
        timeout=60,
        message="the streams delivering and a fifth of the jobs claimed",
    )
    assert streams.published() > 0
    fault()
    faulted = time.monotonic()
    claimed = _claimed()
    _hold(hold, workers, streams)
    claimed_during_outage = _claimed() - claimed
    # Only the workers change the counters, and they could not reach Redis meanwhile.
    since = (0, 0) if data_lost else streams.counters()
    restore()
    outage = time.monotonic() - faulted
    jobs += _enqueue(LATE_PLAIN_JOBS, LATE_ATOMIC_JOBS, "after")
    wait_for(
        lambda: streams.delivering_again(since),
        timeout=30,
        message="the relay publishing and the workers reading again",
    )
    streams_back = time.monotonic() - faulted
    _wait_drained(streams, workers)
    drained = time.monotonic() - faulted
    left, cleared = _wait_pending_cleared(streams)
    recovery = Recovery(
        name=name,
        outage=outage,
        claimed_during_outage=claimed_during_outage if hold else None,
        streams_back=streams_back,
        drained=drained,
        pending_at_drain_end=left,
        pending_cleared=cleared,
        max_pending=streams.max_pending,
    )
    print(recovery.report())
    _assert_each_ran_once(jobs)
    assert streams.max_pending <= MAX_PENDING, recovery.report()
    return recovery, workers


def _assert_scanned_through_the_outage(recovery: Recovery, workers: WorkerCommand) -> None:
    """While Redis could not be reached, workers claimed by scanning, and said so; then read
    the streams again."""
    assert recovery.claimed_during_outage > CLAIMED_FROM_OLD_DELIVERIES, recovery.report()
    log = workers.log()
    assert "Redis unavailable" in log and "reading Redis streams again" in log, log[-4000:]


def test_redis_killed_and_restarted_empty_mid_drain(start_workers, redis_server, prefix):
    """Workers claim by scanning while Redis is gone; once it is back, empty, readers create
    the groups again and the relay publishes its window again."""
    recovery, workers = _fault_mid_drain(
        "redis-server SIGKILLed, restarted empty",
        start_workers,
        redis_server,
        prefix,
        url=redis_server.url,
        fault=redis_server.kill,
        restore=redis_server.start,
        hold=OUTAGE,
        data_lost=True,
    )
    _assert_scanned_through_the_outage(recovery, workers)


def test_redis_flushed_mid_drain(start_workers, redis_server, prefix):
    """Redis answers all along, without the streams: the relay notices by its epoch key."""
    _, workers = _fault_mid_drain(
        "FLUSHALL",
        start_workers,
        redis_server,
        prefix,
        url=redis_server.url,
        fault=redis_server.client().flushall,
        restore=lambda: None,
        hold=0.0,
        data_lost=True,
    )
    # The relay saw its epoch key gone, and published its window again at once.
    assert "Redis lost the streams" in workers.log(), workers.log()[-4000:]


@pytest.fixture
def redis_proxy(redis_server: RedisServer) -> Iterator[RefusingProxy]:
    proxy = RefusingProxy(("127.0.0.1", redis_server.port))
    proxy.start()
    yield proxy
    proxy.stop()


def test_redis_connections_cut_mid_drain(start_workers, redis_server, redis_proxy, prefix):
    """Every connection to Redis cut, new ones refused, then let through again: Redis keeps
    its data; entries sent on a cut connection are taken over once STALE_AFTER passed."""

    def cut() -> None:
        assert redis_proxy.connection_count >= 2, "the workers do not use the proxy"
        redis_proxy.stop()

    recovery, workers = _fault_mid_drain(
        "connections to Redis cut",
        start_workers,
        redis_server,
        prefix,
        url=f"redis://127.0.0.1:{redis_proxy.port}/0",
        fault=cut,
        restore=redis_proxy.start,
        hold=OUTAGE,
        data_lost=False,
    )
    _assert_scanned_through_the_outage(recovery, workers)


@pytest.mark.skipif(
    PrivateCluster.unavailable_reason() is not None, reason=str(PrivateCluster.unavailable_reason())
)
def test_postgresql_restarted_mid_drain(tmp_path, redis_server, prefix):
    """A throwaway cluster stopped at once (as by a crash) and started again: the relay and
    the workers reconnect, the relay leads again and publishes its window again."""
    cluster = StoppableCluster()
    try:
        cluster.init()
        cluster.start()
        env = worker_env(
            DATABASE_URL=cluster.url,
            TASKENGINE_TEST_DB_NAME="postgres",
            **_overrides(redis_server.url, prefix),
        )

        def manage(*args: str) -> subprocess.Popen[bytes]:
            return subprocess.Popen(
                [sys.executable, "-m", "django", *args],
                cwd=REPO_ROOT,
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
            )

        def enqueue(plain: int, atomic: int, label: str) -> subprocess.Popen[bytes]:
            # Attempts to spare: a plain task that writes while the server restarts fails
            # (and is retried); an atomic one's transaction is rolled back.
            options = {"sleep": JOB_SLEEP, "label": label}
            return manage(
                "shell",
                "-c",
                "from tests.testapp.tasks import record, record_atomic; "
                f"record.using(max_attempts=5).bulk_enqueue([((), {options!r})] * {plain}); "
                f"record_atomic.using(queue={ATOMIC_QUEUE!r}, max_attempts=5)"
                f".bulk_enqueue([((), {options!r})] * {atomic})",
            )

        def finish(step: subprocess.Popen[bytes]) -> None:
            _, errors = step.communicate(timeout=120)
            assert step.returncode == 0, errors.decode(errors="replace")

        finish(manage("migrate", "-v0"))
        finish(enqueue(PLAIN_JOBS, ATOMIC_JOBS, "before"))
        streams = Streams(redis_server, prefix)
        log_path = tmp_path / "workers.log"
        workers = WorkerCommand(list(WORKERS), log_path, env)
        try:
            db = cluster.connect()

            def scalar(sql: str) -> int:
                return db.execute(sql).fetchone()[0]

            def finished() -> int:
                return scalar(
                    "SELECT count(*) FROM taskengine_job WHERE status IN ('succeeded', 'failed')"
                )

            wait_for(
                lambda: streams.entries_read() > 0 and finished() >= PLAIN_JOBS // 5,
                timeout=60,
                message="the streams delivering and work under way",
            )
            db.close()
            faulted = time.monotonic()
            cluster.halt()
            cluster.start()
            restarted = time.monotonic() - faulted
            since = streams.counters()
            db = cluster.connect()
            done_at_restart = finished()
            late = enqueue(LATE_PLAIN_JOBS, LATE_ATOMIC_JOBS, "after")
            wait_for(
                lambda: streams.delivering_again(since) and finished() > done_at_restart,
                timeout=30,
                message="jobs finishing and the streams delivering again",
            )
            streams_back = time.monotonic() - faulted
            finish(late)
            total = PLAIN_JOBS + ATOMIC_JOBS + LATE_PLAIN_JOBS + LATE_ATOMIC_JOBS
            deadline = time.monotonic() + 90
            while finished() < total:
                assert time.monotonic() < deadline, workers.log()[-4000:]
                streams.sample()
                time.sleep(0.05)
            drained = time.monotonic() - faulted
            left, cleared = _wait_pending_cleared(streams)
            statuses = dict(
                db.execute("SELECT status, count(*) FROM taskengine_job GROUP BY status")
            )
            outcomes = dict(
                db.execute("SELECT outcome, count(*) FROM taskengine_attempt GROUP BY outcome")
            )
            # Per job: its id, its task, how often it ran (its rows), its attempts' records.
            per_job = db.execute(
                "SELECT j.id, j.task_name,"
                " (SELECT count(*) FROM testapp_ledgerentry l WHERE l.job_id = j.id),"
                " ARRAY(SELECT (a.number, a.outcome)::text FROM taskengine_attempt a"
                "       WHERE a.job_id = j.id ORDER BY a.id)"
                " FROM taskengine_job j"
            ).fetchall()
            db.close()
        finally:
            workers.kill()
    finally:
        cluster.stop()
    text = workers.log()
    recovery = Recovery(
        name="PostgreSQL restarted",
        outage=restarted,
        claimed_during_outage=None,
        streams_back=streams_back,
        drained=drained,
        pending_at_drain_end=left,
        pending_cleared=cleared,
        max_pending=streams.max_pending,
    )
    failed, superseded = outcomes.get("failed", 0), outcomes.get("superseded", 0)
    print(
        f"{recovery.report()}; {failed} attempts failed by the restart and were retried,"
        f" {superseded} outcomes reported again after it"
    )
    assert "reconnecting" in text, text[-4000:]
    assert statuses == {"succeeded": total}, (statuses, text[-4000:])
    # No job of a live worker was rescued (no "orphaned" attempt).
    assert set(outcomes) <= {"succeeded", "failed", "superseded"}, outcomes
    for job_id, task, rows, records in per_job:
        attempts = [tuple(record.strip("()").split(",")) for record in records]
        succeeded = [number for number, outcome in attempts if outcome == "succeeded"]
        failures = sum(outcome == "failed" for _, outcome in attempts)
        assert len(succeeded) == 1, (job_id, attempts)
        # A write whose commit the restart did not acknowledge is reported again, and
        # recorded as superseded: the same attempt, not another run.
        assert all(
            number == succeeded[0] for number, outcome in attempts if outcome == "superseded"
        ), (job_id, attempts)
        if task.endswith("record_atomic"):
            assert rows == 1, f"job {job_id}: an atomic task's effects committed {rows} times"
        else:
            # A plain task's row is written again only by a retry, after an attempt that
            # failed as the server went away (its write committed, the answer lost).
            assert 1 <= rows <= 1 + failures, (job_id, rows, attempts)
    assert streams.max_pending <= MAX_PENDING, recovery.report()


def test_a_queue_published_to_as_redis_is_found_empty_is_read_by_workers_of_every_queue(
    settings, redis_server, prefix
):
    """After Redis lost its data, the relay registers again the queues it publishes to: a
    worker of every queue reads only the streams of registered queues. Enqueues alone wake the
    relay here (a long poll interval), so that the round that finds Redis empty is the one that
    publishes the second job."""
    from django_taskengine.dispatch.options import redis_dispatch
    from django_taskengine.dispatch.relay import Relay
    from django_taskengine.dispatch.streams import StreamReader

    dispatch = _dispatch(redis_server.url, prefix) | {"REPUBLISH_AFTER": 60.0}
    settings.TASKENGINE = {**settings.TASKENGINE, "POLL_INTERVAL": 30.0, "DISPATCH": dispatch}
    options = redis_dispatch()
    assert options is not None
    streams = Streams(redis_server, prefix)
    relay = Relay(options, "default", uuid.uuid4())
    reader = StreamReader(options, "default", [], "a-worker-of-every-queue")  # queues=[]: all
    relay.start()
    try:
        first = record.using(queue="rare").enqueue(label="first")
        wait_for(lambda: streams.published() == 1, timeout=15, message="the first job published")
        Job.objects.filter(id=first.id).update(status=JobStatus.SUCCEEDED)
        streams.redis.flushall()
        second = record.using(queue="rare").enqueue(label="second")
        wait_for(lambda: streams.published() == 1, timeout=15, message="the second job published")
        # Started only now: what it reads first is the set of queues as the relay left it.
        reader.start()
        try:
            delivered = wait_for(
                lambda: reader.take(10), timeout=10, message="the second job delivered"
            )
        finally:
            reader.stop()
        assert [d.job_id for d in delivered] == [second.id]
    finally:
        relay.stop()
