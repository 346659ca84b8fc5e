"""Task code that misbehaves: it leaves a transaction open or raises a BaseException. Its job
fails with a clear error, and the worker and the next jobs on the same thread are unaffected."""

from __future__ import annotations

import threading
import time
import uuid

import psycopg
import pytest
from django.db import connection, connections

from django_taskengine.models import Attempt, Job, JobStatus
from django_taskengine.store import get_store
from django_taskengine.worker import transactions
from django_taskengine.worker.claimer import Claimer
from django_taskengine.worker.runner import run_attempt
from django_taskengine.worker.transactions import _driver_in_transaction
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


@pytest.mark.parametrize("leaves_open", LEFT_OPEN, ids=lambda task: task.name.rsplit(".", 1)[1])
def test_a_transaction_left_open_is_found_when_the_thread_took_its_job_without_waiting(
    session, leaves_open
):
    """A runner thread that takes its next job straight after the last one skips the checks
    before it (``settled``): the check after it still finds what the task left open, rolls it
    back, and the thread's next job runs on a clean connection."""
    first = record.enqueue(label="first")
    bad = leaves_open.enqueue()
    last = record.enqueue(label="last")
    claimer = Claimer(concurrency=3)
    claimer.claim(session)
    entries = {entry.job.id: entry for entry in claimer.take_unstarted()}
    assert set(entries) == {first.id, bad.id, last.id}
    outcomes = {}
    left: list[dict[str, transactions.TransactionState]] = []

    def runner_thread() -> None:
        # As RunnerPool does: the first job after a wait, the next ones settled.
        for number, job in enumerate((first, bad, last)):
            entries[job.id].started = time.monotonic()
            result = run_attempt(entries[job.id].job, get_store(), uuid.uuid4(), settled=number > 0)
            outcomes[job.id] = result.outcome
        left.append(transactions.snapshot())

    thread = threading.Thread(target=runner_thread)
    thread.start()
    thread.join(timeout=60)
    assert not thread.is_alive()
    assert outcomes[bad.id].status == JobStatus.FAILED
    assert outcomes[bad.id].error.startswith("the task left a transaction open")
    assert not LedgerEntry.objects.filter(job_id=bad.id).exists(), "its writes were rolled back"
    assert outcomes[first.id].status == outcomes[last.id].status == JobStatus.SUCCEEDED
    assert LedgerEntry.objects.filter(job_id=last.id, label="last").exists(), "committed"
    assert left == [{}]


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


def test_a_broken_connection_is_not_a_transaction_left_open():
    """A task whose query failed because its connection broke (a cut, a restart) failed with a
    retryable error; its connection is not "in a transaction" and must not turn that into a
    final failure."""
    if connection.vendor != "postgresql":
        pytest.skip("libpq transaction statuses")
    raw = psycopg.connect(**connection.get_connection_params() | {"autocommit": True})
    raw.execute("BEGIN")
    assert _driver_in_transaction(raw) is True
    raw.execute("ROLLBACK")
    assert _driver_in_transaction(raw) is False
    raw.close()  # a closed or broken connection reports UNKNOWN
    assert _driver_in_transaction(raw) is False


def test_a_connection_lost_inside_a_transaction_is_not_a_transaction_left_open():
    """When the server goes away inside a transaction (an atomic task during a restart), Django
    drops the connection and leaves it marked autocommit off; it holds no transaction, and the
    attempt's failure is the retryable database error, not a final "left open" one."""
    found: list[dict[str, str]] = []

    def in_a_thread() -> None:
        own = connections["default"]
        own.ensure_connection()
        before = transactions.snapshot()
        own.connection.close()
        own.connection, own.autocommit = None, False  # what Atomic.__exit__ leaves then
        try:
            found.append(transactions.left_open(before))
        finally:
            own.autocommit = True
            own.close()

    thread = threading.Thread(target=in_a_thread)
    thread.start()
    thread.join(timeout=30)
    assert found == [{}]
