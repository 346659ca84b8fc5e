"""``async def`` tasks in real worker processes: one event loop per runner thread, kept across
jobs, each job starting clean; Django's async safety; failures."""

from __future__ import annotations

import pytest

from django_taskengine import operations as ops
from django_taskengine.models import Job, JobStatus
from tests.helpers import wait_for
from tests.testapp.models import LedgerEntry
from tests.testapp.tasks import (
    async_fail,
    async_leave_running,
    async_overruns,
    async_query_without_sync_to_async,
    async_record_through_sync_to_async,
    async_returns_when_stopped,
    async_system_exit,
    async_watch_left_running,
    async_where,
)

pytestmark = pytest.mark.django_db(transaction=True)


def _results(jobs: list[Job]) -> list[dict[str, int]]:
    finished = Job.objects.in_bulk([job.id for job in jobs])
    assert {finished[job.id].status for job in jobs} == {JobStatus.SUCCEEDED}
    return [finished[job.id].result for job in jobs]


def test_async_jobs_in_sequence_reuse_one_event_loop_per_runner_thread(start_workers):
    jobs = async_where.bulk_enqueue([((), {}) for _ in range(40)])
    workers = start_workers("--burst", "--processes", "1", "--concurrency", "2")
    assert workers.wait(timeout=60) == 0, workers.log()[-3000:]
    results = _results(jobs)
    loops_of_thread: dict[int, set[int]] = {}
    for result in results:
        loops_of_thread.setdefault(result["thread"], set()).add(result["loop"])
    assert all(len(loops) == 1 for loops in loops_of_thread.values()), loops_of_thread
    # Each thread its own loop: a loop is never shared between threads.
    assert len({result["loop"] for result in results}) == len(loops_of_thread)


def test_a_task_left_pending_by_an_async_job_is_cancelled_before_the_next_job(start_workers):
    first = async_leave_running.enqueue()
    second = async_watch_left_running.enqueue()
    workers = start_workers("--burst", "--processes", "1", "--concurrency", "1")
    assert workers.wait(timeout=60) == 0, workers.log()[-3000:]
    left, watched = _results([first, second])
    assert (watched["thread"], watched["loop"]) == (left["thread"], left["loop"])
    # The background task was cancelled and finished cancelling before the next job started:
    # nothing else ran on the loop during it.
    assert watched["others"] == 0
    assert watched["ticked_meanwhile"] == 0
    assert watched["cancelled"] == 1


def test_async_tasks_use_the_orm_through_sync_to_async(start_workers):
    jobs = async_record_through_sync_to_async.bulk_enqueue(
        [((), {"label": "through sync_to_async"}) for _ in range(5)]
    )
    workers = start_workers("--burst", "--processes", "1", "--concurrency", "1")
    assert workers.wait(timeout=60) == 0, workers.log()[-3000:]
    results = _results(jobs)
    assert sorted(result["count"] for result in results) == [1, 2, 3, 4, 5]
    assert len({result["loop"] for result in results}) == 1
    assert all(result["called_back_on"] == result["loop"] for result in results)
    assert LedgerEntry.objects.filter(label="through sync_to_async").count() == 5


def test_the_orm_called_straight_from_an_async_task_fails_the_job_and_not_the_next(
    start_workers,
):
    refused = async_query_without_sync_to_async.enqueue()
    after = async_record_through_sync_to_async.enqueue(label="after a refused query")
    workers = start_workers("--burst", "--processes", "1", "--concurrency", "1")
    assert workers.wait(timeout=60) == 0, workers.log()[-3000:]
    refused.refresh_from_db()
    assert refused.status == JobStatus.FAILED
    assert "SynchronousOnlyOperation" in refused.error
    assert _results([after])[0]["count"] == 1


def test_an_exception_from_an_async_task_fails_the_job_with_its_traceback(start_workers):
    failing = async_fail.enqueue("planned failure of an async task")
    after = async_where.enqueue()
    workers = start_workers("--burst", "--processes", "1", "--concurrency", "1")
    assert workers.wait(timeout=60) == 0, workers.log()[-3000:]
    failing.refresh_from_db()
    assert failing.status == JobStatus.FAILED
    assert failing.error == "ValueError: planned failure of an async task"
    assert "in async_fail" in failing.traceback
    assert "raise ValueError(message)" in failing.traceback
    _results([after])


def test_system_exit_from_an_async_task_fails_its_job_and_the_loop_runs_the_next(start_workers):
    before = async_where.enqueue()
    exiting = async_system_exit.enqueue()
    after = async_where.enqueue()
    workers = start_workers("--burst", "--processes", "1", "--concurrency", "1")
    assert workers.wait(timeout=60) == 0, workers.log()[-3000:]
    exiting.refresh_from_db()
    assert exiting.status == JobStatus.FAILED
    assert exiting.error == "SystemExit: planned exit from an async task"
    assert "in async_system_exit" in exiting.traceback
    first, last = _results([before, after])
    assert first == last


def test_an_async_task_past_its_timeout_is_recorded_timed_out(start_workers):
    job = async_overruns.enqueue(60.0)
    workers = start_workers("--burst", "--processes", "1")
    assert workers.wait(timeout=60) == 0, workers.log()[-3000:]
    job.refresh_from_db()
    assert job.status == JobStatus.FAILED, workers.log()[-3000:]
    outcomes = list(job.attempt_set.order_by("number").values_list("outcome", flat=True))
    assert outcomes == ["timed_out", "timed_out"]


def test_an_async_task_that_returns_early_for_a_cancel_ends_cancelled(start_workers):
    job = async_returns_when_stopped.enqueue()
    start_workers("--processes", "1")
    wait_for(
        lambda: LedgerEntry.objects.filter(job_id=job.id, label="start").exists(),
        timeout=30,
        message="the attempt to start",
    )
    ops.cancel_job(job.id)
    finished = job.wait(timeout=30)
    assert finished.status == JobStatus.CANCELLED
    assert finished.result == {"stopped_early": True}
