"""Stop requests belong to the job, not the attempt: a cancel or pause asked of a running job
lasts until it is carried out — across a failed attempt and a worker's death — with real worker
processes."""

from __future__ import annotations

import datetime as dt
import os
import signal

import pytest

from django_taskengine import operations as ops
from django_taskengine.models import Job, JobStatus, Worker
from tests.helpers import wait_for
from tests.testapp.models import LedgerEntry
from tests.testapp.tasks import fail_when_told, returns_when_stopped, sleep_and_record, steps

pytestmark = pytest.mark.django_db(transaction=True)


def _started(job: Job, attempt: int = 1) -> bool:
    return LedgerEntry.objects.filter(job_id=job.id, attempt=attempt).exists()


def _status(job: Job, status: str) -> bool:
    job.refresh_from_db()
    return job.status == status


@pytest.mark.parametrize(("action", "status"), [("cancel", "cancelled"), ("pause", "paused")])
def test_a_stop_asked_of_a_running_task_that_then_fails_is_carried_out_not_retried(
    start_workers, action, status
):
    job = fail_when_told.enqueue()
    start_workers("--processes", "1")
    wait_for(lambda: _started(job), timeout=30, message="the attempt to start")
    getattr(ops, f"{action}_job")(job.id)
    LedgerEntry.objects.create(job_id=job.id, attempt=1, label="go", pid=os.getpid())

    wait_for(lambda: job.refresh_from_db() or job.status != JobStatus.RUNNING, timeout=30)
    job.refresh_from_db()
    assert job.status == status
    assert job.attempts == 1
    assert "RuntimeError: planned failure on attempt 1" in job.error
    assert list(job.attempt_set.values_list("outcome", flat=True)) == ["failed"]
    # Not run again: a second attempt would have recorded its start by now.
    assert not LedgerEntry.objects.filter(job_id=job.id, attempt=2).exists()
    assert job.stop_requested == ("pause" if action == "pause" else "")
    if action == "pause":
        # Resuming runs it again, as a new attempt.
        ops.resume_job(job.id)
        wait_for(lambda: _started(job, attempt=2), timeout=30, message="the resumed attempt")


def test_a_pause_asked_of_a_job_whose_worker_is_killed_holds_after_the_rescue(start_workers):
    job = sleep_and_record.enqueue(seconds=60)
    start_workers("--processes", "2")
    wait_for(lambda: _started(job), timeout=30, message="the attempt to start")
    ops.pause_job(job.id)
    job.refresh_from_db()
    os.kill(Worker.objects.get(id=job.worker_id).pid, signal.SIGKILL)

    wait_for(lambda: _status(job, JobStatus.PAUSED), timeout=30, message="the rescue to pause it")
    assert list(job.attempt_set.values_list("outcome", flat=True)) == ["orphaned"]
    assert LedgerEntry.objects.filter(job_id=job.id).count() == 1  # not re-run
    ops.resume_job(job.id)
    wait_for(lambda: _started(job, attempt=2), timeout=30, message="the resumed attempt")


def test_a_task_that_returns_early_for_a_cancel_ends_cancelled_with_its_result(start_workers):
    job = returns_when_stopped.enqueue()
    start_workers("--processes", "1")
    wait_for(lambda: _started(job), timeout=30, message="the attempt to start")
    ops.cancel_job(job.id)
    finished = job.wait(timeout=30)
    assert finished.status == JobStatus.CANCELLED
    assert finished.result == {"stopped_early": True}
    assert finished.finished_at is not None
    assert list(finished.attempt_set.values_list("outcome", flat=True)) == ["cancelled"]


def test_a_task_that_returns_early_for_a_pause_ends_paused_and_runs_again_on_resume(
    start_workers,
):
    job = returns_when_stopped.enqueue(seconds=3)
    start_workers("--processes", "1")
    wait_for(lambda: _started(job), timeout=30, message="the attempt to start")
    ops.pause_job(job.id)
    wait_for(lambda: _status(job, JobStatus.PAUSED), timeout=30, message="the pause")
    assert job.attempts == 0  # pausing does not use up an attempt
    assert job.result is None
    assert list(job.attempt_set.values_list("outcome", flat=True)) == ["paused"]
    ops.resume_job(job.id)
    finished = job.wait(timeout=30)
    assert finished.status == JobStatus.SUCCEEDED
    assert finished.result == {"stopped_early": False}


def _progress_at_least(job: Job, n: int) -> bool:
    job.refresh_from_db()
    return (job.progress_current or 0) >= n


def test_resuming_a_queue_resumes_the_running_jobs_its_pause_stopped(start_workers):
    job = steps.enqueue(total=300, step_sleep=0.01)
    by_hand = steps.enqueue(total=5, step_sleep=0)
    ops.pause_job(by_hand.id)
    start_workers("--processes", "1")
    wait_for(lambda: _progress_at_least(job, 5), timeout=30, message="progress")
    ops.pause_queue("default", stop_running=True)
    wait_for(lambda: _status(job, JobStatus.PAUSED), timeout=30, message="the queue's pause")
    assert job.stop_requested == "pause:queue"

    ops.resume_queue("default")

    assert job.wait(timeout=60).status == JobStatus.SUCCEEDED
    by_hand.refresh_from_db()
    assert by_hand.status == JobStatus.PAUSED  # an operator's own pause is not the queue's


def test_a_timed_queue_pause_that_runs_out_resumes_the_running_jobs_it_stopped(start_workers):
    job = steps.enqueue(total=300, step_sleep=0.01)
    start_workers("--processes", "1")
    wait_for(lambda: _progress_at_least(job, 5), timeout=30, message="progress")
    ops.pause_queue("default", until=dt.timedelta(seconds=4), stop_running=True)
    wait_for(lambda: _status(job, JobStatus.PAUSED), timeout=30, message="the queue's pause")
    assert job.wait(timeout=60).status == JobStatus.SUCCEEDED
