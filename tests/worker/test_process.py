"""A whole worker process built and run in the test process (its runner threads are threads)."""

from __future__ import annotations

import os
import threading
import uuid
from typing import Any

import pytest
from django.db import connections

from django_taskengine.models import Attempt, AttemptOutcome, Job, JobStatus, Worker
from django_taskengine.store import WorkerInfo, get_store
from django_taskengine.worker.process import EXIT_RECYCLE, WorkerProcess
from tests.helpers import wait_for
from tests.testapp.tasks import add, always_fail, fail_then_succeed, objects_frozen, overruns, steps

pytestmark = pytest.mark.django_db(transaction=True)


def run_to_the_end(worker: WorkerProcess, timeout: float = 60.0) -> int:
    """``worker.run()`` in a thread, bounded by ``timeout``; its exit code."""
    ended: dict[str, Any] = {}

    def main() -> None:
        try:
            ended["code"] = worker.run()
        except BaseException as exc:  # noqa: BLE001 - re-raised in the test's thread
            ended["error"] = exc
        finally:
            connections.close_all()

    thread = threading.Thread(target=main, name="worker-main")
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        worker.stop_now()
        thread.join(15)
        raise AssertionError(f"the worker did not finish within {timeout} s")
    if "error" in ended:
        raise ended["error"]
    return ended["code"]


def in_process_worker(**options: Any) -> WorkerProcess:
    options.setdefault("queues", [])
    return WorkerProcess(burst=True, install_signal_handlers=False, **options)


def test_a_burst_worker_drains_the_queue_with_retries_and_stops_its_threads():
    adds = [add.enqueue(i, i) for i in range(8)]
    flaky = fail_then_succeed.enqueue(failures=1)  # retried after 0.05 s
    doomed = always_fail.enqueue()  # two attempts, both fail
    worker = in_process_worker(concurrency=3)
    assert run_to_the_end(worker) == 0
    assert [Job.objects.get(id=job.id).result for job in adds] == [i + i for i in range(8)]
    flaky.refresh_from_db()
    doomed.refresh_from_db()
    assert (flaky.status, flaky.attempts) == (JobStatus.SUCCEEDED, 2)
    assert (doomed.status, doomed.attempts) == (JobStatus.FAILED, 2)
    # Jobs, not attempts: the retried failures of "flaky" and "doomed" count once, as "doomed".
    assert (worker.completer.succeeded, worker.completer.failed) == (9, 1)
    assert not worker.claimer.running
    wait_for(
        lambda: not any(thread.is_alive() for thread in worker.runners.threads),
        timeout=10,
        message="the runner threads to exit",
    )
    # Read once the threads are gone: each takes its exit sentinel from the inbox on its way
    # out, so only then does an empty inbox say no job was left in it.
    assert worker.claimer.inbox.empty()


def test_max_jobs_stops_after_that_many_claims():
    jobs = [add.enqueue(i, 1) for i in range(5)]
    worker = in_process_worker(concurrency=2, max_jobs=3)
    assert run_to_the_end(worker) == 0
    statuses = list(
        Job.objects.filter(id__in=[j.id for j in jobs]).values_list("status", flat=True)
    )
    assert sorted(statuses) == sorted([JobStatus.SUCCEEDED] * 3 + [JobStatus.QUEUED] * 2)


def test_an_attempt_past_its_timeout_keeps_its_job_until_its_process_ends():
    job = overruns.enqueue()  # timeout 0.5 s, sleeps 3 s, one attempt
    worker = in_process_worker(concurrency=1)
    assert run_to_the_end(worker, timeout=30) == EXIT_RECYCLE
    job.refresh_from_db()
    # Its thread still sleeps: the job stays the stopped worker's, and nobody may run it yet.
    assert (job.status, job.worker_id) == (JobStatus.RUNNING, worker.info.id)
    assert Worker.objects.get(id=worker.info.id).stopped_at is not None
    assert not Attempt.objects.exists()
    info = WorkerInfo(id=uuid.uuid4(), hostname="test", pid=os.getpid(), queues=[], concurrency=1)
    rescuer = get_store().open_session(info)
    try:
        rescuer.register()
        assert rescuer.rescue([]) == []
        # What the process's exit does: its session ends, with the job's lock (PostgreSQL); on
        # SQLite the job's lease, shortened when the worker stopped, lapses.
        session = worker.liveness.session
        assert session is not None
        if not session.uses_leases:
            session.close()
        (rescued,) = wait_for(lambda: rescuer.rescue([]), timeout=15, message="the rescue")
    finally:
        rescuer.close()
    assert (rescued.id, rescued.status) == (job.id, JobStatus.FAILED)
    job.refresh_from_db()
    assert job.status == JobStatus.FAILED
    assert "timeout of 0.5 s" in job.error
    assert list(Attempt.objects.values_list("outcome", flat=True)) == [AttemptOutcome.TIMED_OUT]


def test_a_stop_request_requeues_a_checkpointing_job_with_its_checkpoint():
    job = steps.enqueue(total=500, step_sleep=0.02)
    worker = in_process_worker(concurrency=1, shutdown_timeout=20)

    def stop_after_two_steps() -> None:
        try:
            wait_for(
                lambda: Job.objects.filter(id=job.id, progress_current__gte=2).exists(),
                timeout=30,
                message="two steps",
            )
        finally:
            worker.request_stop()
            connections.close_all()

    stopper = threading.Thread(target=stop_after_two_steps)
    stopper.start()
    assert run_to_the_end(worker) == 0
    stopper.join(10)
    job.refresh_from_db()
    assert job.status == JobStatus.QUEUED
    assert job.checkpoint["next"] >= 2
    assert job.attempts == 0, "a stop at a checkpoint gives the attempt back"
    assert list(Attempt.objects.values_list("outcome", flat=True)) == [AttemptOutcome.INTERRUPTED]


@pytest.mark.django_db(transaction=True)
def test_a_supervised_worker_leaves_what_the_supervisor_loaded_to_the_collector_alone(
    start_workers,
):
    """Django, the project and the engine, loaded before the fork, are not walked by the
    worker's full collections (nor written to, which would copy their shared pages)."""
    job = objects_frozen.enqueue()
    assert start_workers("--burst").wait() == 0
    assert Job.objects.get(pk=job.pk).result > 10_000
