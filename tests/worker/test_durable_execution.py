"""Checkpoints, pausing and cancelling running jobs, shutdown at a checkpoint, on_orphan."""

from __future__ import annotations

import functools
import os
import signal
from collections import Counter

import pytest

from django_taskengine import operations as ops
from django_taskengine.models import Job, JobStatus, Worker
from tests.helpers import wait_for
from tests.testapp.models import LedgerEntry
from tests.testapp.tasks import charge_card, checkpoint_in_atomic, steps

pytestmark = pytest.mark.django_db(transaction=True)


def _step_counts(job: Job) -> Counter:
    return Counter(LedgerEntry.objects.filter(job_id=job.id).values_list("label", flat=True))


def _progress_at_least(job: Job, n: int) -> bool:
    job.refresh_from_db()
    return (job.progress_current or 0) >= n


def _status(job: Job, status: str) -> bool:
    job.refresh_from_db()
    return job.status == status


def test_progress_and_checkpoint_are_saved_while_the_task_runs(start_workers):
    job = steps.enqueue(total=40, step_sleep=0.05)
    start_workers("--processes", "1")
    wait_for(lambda: _progress_at_least(job, 5), timeout=30, message="progress")
    assert job.progress_total == 40
    assert job.checkpoint["next"] >= 4
    finished = job.wait(timeout=30)
    assert finished.status == JobStatus.SUCCEEDED
    assert finished.result == {"steps": 40}
    assert finished.progress_current == 40


def test_pause_a_running_job_at_its_checkpoint_then_resume_from_it(start_workers):
    job = steps.enqueue(total=300, step_sleep=0.01)
    start_workers("--processes", "1", "--concurrency", "2")
    wait_for(lambda: _progress_at_least(job, 10), timeout=30, message="progress")
    ops.pause_job(job.id)
    wait_for(lambda: _status(job, JobStatus.PAUSED), timeout=20, message="paused")
    stopped_at = job.checkpoint["next"]
    assert 10 <= stopped_at < 300
    assert job.attempts == 0  # pausing does not use up an attempt
    assert list(job.attempt_set.values_list("outcome", flat=True)) == ["paused"]
    assert len(_step_counts(job)) == stopped_at
    ops.resume_job(job.id)
    finished = job.wait(timeout=60)
    assert finished.status == JobStatus.SUCCEEDED
    counts = _step_counts(job)
    # Every step ran exactly once: the pause stopped it right after a checkpoint.
    assert len(counts) == 300 and set(counts.values()) == {1}


def test_cancel_a_running_job_at_its_checkpoint(start_workers):
    job = steps.enqueue(total=1000, step_sleep=0.01)
    start_workers("--processes", "1")
    wait_for(lambda: _progress_at_least(job, 5), timeout=30, message="progress")
    ops.cancel_job(job.id)
    finished = job.wait(timeout=20)
    assert finished.status == JobStatus.CANCELLED
    assert finished.finished_at is not None
    assert list(finished.attempt_set.values_list("outcome", flat=True)) == ["cancelled"]
    assert len(_step_counts(job)) < 1000


def test_sigterm_stops_a_checkpointing_task_at_once_and_requeues_it_with_its_checkpoint(
    start_workers,
):
    job = steps.enqueue(total=2000, step_sleep=0.01)
    workers = start_workers("--processes", "1", "--shutdown-timeout", "60")
    wait_for(lambda: _progress_at_least(job, 10), timeout=30, message="progress")
    workers.signal(signal.SIGTERM)
    # Far sooner than the 60 s shutdown timeout: it stopped at its next checkpoint.
    assert workers.wait(timeout=20) == 0
    job.refresh_from_db()
    assert job.status == JobStatus.QUEUED
    assert job.attempts == 0
    assert job.checkpoint["next"] >= 10
    assert list(job.attempt_set.values_list("outcome", flat=True)) == ["interrupted"]
    Job.objects.filter(pk=job.pk).update(
        kwargs={"total": job.checkpoint["next"] + 20, "step_sleep": 0}
    )
    again = start_workers("--burst")
    assert again.wait(timeout=60) == 0
    counts = _step_counts(job)
    assert set(counts.values()) == {1}


def test_checkpoint_resume_under_kills_redoes_at_most_one_step_per_kill(start_workers):
    job = steps.enqueue(total=200, step_sleep=0.02)
    start_workers("--processes", "2")
    kills = 0
    for threshold in (40, 110):
        wait_for(
            functools.partial(_progress_at_least, job, threshold),
            timeout=60,
            message=f"step {threshold}",
        )
        job.refresh_from_db()
        os.kill(Worker.objects.get(id=job.worker_id).pid, signal.SIGKILL)
        kills += 1
    finished = job.wait(timeout=90)
    assert finished.status == JobStatus.SUCCEEDED
    assert finished.attempts == 3
    counts = _step_counts(job)
    assert len(counts) == 200, "a step was skipped"
    redone = sum(n - 1 for n in counts.values())
    assert redone <= kills, counts.most_common(5)
    assert list(finished.attempt_set.order_by("number").values_list("outcome", flat=True)) == [
        "orphaned",
        "orphaned",
        "succeeded",
    ]


def test_checkpoint_in_an_atomic_task_is_a_clear_error(start_workers):
    job = checkpoint_in_atomic.enqueue()
    assert start_workers("--burst").wait() == 0
    job.refresh_from_db()
    assert job.status == JobStatus.FAILED
    assert "not available in an atomic task" in job.error


def test_on_orphan_park_fails_the_job_instead_of_running_it_again(start_workers):
    job = charge_card.enqueue(seconds=30)
    start_workers("--processes", "2")
    wait_for(lambda: LedgerEntry.objects.filter(job_id=job.id).exists(), timeout=30)
    job.refresh_from_db()
    os.kill(Worker.objects.get(id=job.worker_id).pid, signal.SIGKILL)
    finished = job.wait(timeout=30)
    assert finished.status == JobStatus.FAILED
    assert "worker died mid-run" in finished.error
    assert LedgerEntry.objects.filter(job_id=job.id).count() == 1
    assert list(finished.attempt_set.values_list("outcome", flat=True)) == ["orphaned"]
