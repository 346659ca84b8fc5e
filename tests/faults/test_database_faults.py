"""Database outages between workers and PostgreSQL, made with a TCP proxy the test controls."""

from __future__ import annotations

import time

import pytest
from django.db import connection
from django.db.models import Count

from django_taskengine.models import Attempt, Job, JobStatus
from tests.helpers import wait_for
from tests.tcpproxy import TCPProxy
from tests.testapp.tasks import add, record

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif("connection.vendor != 'postgresql'"),
]


@pytest.fixture
def proxy():
    params = connection.get_connection_params()
    proxy = TCPProxy((params.get("host") or "127.0.0.1", int(params.get("port") or 5432)))
    yield proxy
    proxy.stop()


def _through(proxy: TCPProxy) -> dict[str, str]:
    params = connection.get_connection_params()
    url = f"postgres://{params.get('user', 'postgres')}@127.0.0.1:{proxy.port}/postgres"
    return {"DATABASE_URL": url}


def test_database_down_at_start_is_retried_until_it_comes_up(start_workers, proxy):
    job = add.enqueue(4, 5)
    workers = start_workers("--processes", "1", **_through(proxy))
    wait_for(lambda: "is unavailable" in workers.log(), timeout=20, message="retry log line")
    assert workers.proc.poll() is None, "run_workers gave up instead of retrying"
    proxy.start()
    finished = job.wait(timeout=40)
    assert finished.status == JobStatus.SUCCEEDED and finished.result == 9


def test_connections_cut_mid_run_lose_nothing_and_rescue_no_live_worker(start_workers, proxy):
    proxy.start()
    jobs = record.bulk_enqueue([((), {"label": str(i), "sleep": 0.05}) for i in range(200)])
    workers = start_workers("--processes", "2", "--concurrency", "2", **_through(proxy))
    for _ in range(3):
        wait_for(lambda: proxy.connection_count >= 2, timeout=30, message="worker connections")
        time.sleep(0.3)  # let work get under way before each cut
        assert proxy.drop_connections() >= 2
    deadline = time.monotonic() + 90
    while Job.objects.exclude(status__in=[JobStatus.SUCCEEDED, JobStatus.FAILED]).exists():
        assert time.monotonic() < deadline, workers.log()[-4000:]
        time.sleep(0.1)
    statuses = dict(Job.objects.values_list("status").order_by().annotate(n=Count("id")))
    # A cut may fail an attempt that was writing through a task connection; retries absorb it.
    assert statuses == {JobStatus.SUCCEEDED: len(jobs)}, statuses
    assert "reconnecting" in workers.log()
    # Live workers reconnect and re-take their locks within the grace: nothing was orphaned.
    assert not Attempt.objects.filter(outcome="orphaned").exists()
