"""The queue admin: counts per queue, Pause / Resume from a row, the queue page (reason, timed
pause) and bulk actions; Pause all / Resume all; task-type pauses; the admin log."""

from __future__ import annotations

import datetime as dt

import pytest
from django.contrib.admin.models import CHANGE, LogEntry
from django.contrib.contenttypes.models import ContentType
from django.utils import timezone

from django_taskengine.models import AuditEntry, Job, Pause, PauseScope, Queue
from tests.admin_helpers import admin_url, content, messages_of
from tests.factories import JobFactory, QueueFactory

pytestmark = pytest.mark.django_db

ADD = "tests.testapp.tasks.add"
NOOP = "tests.testapp.tasks.noop"


def _log_entries(model: type) -> list[LogEntry]:
    return list(
        LogEntry.objects.filter(content_type=ContentType.objects.get_for_model(model)).order_by(
            "id"
        )
    )


# -- the list ---------------------------------------------------------------------------


def test_queue_list_shows_counts_age_and_throughput_per_queue(admin_client):
    now = timezone.now()
    QueueFactory(name="emails")
    QueueFactory(name="reports")
    JobFactory.create_batch(3, queue="emails", run_after=now - dt.timedelta(minutes=10))
    JobFactory(queue="emails", run_after=now + dt.timedelta(hours=1))  # queued, not due
    JobFactory(queue="emails", running=True)
    JobFactory.create_batch(2, queue="emails", status="failed", finished_at=now)
    JobFactory.create_batch(5, queue="reports", succeeded=True)  # finished just now

    response = admin_client.get(admin_url("queue_changelist"))

    assert response.status_code == 200
    rows = {queue.name: queue.te_stats for queue in response.context["cl"].result_list}
    emails, reports = rows["emails"], rows["reports"]
    assert (emails.queued, emails.due, emails.running, emails.failed) == (4, 3, 1, 2)
    assert emails.oldest_due_age >= dt.timedelta(minutes=10)
    assert reports.throughput_per_minute == 1.0  # 5 finished over the 5-minute window
    html = content(response)
    assert "10 min" in html  # age of the oldest due job in emails
    assert "1.0" in html
    assert f"{admin_url('job_changelist')}?queue=emails&amp;status=failed" in html


def test_queue_list_queries_do_not_grow_with_the_number_of_queues(
    admin_client, django_assert_max_num_queries
):
    for n in range(3):
        QueueFactory(name=f"q{n}")
        JobFactory(queue=f"q{n}")
    with django_assert_max_num_queries(12) as few:
        admin_client.get(admin_url("queue_changelist"))
    for n in range(3, 40):
        QueueFactory(name=f"q{n}")
        JobFactory(queue=f"q{n}")
    with django_assert_max_num_queries(len(few.captured_queries)):
        response = admin_client.get(admin_url("queue_changelist"))
    assert len(response.context["cl"].result_list) == 40


def test_each_row_has_a_pause_or_resume_button_inside_the_changelist_form(admin_client):
    QueueFactory(name="emails")
    QueueFactory(name="billing", on_pause=True)

    html = content(admin_client.get(admin_url("queue_changelist")))

    form = html[
        html.index('id="changelist-form"') : html.index(
            "</form>", html.index('id="changelist-form"')
        )
    ]
    assert f'formaction="{admin_url("queue_pause", "emails")}"' in form
    assert f'formaction="{admin_url("queue_resume", "billing")}"' in form
    assert 'data-action="pause-queue" data-queue="emails">Pause</button>' in form
    assert 'data-action="resume-queue" data-queue="billing">Resume</button>' in form
    assert 'formmethod="post"' in form and "csrfmiddlewaretoken" in form


def test_paused_queue_shows_who_when_why_and_a_timed_pause_its_end(admin_client):
    QueueFactory(
        name="emails",
        paused=True,
        paused_by="alice",
        paused_at=timezone.now() - dt.timedelta(minutes=10),
        pause_reason="smtp outage",
        paused_until=timezone.now() + dt.timedelta(minutes=15),
    )

    html = content(admin_client.get(admin_url("queue_changelist")))

    assert "Paused" in html
    assert "by alice 10 min ago: &quot;smtp outage&quot;" in html
    assert "until " in html and "(in 14 min)" in html


def test_an_expired_timed_pause_shows_running_and_offers_pause(admin_client):
    QueueFactory(
        name="emails",
        paused=True,
        paused_by="alice",
        paused_at=timezone.now() - dt.timedelta(hours=1),
        paused_until=timezone.now() - dt.timedelta(minutes=1),
    )

    html = content(admin_client.get(admin_url("queue_changelist")))

    assert "timed pause ended at" in html
    assert 'data-action="pause-queue" data-queue="emails"' in html


# -- pause and resume one queue ---------------------------------------------------------


def test_row_pause_button_pauses_records_who_and_writes_the_admin_log(admin_client):
    QueueFactory(name="emails")
    changelist = admin_url("queue_changelist")

    # What the changelist form sends when the row's button is clicked.
    response = admin_client.post(
        admin_url("queue_pause", "emails"),
        {"action": "", "index": "0", "_selected_action": [], "next": changelist},
        follow=True,
    )

    assert response.redirect_chain[-1][0] == changelist
    queue = Queue.objects.get(name="emails")
    assert queue.is_paused and queue.paused_by == "admin" and queue.paused_until is None
    assert queue.paused_at is not None and timezone.now() - queue.paused_at < dt.timedelta(
        seconds=30
    )
    [entry] = _log_entries(Queue)
    assert entry.action_flag == CHANGE and entry.object_id == "emails"
    assert entry.user.username == "admin"
    assert entry.get_change_message().startswith("Paused queue emails by admin")
    assert any("Paused queue “emails”" in m for m in messages_of(response))


def test_row_resume_button_resumes_and_writes_the_admin_log(admin_client):
    QueueFactory(name="emails", on_pause=True)

    response = admin_client.post(admin_url("queue_resume", "emails"), follow=True)

    assert response.status_code == 200
    queue = Queue.objects.get(name="emails")
    assert not queue.paused and queue.paused_by == "" and queue.pause_reason == ""
    [entry] = _log_entries(Queue)
    assert entry.get_change_message() == "Resumed queue emails."


def test_resuming_a_queue_that_is_not_paused_changes_nothing(admin_client):
    QueueFactory(name="emails")

    response = admin_client.post(admin_url("queue_resume", "emails"), follow=True)

    assert messages_of(response) == ["Queue “emails” was not paused; nothing changed."]
    assert _log_entries(Queue) == []


def test_queue_page_pauses_with_a_reason_for_a_chosen_duration(admin_client):
    QueueFactory(name="emails")
    page = admin_url("queue_change", "emails")
    html = content(admin_client.get(page))
    assert 'data-action="pause-queue">Pause</button>' in html
    assert '<option value="15m">for 15 minutes</option>' in html

    before = timezone.now()
    response = admin_client.post(
        admin_url("queue_pause", "emails"),
        {"reason": "smtp outage", "duration": "15m", "next": page},
        follow=True,
    )

    assert response.redirect_chain[-1][0] == page
    queue = Queue.objects.get(name="emails")
    assert queue.pause_reason == "smtp outage" and queue.paused_by == "admin"
    assert before + dt.timedelta(minutes=15) <= queue.paused_until
    assert queue.paused_until <= timezone.now() + dt.timedelta(minutes=15)
    html = content(response)
    assert "&quot;smtp outage&quot;; until " in html and "(in 14 min)" in html
    assert 'data-action="resume-queue">Resume</button>' in html
    [entry] = _log_entries(Queue)
    assert '"smtp outage"' in entry.get_change_message()
    assert "until" in entry.get_change_message()


def test_a_row_pause_lets_running_jobs_finish(admin_client):
    QueueFactory(name="emails")
    running = JobFactory(queue="emails", running=True)

    response = admin_client.post(admin_url("queue_pause", "emails"), follow=True)

    assert Job.objects.get(pk=running.pk).stop_requested == ""
    assert messages_of(response) == [
        "Paused queue “emails”: no job of it starts now. Its running jobs finish."
    ]


def test_queue_page_can_also_pause_running_jobs_at_their_next_checkpoint(admin_client):
    QueueFactory(name="emails")
    running = JobFactory(queue="emails", running=True)
    elsewhere = JobFactory(queue="reports", running=True)
    assert 'name="stop_running"' in content(admin_client.get(admin_url("queue_change", "emails")))

    response = admin_client.post(
        admin_url("queue_pause", "emails"), {"stop_running": "on"}, follow=True
    )

    assert Job.objects.get(pk=running.pk).stop_requested == "pause:queue"
    assert Job.objects.get(pk=elsewhere.pk).stop_requested == ""
    [message] = messages_of(response)
    assert message.endswith("Its running jobs were asked to pause at their next checkpoint.")
    [entry] = _log_entries(Queue)
    assert entry.get_change_message().endswith("pause at their next checkpoint.")


def test_queue_page_pauses_until_a_given_time(admin_client):
    QueueFactory(name="emails")
    until = (timezone.now() + dt.timedelta(hours=2)).replace(second=0, microsecond=0)

    admin_client.post(
        admin_url("queue_pause", "emails"), {"until": until.strftime("%Y-%m-%dT%H:%M")}
    )

    assert Queue.objects.get(name="emails").paused_until == until


@pytest.mark.parametrize(
    "data, error",
    [
        ({"until": "2001-01-01T00:00"}, "has already passed"),
        ({"duration": "3d"}, "Select a valid choice"),
        ({"duration": "1h", "until": "2999-01-01T00:00"}, "not both"),
    ],
)
def test_a_bad_pause_form_pauses_nothing_and_says_why(admin_client, data, error):
    QueueFactory(name="emails")

    response = admin_client.post(admin_url("queue_pause", "emails"), data, follow=True)

    [message] = messages_of(response)
    assert message.startswith("Nothing was paused.") and error in message
    assert not Queue.objects.get(name="emails").paused


def test_queue_page_is_read_only(admin_client):
    QueueFactory(name="emails")

    response = admin_client.get(admin_url("queue_change", "emails"))

    assert response.context["has_change_permission"] is False
    assert 'name="_save"' not in content(response)
    assert admin_client.get(admin_url("queue_add")).status_code == 403
    assert admin_client.get(admin_url("queue_delete", "emails")).status_code == 403


def test_queue_names_with_slashes_and_spaces_work_in_urls(admin_client):
    QueueFactory(name="team a/b")

    admin_client.post(admin_url("queue_pause", "team a/b"))
    assert Queue.objects.get(name="team a/b").is_paused
    assert admin_client.get(admin_url("queue_change", "team a/b")).status_code == 200
    admin_client.post(admin_url("queue_resume", "team a/b"))
    assert not Queue.objects.get(name="team a/b").paused


# -- bulk actions -----------------------------------------------------------------------


def test_bulk_actions_pause_and_resume_the_selected_queues(admin_client):
    for name in ("a", "b", "c"):
        QueueFactory(name=name)
    changelist = admin_url("queue_changelist")

    response = admin_client.post(
        changelist,
        {"action": "pause_selected", "_selected_action": ["a", "b"], "index": "0"},
        follow=True,
    )

    assert set(Queue.objects.filter(paused=True).values_list("name", flat=True)) == {"a", "b"}
    assert Queue.objects.get(name="a").paused_by == "admin"
    assert messages_of(response) == ["Paused 2 queues (a, b)."]
    assert len(_log_entries(Queue)) == 2

    response = admin_client.post(
        changelist,
        {"action": "resume_selected", "_selected_action": ["a", "b", "c"], "index": "0"},
        follow=True,
    )

    assert not Queue.objects.filter(paused=True).exists()
    assert messages_of(response) == ["Resumed 2 queues (a, b)."]
    assert len(_log_entries(Queue)) == 4


def test_bulk_pause_keeps_the_pause_of_queues_already_paused(admin_client):
    QueueFactory(name="a")
    QueueFactory(name="b", paused=True, paused_by="alice", pause_reason="smtp outage")

    response = admin_client.post(
        admin_url("queue_changelist"),
        {"action": "pause_selected", "_selected_action": ["a", "b"], "index": "0"},
        follow=True,
    )

    assert messages_of(response) == [
        "Paused 1 queue (a).",
        "Already paused, left as they were: 1 queue (b).",
    ]
    kept = Queue.objects.get(name="b")
    assert (kept.paused_by, kept.pause_reason) == ("alice", "smtp outage")
    assert Queue.objects.get(name="a").paused_by == "admin"


def test_bulk_action_choices_are_offered(admin_client):
    QueueFactory(name="a")

    html = content(admin_client.get(admin_url("queue_changelist")))

    assert '<option value="pause_selected">Pause selected queues</option>' in html
    assert '<option value="resume_selected">Resume selected queues</option>' in html
    assert "delete_selected" not in html


# -- the whole engine and task types ----------------------------------------------------


def test_pause_all_and_resume_all(admin_client):
    QueueFactory(name="emails")
    QueueFactory(name="billing", on_pause=True)
    changelist = admin_url("queue_changelist")
    html = content(admin_client.get(changelist))
    assert f'action="{admin_url("queue_pause_all")}"' in html
    assert 'data-action="pause-all">Pause all</button>' in html

    response = admin_client.post(
        admin_url("queue_pause_all"), {"reason": "db failover", "duration": "1h"}, follow=True
    )

    pause = Pause.objects.get(scope=PauseScope.ENGINE)
    assert pause.paused_by == "admin" and pause.pause_reason == "db failover"
    assert pause.paused_until is not None
    html = content(response)
    assert "All queues are paused" in html and "&quot;db failover&quot;" in html
    assert 'data-action="resume-all">Resume all</button>' in html
    assert "held: every queue is paused" in html
    [entry] = _log_entries(Pause)
    assert entry.get_change_message().startswith("Paused all queues by admin")

    response = admin_client.post(admin_url("queue_resume_all"), follow=True)

    assert not Pause.objects.exists()
    assert Queue.objects.get(name="billing").paused  # paused on its own: stays paused
    assert messages_of(response) == [
        "Resumed all queues. 1 queue(s) paused on their own stay paused."
    ]
    assert _log_entries(Pause)[-1].get_change_message().startswith("Resumed all queues")


def test_resume_all_when_nothing_is_paused_changes_nothing(admin_client):
    response = admin_client.post(admin_url("queue_resume_all"), follow=True)

    assert messages_of(response) == ["The queues were not all paused; nothing changed."]
    assert _log_entries(Pause) == []


def test_task_type_pause_form_lists_registered_tasks_and_pauses_and_resumes_one(admin_client):
    changelist = admin_url("queue_changelist")
    html = content(admin_client.get(changelist))
    assert f'<option value="{ADD}">{ADD}</option>' in html
    assert 'data-action="pause-task">Pause task type</button>' in html
    assert "No task type is paused." in html

    response = admin_client.post(
        admin_url("queue_pause_task"),
        {"task_name": ADD, "reason": "billing down", "duration": "4h", "next": changelist},
        follow=True,
    )

    pause = Pause.objects.get(scope=PauseScope.TASK)
    assert (
        pause.target == ADD and pause.paused_by == "admin" and pause.pause_reason == "billing down"
    )
    assert pause.paused_until > timezone.now() + dt.timedelta(hours=3, minutes=59)
    html = content(response)
    assert f'<tr data-task="{ADD}">' in html
    assert 'data-action="resume-task">Resume</button>' in html
    assert (
        _log_entries(Pause)[0].get_change_message().startswith(f"Paused task type {ADD} by admin")
    )

    admin_client.post(admin_url("queue_resume_task"), {"task_name": ADD})

    assert not Pause.objects.exists()
    assert _log_entries(Pause)[-1].get_change_message() == f"Resumed task type {ADD}."


def test_a_task_paused_but_not_registered_stays_in_the_list(admin_client):
    Pause.objects.create(scope=PauseScope.TASK, target="billing.send_invoice", paused_by="bob")

    html = content(admin_client.get(admin_url("queue_changelist")))

    assert '<option value="billing.send_invoice">' in html
    assert '<tr data-task="billing.send_invoice">' in html


def test_pausing_a_task_without_a_name_is_refused(admin_client):
    response = admin_client.post(admin_url("queue_pause_task"), {"task_name": ""}, follow=True)

    [message] = messages_of(response)
    assert message.startswith("Nothing was paused: A task name is a non-empty string")
    assert not Pause.objects.exists()


def test_next_pointing_off_site_is_ignored(admin_client):
    QueueFactory(name="emails")

    response = admin_client.post(
        admin_url("queue_pause", "emails"), {"next": "https://evil.example/"}
    )

    assert response.status_code == 302
    assert response["Location"] == admin_url("queue_changelist")


def test_pausing_a_task_type_can_also_pause_its_running_jobs(admin_client):
    mine = JobFactory(running=True, task_name=ADD)
    other = JobFactory(running=True, task_name=NOOP)
    html = content(admin_client.get(admin_url("queue_changelist")))
    assert "also pause its running jobs at their next checkpoint" in html
    assert admin_client.get(admin_url("queue_pause_task")).status_code == 405  # POST only

    response = admin_client.post(
        admin_url("queue_pause_task"), {"task_name": ADD, "stop_running": "on"}, follow=True
    )

    asked = dict(Job.objects.values_list("pk", "stop_requested"))
    assert (asked[mine.pk], asked[other.pk]) == ("pause:task", "")
    [message] = messages_of(response)
    assert "Its running jobs pause at their next checkpoint" in message
    entry = AuditEntry.objects.get(action="pause_task")
    assert entry.detail == {"running_jobs_asked_to_pause": 1} and entry.source == "admin"
