"""Operator edits of jobs: run again (a new job), priority and due time of a waiting job, delete
and discard — each guarded by the state the operator saw, each in the audit trail."""

from __future__ import annotations

import datetime as dt
import os
import socket
import uuid

import pytest
from django.utils import timezone

from django_taskengine import operations as ops
from django_taskengine.models import Attempt, AuditEntry, Dependency, Job, JobStatus
from django_taskengine.store import WorkerInfo, get_store
from tests.factories import AttemptFactory, JobFactory
from tests.testapp.tasks import add, noop

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def session():
    info = WorkerInfo(uuid.uuid4(), socket.gethostname(), os.getpid(), [], 1)
    s = get_store().open_session(info)
    s.register()
    yield s
    s.close()


def _entries(action: str) -> list[AuditEntry]:
    return list(AuditEntry.objects.filter(action=action).order_by("id"))


def _finished(**fields) -> Job:
    return JobFactory(succeeded=True, **fields)


# -- run again -----------------------------------------------------------------------------


def test_run_again_enqueues_a_new_job_with_the_same_call_and_records_both(session):
    old = _finished(args=[4, 5], kwargs={}, queue="default", priority=7, max_attempts=9, attempts=9)

    new = ops.run_job_again(
        old.pk, expected=ops.Expected("succeeded", 9), by="alice", reason="customer asked"
    )

    assert new.pk != old.pk and new.created
    new.refresh_from_db()
    assert (new.task_name, new.args, new.kwargs, new.queue, new.priority) == (
        old.task_name,
        [4, 5],
        {},
        "default",
        7,
    )
    assert new.status == JobStatus.QUEUED and new.attempts == 0
    assert new.max_attempts == add.max_attempts  # the task's budget, not the old job's
    assert new.run_after <= timezone.now()
    old.refresh_from_db()
    assert old.status == JobStatus.SUCCEEDED  # the finished job stays as it was
    entries = _entries("run_job_again")
    assert [(e.object_id, e.detail, e.actor, e.reason) for e in entries] == [
        (str(old.pk), {"new_job": new.pk}, "alice", "customer asked"),
        (str(new.pk), {"copy_of": old.pk}, "alice", "customer asked"),
    ]
    assert [job.id for job in session.claim(10)] == [new.pk]


@pytest.mark.parametrize("status", [JobStatus.QUEUED, JobStatus.RUNNING, JobStatus.PAUSED])
def test_run_again_refuses_a_job_that_is_not_finished(status):
    job = JobFactory(status=status)
    with pytest.raises(ops.ActionRefused, match="only a finished job"):
        ops.run_job_again(job.pk)
    assert Job.objects.count() == 1 and not AuditEntry.objects.exists()


def test_run_again_refuses_a_task_not_registered_here():
    job = _finished(task_name="gone.module.task")
    with pytest.raises(ops.ActionRefused, match="not registered in this process"):
        ops.run_job_again(job.pk)
    assert Job.objects.count() == 1


def test_run_again_refuses_a_job_that_changed_since_the_operator_looked():
    job = JobFactory(status=JobStatus.FAILED, attempts=3)
    with pytest.raises(ops.ActionRefused, match="changed since you looked"):
        ops.run_job_again(job.pk, expected=ops.Expected("failed", 2))
    with pytest.raises(ops.ActionRefused, match="changed since you looked"):
        ops.run_job_again(job.pk, expected=ops.Expected("succeeded", 3))
    assert Job.objects.count() == 1


def test_run_again_keeps_the_dedup_key_and_refuses_while_another_job_holds_it():
    old = _finished(dedup_key="invoice-17")
    holder = JobFactory(dedup_key="invoice-17", status=JobStatus.QUEUED)

    with pytest.raises(ops.ActionRefused, match=f"job {holder.pk} \\(queued\\) holds its dedup"):
        ops.run_job_again(old.pk)
    assert Job.objects.count() == 2 and not _entries("run_job_again")

    Job.objects.filter(pk=holder.pk).update(status=JobStatus.SUCCEEDED)
    new = ops.run_job_again(old.pk)
    assert new.dedup_key == "invoice-17" and new.created
    # The copy holds the key now: a plain enqueue with it gets the copy.
    assert noop.using(dedup_key="invoice-17").enqueue().pk == new.pk


def test_run_again_refuses_arguments_the_task_no_longer_takes():
    job = _finished(args=[1, 2, 3])
    with pytest.raises(ops.ActionRefused, match="cannot be run again"):
        ops.run_job_again(job.pk)
    assert Job.objects.count() == 1


# -- priority and due time -----------------------------------------------------------------


def test_raising_a_priority_makes_the_job_claimed_first_and_is_recorded(session):
    first = noop.enqueue()
    second = noop.enqueue()

    job = ops.set_job_priority(second.pk, 50, expected=ops.Expected("queued", 0), by="bob")

    assert job.priority == 50
    [entry] = _entries("set_job_priority")
    assert entry.object_id == str(second.pk) and entry.detail == {"priority": 50, "was": 0}
    assert [j.id for j in session.claim(1)] == [second.pk]
    assert [j.id for j in session.claim(1)] == [first.pk]


def test_a_change_takes_a_reserved_job_back_from_its_worker():
    job = JobFactory(token=uuid.uuid4(), worker_id=uuid.uuid4())
    assert job.reserved
    changed = ops.set_job_priority(job.pk, -3)
    assert (changed.priority, changed.token, changed.worker_id) == (-3, None, None)


def test_a_paused_job_keeps_its_new_priority_when_resumed():
    job = JobFactory(status=JobStatus.PAUSED)
    ops.set_job_priority(job.pk, 4)
    assert ops.resume_job(job.pk).priority == 4


@pytest.mark.parametrize("status", [JobStatus.RUNNING, JobStatus.SUCCEEDED, JobStatus.FAILED])
def test_priority_and_due_time_of_a_job_that_does_not_wait_are_refused(status):
    job = JobFactory(status=status, attempts=1)
    with pytest.raises(ops.ActionRefused, match=f"is {status}: changing its priority"):
        ops.set_job_priority(job.pk, 5)
    with pytest.raises(ops.ActionRefused, match=f"is {status}: changing its run after"):
        ops.set_job_run_after(job.pk, timezone.now())
    job.refresh_from_db()
    assert job.priority == 0 and not AuditEntry.objects.exists()


def test_a_change_is_refused_when_the_job_changed_since_the_operator_looked():
    job = JobFactory(attempts=1)
    with pytest.raises(ops.ActionRefused, match="changed since you looked"):
        ops.set_job_priority(job.pk, 5, expected=ops.Expected("queued", 0))
    with pytest.raises(ops.ActionRefused, match="changed since you looked"):
        ops.set_job_run_after(job.pk, timezone.now(), expected=ops.Expected("paused", 1))
    job.refresh_from_db()
    assert job.priority == 0


def test_a_priority_must_be_a_32_bit_integer():
    job = JobFactory()
    with pytest.raises(TypeError):
        ops.set_job_priority(job.pk, "high")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="32 bits"):
        ops.set_job_priority(job.pk, 2**40)


def test_a_later_due_time_holds_the_job_back_and_an_earlier_one_releases_it(session):
    job = noop.enqueue()
    later = timezone.now() + dt.timedelta(hours=1)

    changed = ops.set_job_run_after(job.pk, later, by="carol")

    assert changed.run_after == later
    assert session.claim(10) == []
    [entry] = _entries("set_job_run_after")
    assert entry.detail["run_after"] == later.isoformat()
    ops.set_job_run_after(job.pk, timezone.now() - dt.timedelta(seconds=1))
    assert [j.id for j in session.claim(10)] == [job.pk]


def test_a_due_time_must_be_aware_and_not_for_a_job_that_waits_for_others():
    job = JobFactory()
    with pytest.raises(ValueError, match="aware datetime"):
        ops.set_job_run_after(job.pk, dt.datetime(2030, 1, 1))  # noqa: DTZ001
    blocked = JobFactory(blocked=True)
    with pytest.raises(ops.ActionRefused, match="waits for the jobs it was enqueued after"):
        ops.set_job_run_after(blocked.pk, timezone.now())


# -- delete and discard --------------------------------------------------------------------


def test_delete_a_finished_job_with_its_attempts():
    job = JobFactory(status=JobStatus.FAILED, attempts=2, error="boom")
    AttemptFactory(job=job, number=1)
    AttemptFactory(job=job, number=2)
    other = JobFactory(status=JobStatus.FAILED)
    AttemptFactory(job=other, number=1)

    ops.delete_job(job.pk, expected=ops.Expected("failed", 2), by="dave", reason="test data")

    assert not Job.objects.filter(pk=job.pk).exists()
    assert not Attempt.objects.filter(job_id=job.pk).exists()
    assert Attempt.objects.filter(job_id=other.pk).count() == 1
    [entry] = _entries("delete_job")
    assert entry.object_id == str(job.pk) and entry.detail["status"] == "failed"
    with pytest.raises(ops.NotFound):
        ops.delete_job(job.pk)


@pytest.mark.parametrize("status", [JobStatus.QUEUED, JobStatus.RUNNING, JobStatus.PAUSED])
def test_delete_refuses_a_job_that_is_not_finished(status):
    job = JobFactory(status=status)
    with pytest.raises(ops.ActionRefused, match="applies only to succeeded or failed or cancelled"):
        ops.delete_job(job.pk)
    assert Job.objects.filter(pk=job.pk).exists()


def test_delete_refuses_a_job_that_changed_since_the_operator_looked():
    job = JobFactory(status=JobStatus.FAILED, attempts=2)
    with pytest.raises(ops.ActionRefused, match="changed since you looked"):
        ops.delete_job(job.pk, expected=ops.Expected("failed", 1))
    assert Job.objects.filter(pk=job.pk).exists()


def test_delete_refuses_a_job_an_active_job_waits_for_and_not_one_a_finished_job_did():
    job = _finished()
    waiter = noop.using(after=[job.pk]).enqueue()
    Job.objects.filter(pk=waiter.pk).update(status=JobStatus.PAUSED)

    with pytest.raises(ops.ActionRefused, match=f"job {waiter.pk} \\(paused\\) waits for it"):
        ops.delete_job(job.pk)

    Job.objects.filter(pk=waiter.pk).update(status=JobStatus.SUCCEEDED)
    ops.delete_job(job.pk)
    assert not Job.objects.filter(pk=job.pk).exists()


def test_discard_a_queued_job_that_never_ran_frees_its_dedup_key():
    job = noop.using(dedup_key="report-3").enqueue()
    before = noop.enqueue()
    Dependency.objects.create(job_id=job.pk, after_id=before.pk)

    ops.discard_job(job.pk, expected=ops.Expected("queued", 0), by="erin")

    assert not Job.objects.filter(pk=job.pk).exists()
    assert not Dependency.objects.filter(job_id=job.pk).exists()
    assert noop.using(dedup_key="report-3").enqueue().created
    [entry] = _entries("discard_job")
    assert entry.detail["status"] == "queued" and entry.actor == "erin"


def test_discard_a_paused_job():
    job = JobFactory(status=JobStatus.PAUSED)
    ops.discard_job(job.pk)
    assert not Job.objects.filter(pk=job.pk).exists()


def test_discard_refuses_a_job_that_ran_or_that_a_worker_holds():
    ran = JobFactory(status=JobStatus.QUEUED, attempts=1)
    reserved = JobFactory(token=uuid.uuid4(), worker_id=uuid.uuid4())
    for job in (ran, reserved):
        with pytest.raises(ops.ActionRefused, match="only a job that never ran"):
            ops.discard_job(job.pk)
    finished = _finished()
    with pytest.raises(ops.ActionRefused, match="applies only to queued or paused"):
        ops.discard_job(finished.pk)
    assert Job.objects.count() == 3 and not AuditEntry.objects.exists()


def test_discard_refuses_a_job_others_wait_for():
    job = noop.enqueue()
    waiter = noop.using(after=[job.pk]).enqueue()
    with pytest.raises(ops.ActionRefused, match=f"job {waiter.pk} \\(queued\\) waits for it"):
        ops.discard_job(job.pk)
    assert Job.objects.filter(pk=job.pk).exists()
