"""A timeout stops the code: no attempt of a job starts while an earlier one can still execute.

A thread cannot be stopped, so the worker process that runs an attempt past its timeout keeps
the job until the attempt's thread has ended or the process has exited (and is replaced); only
then is the attempt recorded as timed out and the job retried.
"""

from __future__ import annotations

import pytest

from django_taskengine.models import Job, JobStatus
from tests.helpers import process_alive, wait_for
from tests.testapp.models import LedgerEntry
from tests.testapp.tasks import overruns_and_records, record, sleep_and_record

pytestmark = pytest.mark.django_db(transaction=True)


def _ledger(job: Job) -> dict[tuple[int, str], tuple[float, int]]:
    """(attempt, "start" or "finish") -> (time.time() it was recorded, pid)."""
    entries = {}
    for entry in LedgerEntry.objects.filter(job_id=job.id):
        what, when = entry.label.split()
        entries[(entry.attempt, what)] = (float(when), entry.pid)
    return entries


def test_an_attempt_that_ends_after_its_timeout_is_retried_only_once_it_has_ended(start_workers):
    # The worker process stays busy with another job, so it is not replaced at once: the
    # timed-out attempt's thread carries on (3 s) past its timeout (1 s) meanwhile.
    companion = sleep_and_record.enqueue(seconds=6.0)
    job = overruns_and_records.enqueue(seconds=3.0)
    busy = start_workers("--processes", "1", "--concurrency", "2", "--shutdown-timeout", "30")
    wait_for(
        lambda: LedgerEntry.objects.filter(job_id__in=[job.id, companion.id]).count() == 2,
        timeout=30,
        message="both jobs running in one process",
    )
    # Another worker, free to take the retry as soon as the job is back in the queue.
    idle = start_workers("--processes", "1", "--concurrency", "1")
    finished = job.wait(timeout=90)
    # By the companion's end, attempt 1's thread has long ended, if its process let it run.
    assert companion.wait(timeout=60).status == JobStatus.SUCCEEDED
    logs = busy.log()[-3000:] + idle.log()[-3000:]
    ledger = _ledger(finished)
    assert finished.status == JobStatus.FAILED, logs
    outcomes = list(finished.attempt_set.order_by("number").values_list("outcome", flat=True))
    assert outcomes == ["timed_out", "timed_out"], logs
    assert "timeout of 1.0 s" in finished.error
    assert (1, "finish") in ledger, (ledger, logs)
    start_1, finish_1, start_2 = ledger[1, "start"], ledger[1, "finish"], ledger[2, "start"]
    assert finish_1[0] - start_1[0] >= 2.9
    # The retry started only after the first attempt had stopped executing.
    assert start_2[0] > finish_1[0], ledger


def test_an_attempt_that_never_ends_is_retried_after_its_process_exits(start_workers):
    job = overruns_and_records.enqueue(seconds=120.0)
    workers = start_workers("--processes", "2", "--concurrency", "1", "--shutdown-timeout", "30")
    first = wait_for(lambda: _ledger(job).get((1, "start")), timeout=30, message="attempt 1")
    second = wait_for(lambda: _ledger(job).get((2, "start")), timeout=30, message="attempt 2")
    # Attempt 2 runs for a second before its own timeout: its predecessor's process is gone.
    assert not process_alive(first[1]), "attempt 2 started while attempt 1's process was alive"
    assert second[0] - first[0] >= 1.0
    finished = job.wait(timeout=60)
    assert finished.status == JobStatus.FAILED, workers.log()[-3000:]
    outcomes = list(finished.attempt_set.order_by("number").values_list("outcome", flat=True))
    assert outcomes == ["timed_out", "timed_out"], workers.log()[-3000:]
    assert not any(what == "finish" for _, what in _ledger(job))
    assert "asked to be replaced" in workers.log()
    # The replacement processes run jobs as usual.
    assert record.enqueue(label="after").wait(timeout=30).status == JobStatus.SUCCEEDED


def test_a_timeout_given_with_using_is_stored_and_enforced(start_workers):
    job = sleep_and_record.using(timeout=1, max_attempts=1).enqueue(seconds=60.0)
    assert Job.objects.get(id=job.id).timeout == 1.0
    start_workers("--processes", "1", "--shutdown-timeout", "30")
    finished = job.wait(timeout=60)
    assert finished.status == JobStatus.FAILED
    assert "timeout of 1.0 s" in finished.error
    assert list(finished.attempt_set.values_list("outcome", flat=True)) == ["timed_out"]


def test_using_overrides_the_tasks_timeout():
    assert overruns_and_records.using(timeout=2.5).enqueue().timeout == 2.5
    assert overruns_and_records.enqueue().timeout == 1.0


@pytest.mark.parametrize(
    ("value", "error"),
    [
        (0, ValueError),
        (-1, ValueError),
        (float("nan"), ValueError),
        ("5", TypeError),
        (True, TypeError),
    ],
)
def test_using_refuses_a_timeout_that_is_not_a_positive_number(value, error):
    with pytest.raises(error, match="timeout"):
        record.using(timeout=value)


def test_a_burst_run_ends_with_its_timed_out_attempts_recorded(start_workers):
    job = overruns_and_records.enqueue(seconds=60.0)
    workers = start_workers("--burst", "--processes", "1")
    assert workers.wait(timeout=60) == 0, workers.log()[-3000:]
    job.refresh_from_db()
    assert job.status == JobStatus.FAILED, workers.log()[-3000:]
    outcomes = list(job.attempt_set.order_by("number").values_list("outcome", flat=True))
    assert outcomes == ["timed_out", "timed_out"]
