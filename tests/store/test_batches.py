"""Batches (django_taskengine/workflows.py's Batch): jobs enqueued together and a callback run
once, when every one of them is finished, told how they ended."""

from __future__ import annotations

import threading

import pytest
from django.db import connection

from django_taskengine import Batch
from django_taskengine.core.lifecycle import succeeded
from django_taskengine.models import Job
from django_taskengine.testing import run_jobs
from tests.helpers import committed_db, in_thread
from tests.testapp.tasks import add, always_fail, batch_done, noop

pytestmark = pytest.mark.django_db


def _callback(batch: Batch, name: str) -> Job:
    return Job.objects.get(workflow_id=batch.id, step=name)


def test_on_complete_runs_once_with_how_the_jobs_ended():
    batch = Batch(on_complete=batch_done)
    batch.add(add, 1, 1)
    batch.add(add, 2, 2)
    batch.add(always_fail.using(max_attempts=1))
    batch.enqueue()
    assert _callback(batch, "on_complete").blocked is True
    run_jobs()
    callback = _callback(batch, "on_complete")
    assert (callback.status, callback.attempts) == ("succeeded", 1)
    assert callback.result == {"id": batch.id, "succeeded": 2, "failed": 1, "cancelled": 0}


@pytest.mark.parametrize(
    ("fails", "success", "failure"),
    [(False, "succeeded", "cancelled"), (True, "cancelled", "succeeded")],
)
def test_on_success_and_on_failure_run_only_when_they_apply(fails, success, failure):
    batch = Batch(on_success=batch_done, on_failure=batch_done.using(priority=5))
    batch.add(noop)
    batch.add(always_fail.using(max_attempts=1) if fails else noop)
    batch.enqueue()
    run_jobs()
    assert _callback(batch, "on_success").status == success
    assert _callback(batch, "on_failure").status == failure
    ran = _callback(batch, "on_failure" if fails else "on_success")
    assert ran.result == {
        "id": batch.id,
        "succeeded": 2 - fails,
        "failed": int(fails),
        "cancelled": 0,
    }


def test_a_with_block_enqueues_on_exit_and_nothing_if_it_raises():
    with Batch(on_complete=batch_done) as batch:
        batch.add(noop)
        assert not Job.objects.exists()
    assert Job.objects.count() == 2
    with pytest.raises(RuntimeError, match="stop"), Batch(on_complete=batch_done) as other:
        other.add(noop)
        raise RuntimeError("stop")
    assert other.id is None and Job.objects.count() == 2


def test_a_batch_that_cannot_be_is_refused():
    with pytest.raises(ValueError, match="Batch needs a callback"):
        Batch()
    with pytest.raises(TypeError, match="the callback must take batch="):
        Batch(on_complete=noop)
    with pytest.raises(TypeError, match=r"Batch\(on_failure=…\): a step is a task made with"):
        Batch(on_failure=print)
    with pytest.raises(ValueError, match="has no jobs"):
        Batch(on_complete=batch_done).enqueue()
    assert not Job.objects.exists()


@committed_db
@pytest.mark.timeout(120)
def test_the_last_two_jobs_finishing_at_once_on_two_workers_run_the_callback_once(open_sessions):
    batch = Batch(on_complete=batch_done)
    batch.add(add, 1, 1)
    batch.add(add, 2, 2)
    batch.enqueue()
    sessions = open_sessions(2)
    claimed = [session.claim(1)[0] for session in sessions]
    barrier = threading.Barrier(2, timeout=20)

    def finish(session, job) -> None:
        connection.ensure_connection()
        barrier.wait()
        session.finish([succeeded(job, "2")], [])

    errors: list = []
    threads = [
        in_thread(lambda s=s, j=j: finish(s, j), [], errors)
        for s, j in zip(sessions, claimed, strict=True)
    ]
    for thread in threads:
        thread.join(timeout=30)
    assert errors == []
    (ran,) = run_jobs()
    assert (ran.step, ran.status, ran.attempts) == ("on_complete", "succeeded", 1)
    assert ran.result == {"id": batch.id, "succeeded": 2, "failed": 0, "cancelled": 0}
    assert run_jobs() == []
