"""The models: the database constraints behind the guarantees, and ``Job.wait()``."""

from __future__ import annotations

import datetime as dt
import threading
import time

import pytest
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from django_taskengine.models import (
    ACTIVE_STATUSES,
    TERMINAL_STATUSES,
    Attempt,
    Job,
    JobStatus,
    JobTimeoutError,
    Queue,
    Worker,
)
from tests.factories import AttemptFactory, JobFactory, QueueFactory, WorkerFactory
from tests.helpers import committed_db

pytestmark = pytest.mark.django_db


def test_job_status_values_are_the_documented_strings():
    assert sorted(JobStatus.values) == sorted(
        ["queued", "running", "succeeded", "failed", "cancelled", "paused"]
    )
    assert set(ACTIVE_STATUSES) | set(TERMINAL_STATUSES) == set(JobStatus)
    assert not set(ACTIVE_STATUSES) & set(TERMINAL_STATUSES)


def test_factories_write_valid_rows():
    job = JobFactory(running=True)
    attempt = AttemptFactory(job=job)
    worker = WorkerFactory()
    queue = QueueFactory(on_pause=True)

    job.refresh_from_db()
    assert job.status == "running" and job.token is not None and job.worker_id is not None
    assert Attempt.objects.get(pk=attempt.pk).job_id == job.pk
    assert Worker.objects.get(pk=worker.pk).hostname == "test-host"
    assert Queue.objects.get(pk=queue.pk).paused is True


def test_two_active_jobs_cannot_share_a_dedup_key():
    JobFactory(dedup_key="report:1")
    for status in ACTIVE_STATUSES:
        with pytest.raises(IntegrityError), transaction.atomic():
            JobFactory(dedup_key="report:1", status=status)
    assert Job.objects.filter(dedup_key="report:1").count() == 1


def test_finished_jobs_do_not_hold_their_dedup_key():
    for status in TERMINAL_STATUSES:
        JobFactory(dedup_key="report:2", status=status)
    JobFactory(dedup_key="report:2")
    assert Job.objects.filter(dedup_key="report:2").count() == len(TERMINAL_STATUSES) + 1


def test_jobs_without_dedup_key_do_not_conflict():
    JobFactory.create_batch(3, dedup_key=None)
    assert Job.objects.filter(dedup_key__isnull=True).count() == 3


def test_database_rejects_an_unknown_status():
    with pytest.raises(IntegrityError), transaction.atomic():
        JobFactory(status="exploded")


def test_is_finished_only_for_terminal_statuses():
    for status in JobStatus:
        assert Job(status=status).is_finished == (status in TERMINAL_STATUSES)


def test_job_duration_is_the_time_between_start_and_finish():
    start = timezone.now()
    job = Job(started_at=start, finished_at=start + dt.timedelta(seconds=2.5))
    assert job.duration == 2.5
    assert Job(started_at=start).duration is None


def test_attempt_duration_is_the_time_between_start_and_finish():
    start = timezone.now()
    attempt = Attempt(started_at=start, finished_at=start + dt.timedelta(seconds=1.25))
    assert attempt.duration == 1.25
    assert Attempt(started_at=None, finished_at=start).duration is None


def test_string_forms_name_the_object():
    job = JobFactory(status="failed")
    assert str(job) == f"Job {job.pk} tests.testapp.tasks.add [failed]"
    attempt = AttemptFactory(job=job, number=2, outcome="orphaned")
    assert str(attempt) == f"Attempt 2 of job {job.pk}: orphaned"
    worker = WorkerFactory(hostname="box", pid=42)
    assert str(worker) == f"Worker box:42 ({worker.id})"
    assert str(QueueFactory(name="emails")) == "emails"


def test_attempts_are_deleted_with_their_job():
    job = JobFactory(succeeded=True)
    AttemptFactory.create_batch(2, job=job)
    job.delete()
    assert not Attempt.objects.exists()


def test_wait_returns_an_already_finished_job_at_once():
    job = JobFactory(succeeded=True)
    started = time.monotonic()
    assert job.wait(timeout=5).result == 3
    assert time.monotonic() - started < 0.5


def _finish_later(job_id: int, delay: float, status: str) -> threading.Thread:
    def finish() -> None:
        try:
            time.sleep(delay)
            Job.objects.filter(pk=job_id).update(
                status=status, result={"done": True}, finished_at=timezone.now()
            )
        finally:
            connection.close()

    thread = threading.Thread(target=finish)
    thread.start()
    return thread


@committed_db
@pytest.mark.parametrize("status", ["succeeded", "failed", "cancelled"])
def test_wait_returns_when_another_connection_finishes_the_job(status):
    job = JobFactory()
    thread = _finish_later(job.pk, 0.3, status)
    started = time.monotonic()
    try:
        waited = job.wait(timeout=10, poll_interval=0.05)
    finally:
        thread.join()
    elapsed = time.monotonic() - started
    assert waited is job
    assert job.status == status
    assert job.result == {"done": True}
    assert 0.25 <= elapsed < 3


@committed_db
def test_wait_raises_job_timeout_error_within_the_timeout():
    job = JobFactory(queue="nobody-listens")
    started = time.monotonic()
    with pytest.raises(JobTimeoutError) as excinfo:
        job.wait(timeout=0.4, poll_interval=0.05)
    elapsed = time.monotonic() - started
    assert 0.4 <= elapsed < 1.5
    message = str(excinfo.value)
    assert f"Job {job.pk}" in message
    assert "still queued" in message
    assert "'nobody-listens'" in message
    assert isinstance(excinfo.value, TimeoutError)


def test_wait_sees_a_running_job_as_unfinished():
    job = JobFactory(running=True)
    with pytest.raises(JobTimeoutError):
        job.wait(timeout=0.05)
