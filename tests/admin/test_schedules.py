"""The schedule admin: the list (cron, task, last run linked to its job, next run), the page
(latest ticks), Pause / Resume and Run now by POST with their permissions, and deleting the
leftovers of schedules no longer defined."""

from __future__ import annotations

import datetime as dt

import pytest
from django.contrib.admin.models import CHANGE, LogEntry
from django.contrib.contenttypes.models import ContentType
from django.utils import timezone

from django_taskengine.models import Job, PeriodicTick, Schedule
from tests.admin_helpers import admin_url, content, messages_of, staff_client
from tests.factories import JobFactory

pytestmark = pytest.mark.django_db

ADD = "tests.testapp.tasks.add"
#: A schedule the test app defines with @periodic (so this process "defines" it).
DEFINED = "leap-day-below"
SCRIPT = "<script>alert(1)</script>"
ESCAPED = "&lt;script&gt;alert(1)&lt;/script&gt;"


def make_schedule(name: str = "nightly-sum", **fields) -> Schedule:
    values = {
        "task_name": ADD,
        "cron": "0 3 * * *",
        "timezone": "Europe/Paris",
        "args": [1, 2],
        "next_tick_at": timezone.now() + dt.timedelta(hours=5),
        **fields,
    }
    return Schedule.objects.create(name=name, **values)


def snapshot() -> list[tuple]:
    """Everything a schedule action could change."""
    return [
        *Schedule.objects.order_by("id").values_list("name", "paused", "paused_by", "next_tick_at"),
        *Job.objects.order_by("id").values_list("id", "task_name"),
        *PeriodicTick.objects.order_by("id").values_list("id", "tick"),
    ]


def log_messages() -> list[str]:
    content_type = ContentType.objects.get_for_model(Schedule)
    return [
        entry.get_change_message()
        for entry in LogEntry.objects.filter(
            content_type=content_type, action_flag=CHANGE
        ).order_by("id")
    ]


# -- the list and the page --------------------------------------------------------------


def test_the_list_shows_cron_task_last_run_with_its_job_and_next_run(admin_client):
    job = JobFactory(task_name=ADD, status="succeeded", finished_at=timezone.now())
    tick = timezone.now() - dt.timedelta(hours=1)
    make_schedule(last_tick_at=tick, last_job_id=job.pk)
    make_schedule("never-ran", cron="*/5 * * * *", timezone="UTC", args=[], kwargs={"b": 2})

    response = admin_client.get(admin_url("schedule_changelist"))

    assert response.status_code == 200
    html = content(response)
    assert "<code>0 3 * * *</code>" in html and "Europe/Paris" in html
    assert f'{ADD} <span class="te-detail">(1, 2)</span>' in html
    job_url = admin_url("job_change", job.pk)
    assert f'<a href="{job_url}" data-job="{job.pk}">job {job.pk}</a>' in html
    assert '<span class="te-status te-status-succeeded">succeeded</span>' in html
    assert "(in 4 h 59 min)" in html or "(in 5 h)" in html
    assert "(b=2)" in html
    assert "Active" in html


def test_list_queries_do_not_grow_with_the_number_of_schedules(
    admin_client, django_assert_max_num_queries
):
    def add(n: int) -> None:
        job = JobFactory(task_name=ADD)
        make_schedule(f"s{n}", last_tick_at=timezone.now(), last_job_id=job.pk)

    for n in range(3):
        add(n)
    with django_assert_max_num_queries(12) as few:
        admin_client.get(admin_url("schedule_changelist"))
    for n in range(3, 30):
        add(n)
    with django_assert_max_num_queries(len(few.captured_queries)):
        response = admin_client.get(admin_url("schedule_changelist"))
    assert len(response.context["cl"].result_list) == 30


def test_a_last_job_deleted_by_retention_is_shown_as_deleted(admin_client):
    make_schedule(last_tick_at=timezone.now(), last_job_id=999_999)

    html = content(admin_client.get(admin_url("schedule_changelist")))

    assert "job 999999" in html and "(deleted)" in html


def test_the_page_lists_the_latest_ticks_with_their_jobs_and_the_arguments(admin_client):
    schedule = make_schedule(kwargs={"note": SCRIPT})
    start = timezone.now() - dt.timedelta(days=30)
    jobs = []
    for n in range(25):
        job = JobFactory(task_name=ADD, status="succeeded" if n % 2 else "failed")
        jobs.append(job)
        PeriodicTick.objects.create(
            schedule=schedule, tick=start + dt.timedelta(days=n), job_id=job.pk
        )

    response = admin_client.get(admin_url("schedule_change", schedule.pk))

    assert response.status_code == 200
    ticks = response.context["te_ticks"]
    assert len(ticks) == 20
    assert [t["job_id"] for t in ticks] == [job.pk for job in reversed(jobs[5:])]
    html = content(response)
    assert f'<a href="{admin_url("job_change", jobs[-1].pk)}">job {jobs[-1].pk}</a>' in html
    assert '<span class="te-status te-status-failed">failed</span>' in html
    assert ESCAPED in html and SCRIPT not in html
    assert 'name="_save"' not in html


def test_a_schedule_this_process_no_longer_defines_is_marked_and_may_be_deleted(admin_client):
    leftover = make_schedule("renamed-long-ago")
    defined = make_schedule(DEFINED, task_name="tests.testapp.periodic_tasks.leap_day_below")

    html = content(admin_client.get(admin_url("schedule_changelist")))
    assert html.count("(not defined here)") == 1

    assert admin_client.get(admin_url("schedule_delete", defined.pk)).status_code == 403
    assert admin_client.get(admin_url("schedule_delete", leftover.pk)).status_code == 200
    admin_client.post(admin_url("schedule_delete", leftover.pk), {"post": "yes"})
    assert list(Schedule.objects.values_list("name", flat=True)) == [DEFINED]
    assert admin_client.get(admin_url("schedule_add")).status_code == 403


def test_names_and_arguments_are_escaped_in_the_list(admin_client):
    make_schedule(SCRIPT, args=[SCRIPT])

    html = content(admin_client.get(admin_url("schedule_changelist")))

    assert SCRIPT not in html
    assert ESCAPED in html


# -- pause, resume, run now -------------------------------------------------------------


def test_the_row_pause_button_pauses_for_every_worker_and_writes_the_log(admin_client):
    schedule = make_schedule()
    changelist = admin_url("schedule_changelist")
    html = content(admin_client.get(changelist))
    form = html[html.index('id="changelist-form"') :]
    assert f'formaction="{admin_url("schedule_pause", schedule.pk)}"' in form
    assert f'formaction="{admin_url("schedule_run_now", schedule.pk)}"' in form

    response = admin_client.post(
        admin_url("schedule_pause", schedule.pk), {"next": changelist}, follow=True
    )

    assert response.redirect_chain[-1][0] == changelist
    schedule.refresh_from_db()
    assert (schedule.paused, schedule.paused_by) == (True, "admin")
    assert messages_of(response) == [
        "Paused schedule “nightly-sum”: no job of it is enqueued until Resume."
    ]
    assert log_messages() == ["Paused schedule nightly-sum."]
    html = content(response)
    assert 'data-action="resume-schedule"' in html and "none while paused" in html


def test_resume_goes_on_from_the_next_tick(admin_client):
    schedule = make_schedule(
        cron="*/5 * * * *",
        timezone="UTC",
        paused=True,
        paused_by="alice",
        next_tick_at=timezone.now() - dt.timedelta(days=2),
    )

    response = admin_client.post(admin_url("schedule_resume", schedule.pk), follow=True)

    schedule.refresh_from_db()
    assert not schedule.paused and schedule.paused_by == ""
    now = timezone.now()
    assert now < schedule.next_tick_at <= now + dt.timedelta(minutes=5)
    [message] = messages_of(response)
    assert message.startswith("Resumed schedule “nightly-sum”: its next job is for ")
    assert "ticks while it was paused are skipped" in message
    assert log_messages() == ["Resumed schedule nightly-sum."]
    assert not Job.objects.exists()


def test_pausing_a_paused_schedule_changes_nothing_and_says_so(admin_client):
    schedule = make_schedule(paused=True, paused_by="alice")

    response = admin_client.post(admin_url("schedule_pause", schedule.pk), follow=True)

    assert messages_of(response) == ["Schedule 'nightly-sum' is paused already; nothing changed."]
    assert Schedule.objects.get().paused_by == "alice"
    assert log_messages() == []


def test_run_now_enqueues_one_job_with_the_schedules_arguments_and_links_it(admin_client):
    schedule = make_schedule(queue="reports", priority=3)

    response = admin_client.post(admin_url("schedule_run_now", schedule.pk), follow=True)

    [job] = Job.objects.all()
    assert (job.task_name, job.args, job.queue, job.priority) == (ADD, [1, 2], "reports", 3)
    [message] = messages_of(response)
    assert message == (
        f'Enqueued <a href="{admin_url("job_change", job.pk)}">job {job.pk}</a> of schedule '
        "“nightly-sum” now."
    )
    # Not a tick: the schedule's own state is untouched.
    schedule.refresh_from_db()
    assert (schedule.last_tick_at, schedule.last_job_id) == (None, None)
    assert not PeriodicTick.objects.exists()
    assert log_messages() == [f"Ran schedule nightly-sum now: job {job.pk}."]


def test_run_now_of_a_task_unknown_here_enqueues_nothing_and_says_why(admin_client):
    schedule = make_schedule(task_name="myapp.tasks.gone")

    response = admin_client.post(admin_url("schedule_run_now", schedule.pk), follow=True)

    [message] = messages_of(response)
    assert message.startswith("Schedule 'nightly-sum' could not run: No task named")
    assert not Job.objects.exists()


def test_an_action_on_a_schedule_that_is_gone_changes_nothing(admin_client):
    response = admin_client.post(admin_url("schedule_pause", 424242), follow=True)

    assert messages_of(response) == ["No schedule with id '424242'; nothing changed."]


# -- safety: POST only, permissions -----------------------------------------------------

ACTIONS = ["pause", "resume", "run_now"]


@pytest.mark.parametrize("action", ACTIONS)
def test_get_on_an_action_url_is_405_and_changes_nothing(admin_client, action):
    schedule = make_schedule(paused=action == "resume")
    before = snapshot()

    response = admin_client.get(admin_url(f"schedule_{action}", schedule.pk))

    assert response.status_code == 405
    assert snapshot() == before


@pytest.mark.parametrize("action", ACTIONS)
def test_staff_without_the_permissions_get_403_and_no_buttons(action):
    schedule = make_schedule(paused=action == "resume")
    client = staff_client("view_schedule", "pause_queue", "retry_job")
    before = snapshot()

    assert client.post(admin_url(f"schedule_{action}", schedule.pk)).status_code == 403
    assert snapshot() == before
    html = content(client.get(admin_url("schedule_changelist")))
    assert "nightly-sum" in html and "data-action=" not in html
    assert "data-action=" not in content(client.get(admin_url("schedule_change", schedule.pk)))


def test_pause_schedule_allows_pause_and_resume_but_not_run_now():
    schedule = make_schedule()
    client = staff_client("pause_schedule")

    html = content(client.get(admin_url("schedule_changelist")))
    assert 'data-action="pause-schedule"' in html and 'data-action="run-now-schedule"' not in html
    assert client.post(admin_url("schedule_run_now", schedule.pk)).status_code == 403
    client.post(admin_url("schedule_pause", schedule.pk))
    assert Schedule.objects.get().paused
    client.post(admin_url("schedule_resume", schedule.pk))
    assert not Schedule.objects.get().paused
    assert not Job.objects.exists()


def test_run_schedule_allows_run_now_but_not_pause():
    schedule = make_schedule()
    client = staff_client("run_schedule")

    html = content(client.get(admin_url("schedule_change", schedule.pk)))
    assert 'data-action="run-now-schedule"' in html and 'data-action="pause-schedule"' not in html
    assert client.post(admin_url("schedule_pause", schedule.pk)).status_code == 403
    client.post(admin_url("schedule_run_now", schedule.pk))
    assert Job.objects.count() == 1
    assert not Schedule.objects.get().paused


def test_a_post_without_the_csrf_token_is_refused():
    from django.contrib.auth.models import User
    from django.test import Client

    schedule = make_schedule()
    client = Client(enforce_csrf_checks=True)
    client.force_login(User.objects.create_superuser("root", "root@example.com", "unused"))
    before = snapshot()

    assert client.post(admin_url("schedule_run_now", schedule.pk)).status_code == 403
    assert client.post(admin_url("schedule_pause", schedule.pk)).status_code == 403
    assert snapshot() == before


def test_the_schedule_and_job_pages_load_their_row_once(admin_client):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    schedule = make_schedule()
    job = JobFactory()
    for url, table in (
        (admin_url("schedule_change", schedule.pk), "taskengine_schedule"),
        (admin_url("job_change", job.pk), "taskengine_job"),
    ):
        with CaptureQueriesContext(connection) as queries:
            assert admin_client.get(url).status_code == 200
        row_reads = [
            q["sql"]
            for q in queries.captured_queries
            if q["sql"].startswith("SELECT")
            and f'FROM "{table}" WHERE "{table}"."id" =' in q["sql"]
        ]
        assert len(row_reads) == 1, row_reads
