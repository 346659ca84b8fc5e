"""Graceful shutdown: SIGTERM and SIGINT stop claiming, let jobs finish, lose nothing."""

from __future__ import annotations

import signal

import pytest

from django_taskengine.models import Job, JobStatus
from tests.helpers import wait_for
from tests.testapp.models import LedgerEntry
from tests.testapp.tasks import record, sleep_and_record

pytestmark = pytest.mark.django_db(transaction=True)


def test_sigterm_lets_running_jobs_finish_and_exits_zero(start_workers):
    job = sleep_and_record.enqueue(seconds=1.0)
    waiting = record.bulk_enqueue([((), {"label": "after"})] * 5)
    workers = start_workers("--processes", "1", "--concurrency", "1", "--shutdown-timeout", "20")
    wait_for(lambda: LedgerEntry.objects.filter(job_id=job.id).exists(), timeout=30)
    workers.signal(signal.SIGTERM)
    assert workers.wait(timeout=40) == 0
    job.refresh_from_db()
    assert job.status == JobStatus.SUCCEEDED and job.attempts == 1
    # No new claims after the signal: jobs that were merely prefetched went back to the queue.
    statuses = set(
        Job.objects.filter(id__in=[j.id for j in waiting]).values_list("status", flat=True)
    )
    assert statuses <= {JobStatus.QUEUED, JobStatus.SUCCEEDED}
    assert not Job.objects.filter(status=JobStatus.RUNNING).exists()
    # The one busy thread was running the sleeper; no waiting job was started after the signal.
    assert not LedgerEntry.objects.filter(job_id__in=[j.id for j in waiting]).exists()
    assert Job.objects.filter(id__in=[j.id for j in waiting], status=JobStatus.QUEUED).count() == 5


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_jobs_still_running_at_the_shutdown_timeout_return_to_the_queue(start_workers, sig):
    jobs = sleep_and_record.bulk_enqueue([((), {"seconds": 30.0})] * 3)
    workers = start_workers("--processes", "1", "--concurrency", "3", "--shutdown-timeout", "0.5")
    wait_for(lambda: LedgerEntry.objects.count() == 3, timeout=30, message="jobs started")
    workers.signal(sig)
    assert workers.wait(timeout=30) == 0
    for job in jobs:
        job.refresh_from_db()
        assert job.status == JobStatus.QUEUED
        # The interrupted attempt is recorded but does not count against max_attempts.
        assert job.attempts == 0
        assert list(job.attempt_set.values_list("outcome", flat=True)) == ["interrupted"]
        assert job.worker_id is None and job.token is None
    # Nothing lost: a later worker finishes them.
    Job.objects.filter(id__in=[j.id for j in jobs]).update(kwargs={"seconds": 0.0})
    again = start_workers("--burst", "--concurrency", "3")
    assert again.wait(timeout=60) == 0
    assert Job.objects.filter(status=JobStatus.SUCCEEDED).count() == 3
