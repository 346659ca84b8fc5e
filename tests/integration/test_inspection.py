"""Queue statistics and the 'why is this job not running?' explanation."""

from __future__ import annotations

import datetime as dt
import uuid

import pytest
from django.utils import timezone

from django_taskengine import operations as ops
from django_taskengine.inspection import (
    explain_job,
    find_job,
    jobs_by_id,
    live_workers,
    queue_stats,
    task_is_known,
    worker_is_stale,
)
from django_taskengine.models import Job, JobStatus, Worker
from tests.testapp.tasks import add, noop

pytestmark = pytest.mark.django_db


def _worker(queues=(), heartbeat_age=0.0, stopped=False) -> Worker:
    now = timezone.now()
    return Worker.objects.create(
        id=uuid.uuid4(),
        hostname="host-a",
        pid=4242,
        queues=list(queues),
        last_heartbeat_at=now - dt.timedelta(seconds=heartbeat_age),
        stopped_at=now if stopped else None,
    )


def _codes(job: Job) -> list[str]:
    job.refresh_from_db()
    return [reason.code for reason in explain_job(job).reasons]


def test_queue_stats_count_by_state_in_each_queue():
    now = timezone.now()
    noop.bulk_enqueue([((), {})] * 3)
    noop.using(run_after=600).enqueue()
    add.using(queue="emails").enqueue(1, 2)
    running = noop.enqueue()
    Job.objects.filter(pk=running.pk).update(status=JobStatus.RUNNING)
    failed = noop.enqueue()
    Job.objects.filter(pk=failed.pk).update(status=JobStatus.FAILED, finished_at=now)
    done = noop.enqueue()
    Job.objects.filter(pk=done.pk).update(status=JobStatus.SUCCEEDED, finished_at=now)
    old = noop.enqueue()
    Job.objects.filter(pk=old.pk).update(run_after=now - dt.timedelta(minutes=10))
    stats = queue_stats()
    default = stats["default"]
    assert (default.queued, default.due, default.running, default.failed) == (5, 4, 1, 1)
    assert default.finished_recently == 2 and default.failed_recently == 1
    assert dt.timedelta(minutes=9) < default.oldest_due_age < dt.timedelta(minutes=11)
    assert stats["emails"].queued == 1
    assert not default.paused
    ops.pause_queue("emails")
    assert queue_stats()["emails"].paused


def test_live_workers_exclude_stale_and_stopped_ones():
    alive = _worker()
    stale = _worker(heartbeat_age=600)
    _worker(stopped=True)
    assert [w.id for w in live_workers()] == [alive.id]
    assert worker_is_stale(stale) and not worker_is_stale(alive)


def test_explains_a_job_that_is_not_due_yet():
    _worker()
    job = noop.using(run_after=dt.timedelta(minutes=3)).enqueue()
    reasons = explain_job(job).reasons
    assert [r.code for r in reasons] == ["not_due"]
    assert reasons[0].text.startswith("Due in 2 minutes") or reasons[0].text.startswith(
        "Due in 3 minutes"
    )


def test_explains_a_job_parked_waiting_for_an_event():
    _worker()
    job = noop.using(run_after=dt.timedelta(hours=2)).enqueue()
    Job.objects.filter(pk=job.pk).update(waiting_for="paid:17")
    job.refresh_from_db()
    reasons = explain_job(job).reasons
    assert [r.code for r in reasons] == ["waiting_for_event"]
    assert reasons[0].text.startswith(
        "Waiting for event 'paid:17' (ctx.wait_for_event): due when send_event sends it, or "
        "when its wait ends in "
    )


def test_explains_a_job_waiting_for_the_jobs_it_was_enqueued_after():
    _worker()
    first = noop.using(run_after=dt.timedelta(hours=2)).enqueue()
    job = noop.using(after=[first]).enqueue()
    reasons = explain_job(job).reasons
    assert [r.code for r in reasons] == ["waiting_for_dependencies"]
    assert reasons[0].text == (
        "Waiting for the jobs it was enqueued after (.using(after=…)): "
        f"job {first.pk} (queued) not finished; it runs when they all have."
    )


def test_explains_a_paused_queue_with_who_when_and_why():
    _worker()
    job = noop.enqueue()
    ops.pause_queue("default", by="alice", reason="smtp outage", until=dt.timedelta(minutes=30))
    text = explain_job(job).summary
    assert "Queue 'default' is paused by alice" in text
    assert '("smtp outage")' in text
    assert "resumes by itself in 29 minutes" in text or "resumes by itself in 30 minutes" in text


def test_explains_engine_and_task_pauses_and_a_paused_job():
    _worker()
    job = add.enqueue(1, 2)
    ops.pause_all(by="ops")
    ops.pause_task(add.name, by="billing")
    ops.pause_job(job.id)
    assert _codes(job) == ["job_paused", "engine_paused", "task_paused"]


def test_explains_jobs_of_higher_priority_ahead():
    _worker()
    noop.using(priority=5).bulk_enqueue([((), {})] * 4)
    job = noop.using(priority=1).enqueue()
    noop.using(priority=1).enqueue()  # after it: not ahead
    reasons = explain_job(job).reasons
    assert [r.code for r in reasons] == ["behind"]
    assert "Waiting behind 4 due job(s)" in reasons[0].text


def test_explains_that_no_live_worker_takes_the_queue():
    _worker(queues=["emails"])
    _worker(heartbeat_age=600)
    job = noop.enqueue()
    reasons = explain_job(job).reasons
    assert [r.code for r in reasons] == ["no_worker"]
    assert "run_workers --queues default" in reasons[0].text
    _worker(queues=[])  # a worker of every queue
    assert _codes(job) == ["soon"]


def test_explains_a_running_job_whose_worker_died():
    dead = _worker(heartbeat_age=600)
    job = noop.enqueue()
    Job.objects.filter(pk=job.pk).update(status=JobStatus.RUNNING, worker_id=dead.id, attempts=1)
    assert _codes(job) == ["worker_dead"]
    alive = _worker()
    Job.objects.filter(pk=job.pk).update(worker_id=alive.id, started_at=timezone.now())
    job.refresh_from_db()
    assert "Running attempt 1 on host-a (pid 4242)" in explain_job(job).summary


def test_find_job_and_jobs_by_id_leave_out_ids_that_do_not_exist():
    job = add.enqueue(1, 2)
    assert find_job(job.pk) == job
    assert find_job(job.pk + 1000) is None
    found = jobs_by_id([job.pk, job.pk + 1000])
    assert list(found) == [job.pk]
    assert found[job.pk].status == JobStatus.QUEUED


def test_a_task_is_known_when_registered_here_or_when_it_has_jobs():
    assert task_is_known(add.name)
    assert not task_is_known("nowhere.unregistered")
    Job.objects.create(task_name="elsewhere.registered")
    assert task_is_known("elsewhere.registered")
