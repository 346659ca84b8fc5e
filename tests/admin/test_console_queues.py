"""The queue list as an operator's console: paused jobs per queue, limits with their usage,
Pause from a row with a reason and a duration, and the zone named beside every time input."""

from __future__ import annotations

import datetime as dt
import re

import pytest
from django.utils import timezone

from django_taskengine import operations
from django_taskengine.models import Job, JobStatus, Pause, PauseScope, Queue
from tests.admin_helpers import admin_url, content, messages_of, staff_client
from tests.factories import JobFactory, QueueFactory

pytestmark = pytest.mark.django_db


def _row(html: str, queue: str) -> str:
    start = html.index(f'<a href="{admin_url("queue_change", queue)}">{queue}</a>')
    return html[start : html.index("</tr>", start)]


def test_queue_list_shows_paused_jobs_per_queue_with_a_link(admin_client):
    QueueFactory(name="emails")
    QueueFactory(name="reports")
    JobFactory.create_batch(2, queue="emails", status=JobStatus.PAUSED)
    JobFactory(queue="emails")

    html = content(admin_client.get(admin_url("queue_changelist")))

    assert 'class="column-paused_jobs"' in html
    paused_url = admin_url("job_changelist", query="queue=emails&amp;status=paused")
    assert f'<td class="field-paused_jobs"><a href="{paused_url}">2</a></td>' in _row(
        html, "emails"
    )
    assert '<td class="field-paused_jobs"><a href' in _row(html, "reports")
    assert ">0</a></td>" in _row(html, "reports").split('field-paused_jobs"')[1][:120]


def test_queue_list_shows_limits_and_what_they_count(admin_client):
    operations.set_queue_limits("emails", concurrency=2, rate_limit="100/h")
    QueueFactory(name="reports")

    html = content(admin_client.get(admin_url("queue_changelist")))

    assert "concurrency 0/2 running" in _row(html, "emails")
    assert "rate 100/h" in _row(html, "emails")
    assert '<td class="field-limits">—</td>' in _row(html, "reports")


def test_pause_from_a_row_carries_a_reason_and_a_duration(admin_client):
    QueueFactory(name="emails")
    html = content(admin_client.get(admin_url("queue_changelist")))
    row = _row(html, "emails")
    form_id = re.search(r'name="reason" form="([^"]+)"', row).group(1)
    # The row's fields and button belong to a form outside the changelist form.
    assert f'<form method="post" id="{form_id}"' in html
    assert (
        f'form="{form_id}" formmethod="post" formaction="{admin_url("queue_pause", "emails")}"'
        in row
    )
    assert 'data-action="pause-queue" data-queue="emails">Pause</button>' in row
    assert '<option value="1h">1 h</option>' in row

    before = timezone.now()
    response = admin_client.post(
        admin_url("queue_pause", "emails"),
        {"reason": "smtp outage", "duration": "1h", "next": admin_url("queue_changelist")},
        follow=True,
    )

    assert any("Paused queue “emails”" in message for message in messages_of(response))
    queue = Queue.objects.get(name="emails")
    assert queue.paused and queue.paused_by == "admin" and queue.pause_reason == "smtp outage"
    assert (
        before + dt.timedelta(minutes=59)
        < queue.paused_until
        < timezone.now() + dt.timedelta(hours=1, seconds=1)
    )
    row = _row(content(response), "emails")
    assert 'data-action="resume-queue" data-queue="emails">Resume</button>' in row
    assert "smtp outage" in row


def test_a_pause_until_a_time_is_read_in_the_named_zone(admin_client, settings):
    settings.TIME_ZONE = "Europe/Paris"
    QueueFactory(name="emails")
    page = content(admin_client.get(admin_url("queue_change", "emails")))
    assert re.search(
        r'name="until"[^>]*> <span class="te-zone">Europe/Paris '
        r"\(now \d{4}-\d\d-\d\d \d\d:\d\d:\d\d CE",
        page,
    )

    until = timezone.localtime(timezone.now() + dt.timedelta(hours=2)).replace(microsecond=0)
    admin_client.post(
        admin_url("queue_pause", "emails"), {"until": until.strftime("%Y-%m-%dT%H:%M:%S")}
    )

    assert Queue.objects.get(name="emails").paused_until == until


def test_engine_and_task_pauses_offer_an_end_time_labelled_with_the_zone(admin_client):
    QueueFactory(name="emails")
    html = content(admin_client.get(admin_url("queue_changelist")))
    controls = html[html.index('id="engine-controls"') :]
    assert controls.count('name="until"') == 2
    assert controls.count('<span class="te-zone">UTC (now ') == 2

    until = (timezone.now() + dt.timedelta(hours=1)).replace(microsecond=0)
    admin_client.post(
        admin_url("queue_pause_task"),
        {"task_name": "tests.testapp.tasks.add", "until": until.strftime("%Y-%m-%dT%H:%M:%S")},
    )
    pause = Pause.objects.get(scope=PauseScope.TASK, target="tests.testapp.tasks.add")
    assert pause.paused_until == until


def test_live_regions_outside_the_results_are_marked(admin_client):
    QueueFactory(name="emails")
    html = content(admin_client.get(admin_url("queue_changelist")))
    assert '<div data-te-live="engine-controls">' in html
    page = content(admin_client.get(admin_url("queue_change", "emails")))
    assert 'id="queue-counts" data-te-live="queue-counts"' in page
    assert '<tr data-te-live="limits-usage"><th scope="row">now</th><td id="limits-usage">' in page


def test_a_user_without_pause_permission_gets_no_row_forms():
    QueueFactory(name="emails")
    viewer = staff_client("view_queue")
    html = content(viewer.get(admin_url("queue_changelist")))
    assert 'name="reason" form=' not in html and 'id="te-pause-' not in html
    assert not Job.objects.exists()


def test_an_end_time_in_the_past_is_refused_naming_the_zone_and_the_time_now(admin_client):
    QueueFactory(name="emails")
    response = admin_client.post(
        admin_url("queue_pause", "emails"), {"until": "2001-01-01T00:00"}, follow=True
    )
    (message,) = messages_of(response)
    assert "The end time 2001-01-01 00:00:00 UTC has already passed (it is " in message
    assert not Queue.objects.get(name="emails").paused
