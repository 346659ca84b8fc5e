"""``raise Snooze(seconds)``: the job is due again later, its run kept in the attempts history as
``snoozed`` and not counted — with real worker processes (sync, async, atomic and django.tasks
tasks), pending stop requests, bad arguments, and the in-process runner of eager mode."""

from __future__ import annotations

import datetime as dt
import math
import pickle
from decimal import Decimal
from importlib.util import find_spec

import pytest

from django_taskengine import Snooze
from django_taskengine import operations as ops
from django_taskengine.models import Job, JobStatus
from django_taskengine.testing import eager, run_jobs
from tests.helpers import attempt_outcomes, burst, wait_for
from tests.testapp.models import LedgerEntry
from tests.testapp.snooze_tasks import (
    snooze_async,
    snooze_atomic,
    snooze_for,
    snooze_then_succeed,
    snooze_when_told,
)

#: Worker tests commit for real: the worker processes must see the jobs.
with_workers = pytest.mark.django_db(transaction=True)


def _snoozed(job: Job) -> bool:
    return job.attempt_set.filter(outcome="snoozed").exists()


# Snooze(seconds) itself


@pytest.mark.parametrize(
    ("given", "seconds"),
    [(30, 30.0), (0, 0.0), (0.25, 0.25), (Decimal("1.5"), 1.5), (dt.timedelta(minutes=2), 120.0)],
)
def test_snooze_takes_seconds_or_a_timedelta(given, seconds):
    snooze = Snooze(given)
    assert snooze.seconds == seconds
    assert isinstance(snooze, Exception)  # documented: a task's `except Exception` catches it
    assert pickle.loads(pickle.dumps(snooze)).seconds == seconds


@pytest.mark.parametrize(
    ("given", "error", "message"),
    [
        ("30", TypeError, "takes a number of seconds or a datetime.timedelta, not '30' (str)"),
        (None, TypeError, "not None (NoneType)"),
        (True, TypeError, "not True (bool)"),
        (-1, ValueError, "needs a finite delay of 0 seconds or more, not -1"),
        (dt.timedelta(seconds=-5), ValueError, "needs a finite delay of 0 seconds or more"),
        (math.nan, ValueError, "needs a finite delay of 0 seconds or more, not nan"),
        (math.inf, ValueError, "needs a finite delay of 0 seconds or more, not inf"),
        (Decimal("sNaN"), ValueError, "needs a finite delay"),
        (200 * 365 * 86400, ValueError, "takes at most 100 years"),
    ],
)
def test_a_bad_snooze_is_refused_when_it_is_made(given, error, message):
    with pytest.raises(error, match="^Snooze\\(seconds\\) ") as raised:
        Snooze(given)
    assert message in str(raised.value)


# With a worker


@with_workers
def test_a_job_that_snoozes_twice_then_succeeds_has_used_one_attempt(start_workers):
    job = snooze_then_succeed.enqueue(snoozes=2, seconds=0.2)
    assert job.max_attempts == 1

    log = burst(start_workers, job)

    assert job.status == JobStatus.SUCCEEDED
    assert job.result == {"snoozed": 2, "attempt": 1}  # the checkpoint outlived each snooze
    assert job.attempts == 1
    assert job.error == ""
    assert attempt_outcomes(job) == ["snoozed", "snoozed", "succeeded"]
    assert set(job.attempt_set.values_list("number", flat=True)) == {1}
    assert [a.error for a in job.attempt_set.order_by("id")][:2] == ["snoozed for 0.2 s"] * 2
    assert LedgerEntry.objects.filter(job_id=job.id, label="run").count() == 3
    assert f"job {job.id} attempt 1/1 snoozed for 0.2 s" in log


@with_workers
def test_a_job_of_one_attempt_may_snooze_any_number_of_times(start_workers):
    job = snooze_then_succeed.using(max_attempts=1).enqueue(snoozes=6, seconds=0)

    burst(start_workers, job)

    assert (job.status, job.attempts, job.max_attempts) == (JobStatus.SUCCEEDED, 1, 1)
    assert attempt_outcomes(job) == ["snoozed"] * 6 + ["succeeded"]


@with_workers
def test_a_snoozed_job_is_due_seconds_after_its_attempt_and_does_not_run_before(start_workers):
    job = snooze_then_succeed.enqueue(snoozes=1, seconds=3)
    start_workers("--processes", "1")
    wait_for(lambda: _snoozed(job), timeout=30, message="the snooze")
    job.refresh_from_db()
    snoozed = job.attempt_set.get()
    assert job.status == JobStatus.QUEUED
    assert job.attempts == 0  # given back: the next run is attempt 1 again
    assert job.error == "snoozed for 3 s"
    # Due 3 s after the write (by the database's clock); not a retry's backoff.
    delay = (job.run_after - snoozed.finished_at).total_seconds()
    assert 3.0 <= delay < 4.0, delay

    finished = job.wait(timeout=30)

    assert finished.status == JobStatus.SUCCEEDED
    assert finished.attempts == 1
    succeeded = finished.attempt_set.get(outcome="succeeded")
    assert succeeded.started_at >= job.run_after
    assert LedgerEntry.objects.filter(job_id=job.id, label="run").count() == 2


@with_workers
@pytest.mark.parametrize(("action", "status"), [("cancel", "cancelled"), ("pause", "paused")])
def test_a_stop_asked_of_a_running_task_that_then_snoozes_is_carried_out(
    start_workers, action, status
):
    job = snooze_when_told.enqueue(seconds=60)
    start_workers("--processes", "1")
    wait_for(
        lambda: LedgerEntry.objects.filter(job_id=job.id, label="start").exists(),
        timeout=30,
        message="the attempt to start",
    )
    getattr(ops, f"{action}_job")(job.id)
    LedgerEntry.objects.create(job_id=job.id, attempt=1, label="go", pid=0)

    wait_for(lambda: _snoozed(job), timeout=30, message="the snooze")
    job.refresh_from_db()
    assert job.status == status
    assert job.error == f"{status} by an operator as its attempt ended (snoozed for 60 s)"
    assert job.attempts == 0  # the attempt counts as its ending says: a snooze does not
    assert attempt_outcomes(job) == ["snoozed"]
    assert job.stop_requested == ("pause" if action == "pause" else "")
    if action == "pause":
        # Resumed, it runs at once: the pause replaced the snooze.
        ops.resume_job(job.id)
        finished = job.wait(timeout=30)
        assert finished.status == JobStatus.SUCCEEDED
        assert finished.result == "ran after its snooze"
        assert attempt_outcomes(finished) == ["snoozed", "succeeded"]
        assert finished.attempts == 1


@with_workers
def test_a_bad_snooze_fails_the_attempt_with_its_error(start_workers):
    negative = snooze_for.enqueue(-1)
    text = snooze_for.enqueue("soon")

    burst(start_workers, negative, text)

    for job in (negative, text):
        assert (job.status, job.attempts) == (JobStatus.FAILED, 1)
        assert attempt_outcomes(job) == ["failed"]
        assert "snooze_tasks.py" in job.traceback
    assert negative.error == (
        "ValueError: Snooze(seconds) needs a finite delay of 0 seconds or more, not -1: the job "
        "is due again that long after the attempt ends"
    )
    assert text.error.startswith(
        "TypeError: Snooze(seconds) takes a number of seconds or a datetime.timedelta, not "
        "'soon' (str)"
    )


@with_workers
def test_an_atomic_task_that_snoozes_has_its_transaction_rolled_back(start_workers):
    job = snooze_atomic.enqueue(snoozes=1, seconds=0.2)

    burst(start_workers, job)

    assert (job.status, job.result, job.attempts) == (JobStatus.SUCCEEDED, "committed", 1)
    assert attempt_outcomes(job) == ["snoozed", "succeeded"]
    # The snoozed run wrote a row too, in the transaction its snooze rolled back.
    assert LedgerEntry.objects.filter(job_id=job.id).count() == 1


@with_workers
def test_an_async_task_snoozes_like_a_sync_one(start_workers):
    job = snooze_async.enqueue(snoozes=2, seconds=0.1)

    burst(start_workers, job)

    assert (job.status, job.result, job.attempts) == (JobStatus.SUCCEEDED, "awaited", 1)
    assert attempt_outcomes(job) == ["snoozed", "snoozed", "succeeded"]


@with_workers
@pytest.mark.skipif(
    not (find_spec("django.tasks") or find_spec("django_tasks")),
    reason="Django's Tasks framework is not installed",
)
def test_a_django_task_that_snoozes_is_ready_again_with_no_error(start_workers):
    from django_taskengine.backends.compat import TaskResultStatus
    from tests.testapp.snooze_tasks import django_snooze_once

    result = django_snooze_once.enqueue(seconds=60)
    job = Job.objects.get(pk=int(result.id))
    start_workers("--processes", "1")
    wait_for(lambda: _snoozed(job), timeout=30, message="the snooze")
    result.refresh()
    assert result.status == TaskResultStatus.READY
    assert result.errors == []

    ops.run_job_now(job.id)
    wait_for(
        lambda: result.refresh() or result.status == TaskResultStatus.SUCCESSFUL,
        timeout=30,
        message="the run after the snooze",
    )
    assert result.return_value == {"attempt": 1}
    assert result.errors == []
    assert len(result.worker_ids) == 1  # one attempt counted
    assert attempt_outcomes(job) == ["snoozed", "succeeded"]


# In-process: testing.run_jobs() and eager mode


@pytest.mark.django_db
@pytest.mark.parametrize("retries", [False, True])
def test_run_jobs_leaves_a_snoozed_job_queued_until_its_time(retries):
    job = snooze_then_succeed.enqueue(snoozes=1, seconds=60)

    (ran,) = run_jobs(retries=retries)

    assert ran.pk == job.pk
    assert (ran.status, ran.attempts, ran.error) == (JobStatus.QUEUED, 0, "snoozed for 60 s")
    assert attempt_outcomes(ran) == ["snoozed"]
    assert ran.run_after > job.run_after + dt.timedelta(seconds=59)
    assert run_jobs() == []  # not due yet

    ops.run_job_now(job.id)
    (again,) = run_jobs()
    assert (again.status, again.attempts) == (JobStatus.SUCCEEDED, 1)
    assert attempt_outcomes(again) == ["snoozed", "succeeded"]


@pytest.mark.django_db
def test_eager_mode_runs_a_job_once_and_leaves_it_snoozed():
    with eager(propagate=True):  # a snooze is not a failure: nothing is raised
        job = snooze_for.enqueue(0)

    assert (job.status, job.attempts) == (JobStatus.QUEUED, 0)
    assert attempt_outcomes(job) == ["snoozed"]
