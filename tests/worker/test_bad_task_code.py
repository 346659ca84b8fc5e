"""Task code that misbehaves: it leaves a transaction open or raises a BaseException. Its job
fails with a clear error, and the worker and the next jobs on the same thread are unaffected."""

from __future__ import annotations

import pytest

from django_taskengine.models import Attempt, Job, JobStatus
from tests.testapp import bad_tasks
from tests.testapp.models import LedgerEntry
from tests.testapp.tasks import record

pytestmark = pytest.mark.django_db(transaction=True)

LEFT_OPEN = [
    bad_tasks.leaves_atomic_open,
    bad_tasks.leaves_raw_begin_open,
    bad_tasks.turns_autocommit_off,
    bad_tasks.atomic_leaves_inner_open,
]


@pytest.mark.parametrize("leaves_open", LEFT_OPEN, ids=lambda task: task.name.rsplit(".", 1)[1])
def test_a_task_that_leaves_a_transaction_open_fails_and_its_thread_runs_the_next_jobs(
    start_workers, leaves_open
):
    bad = leaves_open.enqueue()
    later = [record.enqueue(label=f"later-{i}") for i in range(10)]
    workers = start_workers("--burst", "--concurrency", "1")
    assert workers.wait() == 0, workers.log()[-3000:]
    bad.refresh_from_db()
    assert bad.status == JobStatus.FAILED, (bad.status, bad.error)
    assert bad.attempts == 1, "a task that leaves a transaction open is not retried"
    assert "the task left a transaction open" in bad.error
    assert "its writes were rolled back" in bad.error
    assert not LedgerEntry.objects.filter(job_id=bad.pk).exists(), "its writes were rolled back"
    assert Attempt.objects.get(job_id=bad.pk).outcome == "failed"
    for job in later:
        job.refresh_from_db()
        assert (job.status, job.error) == (JobStatus.SUCCEEDED, "")
    assert LedgerEntry.objects.filter(label__startswith="later-").count() == 10


@pytest.mark.parametrize(
    ("enqueue", "error", "raised_at"),
    [
        (lambda: bad_tasks.raises_system_exit.enqueue(3), "SystemExit: 3", "raise SystemExit"),
        (
            bad_tasks.raises_keyboard_interrupt.enqueue,
            "KeyboardInterrupt",
            "raise KeyboardInterrupt",
        ),
    ],
    ids=["SystemExit", "KeyboardInterrupt"],
)
def test_a_base_exception_from_a_task_fails_its_job_with_a_traceback_and_the_worker_goes_on(
    start_workers, enqueue, error, raised_at
):
    bad = enqueue()
    later = [record.enqueue(label=f"later-{i}") for i in range(3)]
    workers = start_workers("--burst", "--concurrency", "1")
    assert workers.wait() == 0
    bad.refresh_from_db()
    assert bad.status == JobStatus.FAILED
    assert bad.error == error
    assert raised_at in bad.traceback
    assert raised_at in Attempt.objects.get(job_id=bad.pk).traceback
    assert all(Job.objects.get(pk=job.pk).status == JobStatus.SUCCEEDED for job in later)
    log = workers.log()
    assert "internal error running job" not in log
    assert "died" not in log, log[-3000:]
