"""Real worker processes draining jobs: exactly-once runs, order, retries, results, logs."""

from __future__ import annotations

import json

import pytest
from django.db import connection
from django.db.models import Count

from django_taskengine.conf import taskengine_settings
from django_taskengine.dispatch.state import dispatch_state
from django_taskengine.models import Attempt, Job, JobStatus, JobTimeoutError, Worker
from tests.helpers import wait_for
from tests.testapp.models import LedgerEntry
from tests.testapp.tasks import add, always_fail, fail_then_succeed, noop, record, returns_object

pytestmark = pytest.mark.django_db(transaction=True)


def test_two_processes_drain_2000_jobs_each_running_exactly_once(start_workers):
    jobs = record.bulk_enqueue([((), {"label": str(i)}) for i in range(2000)])
    # What is checked here is that a claim hands each job to one worker. On SQLite a worker
    # owns a running job by a lease, and the suite's 2-second lease can lapse while a loaded
    # machine keeps a worker waiting for SQLite's write lock: the other worker then rescues
    # the job and runs it again, as a lease promises (tests/store/test_contract.py).
    long_lease = json.dumps({"LEASE_SECONDS": 60})
    workers = start_workers(
        "--burst", "--processes", "2", "--concurrency", "4", TASKENGINE_TEST_OVERRIDES=long_lease
    )
    assert workers.wait(timeout=180) == 0, workers.log()[-3000:]
    assert Job.objects.filter(status=JobStatus.SUCCEEDED).count() == 2000
    runs = dict(LedgerEntry.objects.values_list("job_id").annotate(n=Count("id")))
    assert len(runs) == 2000
    assert set(runs) == {job.id for job in jobs}
    assert set(runs.values()) == {1}, "some job ran more than once"
    # Both processes took part, and every job has exactly one attempt record.
    assert LedgerEntry.objects.values("pid").distinct().count() == 2
    per_job = Attempt.objects.values("job_id").annotate(n=Count("id")).values_list("n", flat=True)
    assert set(per_job) == {1}


def test_jobs_run_in_priority_then_due_time_then_fifo_order(start_workers):
    from datetime import timedelta

    from django.utils import timezone

    earlier = timezone.now() - timedelta(minutes=5)
    low = record.using(priority=0).enqueue(label="low")
    high = record.using(priority=10).enqueue(label="high")
    low_old = record.using(priority=0, run_after=earlier).enqueue(label="low-old")
    high_second = record.using(priority=10).enqueue(label="high-second")
    workers = start_workers("--burst", "--processes", "1", "--concurrency", "1")
    assert workers.wait() == 0, workers.log()[-3000:]
    order = list(LedgerEntry.objects.order_by("id").values_list("label", flat=True))
    assert order == ["high", "high-second", "low-old", "low"]
    assert {high.id, low.id, low_old.id, high_second.id} == set(
        LedgerEntry.objects.values_list("job_id", flat=True)
    )


def test_result_is_stored_and_wait_returns_the_finished_job(start_workers):
    job = add.enqueue(20, 22)
    start_workers("--processes", "1")
    finished = job.wait(timeout=30)
    assert finished.status == JobStatus.SUCCEEDED
    assert finished.result == 42
    assert finished.started_at <= finished.finished_at
    assert finished.attempts == 1


def test_failing_task_is_retried_with_backoff_until_it_succeeds(start_workers):
    job = fail_then_succeed.enqueue(failures=2)
    workers = start_workers("--burst")
    assert workers.wait() == 0
    job.refresh_from_db()
    assert job.status == JobStatus.SUCCEEDED
    assert job.result == "succeeded on attempt 3"
    attempts = list(job.attempt_set.order_by("number").values_list("number", "outcome", "error"))
    assert [(n, o) for n, o, _ in attempts] == [(1, "failed"), (2, "failed"), (3, "succeeded")]
    assert "planned failure on attempt 1" in attempts[0][2]
    # Each retry waited at least half its nominal backoff (0.05 s, then 0.1 s).
    times = list(job.attempt_set.order_by("number").values_list("started_at", "finished_at"))
    assert (times[1][0] - times[0][1]).total_seconds() >= 0.025
    assert (times[2][0] - times[1][1]).total_seconds() >= 0.05


def test_task_that_keeps_failing_ends_failed_with_its_traceback(start_workers):
    job = always_fail.enqueue()
    workers = start_workers("--burst")
    assert workers.wait() == 0
    job.refresh_from_db()
    assert job.status == JobStatus.FAILED
    assert job.attempts == 2 == job.max_attempts
    assert job.error == "ValueError: this task always fails"
    assert "Traceback (most recent call last)" in job.traceback
    assert 'raise ValueError("this task always fails")' in job.traceback
    assert job.finished_at is not None
    assert list(job.attempt_set.values_list("outcome", flat=True)) == ["failed", "failed"]


def test_non_json_return_value_fails_the_job_without_retrying(start_workers):
    job = returns_object.enqueue()
    workers = start_workers("--burst")
    assert workers.wait() == 0
    job.refresh_from_db()
    assert job.status == JobStatus.FAILED
    assert job.attempts == 1
    assert "return value" in job.error and "JSON" in job.error


def test_one_log_line_per_job_names_task_id_attempt_outcome_and_duration(start_workers):
    job = add.enqueue(1, 1)
    failing = always_fail.enqueue()
    workers = start_workers("--burst")
    assert workers.wait() == 0
    log = workers.log()
    lines = [line for line in log.splitlines() if f"job {job.id} " in line]
    assert len(lines) == 1, log
    assert "tests.testapp.tasks.add" in lines[0]
    assert "attempt 1/3 succeeded" in lines[0]
    assert " ms)" in lines[0]
    failing_lines = [line for line in log.splitlines() if f"job {failing.id} " in line]
    assert len(failing_lines) == 2
    assert "attempt 2/2 failed: ValueError: this task always fails" in failing_lines[1]


def test_burst_exits_zero_and_leaves_jobs_due_later_queued(start_workers):
    now_job = noop.enqueue()
    later = noop.using(run_after=3600).enqueue()
    workers = start_workers("--burst", "--processes", "2")
    assert workers.wait() == 0
    assert Job.objects.get(pk=now_job.pk).status == JobStatus.SUCCEEDED
    assert Job.objects.get(pk=later.pk).status == JobStatus.QUEUED


def test_max_jobs_makes_each_process_exit_after_that_many_jobs(start_workers):
    noop.bulk_enqueue([((), {})] * 10)
    workers = start_workers("--max-jobs", "3", "--processes", "1")
    assert workers.wait() == 0
    assert Job.objects.filter(status=JobStatus.SUCCEEDED).count() == 3
    assert Job.objects.filter(status=JobStatus.QUEUED).count() == 7


def test_workers_only_take_jobs_from_their_queues(start_workers):
    from tests.testapp.tasks import in_other_queue

    default_job = noop.enqueue()
    other_job = in_other_queue.enqueue(5)
    workers = start_workers("--burst", "--queues", "other")
    assert workers.wait() == 0
    assert Job.objects.get(pk=other_job.pk).result == 5
    assert Job.objects.get(pk=default_job.pk).status == JobStatus.QUEUED


def test_a_paused_queue_is_never_claimed_from(start_workers):
    from django_taskengine.models import Queue

    job = noop.enqueue()
    assert Queue.objects.filter(name="default").update(paused=True) == 1
    workers = start_workers("--burst")
    assert workers.wait() == 0
    assert Job.objects.get(pk=job.pk).status == JobStatus.QUEUED
    Queue.objects.filter(name="default").update(paused=False)
    workers = start_workers("--burst")
    assert workers.wait() == 0
    assert Job.objects.get(pk=job.pk).status == JobStatus.SUCCEEDED


@pytest.mark.skipif("connection.vendor != 'postgresql'")
def test_postgres_idle_worker_is_woken_by_notify_not_polling(start_workers):
    from tests.helpers import wait_for

    # With a 60 s poll interval only NOTIFY can start the job quickly.
    workers = start_workers(
        "--processes", "1", TASKENGINE_TEST_OVERRIDES=json.dumps({"POLL_INTERVAL": 60})
    )
    wait_for(lambda: "started (pid" in workers.log(), timeout=20, message="worker start")
    wait_for(_worker_listening, timeout=20, message="worker LISTEN")
    # Under Redis Streams dispatch the wake-up goes through the relay: it listens once it leads.
    wait_for(_own_relay_leads, timeout=20, message="the worker's relay to lead")
    job = noop.enqueue()
    try:
        finished = job.wait(timeout=5)
    except JobTimeoutError as exc:
        pytest.fail(f"{exc}\n{_dispatch_and_log(workers)}")
    assert finished.status == JobStatus.SUCCEEDED, _dispatch_and_log(workers)
    started_after = (finished.started_at - finished.created_at).total_seconds()
    assert started_after < 2, _dispatch_and_log(workers)


def _worker_listening() -> bool:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity"
            " WHERE datname = current_database() AND application_name LIKE 'taskengine-worker%%'"
            " AND query LIKE '%%taskengine_worker%%'"
        )
        return cursor.fetchone()[0] > 0


def _own_relay_leads() -> bool:
    """The relay leading is one of this test's workers' (Redis keeps an earlier test's state);
    always true under PostgreSQL dispatch."""
    state = dispatch_state(taskengine_settings.DATABASE)
    if state.backend != "redis-streams":
        return True
    live = Worker.objects.filter(stopped_at__isnull=True).values_list("pk", flat=True)
    return state.relay_leader in {str(pk) for pk in live}


def _dispatch_and_log(workers) -> str:
    """What to show when the job did not start in time: the dispatch backend's state (the
    relay's leader and last round, the streams' undelivered and pending entries) and the
    worker's log."""
    state = dispatch_state(taskengine_settings.DATABASE)
    return f"dispatch: {state.as_json()}\nworker log:\n{workers.log()}"


def test_an_async_def_task_runs_to_completion(start_workers):
    from tests.testapp.tasks import async_add

    job = async_add.enqueue(2, 40)
    assert start_workers("--burst").wait() == 0
    assert Job.objects.get(pk=job.pk).result == 42


def test_an_idle_worker_claims_no_more_than_its_threads_before_it_knows_how_long_jobs_take(
    start_workers,
):
    """Two idle one-thread workers and two long jobs: each worker runs one, side by side,
    instead of the first to wake taking both (one to run, one to hold)."""
    for _ in range(2):
        start_workers("--processes", "1", "--concurrency", "1")
    wait_for(
        lambda: Worker.objects.filter(stopped_at__isnull=True).count() == 2,
        timeout=60,
        message="two worker processes to register",
    )
    record.bulk_enqueue([((), {"label": "long", "sleep": 2.0}) for _ in range(2)])
    wait_for(
        lambda: LedgerEntry.objects.filter(label="long").count() == 2,
        timeout=60,
        message="both long jobs to start",
    )
    assert len(set(LedgerEntry.objects.filter(label="long").values_list("pid", flat=True))) == 2
