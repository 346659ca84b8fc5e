"""Crash recovery with real processes: SIGKILLed workers, slow workers, supervisor restarts."""

from __future__ import annotations

import os
import signal
import time

import pytest
from django.db import connection

from django_taskengine.models import Job, JobStatus, Worker
from tests.helpers import child_pids, wait_for
from tests.testapp.models import LedgerEntry
from tests.testapp.tasks import noop, overruns, sleep_and_record

pytestmark = pytest.mark.django_db(transaction=True)


def _running(job: Job, attempt: int) -> bool:
    job.refresh_from_db()
    return job.status == JobStatus.RUNNING and job.attempts == attempt


def _worker_pid(job: Job) -> int:
    job.refresh_from_db()
    return Worker.objects.get(id=job.worker_id).pid


def test_sigkilled_workers_job_is_rescued_and_completes(start_workers):
    job = sleep_and_record.enqueue(seconds=1.0)
    workers = start_workers("--processes", "2")
    wait_for(lambda: _running(job, 1), timeout=30, message="first attempt running")
    wait_for(lambda: LedgerEntry.objects.filter(job_id=job.id).exists(), timeout=10)
    victim = _worker_pid(job)
    os.kill(victim, signal.SIGKILL)
    killed_at = time.monotonic()
    wait_for(lambda: _running(job, 2), timeout=30, message="rescued attempt running")
    recovery = time.monotonic() - killed_at
    finished = job.wait(timeout=30)
    assert finished.status == JobStatus.SUCCEEDED
    assert finished.attempts == 2
    outcomes = list(finished.attempt_set.order_by("number").values_list("number", "outcome"))
    assert outcomes == [(1, "orphaned"), (2, "succeeded")]
    assert LedgerEntry.objects.filter(job_id=job.id).count() == 2
    if connection.vendor == "postgresql":
        # Advisory lock freed at death + heartbeat grace (1.5 s in tests; 3 s by default).
        assert recovery < 5, f"rescue took {recovery:.1f} s"
    # The supervisor replaced the dead process.
    wait_for(lambda: len(child_pids(workers.pid)) == 2, timeout=20, message="replacement worker")
    assert victim not in child_pids(workers.pid)
    assert "died (signal SIGKILL); starting a new one" in workers.log()


def test_a_slow_but_alive_worker_keeps_its_job(start_workers):
    # Runs well past RESCUE_GRACE (1.5 s) and LEASE_SECONDS (2 s) of the test settings.
    job = sleep_and_record.enqueue(seconds=5.0)
    start_workers("--processes", "2", "--concurrency", "2")
    finished = job.wait(timeout=40)
    assert finished.status == JobStatus.SUCCEEDED
    assert finished.attempts == 1
    assert list(finished.attempt_set.values_list("outcome", flat=True)) == ["succeeded"]
    assert LedgerEntry.objects.filter(job_id=job.id).count() == 1


def test_supervisor_restarts_a_worker_process_that_dies(start_workers):
    workers = start_workers("--processes", "1")
    # A worker process that has registered (not a short-lived child of the supervisor).
    first = wait_for(
        lambda: [
            pid
            for pid in child_pids(workers.pid)
            if Worker.objects.filter(pid=pid, stopped_at__isnull=True).exists()
        ],
        timeout=20,
        message="worker process",
    )[0]
    os.kill(first, signal.SIGKILL)
    wait_for(
        lambda: any(pid != first for pid in child_pids(workers.pid)),
        timeout=20,
        message="replacement process",
    )
    job = noop.enqueue()
    assert job.wait(timeout=30).status == JobStatus.SUCCEEDED


@pytest.mark.skipif("connection.vendor != 'postgresql'")
def test_postgres_running_job_holds_an_advisory_lock_on_the_worker_connection(start_workers):
    from django_taskengine.conf import taskengine_settings

    job = sleep_and_record.enqueue(seconds=3.0)
    start_workers("--processes", "1")
    wait_for(lambda: _running(job, 1), timeout=30, message="job running")

    def lock_holder() -> int | None:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT a.application_name FROM pg_locks l"
                " JOIN pg_stat_activity a ON a.pid = l.pid"
                " WHERE l.locktype = 'advisory' AND l.classid = %s AND l.objid = %s"
                " AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())"
                " AND l.objsubid = 2",
                [taskengine_settings.ADVISORY_LOCK_NAMESPACE, job.id],
            )
            row = cursor.fetchone()
        return row[0] if row else None

    holder = wait_for(lock_holder, timeout=10, message="advisory lock")
    assert holder.startswith("taskengine-worker")
    assert job.wait(timeout=30).status == JobStatus.SUCCEEDED
    wait_for(lambda: lock_holder() is None, timeout=10, message="lock released")


def test_an_attempt_past_its_timeout_fails_and_its_process_is_replaced(start_workers):
    job = overruns.enqueue()
    workers = start_workers("--processes", "1")
    finished = job.wait(timeout=30)
    assert finished.status == JobStatus.FAILED
    assert "timeout of 0.5 s" in finished.error
    assert list(finished.attempt_set.values_list("outcome", flat=True)) == ["timed_out"]
    wait_for(lambda: "asked to be replaced" in workers.log(), timeout=20, message="recycle")
    after = noop.enqueue()
    assert after.wait(timeout=30).status == JobStatus.SUCCEEDED
