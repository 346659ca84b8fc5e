"""Resuming what was paused resumes what that pause stopped: jobs a queue, task or engine pause
parked mid-run go back to the queue when that pause ends (resumed, or a timed pause run out),
and jobs an operator paused one by one stay paused."""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone

from django_taskengine import operations as ops
from django_taskengine.models import Job, JobStatus, Pause, PauseScope, Queue
from tests.testapp.tasks import in_other_queue, noop

pytestmark = pytest.mark.django_db(transaction=True)


def _parked(job: Job, request: str) -> Job:
    """The job as a pause asked of its running attempt left it: paused, keeping the request."""
    Job.objects.filter(pk=job.pk).update(status=JobStatus.PAUSED, stop_requested=request)
    return job


def _statuses(*jobs: Job) -> list[str]:
    by_id = dict(Job.objects.values_list("pk", "status"))
    return [by_id[job.pk] for job in jobs]


def test_resuming_a_queue_requeues_the_jobs_its_pause_stopped_not_those_paused_by_hand():
    ops.pause_queue("default", stop_running=True)
    stopped = _parked(noop.enqueue(), "pause:queue")
    by_hand = _parked(noop.enqueue(), "pause")
    elsewhere = _parked(in_other_queue.enqueue(1), "pause:queue")
    ops.pause_queue("other")

    ops.resume_queue("default")

    assert _statuses(stopped, by_hand, elsewhere) == ["queued", "paused", "paused"]
    assert Job.objects.get(pk=stopped.pk).stop_requested == ""


def test_resuming_the_engine_requeues_the_jobs_its_pause_stopped():
    ops.pause_all(stop_running=True)
    stopped = _parked(noop.enqueue(), "pause:engine")
    by_queue = _parked(in_other_queue.enqueue(1), "pause:queue")
    ops.pause_queue("other")
    assert ops.resume_all()
    # The job its queue's pause stopped waits for that pause to end too.
    assert _statuses(stopped, by_queue) == ["queued", "paused"]


@pytest.mark.parametrize(
    ("pause", "request_", "resume"),
    [
        (lambda: ops.pause_all(), "pause:engine", ops.resume_all),
        (lambda: ops.pause_task(noop.name), "pause:task", lambda: ops.resume_task(noop.name)),
        (lambda: ops.pause_queue("default"), "pause:queue", lambda: ops.resume_queue("default")),
    ],
)
def test_the_only_job_a_pause_stopped_is_requeued_when_it_ends(pause, request_, resume):
    """Whichever pause held it, with no job held by any other (what the workers' every-second
    release looks for first)."""
    pause()
    stopped = _parked(noop.enqueue(), request_)
    resume()
    assert _statuses(stopped) == ["queued"]


def test_resuming_a_task_type_requeues_the_jobs_its_pause_stopped():
    ops.pause_task(noop.name)
    stopped = _parked(noop.enqueue(), "pause:task")
    other_task = _parked(in_other_queue.enqueue(1), "pause:task")
    ops.pause_task(in_other_queue.name)
    assert ops.resume_task(noop.name)
    assert _statuses(stopped, other_task) == ["queued", "paused"]


def test_a_timed_pause_that_ran_out_releases_the_jobs_it_stopped():
    ops.pause_queue("default", until=dt.timedelta(hours=1), stop_running=True)
    stopped = _parked(noop.enqueue(), "pause:queue")
    assert ops.release_ended_pauses() == 0  # still in force
    Queue.objects.filter(name="default").update(paused_until=timezone.now())
    Pause.objects.create(scope=PauseScope.ENGINE, paused_until=timezone.now())
    by_engine = _parked(in_other_queue.enqueue(1), "pause:engine")

    assert ops.release_ended_pauses() == 2

    assert _statuses(stopped, by_engine) == ["queued", "queued"]
