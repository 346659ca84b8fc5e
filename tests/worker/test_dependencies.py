"""Jobs that wait for other jobs (``.using(after=…)``), run by real worker processes."""

from __future__ import annotations

import signal

import pytest
from django.utils import timezone

from django_taskengine import operations
from django_taskengine.models import Attempt, Job
from tests.helpers import burst, wait_for
from tests.testapp.tasks import (
    add,
    always_fail,
    in_other_queue,
    noop,
    record,
    record_atomic,
    results_of_dependencies,
)

with_workers = pytest.mark.django_db(transaction=True)


@with_workers
def test_a_diamond_runs_in_order_and_the_last_step_reads_both_results(start_workers):
    top = add.enqueue(1, 1)
    left = add.using(after=[top]).enqueue(2, 2)
    right = record_atomic.using(after=[top]).enqueue(label="right")  # finished in its transaction
    bottom = results_of_dependencies.using(after=[left, right]).enqueue()
    log = burst(start_workers, top, left, right, bottom)
    assert [j.status for j in (top, left, right, bottom)] == ["succeeded"] * 4, log[-3000:]
    assert bottom.result == {str(left.pk): 4, str(right.pk): right.result}
    assert top.finished_at <= min(left.started_at, right.started_at)
    assert max(left.finished_at, right.finished_at) <= bottom.started_at


@with_workers
def test_a_failure_cancels_what_follows_it_and_run_anyway_jobs_still_run(start_workers):
    failing = always_fail.using(max_attempts=1).enqueue()
    cancelled = noop.using(after=[failing]).enqueue()
    after_cancelled = noop.using(after=[cancelled]).enqueue()
    anyway = results_of_dependencies.using(after=[failing], on_dependency_failure="run").enqueue()
    burst(start_workers, failing, cancelled, after_cancelled, anyway)
    assert [j.status for j in (failing, cancelled, after_cancelled, anyway)] == [
        "failed",
        "cancelled",
        "cancelled",
        "succeeded",
    ]
    assert anyway.result == {str(failing.pk): None}


@with_workers
def test_a_waiting_job_starts_when_its_dependency_ends_in_a_running_worker(start_workers):
    first = add.using(run_after=2).enqueue(1, 2)
    second = add.using(after=[first]).enqueue(3, 4)
    workers = start_workers("--processes", "1", "--concurrency", "2")
    wait_for(
        lambda: Job.objects.filter(pk=second.pk, status="succeeded").exists(),
        timeout=30,
        message="the second job to run",
    )
    workers.signal(signal.SIGTERM)
    assert workers.wait(timeout=60) == 0, workers.log()[-3000:]
    first.refresh_from_db()
    second.refresh_from_db()
    assert first.finished_at <= second.started_at


@with_workers
def test_a_burst_of_two_processes_runs_a_fan_out_on_both(start_workers):
    # While the root runs, the fan-out waits: a burst process with nothing due must not take
    # that for a drained queue and exit, leaving its steps to the other process.
    root = record.enqueue(label="root", sleep=1.0)
    # More steps than one process claims at once: the other one's share is left to it.
    parts = record.using(after=[root]).bulk_enqueue(
        [((), {"label": f"part {n}", "sleep": 0.01}) for n in range(400)]
    )
    workers = start_workers("--burst", "--processes", "2", "--concurrency", "2")
    assert workers.wait(timeout=60) == 0, workers.log()[-4000:]
    assert (
        not Job.objects.filter(pk__in=[j.pk for j in [root, *parts]])
        .exclude(status="succeeded")
        .exists()
    )
    ran_on = set(
        Attempt.objects.filter(job_id__in=[p.pk for p in parts]).values_list("worker_id", flat=True)
    )
    assert len(ran_on) == 2, "both processes ran steps of the fan-out"


@with_workers
def test_a_burst_does_not_wait_for_a_dependency_nobody_runs(start_workers):
    # The dependency is in a queue this burst does not serve: nothing will end it.
    elsewhere = in_other_queue.enqueue(1)
    waiting = noop.using(after=[elsewhere]).enqueue()
    workers = start_workers("--burst", "--queues", "default")
    assert workers.wait(timeout=30) == 0, workers.log()[-4000:]
    waiting.refresh_from_db()
    assert waiting.status == "queued" and waiting.blocked


@with_workers
def test_a_burst_does_not_wait_for_a_dependency_in_a_paused_queue(start_workers):
    # Due and queued in the burst's own queue, but paused: nothing will run it.
    first = noop.enqueue()
    waiting = noop.using(after=[first]).enqueue()
    operations.pause_queue("default", by="test")
    workers = start_workers("--burst")
    assert workers.wait(timeout=30) == 0, workers.log()[-4000:]
    first.refresh_from_db()
    waiting.refresh_from_db()
    assert (first.status, waiting.status, waiting.blocked) == ("queued", "queued", True)


@with_workers
def test_a_burst_decides_what_a_crashed_worker_left_undecided_and_runs_it(start_workers):
    first = add.enqueue(1, 1)
    second = add.using(after=[first]).enqueue(2, 2)
    # As if the worker that finished it died before deciding for the job that waits for it.
    Job.objects.filter(pk=first.pk).update(status="succeeded", finished_at=timezone.now())
    workers = start_workers("--burst")
    assert workers.wait(timeout=30) == 0, workers.log()[-4000:]
    second.refresh_from_db()
    assert (second.status, second.blocked, second.result) == ("succeeded", False, 4)
