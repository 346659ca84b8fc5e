"""Redis Streams dispatch with real worker processes and the machine's redis-server: jobs go
through the streams and run once, a deployment switches backends with jobs in flight, and
``taskengine status`` and the metrics view show the streams and the relay.

Each test has Redis keys of its own (a PREFIX) and deletes them at the end.
"""

from __future__ import annotations

import io
import json
import signal
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from django.core.management import call_command
from django.db import connection  # noqa: F401 - read by the skipif condition
from django.db.models import Count, F
from django.test import override_settings
from prometheus_client.parser import text_string_to_metric_families

from django_taskengine.models import Job, JobStatus, Worker
from tests.helpers import wait_for
from tests.testapp.models import LedgerEntry
from tests.testapp.tasks import record, record_atomic

redis = pytest.importorskip("redis")

REDIS_URL = "redis://127.0.0.1:6379/0"

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif("connection.vendor != 'postgresql'"),
]


def _redis_or_skip() -> Any:
    client = redis.Redis.from_url(REDIS_URL, decode_responses=True, socket_connect_timeout=2)
    try:
        client.ping()
    except redis.RedisError as exc:
        pytest.skip(f"no Redis at {REDIS_URL}: {exc}")
    return client


@pytest.fixture
def streams() -> Iterator[tuple[Any, dict[str, Any]]]:
    """A Redis client and a DISPATCH setting with keys of this test's own, deleted after."""
    client = _redis_or_skip()
    prefix = f"taskengine-test:{uuid.uuid4().hex[:12]}"
    dispatch = {"BACKEND": "redis-streams", "URL": REDIS_URL, "PREFIX": prefix}
    yield client, dispatch
    keys = list(client.scan_iter(f"{prefix}:*"))
    if keys:
        client.delete(*keys)
    client.close()


def overrides(dispatch: dict[str, Any], **more: Any) -> str:
    return json.dumps({"DISPATCH": dispatch, **more})


def run_counts() -> dict[int, int]:
    return dict(LedgerEntry.objects.values_list("job_id").annotate(n=Count("id")))


def all_succeeded(count: int) -> bool:
    return Job.objects.filter(status=JobStatus.SUCCEEDED).count() == count


def group_reads(client: Any, prefix: str, queue: str = "default") -> int:
    groups = client.xinfo_groups(f"{prefix}:q:{queue}")
    return sum(int(group["entries-read"] or 0) for group in groups)


def past_first_claim(count: int) -> bool:
    """``count`` workers have heartbeat since they registered: a worker's loop heartbeats
    after its claim, so their first claim (and its scan of the table) is made."""
    running = Worker.objects.filter(stopped_at__isnull=True)
    return running.filter(last_heartbeat_at__gt=F("started_at")).count() == count


def test_jobs_go_through_the_streams_and_each_runs_once(start_workers, streams):
    client, dispatch = streams
    prefix = dispatch["PREFIX"]
    # An idle worker also scans the table once per POLL_INTERVAL (for what no relay
    # published), and at its first claim: such a scan between the enqueue's commit and the
    # relay's round would take jobs that are then never published. At 30 s, and with the
    # enqueue made once every worker is past its first claim (a worker that started late
    # made it after the enqueue: 396 published), no scan can; the relay, woken by the
    # enqueue's notification, publishes all 400 (fewer than WINDOW) in its next round.
    workers = start_workers(
        "--processes",
        "2",
        "--concurrency",
        "4",
        TASKENGINE_TEST_OVERRIDES=overrides(dispatch, POLL_INTERVAL=30),
    )
    wait_for(lambda: client.hget(f"{prefix}:relay", "leader"), timeout=30, message="a relay")
    wait_for(lambda: past_first_claim(2), timeout=30, message="both workers past their first claim")
    jobs = record.bulk_enqueue([((), {"label": str(i)}) for i in range(300)])
    jobs += record_atomic.bulk_enqueue([((), {"label": f"a{i}"}) for i in range(100)])
    wait_for(lambda: all_succeeded(400), timeout=90, message="400 jobs done")
    runs = run_counts()
    assert set(runs) == {job.id for job in jobs}
    assert set(runs.values()) == {1}, "a job ran more than once"
    # Delivered through the group, and every delivery acknowledged.
    assert int(client.hget(f"{prefix}:relay", "published")) >= 400
    assert group_reads(client, prefix) >= 400
    wait_for(
        lambda: client.xpending(f"{prefix}:q:default", "workers")["pending"] == 0,
        timeout=10,
        message="no entry left pending",
    )
    workers.signal(signal.SIGTERM)
    assert workers.wait(timeout=60) == 0, workers.log()[-3000:]
    log = workers.log()
    assert "relaying jobs to Redis streams" in log
    assert "Traceback" not in log, log[-3000:]


def test_a_fleet_moves_between_backends_with_jobs_in_flight_and_loses_nothing(
    start_workers, streams
):
    """Postgres dispatch, then Redis Streams, then back: each fleet stopped (SIGTERM) with
    jobs queued and running, the next started on the same table."""
    client, dispatch = streams
    jobs = record.bulk_enqueue([((), {"label": str(i), "sleep": 0.01}) for i in range(600)])
    fleets = [
        ({}, 150),
        ({"DISPATCH": dispatch}, 350),
        ({"DISPATCH": {"BACKEND": "postgres"}}, 600),
    ]
    for settings, done_before_stop in fleets:
        workers = start_workers(
            "--processes", "2", "--concurrency", "2", TASKENGINE_TEST_OVERRIDES=json.dumps(settings)
        )
        wait_for(
            lambda n=done_before_stop: LedgerEntry.objects.count() >= min(n, 600),
            timeout=120,
            message=f"{done_before_stop} jobs run",
        )
        workers.signal(signal.SIGTERM)
        assert workers.wait(timeout=60) == 0, workers.log()[-3000:]
    assert all_succeeded(600)
    runs = run_counts()
    assert set(runs) == {job.id for job in jobs}
    assert set(runs.values()) == {1}, "a job ran more than once"
    assert int(client.hget(f"{dispatch['PREFIX']}:relay", "published")) > 0


def test_status_and_metrics_show_the_streams_and_the_relay(start_workers, streams, client):
    redis_client, dispatch = streams
    prefix = dispatch["PREFIX"]
    record.bulk_enqueue([((), {"label": str(i)}) for i in range(20)])
    workers = start_workers("--processes", "1", TASKENGINE_TEST_OVERRIDES=overrides(dispatch))
    wait_for(lambda: all_succeeded(20), timeout=60, message="20 jobs done")
    # Jobs scanned before the relay published them leave entries for the readers to skip.
    wait_for(
        lambda: all(
            group["lag"] == 0 for group in redis_client.xinfo_groups(f"{prefix}:q:default")
        ),
        timeout=10,
        message="the stream read through",
    )
    with override_settings(TASKENGINE={"DISPATCH": dispatch, "METRICS_ALLOW_ANONYMOUS": True}):
        out = io.StringIO()
        call_command("taskengine", "status", stdout=out)
        text = out.getvalue()
        assert f"Dispatch: redis-streams at {REDIS_URL}, keys {prefix}:*" in text
        assert "jobs published" in text and "STREAM" in text
        streams_table = text[text.index("STREAM") :].splitlines()
        (row,) = [line.split() for line in streams_table if line.split()[0] == "default"]
        assert int(row[1]) >= 20  # the stream's length
        out = io.StringIO()
        call_command("taskengine", "status", "--json", stdout=out)
        data = json.loads(out.getvalue())["dispatch"]
        assert data["backend"] == "redis-streams" and data["published"] >= 20
        assert data["relay_leader"] and data["relay_round_age"] < 30
        (stream,) = [s for s in data["streams"] if s["queue"] == "default"]
        assert stream["length"] >= 20 and stream["undelivered"] == 0
        body = client.get("/taskengine/metrics").content.decode()
    families = {f.name: f for f in text_string_to_metric_families(body)}
    assert families["taskengine_dispatch_redis_up"].samples[0].value == 1
    lengths = {s.labels["queue"]: s.value for s in families["taskengine_stream_length"].samples}
    assert lengths["default"] >= 20
    assert "taskengine_stream_pending" in families
    assert "taskengine_stream_oldest_pending_seconds" in families
    assert families["taskengine_relay_lag_seconds"].samples[0].value >= 0
    workers.signal(signal.SIGTERM)
    assert workers.wait(timeout=60) == 0
    assert redis_client.exists(f"{prefix}:relay")


def test_status_says_when_redis_cannot_be_reached(streams):
    _, dispatch = streams
    unreachable = {**dispatch, "URL": "redis://127.0.0.1:1/0"}
    with override_settings(TASKENGINE={"DISPATCH": unreachable}):
        out = io.StringIO()
        call_command("taskengine", "status", stdout=out)
    assert "Redis unavailable" in out.getvalue()
    assert "workers claim from PostgreSQL" in out.getvalue()


def test_a_higher_priority_job_overtakes_the_published_backlog(start_workers, streams):
    client, dispatch = streams
    prefix = dispatch["PREFIX"]
    workers = start_workers(
        "--processes", "1", "--concurrency", "1", TASKENGINE_TEST_OVERRIDES=overrides(dispatch)
    )
    record.bulk_enqueue([((), {"label": "backlog", "sleep": 0.05})] * 100)
    wait_for(
        lambda: LedgerEntry.objects.filter(label="backlog").count() >= 5,
        timeout=60,
        message="the backlog under way",
    )
    record.using(priority=10).enqueue(label="urgent")
    urgent = wait_for(
        lambda: LedgerEntry.objects.filter(label="urgent").first(),
        timeout=60,
        message="the urgent job run",
    )
    before = LedgerEntry.objects.filter(label="backlog", id__lt=urgent.id).count()
    # The backlog was published before it (5 s of work): it went to the queue's stream of
    # jobs that sort first, read before the rest.
    assert before <= 20, before
    assert client.xlen(f"{prefix}:first:default") >= 1, workers.log()[-3000:]
    workers.signal(signal.SIGTERM)
    assert workers.wait(timeout=60) == 0, workers.log()[-3000:]
