"""Database faults: outages between workers and PostgreSQL made with a TCP proxy the test
controls, terminated worker sessions, and a stopped server (a throwaway cluster)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from django.db import connection
from django.db.models import Count

from devsupport.pgcluster import PrivateCluster
from django_taskengine.models import Attempt, Job, JobStatus
from django_taskengine.worker.liveness import reconnect_delay_cap
from tests.helpers import REPO_ROOT, child_pids, wait_for, worker_env
from tests.tcpproxy import TCPProxy
from tests.testapp.models import LedgerEntry
from tests.testapp.tasks import add, charge_card, record, sleep_and_record

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif("connection.vendor != 'postgresql'"),
]


class RefusingProxy(TCPProxy):
    """A proxy whose ``stop()`` refuses new connections at once: a listening socket closed
    while its accept thread is blocked in ``accept()`` still accepts one more connection."""

    def stop(self) -> None:
        if self._listener is not None:
            try:
                self._listener.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept()
            except OSError:
                pass
        super().stop()


@pytest.fixture
def proxy():
    params = connection.get_connection_params()
    proxy = RefusingProxy((params.get("host") or "127.0.0.1", int(params.get("port") or 5432)))
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


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (all its threads) so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_a_worker_waits_out_an_outage_without_spinning(start_workers, proxy):
    proxy.start()
    job = sleep_and_record.enqueue(seconds=1.0, label="outage")
    workers = start_workers("--processes", "1", **_through(proxy))
    wait_for(lambda: LedgerEntry.objects.filter(job_id=job.id).exists(), message="job started")
    (pid,) = child_pids(workers.pid)
    proxy.stop()
    wait_for(lambda: "cannot reach the database" in workers.log(), message="the outage noticed")
    # The job finishes during the outage: its thread wakes the main thread, which backs off.
    cpu_before, attempts_before = _cpu_seconds(pid), workers.log().count("cannot reach")
    window_end = time.monotonic() + 10
    while time.monotonic() < window_end:
        assert child_pids(workers.pid) == [pid], "the worker process exited"
        time.sleep(0.5)
    cpu = _cpu_seconds(pid) - cpu_before
    attempts = workers.log().count("cannot reach") - attempts_before
    print(f"10 s of outage: {attempts} connection attempts, {cpu:.2f} CPU-seconds")
    # The back-off's shortest sleep is half its cap: at most 10 s / that, and a few wake-ups.
    assert attempts <= 10 / (reconnect_delay_cap() / 2) + 5, f"{attempts} attempts in 10 s"
    assert cpu < 1.0, f"{cpu:.2f} CPU-seconds in 10 s of waiting"
    proxy.start()
    finished = job.wait(timeout=30)
    # Finished during the outage, written after it: it ran once.
    assert finished.status == JobStatus.SUCCEEDED, workers.log()[-3000:]
    assert LedgerEntry.objects.filter(job_id=job.id).count() == 1


def _terminate_worker_sessions() -> int:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = current_database() AND application_name LIKE 'taskengine-worker%%'"
        )
        return cursor.fetchone()[0]


def test_terminated_worker_sessions_never_run_a_job_twice(start_workers):
    plain, parked = [], []
    for _ in range(10):  # interleaved, so the cuts hit both kinds
        plain += record.bulk_enqueue([((), {"label": "plain", "sleep": 0.01})] * 70)
        parked += charge_card.bulk_enqueue([((), {"seconds": 0.01})] * 30)
    workers = start_workers("--processes", "2", "--concurrency", "4")
    terminated = 0
    for _ in range(12):
        done = LedgerEntry.objects.count()
        if done > 900:
            break
        wait_for(
            lambda done=done: LedgerEntry.objects.count() > done + 30,
            timeout=60,
            message="work under way",
        )
        terminated += _terminate_worker_sessions()
    assert terminated >= 8
    deadline = time.monotonic() + 120
    while Job.objects.exclude(status__in=[JobStatus.SUCCEEDED, JobStatus.FAILED]).exists():
        assert time.monotonic() < deadline, workers.log()[-4000:]
        time.sleep(0.1)
    runs = Counter(LedgerEntry.objects.values_list("job_id", flat=True))
    twice = sorted(job_id for job_id, n in runs.items() if n > 1)
    parked_ids = {job.id for job in parked}
    print(
        f"{terminated} sessions terminated; ran twice: {len(twice)} "
        f"({len(parked_ids.intersection(twice))} parked-on-orphan)"
    )
    assert set(runs) == {job.id for job in [*plain, *parked]}, "a job never ran"
    assert twice == [], "a job ran twice though no worker died"
    assert Job.objects.filter(status=JobStatus.SUCCEEDED).count() == 1000
    assert not Attempt.objects.filter(outcome__in=["superseded", "orphaned"]).exists()


class StoppableCluster(PrivateCluster):
    """A throwaway cluster that can be stopped and started again (its data kept)."""

    def halt(self) -> None:
        self._pg_ctl("stop", "-m", "immediate")


@pytest.mark.skipif(
    PrivateCluster.unavailable_reason() is not None, reason=str(PrivateCluster.unavailable_reason())
)
def test_an_outage_longer_than_the_grace_rescues_no_live_workers_job(tmp_path):
    cluster = StoppableCluster()
    try:
        cluster.init()
        cluster.start()
        env = worker_env(DATABASE_URL=cluster.url, TASKENGINE_TEST_DB_NAME="postgres")

        def manage(*args: str) -> None:
            subprocess.run(
                [sys.executable, "-m", "django", *args],
                cwd=REPO_ROOT,
                env=env,
                capture_output=True,
                timeout=120,
                check=True,
            )

        manage("migrate", "-v0")
        # Worker "a" runs two long jobs; worker "b" two short ones that end during the outage,
        # so "b" has finished attempts to write the moment the server is back.
        manage(
            "shell",
            "-c",
            "from tests.testapp.tasks import sleep_and_record as s; "
            "s.using(queue='a').bulk_enqueue([((), {'seconds': 25.0, 'label': 'long'})] * 2); "
            "s.using(queue='b').bulk_enqueue([((), {'seconds': 1.0, 'label': 'short'})] * 2)",
        )
        log_path = tmp_path / "workers.log"
        with open(log_path, "wb") as log:
            workers = [
                subprocess.Popen(
                    [sys.executable, "-m", "django", "run_workers", "--queues", queue]
                    + ["--concurrency", "2"],
                    cwd=REPO_ROOT,
                    env=env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
                for queue in ("a", "b")
            ]
            try:
                db = cluster.connect()

                def scalar(sql: str) -> int:
                    return db.execute(sql).fetchone()[0]

                wait_for(
                    lambda: scalar("SELECT count(*) FROM testapp_ledgerentry") >= 4,
                    timeout=60,
                    message="all four jobs under way",
                )
                assert scalar("SELECT count(DISTINCT pid) FROM testapp_ledgerentry") == 2
                db.close()
                cluster.halt()
                # Longer than RESCUE_GRACE (1.5 s) and the old back-off's early steps.
                outage_end = time.monotonic() + 8
                while time.monotonic() < outage_end:
                    assert all(w.poll() is None for w in workers), "a worker exited"
                    time.sleep(0.2)
                cluster.start()
                db = cluster.connect()
                wait_for(
                    lambda: (
                        scalar(
                            "SELECT count(*) FROM taskengine_job"
                            " WHERE status NOT IN ('succeeded', 'failed')"
                        )
                        == 0
                    ),
                    timeout=90,
                    message="all jobs finished",
                )
                statuses = dict(
                    db.execute("SELECT status, count(*) FROM taskengine_job GROUP BY status")
                )
                outcomes = dict(
                    db.execute("SELECT outcome, count(*) FROM taskengine_attempt GROUP BY outcome")
                )
                runs = scalar("SELECT count(*) FROM testapp_ledgerentry")
                db.close()
            finally:
                for process in workers:
                    os.killpg(process.pid, 9)
                    process.wait(timeout=10)
        tail = log_path.read_text()[-3000:]
        assert "reconnecting" in log_path.read_text()
        assert outcomes == {"succeeded": 4}, (outcomes, tail)
        assert statuses == {"succeeded": 4}, (statuses, tail)
        assert runs == 4, "a job ran twice"
    finally:
        cluster.stop()
