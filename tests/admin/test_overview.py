"""The overview page: linked from the admin index; counts per queue and status, failures of the
last hour, the oldest due job, workers alive, every pause in force with its Resume button."""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone

from django_taskengine.models import Pause, PauseScope, Queue
from tests.admin_helpers import admin_url, content, messages_of, staff_client
from tests.factories import JobFactory, QueueFactory, WorkerFactory

pytestmark = pytest.mark.django_db

ADD = "tests.testapp.tasks.add"


def test_admin_index_links_to_the_overview(admin_client):
    html = content(admin_client.get("/admin/"))

    assert f'<a href="{admin_url("overview_changelist")}">Overview</a>' in html


def test_overview_shows_counts_per_queue_and_status(admin_client):
    now = timezone.now()
    QueueFactory(name="emails")
    JobFactory.create_batch(3, queue="emails", run_after=now - dt.timedelta(minutes=20))
    JobFactory(queue="emails", running=True)
    JobFactory(queue="emails", status="paused")
    JobFactory.create_batch(
        2, queue="emails", status="failed", finished_at=now - dt.timedelta(minutes=5)
    )
    JobFactory(queue="emails", status="failed", finished_at=now - dt.timedelta(hours=3))
    JobFactory.create_batch(4, queue="emails", succeeded=True)
    JobFactory(queue="no-row-yet")  # a queue known only from its jobs is listed too

    response = admin_client.get(admin_url("overview_changelist"))

    assert response.status_code == 200
    rows = {row["stats"].name: row for row in response.context["te_rows"]}
    emails = rows["emails"]
    assert (emails["stats"].queued, emails["stats"].due, emails["stats"].running) == (3, 3, 1)
    assert (emails["stats"].paused_jobs, emails["stats"].failed) == (1, 3)
    assert (emails["succeeded_recently"], emails["failed_recently"]) == (4, 2)
    assert emails["oldest_due_age"] == "20 min"
    assert "no-row-yet" in rows
    html = content(response)
    assert '<tr data-queue="emails">' in html
    assert f"{admin_url('job_changelist')}?queue=emails&amp;status=failed" in html


def test_overview_summary_shows_failures_of_the_last_hour_oldest_due_and_workers(admin_client):
    now = timezone.now()
    JobFactory(queue="emails", run_after=now - dt.timedelta(hours=2))
    JobFactory(queue="reports", run_after=now - dt.timedelta(minutes=1))
    JobFactory(queue="reports", status="failed", finished_at=now - dt.timedelta(minutes=59))
    JobFactory(queue="emails", status="failed", finished_at=now - dt.timedelta(minutes=30))
    JobFactory(queue="emails", status="failed", finished_at=now - dt.timedelta(hours=2))
    WorkerFactory(hostname="worker-a", queues=["emails"])
    WorkerFactory(hostname="worker-b", last_heartbeat_at=now - dt.timedelta(minutes=10))
    WorkerFactory(hostname="worker-c", stopped_at=now)

    response = admin_client.get(admin_url("overview_changelist"))

    assert response.context["te_failed_recently"] == 2
    assert response.context["te_oldest"].name == "emails"
    html = content(response)
    summary = html[html.index('id="overview-summary"') : html.index('id="engine-controls"')]
    assert "waiting 2 h in queue" in summary
    assert "(1 stale: heartbeat missed, presumed dead)" in summary
    workers = html[html.index('id="overview-workers"') :]
    assert "worker-a" in workers and "worker-b" not in workers and "worker-c" not in workers
    assert len(response.context["te_live_workers"]) == 1


def test_overview_warns_when_no_worker_is_alive(admin_client):
    html = content(admin_client.get(admin_url("overview_changelist")))

    assert "No worker is alive: no job will run." in html


def test_overview_lists_every_pause_in_force_with_resume_buttons(admin_client):
    QueueFactory(name="emails", on_pause=True)
    QueueFactory(name="reports")
    Pause.objects.create(scope=PauseScope.ENGINE, paused_by="carol", pause_reason="failover")
    Pause.objects.create(scope=PauseScope.TASK, target=ADD, paused_by="bob")
    Pause.objects.create(  # expired timed pause: not in force
        scope=PauseScope.TASK,
        target="old.task",
        paused_until=timezone.now() - dt.timedelta(minutes=1),
    )

    html = content(admin_client.get(admin_url("overview_changelist")))

    assert "All queues are paused" in html and "by carol" in html
    assert 'data-action="resume-all">Resume all</button>' in html
    assert f'<tr data-task="{ADD}">' in html and '<tr data-task="old.task">' not in html
    queues = html[html.index('id="overview-queues"') : html.index('id="overview-workers"')]
    emails = queues[
        queues.index('<tr data-queue="emails">') : queues.index('<tr data-queue="reports">')
    ]
    assert f'action="{admin_url("queue_resume", "emails")}"' in emails
    assert 'data-action="resume-queue">Resume</button>' in emails
    reports = queues[queues.index('<tr data-queue="reports">') :]
    assert 'data-action="pause-queue">Pause</button>' in reports


def test_buttons_on_the_overview_come_back_to_the_overview(admin_client):
    QueueFactory(name="emails")
    overview = admin_url("overview_changelist")
    html = content(admin_client.get(overview))
    assert f'<input type="hidden" name="next" value="{overview}">' in html

    response = admin_client.post(
        admin_url("queue_pause", "emails"), {"next": overview}, follow=True
    )
    assert response.redirect_chain[-1][0] == overview
    assert Queue.objects.get(name="emails").is_paused

    response = admin_client.post(admin_url("queue_pause_all"), {"next": overview}, follow=True)
    assert response.redirect_chain[-1][0] == overview
    assert messages_of(response) == ["Paused all queues: no job starts until Resume all."]


def test_overview_has_no_add_change_or_delete_pages(admin_client):
    assert admin_client.get(admin_url("overview_changelist") + "add/").status_code == 404
    assert admin_client.get(admin_url("overview_changelist") + "emails/change/").status_code == 404


def test_overview_needs_a_view_permission_of_the_engine():
    assert staff_client(username="nobody").get(admin_url("overview_changelist")).status_code == 403
    viewer = staff_client("view_queue", username="viewer")
    assert viewer.get(admin_url("overview_changelist")).status_code == 200
