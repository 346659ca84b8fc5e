"""The audit trail in the admin: actions taken here are recorded with the user's name and
"admin"; the read-only "Audit trail" list (filters, search, view permission only); and the
latest entries on a job's, queue's and schedule's page."""

from __future__ import annotations

import datetime as dt

import pytest
from django.contrib.auth.models import Permission
from django.utils import timezone

from django_taskengine import operations
from django_taskengine.models import AuditEntry, JobStatus, Schedule
from tests.admin_helpers import admin_url, content, staff_client
from tests.factories import JobFactory, QueueFactory

pytestmark = pytest.mark.django_db

ADD = "tests.testapp.tasks.add"


def test_admin_actions_are_recorded_with_the_user_and_admin(admin_client, admin_user):
    QueueFactory(name="emails")
    job = JobFactory(status=JobStatus.FAILED, attempts=3)
    admin_client.post(admin_url("queue_pause", "emails"), {"reason": "smtp outage"})
    admin_client.post(admin_url("queue_resume", "emails"))
    admin_client.post(admin_url("queue_pause_all"), {"reason": "deploy"})
    admin_client.post(admin_url("queue_resume_all"))
    admin_client.post(
        admin_url("job_retry", job.pk), {"expected_status": "failed", "expected_attempts": 3}
    )
    admin_client.post(
        admin_url("job_changelist"),
        {"action": "cancel_selected", "_selected_action": [job.pk]},
    )
    recorded = [
        (e.action, e.object_id, e.actor, e.source, e.reason)
        for e in AuditEntry.objects.order_by("at", "id")
    ]
    name = admin_user.get_username()
    assert recorded == [
        ("pause_queue", "emails", name, "admin", "smtp outage"),
        ("resume_queue", "emails", name, "admin", ""),
        ("pause_all", "", name, "admin", "deploy"),
        ("resume_all", "", name, "admin", ""),
        ("retry_job", str(job.pk), name, "admin", ""),
        ("cancel_job", str(job.pk), name, "admin", ""),
    ]


def test_schedule_actions_from_the_admin_are_recorded(admin_client):
    schedule = Schedule.objects.create(
        name="nightly",
        task_name=ADD,
        cron="0 3 * * *",
        timezone="UTC",
        args=[1, 2],
        next_tick_at=timezone.now() + dt.timedelta(hours=1),
    )
    admin_client.post(admin_url("schedule_pause", schedule.pk))
    admin_client.post(admin_url("schedule_run_now", schedule.pk))
    assert [(e.action, e.source) for e in AuditEntry.objects.order_by("at", "id")] == [
        ("pause_schedule", "admin"),
        ("run_schedule_now", "admin"),
    ]
    page = content(admin_client.get(admin_url("schedule_change", schedule.pk)))
    assert 'id="audit-entries"' in page and "run_schedule_now" in page


def test_the_audit_list_filters_searches_and_escapes(admin_client):
    operations.pause_queue("emails", by="alice", source="cli", reason="<script>x</script>")
    operations.pause_queue("reports", by="bob", source="admin", reason="quarterly run")
    job = JobFactory(status=JobStatus.FAILED)
    operations.retry_job(job.pk, by="carol")

    def listed(query: str = "") -> list[str]:
        response = admin_client.get(admin_url("auditentry_changelist", query=query))
        assert response.status_code == 200
        return [entry.actor for entry in response.context["cl"].result_list]

    assert listed() == ["carol", "bob", "alice"]  # latest first
    assert listed("source__exact=cli") == ["alice"]
    assert listed("action__exact=retry_job") == ["carol"]
    assert listed("object_kind__exact=queue") == ["bob", "alice"]
    assert listed("q=quarterly") == ["bob"]
    assert listed("q=emails") == ["alice"]
    assert listed("q=carol") == ["carol"]
    assert listed(f"object_kind__exact=job&object_id__exact={job.pk}") == ["carol"]
    page = content(admin_client.get(admin_url("auditentry_changelist")))
    assert "<script>x</script>" not in page and "&lt;script&gt;x&lt;/script&gt;" in page


def test_the_audit_trail_can_be_viewed_never_added_changed_or_deleted(admin_client):
    operations.pause_queue("emails", by="alice")
    entry = AuditEntry.objects.get()
    assert admin_client.get(admin_url("auditentry_add")).status_code == 403
    assert admin_client.get(admin_url("auditentry_delete", entry.pk)).status_code == 403
    page = admin_client.get(admin_url("auditentry_change", entry.pk))
    assert page.status_code == 200 and 'name="_save"' not in content(page)
    admin_client.post(admin_url("auditentry_change", entry.pk), {"actor": "mallory"})
    admin_client.post(
        admin_url("auditentry_changelist"),
        {"action": "delete_selected", "_selected_action": [entry.pk], "post": "yes"},
    )
    assert AuditEntry.objects.get().actor == "alice"


def test_viewing_the_audit_trail_needs_its_view_permission():
    operations.pause_queue("emails", by="alice")
    QueueFactory(name="reports")
    without = staff_client("pause_queue")
    assert without.get(admin_url("auditentry_changelist")).status_code == 403
    queue_page = content(without.get(admin_url("queue_change", "emails")))
    assert 'id="audit-entries"' not in queue_page

    viewer = staff_client("view_auditentry", username="auditor")
    assert viewer.get(admin_url("auditentry_changelist")).status_code == 200
    permissions = Permission.objects.filter(content_type__model="auditentry")
    assert {p.codename for p in permissions} == {"view_auditentry"}


def test_an_objects_page_shows_its_latest_entries_and_links_to_all(admin_client):
    QueueFactory(name="emails")
    job = JobFactory(status=JobStatus.QUEUED)
    operations.pause_queue("emails", by="alice", reason="smtp outage")
    operations.pause_queue("other", by="zed")
    operations.pause_job(job.pk, by="bob", reason="looking <into> it")

    queue_page = content(admin_client.get(admin_url("queue_change", "emails")))
    assert "smtp outage" in queue_page and "alice" in queue_page and "zed" not in queue_page
    assert "object_id__exact=emails" in queue_page

    job_page = content(admin_client.get(admin_url("job_change", job.pk)))
    assert "pause_job" in job_page and "looking &lt;into&gt; it" in job_page
    assert "smtp outage" not in job_page
