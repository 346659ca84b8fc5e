"""The job list's new columns (arguments, progress, error, exact times), the job page's fields
that apply to the job's state and its numbered runs, and the job edits' buttons: Run again,
priority, due time, Delete and Discard — permission-checked, POST only, guarded."""

from __future__ import annotations

import datetime as dt
import re
import uuid

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from django_taskengine.admin.job_columns import due_words, eta_seconds
from django_taskengine.models import AttemptOutcome, AuditEntry, Job, JobStatus
from tests.admin_helpers import admin_url, content, messages_of, staff_client
from tests.factories import AttemptFactory, JobFactory, WorkerFactory

pytestmark = pytest.mark.django_db


def _row(html: str, job: Job) -> str:
    """The list's row of ``job``."""
    match = re.search(rf"<tr>(?:(?!</tr>).)*?/job/{job.pk}/change/(?:(?!</tr>).)*</tr>", html, re.S)
    assert match, f"no row for job {job.pk}"
    return match.group(0)


def _post(client, job: Job, name: str, data: dict | None = None, **seen):
    return client.post(
        admin_url(f"job_{name}", job.pk),
        {
            "expected_status": seen.get("status", job.status),
            "expected_attempts": seen.get("attempts", job.attempts),
            **(data or {}),
        },
        follow=True,
    )


# -- the list --------------------------------------------------------------------------------


def test_list_shows_an_escaped_argument_preview_with_the_whole_text_in_its_title(admin_client):
    job = JobFactory(args=["<b>bold</b>", "x" * 100], kwargs={"to": "ann@example.com"})

    row = _row(content(admin_client.get(admin_url("job_changelist"))), job)

    assert "<b>bold</b>" not in row and "&lt;b&gt;bold&lt;/b&gt;" in row
    preview = re.search(r'<code class="te-args" title="([^"]*)">([^<]*)</code>', row)
    assert preview is not None
    assert "ann@example.com" in preview.group(1)
    assert (
        len(preview.group(2).replace("&lt;", "<").replace("&gt;", ">").replace("&quot;", '"')) <= 60
    )
    assert preview.group(2).endswith("…")


def test_list_reads_a_bounded_prefix_of_arguments_and_errors(admin_client):
    JobFactory(args=["y" * 50_000], status=JobStatus.FAILED, error="E: " + "z" * 50_000)

    with CaptureQueriesContext(connection) as queries:
        html = content(admin_client.get(admin_url("job_changelist")))

    bounded = re.compile(
        r'(LEFT|SUBSTR)\((CAST\()?\(?"taskengine_job"\."(args|kwargs|error)"\)?'
        r"(::text| AS text\))?, (1, )?300\)"
    )
    job_queries = [q["sql"] for q in queries.captured_queries if '"taskengine_job"' in q["sql"]]
    heads = [sql for sql in job_queries if bounded.search(sql)]
    assert len(heads) == 1 and " IN (" in heads[0], "one query of the page's rows by key"
    for sql in job_queries:
        rest = bounded.sub("", sql)
        for column in ("args", "kwargs", "error", "traceback", "result"):
            assert f'"taskengine_job"."{column}"' not in rest, (column, sql)
    assert "z" * 400 not in html and "y" * 400 not in html


def test_list_shows_a_progress_bar_with_percentage_and_eta_for_a_running_job(admin_client):
    job = JobFactory(
        running=True,
        started_at=timezone.now() - dt.timedelta(seconds=60),
        progress_current=60,
        progress_total=240,
    )
    row = _row(content(admin_client.get(admin_url("job_changelist"))), job)
    assert 'aria-valuenow="25"' in row and "25%" in row and 'style="width: 25%"' in row
    assert "about 3 min left" in row


def test_eta_is_told_from_the_rate_since_the_attempt_started():
    now = timezone.now()
    job = Job(status=JobStatus.RUNNING, started_at=now - dt.timedelta(seconds=10))
    job.progress_current, job.progress_total = 50, 100
    assert eta_seconds(job, now) == pytest.approx(10.0)
    job.status = JobStatus.PAUSED
    assert eta_seconds(job, now) is None


def test_error_column_only_for_failures_and_retries_labelled_as_last_error(admin_client):
    failed = JobFactory(status=JobStatus.FAILED, attempts=3, error="ValueError: bad\nmore lines")
    retrying = JobFactory(status=JobStatus.QUEUED, attempts=1, error="KeyError: 'id'")
    AttemptFactory(job=retrying, number=1, outcome=AttemptOutcome.FAILED, error="KeyError: 'id'")
    resumed = JobFactory(
        status=JobStatus.QUEUED, attempts=0, error="paused by an operator at a checkpoint"
    )
    AttemptFactory(job=resumed, number=1, outcome=AttemptOutcome.PAUSED)
    running = JobFactory(running=True, error="old error")

    html = content(admin_client.get(admin_url("job_changelist")))

    assert "ValueError: bad" in _row(html, failed) and "more lines" not in _row(html, failed)
    assert "last error: </span>KeyError" in _row(html, retrying)
    assert "paused by an operator" not in _row(html, resumed)
    assert "old error" not in _row(html, running)


def test_list_times_are_exact_with_seconds_and_zone_and_worded(admin_client):
    now = timezone.now()
    later = JobFactory(run_after=now + dt.timedelta(minutes=10))
    finished = JobFactory(
        status=JobStatus.SUCCEEDED,
        started_at=now - dt.timedelta(seconds=65),
        finished_at=now - dt.timedelta(seconds=60),
    )
    html = content(admin_client.get(admin_url("job_changelist")))
    stamp = timezone.localtime(finished.finished_at).strftime("%Y-%m-%d %H:%M:%S")
    assert f'{stamp}</time><span class="te-relative">UTC · ' in _row(html, finished)
    assert "finished 1 min ago · ran 5.00 s" in _row(html, finished)
    assert re.search(r"due in (9|10) min", _row(html, later))


def test_due_words():
    now = timezone.now()
    assert due_words(now, now) == "due now"
    assert due_words(now + dt.timedelta(seconds=12), now) == "due in 12 s"
    assert due_words(now - dt.timedelta(minutes=3), now) == "overdue by 3 min"


# -- the job page ----------------------------------------------------------------------------


def test_page_times_are_exact_with_seconds_zone_and_relative(admin_client):
    now = timezone.now()
    job = JobFactory(
        status=JobStatus.SUCCEEDED,
        created_at=now - dt.timedelta(minutes=5),
        started_at=now - dt.timedelta(minutes=4),
        finished_at=now - dt.timedelta(minutes=3),
    )
    html = content(admin_client.get(admin_url("job_change", job.pk)))
    for moment, ago in ((job.created_at, "5 min ago"), (job.finished_at, "3 min ago")):
        assert timezone.localtime(moment).strftime("%Y-%m-%d %H:%M:%S UTC") in html
        assert ago in html
    assert "a.m." not in html and "p.m." not in html


def test_page_of_a_running_job_shows_no_stale_error(admin_client):
    job = JobFactory(running=True, error="paused by an operator at a checkpoint", traceback="tb")
    AttemptFactory(job=job, number=1, outcome=AttemptOutcome.PAUSED, error=job.error)
    html = content(admin_client.get(admin_url("job_change", job.pk)))
    assert "Last attempt&#x27;s error" not in html and ">Error:<" not in html
    assert ">Started:<" in html


def test_page_of_a_queued_job_waiting_for_its_retry_labels_the_last_attempt(admin_client):
    job = JobFactory(
        attempts=1,
        error="RuntimeError: upstream down",
        started_at=timezone.now() - dt.timedelta(seconds=30),
        run_after=timezone.now() + dt.timedelta(seconds=12),
    )
    AttemptFactory(job=job, number=1, outcome=AttemptOutcome.FAILED, error=job.error)
    html = content(admin_client.get(admin_url("job_change", job.pk)))
    assert "Last attempt&#x27;s error:" in html and "RuntimeError: upstream down" in html
    assert "Last attempt started:" in html and ">Started:<" not in html
    assert re.search(r"due in 1[12] s", html)
    assert "Due in 0 minutes" not in html


def test_page_of_a_failed_job_shows_its_error_and_traceback(admin_client):
    job = JobFactory(status=JobStatus.FAILED, attempts=3, error="ValueError: no", traceback="TB!")
    html = content(admin_client.get(admin_url("job_change", job.pk)))
    assert ">Error:<" in html and ">Traceback:<" in html and "TB!" in html


def test_attempts_table_numbers_runs_and_links_workers(admin_client):
    worker = WorkerFactory()
    job = JobFactory(running=True, attempts=2)
    AttemptFactory(job=job, number=1, outcome=AttemptOutcome.PAUSED, worker_id=worker.id)
    AttemptFactory(job=job, number=1, outcome=AttemptOutcome.FAILED, worker_id=worker.id)
    html = content(admin_client.get(admin_url("job_change", job.pk)))
    runs = re.findall(r'data-run="(\d+)">\s*<td>\d+</td>\s*<td>(\d+)', html)
    assert runs == [("1", "1"), ("2", "1")]
    assert "(not counted)" in html and "pause, a snooze" in html
    assert admin_url("worker_change", str(worker.id)) in html


def test_live_regions_are_marked(admin_client):
    job = JobFactory(running=True, progress_current=5, progress_total=10)
    html = content(admin_client.get(admin_url("job_change", job.pk)))
    names = re.findall(r'data-te-live="([^"]+)"', html)
    assert {"job-controls", "job-progress", "job-fields", "job-attempts"} <= set(names)
    assert len(names) == len(set(names))


# -- the edits' buttons ----------------------------------------------------------------------


def test_buttons_follow_state_and_permissions(admin_client):
    finished = JobFactory(status=JobStatus.SUCCEEDED)
    queued = JobFactory()
    finished_html = content(admin_client.get(admin_url("job_change", finished.pk)))
    queued_html = content(admin_client.get(admin_url("job_change", queued.pk)))
    assert 'data-action="run-again-job"' in finished_html
    assert 'data-action="delete-job"' in finished_html
    assert 'data-action="set-priority-job"' not in finished_html
    assert 'data-action="set-priority-job"' in queued_html
    assert 'data-action="discard-job"' in queued_html
    assert 'Due at <span class="te-relative">(UTC)</span>' in queued_html
    viewer = staff_client("view_job", username="viewer")
    html = content(viewer.get(admin_url("job_change", finished.pk)))
    assert 'data-action="run-again-job"' not in html and 'data-action="delete-job"' not in html


def test_run_again_from_the_page_goes_to_the_new_job(admin_client):
    job = JobFactory(status=JobStatus.SUCCEEDED, args=[2, 3], priority=4)
    response = _post(admin_client, job, "run_again")
    new = Job.objects.exclude(pk=job.pk).get()
    assert response.redirect_chain[-1][0] == admin_url("job_change", new.pk)
    assert (new.args, new.priority, new.status) == ([2, 3], 4, JobStatus.QUEUED)
    [message] = messages_of(response)
    assert f'<a href="{admin_url("job_change", job.pk)}">{job.pk}</a>' in message
    assert AuditEntry.objects.filter(action="run_job_again", source="admin").count() == 2


def test_run_again_refused_when_the_job_changed(admin_client):
    job = JobFactory(status=JobStatus.FAILED, attempts=3)
    response = _post(admin_client, job, "run_again", attempts=2)
    assert "changed since you looked" in messages_of(response)[0]
    assert Job.objects.count() == 1


def test_change_priority_and_due_time_from_the_page(admin_client):
    job = JobFactory()
    response = _post(admin_client, job, "set_priority", {"priority": "9"})
    assert messages_of(response) == [f"Priority of job {job.pk} set to 9."]
    job.refresh_from_db()
    assert job.priority == 9
    response = _post(admin_client, job, "set_run_after", {"run_after": "2031-05-04T03:02:01"})
    job.refresh_from_db()
    assert job.run_after == dt.datetime(2031, 5, 4, 3, 2, 1, tzinfo=dt.UTC)
    assert "2031-05-04 03:02:01 UTC" in messages_of(response)[0]


def test_bad_priority_and_due_time_are_refused_with_a_message(admin_client):
    job = JobFactory()
    assert (
        "whole number"
        in messages_of(_post(admin_client, job, "set_priority", {"priority": "x"}))[0]
    )
    assert (
        "Due time"
        in messages_of(_post(admin_client, job, "set_run_after", {"run_after": "soon"}))[0]
    )
    running = JobFactory(running=True)
    message = messages_of(_post(admin_client, running, "set_priority", {"priority": "3"}))[0]
    assert "is running" in message
    job.refresh_from_db()
    assert job.priority == 0


def test_delete_asks_for_confirmation_then_deletes(admin_client):
    job = JobFactory(status=JobStatus.FAILED, attempts=1)
    AttemptFactory(job=job, number=1)
    page = admin_client.post(
        admin_url("job_delete_finished", job.pk),
        {"expected_status": "failed", "expected_attempts": "1"},
    )
    assert page.status_code == 200 and 'data-action="confirm-delete-job"' in content(page)
    assert Job.objects.filter(pk=job.pk).exists()
    response = _post(admin_client, job, "delete_finished", {"confirmed": "yes"})
    assert response.redirect_chain[-1][0] == admin_url("job_changelist")
    assert not Job.objects.filter(pk=job.pk).exists()


def test_discard_asks_for_confirmation_then_deletes(admin_client):
    job = JobFactory()
    page = _post(admin_client, job, "discard")
    assert "never run" in content(page) and Job.objects.filter(pk=job.pk).exists()
    _post(admin_client, job, "discard", {"confirmed": "yes"})
    assert not Job.objects.exists()


def test_bulk_run_again(admin_client):
    done = JobFactory(status=JobStatus.SUCCEEDED)
    waiting = JobFactory()
    response = admin_client.post(
        admin_url("job_changelist"),
        {"action": "run_selected_again", "_selected_action": [done.pk, waiting.pk]},
        follow=True,
    )
    shown = " ".join(messages_of(response))
    assert "Ran 1 jobs again" in shown and "refused for 1 jobs" in shown
    assert Job.objects.count() == 3


@pytest.mark.parametrize(
    ("name", "codename", "status"),
    [
        ("run_again", "retry_job", JobStatus.SUCCEEDED),
        ("set_priority", "change_job", JobStatus.QUEUED),
        ("set_run_after", "change_job", JobStatus.QUEUED),
        ("delete_finished", "delete_job", JobStatus.SUCCEEDED),
        ("discard", "delete_job", JobStatus.QUEUED),
    ],
)
def test_edits_need_their_permission_and_a_post(name, codename, status):
    job = JobFactory(status=status)
    data = {
        "expected_status": status,
        "expected_attempts": "0",
        "priority": "5",
        "run_after": "2031-01-01T00:00:00",
        "confirmed": "yes",
    }
    others = staff_client("view_job", "pause_job", "cancel_job", username="other")
    assert others.post(admin_url(f"job_{name}", job.pk), data).status_code == 403
    allowed = staff_client("view_job", codename, username="allowed")
    assert allowed.get(admin_url(f"job_{name}", job.pk)).status_code == 405
    job.refresh_from_db()
    assert (job.status, job.priority) == (status, 0) and Job.objects.count() == 1
    assert allowed.post(admin_url(f"job_{name}", job.pk), data).status_code == 302
    assert AuditEntry.objects.filter(source="admin", actor="allowed").exists()


def test_edit_without_the_state_seen_is_a_bad_request(admin_client):
    job = JobFactory()
    response = admin_client.post(admin_url("job_set_priority", job.pk), {"priority": "1"})
    assert response.status_code == 400


def test_reserved_job_shows_as_reserved(admin_client):
    job = JobFactory(token=uuid.uuid4(), worker_id=uuid.uuid4())
    assert "reserved" in _row(content(admin_client.get(admin_url("job_changelist"))), job)
