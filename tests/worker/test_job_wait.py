"""``job.wait()`` on PostgreSQL: told by the worker that ends the job's attempt, not polling —
for a plain task (write_outcomes) and an atomic one (finish_atomic); and polling again when no
worker writes the end."""

from __future__ import annotations

import threading
import time

import pytest
from django.db import connection
from django.utils import timezone

from django_taskengine import operations as ops
from django_taskengine.models import Job, JobStatus, Worker
from tests.helpers import wait_for
from tests.testapp.tasks import add, record_atomic, sleep_and_record

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif("connection.vendor != 'postgresql'"),
]

#: The waiter's poll interval in these tests: a wait that returns well before it was told.
SLOW_POLL = 30.0


def _idle_worker(start_workers) -> None:
    start_workers("--processes", "1")
    wait_for(Worker.objects.exists, timeout=30, message="the worker to register")


def _running(job: Job) -> None:
    wait_for(
        lambda: Job.objects.filter(pk=job.pk, status=JobStatus.RUNNING).exists(),
        timeout=30,
        message="the job to start",
    )


@pytest.mark.parametrize(
    ("task", "kwargs", "expected"),
    [(sleep_and_record, {"seconds": 1.0}, "slept"), (record_atomic, {"sleep": 1.0}, 1)],
    ids=["plain", "atomic"],
)
def test_wait_is_told_when_a_worker_finishes_the_job(start_workers, task, kwargs, expected):
    _idle_worker(start_workers)
    job = task.enqueue(**kwargs)
    _running(job)  # so that the wait has to be told: the job is not finished when it begins
    began = time.monotonic()

    finished = job.wait(timeout=60, poll_interval=SLOW_POLL)

    assert time.monotonic() - began < SLOW_POLL / 3
    assert (finished.status, finished.result) == (JobStatus.SUCCEEDED, expected)
    assert Job.objects.get(pk=job.pk).notify_finish  # the mark the worker read


def test_many_threads_waiting_on_their_jobs_are_all_told(start_workers):
    _idle_worker(start_workers)
    jobs = [sleep_and_record.enqueue(seconds=0.5, label=str(n)) for n in range(8)]
    _running(jobs[0])
    results: dict[int, object] = {}

    def wait(job: Job) -> None:
        try:
            results[job.pk] = job.wait(timeout=60, poll_interval=SLOW_POLL).result
        finally:
            connection.close()

    threads = [threading.Thread(target=wait, args=(job,)) for job in jobs]
    began = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert time.monotonic() - began < SLOW_POLL / 3
    assert results == {job.pk: "slept" for job in jobs}


def test_an_end_no_worker_writes_is_seen_by_polling():
    job = add.enqueue(a=1, b=1)  # no worker: an operator cancels it
    timer = threading.Timer(0.3, lambda: (ops.cancel_job(job.pk), connection.close()))
    timer.start()
    try:
        finished = job.wait(timeout=30, poll_interval=0.2)
    finally:
        timer.join()
    assert finished.status == JobStatus.CANCELLED
    assert finished.finished_at <= timezone.now()
