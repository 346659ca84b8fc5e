"""The audit trail: every operator action that changes something leaves one entry (who, what,
which object, when, why, from where), written in the transaction of the change; refused actions
and actions that change nothing leave none."""

from __future__ import annotations

import datetime as dt

import pytest
from django.db import transaction
from django.utils import timezone

from django_taskengine import operations as ops
from django_taskengine.models import AuditEntry, Job, JobStatus, Schedule
from tests.factories import JobFactory
from tests.testapp.tasks import add

pytestmark = pytest.mark.django_db


def entries() -> list[tuple[str, str, str, str, str, str]]:
    """(action, object kind, object id, who, source, reason) of every entry, oldest first."""
    return [
        (e.action, e.object_kind, e.object_id, e.actor, e.source, e.reason)
        for e in AuditEntry.objects.order_by("at", "id")
    ]


def schedule(paused: bool = False) -> Schedule:
    return Schedule.objects.create(
        name="nightly",
        task_name=add.name,
        cron="0 3 * * *",
        timezone="UTC",
        args=[1, 2],
        paused=paused,
        next_tick_at=timezone.now() + dt.timedelta(hours=1),
    )


def test_pauses_and_resumes_of_every_scope_are_recorded_with_who_why_and_where():
    who = {"by": "alice", "source": "cli"}
    ops.pause_queue("emails", reason="smtp outage", until=dt.timedelta(minutes=15), **who)
    ops.resume_queue("emails", reason="smtp back", **who)
    ops.pause_task(add.name, reason="billing down", **who)
    ops.resume_task(add.name, **who)
    ops.pause_all(reason="deploy", **who)
    ops.resume_all(**who)
    assert entries() == [
        ("pause_queue", "queue", "emails", "alice", "cli", "smtp outage"),
        ("resume_queue", "queue", "emails", "alice", "cli", "smtp back"),
        ("pause_task", "task", add.name, "alice", "cli", "billing down"),
        ("resume_task", "task", add.name, "alice", "cli", ""),
        ("pause_all", "engine", "", "alice", "cli", "deploy"),
        ("resume_all", "engine", "", "alice", "cli", ""),
    ]
    first = AuditEntry.objects.get(action="pause_queue")
    assert set(first.detail) == {"until"}
    assert abs(first.at - timezone.now()) < dt.timedelta(minutes=1)


def test_job_actions_are_recorded_with_the_status_they_set():
    job = JobFactory(status=JobStatus.QUEUED)
    ops.run_job_now(job.pk, by="bob", source="admin")
    ops.pause_job(job.pk, by="bob", source="admin", reason="investigating")
    ops.resume_job(job.pk, by="bob", source="admin")
    ops.cancel_job(job.pk, by="bob", source="admin", reason="duplicate order")
    ops.retry_job(job.pk, by="bob", source="admin")
    assert entries() == [
        ("run_job_now", "job", str(job.pk), "bob", "admin", ""),
        ("pause_job", "job", str(job.pk), "bob", "admin", "investigating"),
        ("resume_job", "job", str(job.pk), "bob", "admin", ""),
        ("cancel_job", "job", str(job.pk), "bob", "admin", "duplicate order"),
        ("retry_job", "job", str(job.pk), "bob", "admin", ""),
    ]
    details = [e.detail for e in AuditEntry.objects.order_by("at", "id")]
    assert [d["status"] for d in details] == ["queued", "paused", "queued", "cancelled", "queued"]


def test_a_stop_request_to_a_running_job_is_recorded_as_such():
    job = JobFactory(status=JobStatus.RUNNING, attempts=1)
    ops.cancel_job(job.pk, by="carol")
    (entry,) = AuditEntry.objects.all()
    assert (entry.action, entry.detail) == ("cancel_job", {"stop_requested": "cancel"})


def test_schedule_actions_are_recorded_and_run_now_names_its_job():
    schedule()
    ops.pause_schedule("nightly", by="dave", source="admin", reason="migration")
    ops.resume_schedule("nightly", by="dave", source="admin")
    job = ops.run_schedule_now("nightly", by="dave", source="admin")
    assert [e[:5] for e in entries()] == [
        ("pause_schedule", "schedule", "nightly", "dave", "admin"),
        ("resume_schedule", "schedule", "nightly", "dave", "admin"),
        ("run_schedule_now", "schedule", "nightly", "dave", "admin"),
    ]
    assert AuditEntry.objects.get(action="run_schedule_now").detail == {"job": job.pk}


def test_python_callers_are_recorded_as_python_by_default():
    ops.pause_queue("default")
    (entry,) = AuditEntry.objects.all()
    assert (entry.source, entry.actor) == ("python", "")


def test_refused_actions_and_actions_that_change_nothing_write_nothing():
    job = JobFactory(status=JobStatus.SUCCEEDED)
    with pytest.raises(ops.ActionRefused):
        ops.cancel_job(job.pk, by="eve")
    with pytest.raises(ops.ActionRefused):
        ops.retry_job(job.pk, by="eve", expected=ops.Expected(status=JobStatus.FAILED))
    with pytest.raises(ops.NotFound):
        ops.resume_queue("nowhere", by="eve")
    ops.pause_queue("default", by="eve")
    AuditEntry.objects.all().delete()
    ops.resume_queue("default", by="eve")
    ops.resume_queue("default", by="eve")  # not paused any more: nothing to record
    assert not ops.resume_all(by="eve")
    assert not ops.resume_task(add.name, by="eve")
    schedule(paused=False)
    with pytest.raises(ops.ActionRefused):
        ops.resume_schedule("nightly", by="eve")
    assert [e[0] for e in entries()] == ["resume_queue"]


@pytest.mark.parametrize(
    ("by", "source"), [("x" * 151, "cli"), ("eve", "browser"), ("eve", "")], ids=str
)
def test_an_actor_the_trail_cannot_record_is_refused_before_anything_changes(by, source):
    job = JobFactory(status=JobStatus.FAILED)
    with pytest.raises(ValueError, match="by is a name|source must be"):
        ops.retry_job(job.pk, by=by, source=source)
    with pytest.raises(ValueError, match="by is a name|source must be"):
        ops.pause_queue("default", by=by, source=source)
    assert Job.objects.get(pk=job.pk).status == JobStatus.FAILED
    assert not AuditEntry.objects.exists()


def test_the_entry_commits_or_rolls_back_with_its_change(monkeypatch):
    job = JobFactory(status=JobStatus.FAILED)
    with pytest.raises(RuntimeError), transaction.atomic():
        ops.retry_job(job.pk, by="frank")
        raise RuntimeError("the caller's transaction fails after the retry")
    assert Job.objects.get(pk=job.pk).status == JobStatus.FAILED
    assert not AuditEntry.objects.exists()

    def broken(*args, **kwargs):
        raise RuntimeError("the audit trail cannot be written")

    monkeypatch.setattr(ops.Actor, "record", broken)
    with pytest.raises(RuntimeError, match="cannot be written"):
        ops.retry_job(job.pk, by="frank")
    with pytest.raises(RuntimeError, match="cannot be written"):
        ops.pause_queue("default", by="frank")
    assert Job.objects.get(pk=job.pk).status == JobStatus.FAILED
    assert not ops.paused_queues()


def test_apply_to_jobs_records_one_entry_per_changed_job():
    jobs = [JobFactory(status=JobStatus.FAILED) for _ in range(2)]
    done = JobFactory(status=JobStatus.SUCCEEDED)
    changed, refused = ops.apply_to_jobs(
        "retry", [j.pk for j in [*jobs, done]], by="gina", source="admin"
    )
    assert len(changed) == 2 and [job_id for job_id, _ in refused] == [done.pk]
    assert sorted(e[2] for e in entries()) == sorted(str(j.pk) for j in jobs)


def test_audit_entries_are_read_latest_first_and_by_object():
    ops.pause_queue("a", by="h")
    ops.pause_queue("b", by="h")
    job = JobFactory(status=JobStatus.QUEUED)
    ops.pause_job(job.pk, by="h")
    assert [e.action for e in ops.audit_entries(using="default")] == [
        "pause_job",
        "pause_queue",
        "pause_queue",
    ]
    assert [e.object_id for e in ops.audit_entries("queue", "a", using="default")] == ["a"]
    assert [e.object_id for e in ops.audit_entries("job", job.pk, using="default")] == [str(job.pk)]
    assert len(ops.audit_entries(limit=1, using="default")) == 1
