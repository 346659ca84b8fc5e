"""``ctx.sleep(seconds)``: the attempt ends, the job is due again later without holding a
thread, the task runs again from its first line and the same sleep returns at once — with real
worker processes, the in-process runner, and the context alone."""

from __future__ import annotations

import pytest

from django_taskengine.context import SleepRequest, TaskContext
from django_taskengine.models import JobStatus
from django_taskengine.testing import run_jobs
from tests.factories import claimed_job
from tests.helpers import attempt_outcomes, burst, ledger_labels, wait_for
from tests.testapp.sleep_tasks import (
    sleep_async,
    sleep_atomic,
    sleep_for,
    sleep_inside_except_exception,
    sleep_then_fail_once,
    sleep_twice,
)
from tests.testapp.tasks import noop

with_workers = pytest.mark.django_db(transaction=True)


# The context alone


def _context(waits=None, atomic=False) -> TaskContext:
    return TaskContext(claimed_job(id=7, started_at=None, waits=waits), atomic=atomic)


def test_a_first_sleep_ends_the_attempt_with_the_wait_recorded():
    with pytest.raises(SleepRequest) as raised:
        _context().sleep(1.5)
    assert raised.value.seconds == 1.5
    assert raised.value.waits_json == '[{"sleep":1.5}]'
    assert not isinstance(raised.value, Exception)  # a task's `except Exception` passes it on


def test_the_sleeps_done_return_at_once_and_the_next_one_ends_the_attempt():
    ctx = _context([{"sleep": 5}, {"sleep": 0}])
    ctx.sleep(5)
    ctx.sleep(0)
    with pytest.raises(SleepRequest) as raised:
        ctx.sleep(2)
    assert raised.value.waits_json == '[{"sleep":5},{"sleep":0},{"sleep":2.0}]'


def test_a_wait_done_that_was_not_a_sleep_is_refused():
    with pytest.raises(RuntimeError, match="durable wait #1 of job 7 was .* not a sleep"):
        _context([{"event": "paid"}]).sleep(1)


@pytest.mark.parametrize(
    ("given", "error", "message"),
    [
        (-1, ValueError, "^ctx.sleep\\(seconds\\) needs a finite delay of 0 seconds or more"),
        ("1", TypeError, "^ctx.sleep\\(seconds\\) takes a number of seconds or a datetime"),
    ],
)
def test_a_bad_sleep_is_refused(given, error, message):
    with pytest.raises(error, match=message):
        _context().sleep(given)


def test_an_atomic_task_may_not_sleep():
    with pytest.raises(TypeError, match="ctx.sleep\\(\\) is not available in an atomic task"):
        _context(atomic=True).sleep(1)


# With a worker


@with_workers
def test_a_task_that_sleeps_twice_runs_from_its_first_line_three_times(start_workers):
    job = sleep_twice.enqueue(seconds=0.2)

    burst(start_workers, job)

    assert (job.status, job.result, job.attempts) == (JobStatus.SUCCEEDED, {"attempt": 1}, 1)
    assert attempt_outcomes(job) == ["snoozed", "snoozed", "succeeded"]
    errors = list(job.attempt_set.order_by("id").values_list("error", flat=True))
    assert errors[:2] == ["asleep for 0.2 s (ctx.sleep)"] * 2
    # Every run starts at the top; the checkpoint skips what was done; each sleep returns at
    # once on the runs after it.
    assert ledger_labels(job.id) == ["start", "one", "start", "two", "start", "three"]
    assert job.waits == [{"sleep": 0.2}, {"sleep": 0.2}]


@with_workers
def test_except_exception_does_not_swallow_a_sleep(start_workers):
    job = sleep_inside_except_exception.enqueue(seconds=0)

    burst(start_workers, job)

    assert (job.status, job.result) == (JobStatus.SUCCEEDED, "woke up")
    assert attempt_outcomes(job) == ["snoozed", "succeeded"]


@with_workers
def test_an_async_task_sleeps_the_same_way(start_workers):
    job = sleep_async.enqueue(seconds=0)

    burst(start_workers, job)

    assert (job.status, job.result, job.attempts) == (JobStatus.SUCCEEDED, "awaited", 1)
    assert attempt_outcomes(job) == ["snoozed", "succeeded"]


@with_workers
def test_a_sleeping_job_holds_no_thread_and_wakes_when_due(start_workers):
    sleeper = sleep_for.enqueue(3)
    start_workers("--processes", "1", "--concurrency", "1")
    wait_for(
        lambda: sleeper.attempt_set.filter(outcome="snoozed").exists(),
        timeout=30,
        message="the sleep",
    )
    sleeper.refresh_from_db()
    slept = sleeper.attempt_set.get()
    assert (sleeper.status, sleeper.attempts) == (JobStatus.QUEUED, 0)
    delay = (sleeper.run_after - slept.finished_at).total_seconds()
    assert 3.0 <= delay < 4.0, delay

    # The only thread is free: another job runs while the first one sleeps.
    other = noop.enqueue().wait(timeout=30)
    assert other.status == JobStatus.SUCCEEDED
    assert other.finished_at < sleeper.run_after

    woke = sleeper.wait(timeout=30)
    assert (woke.status, woke.result, woke.attempts) == (JobStatus.SUCCEEDED, "woke up", 1)
    assert woke.attempt_set.get(outcome="succeeded").started_at >= sleeper.run_after


@with_workers
def test_a_retry_finds_the_sleep_done(start_workers):
    job = sleep_then_fail_once.enqueue(seconds=0.2)

    burst(start_workers, job)

    assert (job.status, job.result, job.attempts) == (JobStatus.SUCCEEDED, "retried", 2)
    assert attempt_outcomes(job) == ["snoozed", "failed", "succeeded"]
    assert ledger_labels(job.id) == ["start", "start", "start"]


@with_workers
def test_a_bad_sleep_or_one_in_an_atomic_task_fails_the_attempt(start_workers):
    negative = sleep_for.enqueue(-1)
    atomic = sleep_atomic.enqueue()

    burst(start_workers, negative, atomic)

    assert (negative.status, negative.attempts) == (JobStatus.FAILED, 1)
    assert negative.error.startswith("ValueError: ctx.sleep(seconds) needs a finite delay")
    assert (atomic.status, atomic.attempts) == (JobStatus.FAILED, 1)
    assert "ctx.sleep() is not available in an atomic task" in atomic.error
    assert atomic.waits == []


# In-process: testing.run_jobs()


@pytest.mark.django_db
def test_run_jobs_leaves_a_sleeping_job_queued_until_its_time():
    job = sleep_twice.enqueue(seconds=60)

    (ran,) = run_jobs(retries=True)

    assert ran.pk == job.pk
    assert (ran.status, ran.attempts, ran.error) == (
        JobStatus.QUEUED,
        0,
        "asleep for 60 s (ctx.sleep)",
    )
    assert ran.waits == [{"sleep": 60.0}]
    assert run_jobs() == []  # not due yet
