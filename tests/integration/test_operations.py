"""The operator layer: guarded transitions, pauses of every scope, and their effect on claims."""

from __future__ import annotations

import datetime as dt
import os
import socket
import uuid

import pytest
from django.utils import timezone

from django_taskengine import operations as ops
from django_taskengine.models import AuditEntry, Job, JobStatus, Pause, Queue
from django_taskengine.operations import jobs as jobs_module
from django_taskengine.operations.audit import Actor
from django_taskengine.store import WorkerInfo, get_store
from tests.factories import JobFactory
from tests.testapp.tasks import add, always_fail, in_other_queue, noop

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def session():
    info = WorkerInfo(uuid.uuid4(), socket.gethostname(), os.getpid(), [], 1)
    s = get_store().open_session(info)
    s.register()
    yield s
    s.close()


def _claimed_ids(session) -> set[int]:
    return {job.id for job in session.claim(100)}


def test_pause_queue_records_who_when_why_and_stops_claims(session):
    job = noop.enqueue()
    queue = ops.pause_queue("default", by="alice", reason="smtp outage")
    assert queue.paused and queue.is_paused
    assert queue.paused_by == "alice" and queue.pause_reason == "smtp outage"
    assert queue.paused_at is not None and queue.paused_until is None
    assert _claimed_ids(session) == set()
    ops.resume_queue("default", by="alice")
    assert Queue.objects.get(name="default").paused is False
    assert _claimed_ids(session) == {job.id}


def test_pausing_an_unused_queue_creates_it_and_resuming_an_unknown_one_is_refused():
    ops.pause_queue("future-queue", by="ops")
    assert Queue.objects.get(name="future-queue").paused
    with pytest.raises(ops.NotFound, match="No queue named 'nope'"):
        ops.resume_queue("nope")


def test_timed_pause_ends_by_itself(session):
    job = noop.enqueue()
    ops.pause_queue("default", until=dt.timedelta(minutes=15))
    assert Queue.objects.get(name="default").paused_until > timezone.now()
    assert _claimed_ids(session) == set()
    # The moment passes (set it in the past rather than waiting 15 minutes).
    Queue.objects.filter(name="default").update(
        paused_until=timezone.now() - dt.timedelta(seconds=1)
    )
    assert not Queue.objects.get(name="default").is_paused
    assert _claimed_ids(session) == {job.id}


def test_timed_pause_needs_a_positive_duration_and_an_aware_time():
    with pytest.raises(ValueError):
        ops.pause_queue("default", until=dt.timedelta(0))
    with pytest.raises(ValueError):
        ops.pause_queue("default", until=dt.datetime(2030, 1, 1))


def test_pause_all_stops_every_queue_and_keeps_queue_pauses_after_resume_all(session):
    default_job = noop.enqueue()
    other_job = in_other_queue.enqueue(1)
    ops.pause_queue("other", by="bob")
    ops.pause_all(by="alice", reason="deploy")
    assert _claimed_ids(session) == set()
    assert ops.resume_all(by="alice") is True
    assert ops.resume_all() is False
    # The queue paused on its own stays paused.
    assert _claimed_ids(session) == {default_job.id}
    ops.resume_queue("other")
    assert _claimed_ids(session) == {other_job.id}


def test_pause_task_type_stops_it_in_every_queue_only(session):
    paused_default = add.enqueue(1, 2)
    paused_other = add.using(queue="other").enqueue(1, 2)
    free = noop.enqueue()
    ops.pause_task(add.name, by="carol", reason="billing down")
    assert Pause.objects.get(target=add.name).pause_reason == "billing down"
    assert _claimed_ids(session) == {free.id}
    assert ops.resume_task(add.name) is True
    assert _claimed_ids(session) == {paused_default.id, paused_other.id}


def test_timed_task_pause_expires(session):
    job = add.enqueue(1, 2)
    ops.pause_task(add.name, until=dt.timedelta(minutes=5))
    assert _claimed_ids(session) == set()
    Pause.objects.update(paused_until=timezone.now() - dt.timedelta(seconds=1))
    assert ops.active_pauses() == []
    assert _claimed_ids(session) == {job.id}


def test_pause_and_resume_a_queued_job(session):
    job = noop.enqueue()
    assert ops.pause_job(job.id).status == JobStatus.PAUSED
    assert _claimed_ids(session) == set()
    assert ops.resume_job(job.id).status == JobStatus.QUEUED
    assert _claimed_ids(session) == {job.id}


def test_actions_fit_the_state_and_say_why_not():
    job = noop.enqueue()
    assert ops.actions_for(job) == ["pause", "cancel", "run_now"]
    with pytest.raises(ops.ActionRefused, match="retry applies only to failed or cancelled"):
        ops.retry_job(job.id)
    with pytest.raises(ops.NotFound, match="No job with id 999999"):
        ops.cancel_job(999999)
    cancelled = ops.cancel_job(job.id)
    assert cancelled.status == JobStatus.CANCELLED and cancelled.finished_at is not None
    assert ops.actions_for(cancelled) == ["retry"]


def test_retry_extends_attempts_and_keeps_history():
    job = always_fail.enqueue()
    Job.objects.filter(pk=job.pk).update(
        status=JobStatus.FAILED, attempts=2, finished_at=timezone.now(), error="ValueError: x"
    )
    retried = ops.retry_job(job.id)
    assert retried.status == JobStatus.QUEUED
    assert retried.attempts == 2
    assert retried.max_attempts == 4  # two more, the task's budget
    assert retried.finished_at is None
    assert retried.run_after <= timezone.now()


def test_a_stale_action_is_refused_and_never_applied_twice():
    job = always_fail.enqueue()
    Job.objects.filter(pk=job.pk).update(status=JobStatus.FAILED, attempts=2)
    seen = ops.Expected(status=JobStatus.FAILED, attempts=2)
    ops.retry_job(job.id, expected=seen)
    # Another operator's second click, or a click after the job failed again.
    with pytest.raises(ops.ActionRefused):
        ops.retry_job(job.id, expected=seen)
    Job.objects.filter(pk=job.pk).update(status=JobStatus.FAILED, attempts=4)
    with pytest.raises(ops.ActionRefused, match="changed since you looked"):
        ops.retry_job(job.id, expected=seen)
    assert Job.objects.get(pk=job.pk).max_attempts == 4


def test_run_now_makes_a_delayed_job_due(session):
    job = noop.using(run_after=3600).enqueue()
    assert _claimed_ids(session) == set()
    ops.run_job_now(job.id)
    assert _claimed_ids(session) == {job.id}


def test_retrying_a_job_whose_dedup_key_is_taken_is_refused_cleanly():
    first = noop.using(dedup_key="nightly").enqueue()
    ops.cancel_job(first.id)
    second = noop.using(dedup_key="nightly").enqueue()
    assert second.created and second.id != first.id
    with pytest.raises(ops.ActionRefused, match="dedup key 'nightly'"):
        ops.retry_job(first.id)
    assert Job.objects.get(pk=first.id).status == JobStatus.CANCELLED


def test_bulk_apply_reports_done_and_refused():
    a, b = noop.enqueue(), noop.enqueue()
    ops.cancel_job(b.id)
    done, refused = ops.apply_to_jobs("cancel", [a.id, b.id, 424242])
    assert [j.id for j in done] == [a.id]
    assert [job_id for job_id, _ in refused] == [b.id, 424242]


def test_a_stale_pause_never_replaces_a_pending_cancel():
    """A page opened before someone clicked Cancel still offers Pause; posting it must not turn
    the cancel request back into a pause (pause_all's stop_running neither)."""
    job = noop.enqueue()
    Job.objects.filter(pk=job.pk).update(status=JobStatus.RUNNING, attempts=1)
    ops.cancel_job(job.id)
    with pytest.raises(ops.ActionRefused):
        ops.pause_job(job.id, expected=ops.Expected(status=JobStatus.RUNNING, attempts=1))
    ops.pause_all(stop_running=True)
    assert Job.objects.get(pk=job.pk).stop_requested == "cancel"


def test_pause_all_stop_running_asks_running_jobs_of_every_queue_only():
    running = [noop.enqueue(), in_other_queue.enqueue(1)]
    queued = noop.enqueue()
    Job.objects.filter(pk__in=[j.pk for j in running]).update(status=JobStatus.RUNNING, attempts=1)
    ops.pause_all(stop_running=True)
    asked = dict(Job.objects.values_list("pk", "stop_requested"))
    assert [asked[j.pk] for j in running] == ["pause:engine", "pause:engine"] and asked[
        queued.pk
    ] == ""


def test_a_running_job_asked_to_pause_offers_only_cancel_and_pause_all_can_stop_running_jobs():
    job = noop.enqueue()
    Job.objects.filter(pk=job.pk).update(status=JobStatus.RUNNING, attempts=1)
    job.refresh_from_db()
    assert ops.actions_for(job) == ["pause", "cancel", "hard_pause", "hard_cancel"]
    ops.pause_all(stop_running=True)
    job.refresh_from_db()
    assert job.stop_requested == "pause:engine"
    assert ops.actions_for(job) == ["cancel", "hard_pause", "hard_cancel"]
    ops.cancel_job(job.id)
    job.refresh_from_db()
    assert job.stop_requested == "cancel" and ops.actions_for(job) == ["hard_cancel"]


def _running(job: Job) -> Job:
    Job.objects.filter(pk=job.pk).update(status=JobStatus.RUNNING, attempts=1)
    job.refresh_from_db()
    return job


@pytest.mark.parametrize(
    ("function", "request_"), [("cancel_job", "cancel:hard"), ("pause_job", "pause:hard")]
)
def test_a_hard_stop_of_a_running_job_is_a_distinct_request_recorded_in_the_audit_trail(
    function, request_
):
    job = _running(noop.enqueue())
    after = getattr(ops, function)(job.id, hard=True, by="alice", reason="runaway")
    assert (after.status, after.stop_requested) == (JobStatus.RUNNING, request_)
    entry = AuditEntry.objects.get()
    assert (entry.action, entry.object_id, entry.actor, entry.reason) == (
        f"hard_{function}",
        str(job.pk),
        "alice",
        "runaway",
    )
    assert entry.detail == {"stop_requested": request_}


def test_a_hard_stop_replaces_a_pending_cooperative_one_of_its_kind_or_weaker():
    job = _running(noop.enqueue())
    ops.pause_job(job.id)
    ops.pause_job(job.id, hard=True)  # a hard pause replaces a pause
    with pytest.raises(ops.ActionRefused, match="already asked to pause at once"):
        ops.cancel_job(job.id)  # no cooperative request takes a hard one's place
    ops.cancel_job(job.id, hard=True)  # a hard cancel replaces any pause
    assert Job.objects.get(pk=job.pk).stop_requested == "cancel:hard"
    with pytest.raises(ops.ActionRefused, match="hard stop"):
        ops.cancel_job(job.id, hard=True)  # it does not repeat
    with pytest.raises(ops.ActionRefused):
        ops.pause_job(job.id, hard=True)
    ops.pause_all(stop_running=True)  # nor does a wide pause touch it
    assert Job.objects.get(pk=job.pk).stop_requested == "cancel:hard"

    cancelled = _running(noop.enqueue())
    ops.cancel_job(cancelled.id)
    with pytest.raises(ops.ActionRefused):
        ops.pause_job(cancelled.id, hard=True)  # a hard pause is weaker than a cancel
    ops.cancel_job(cancelled.id, hard=True)
    assert Job.objects.get(pk=cancelled.pk).stop_requested == "cancel:hard"


def test_a_hard_stop_of_a_job_that_is_not_running_is_the_plain_action():
    queued, paused = noop.enqueue(), noop.enqueue()
    ops.pause_job(paused.id)
    assert ops.cancel_job(queued.id, hard=True).status == JobStatus.CANCELLED
    assert ops.pause_job(noop.enqueue().id, hard=True).status == JobStatus.PAUSED
    after = ops.cancel_job(paused.id, hard=True)
    assert (after.status, after.stop_requested) == (JobStatus.CANCELLED, "")
    assert set(AuditEntry.objects.values_list("action", flat=True)) == {"cancel_job", "pause_job"}
    with pytest.raises(ops.ActionRefused, match="cancelled"):
        ops.cancel_job(queued.id, hard=True)  # a finished job is refused, hard or not


def test_pause_task_stop_running_asks_only_that_tasks_running_jobs():
    mine, other = _running(noop.enqueue()), _running(add.enqueue(1, 2))
    queued = noop.enqueue()
    ops.pause_task(noop.name, stop_running=True, by="alice")
    asked = dict(Job.objects.values_list("pk", "stop_requested"))
    assert (asked[mine.pk], asked[other.pk], asked[queued.pk]) == ("pause:task", "", "")
    entry = AuditEntry.objects.get(action="pause_task")
    assert entry.detail == {"running_jobs_asked_to_pause": 1}


def test_resuming_a_task_requeues_the_jobs_its_pause_stopped_only():
    stopped, by_hand = noop.enqueue(), noop.enqueue()
    Job.objects.filter(pk=stopped.pk).update(status=JobStatus.PAUSED, stop_requested="pause:task")
    Job.objects.filter(pk=by_hand.pk).update(status=JobStatus.PAUSED, stop_requested="pause:hard")
    ops.pause_task(noop.name)
    assert ops.release_ended_pauses() == 0  # still in force
    ops.resume_task(noop.name)
    statuses = dict(Job.objects.values_list("pk", "status"))
    assert statuses[stopped.pk] == JobStatus.QUEUED
    assert statuses[by_hand.pk] == JobStatus.PAUSED  # an operator's own pause holds


def test_the_pause_lookups_see_only_pauses_in_force():
    assert ops.engine_pause() is None and ops.task_pause(add.name) is None
    ops.pause_all(by="alice")
    ops.pause_task(add.name, until=dt.timedelta(minutes=5))
    ops.pause_task(noop.name, until=timezone.now() + dt.timedelta(seconds=1))
    Pause.objects.filter(target=noop.name).update(paused_until=timezone.now())  # expired
    assert ops.engine_pause().paused_by == "alice"
    assert ops.task_pause(add.name).target == add.name
    assert ops.task_pause(noop.name) is None


def test_paused_queues_lists_queues_paused_on_their_own():
    ops.pause_queue("emails")
    ops.pause_queue("reports", until=timezone.now() + dt.timedelta(seconds=1))
    Queue.objects.filter(name="reports").update(paused_until=timezone.now())  # expired
    ops.pause_all()
    assert [queue.name for queue in ops.paused_queues()] == ["emails"]


def test_every_operator_action_is_one_import_away():
    for name in ("pause_queue", "retry_job", "pause_schedule", "run_schedule_now", "Expected"):
        assert hasattr(ops, name), name
    assert set(ops.__all__) <= set(dir(ops))


def test_a_running_job_is_never_changed_under_its_worker_by_a_plain_transition():
    # pause_job and cancel_job route a running job to a stop request; one that started after
    # they looked must be refused, not paused or cancelled with its worker still owning it.
    job = JobFactory(status="running", token=uuid.uuid4(), worker_id=uuid.uuid4(), attempts=1)
    for action in ("pause", "cancel"):
        with pytest.raises(ops.ActionRefused, match="changed since you looked"):
            jobs_module._transition(job.pk, action, {}, None, Actor("", "python", ""), None)
    job.refresh_from_db()
    assert (job.status, job.token is not None, job.stop_requested) == ("running", True, "")
