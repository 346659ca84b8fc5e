"""The job admin: the list (columns, filters, search, bounded queries, no full count), the job
page (arguments, result, traceback, attempts, "why not running") and the job actions, guarded
by the state the operator saw."""

from __future__ import annotations

import datetime as dt
import re
import uuid

import pytest
from django.contrib import messages
from django.contrib.admin.models import LogEntry
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from django_taskengine.admin import jobs as job_admin
from django_taskengine.admin.paginator import EstimatedCountPaginator
from django_taskengine.models import AuditEntry, Dependency, Job, JobStatus, Pause, PauseScope
from tests.admin_helpers import admin_url, content, messages_of
from tests.factories import AttemptFactory, JobFactory, QueueFactory, WorkerFactory

pytestmark = pytest.mark.django_db

ADD = "tests.testapp.tasks.add"
NOOP = "tests.testapp.tasks.noop"
postgres_only = pytest.mark.skipif(
    connection.vendor != "postgresql", reason="pg_class estimates exist only on PostgreSQL"
)


def _listed_ids(response) -> list[int]:
    return [job.pk for job in response.context["cl"].result_list]


def _post_action(client, job: Job, action: str, *, status: str | None = None, attempts=None):
    """POST one job action the way the job page's button does."""
    return client.post(
        admin_url(f"job_{action}", job.pk),
        {
            "expected_status": status if status is not None else job.status,
            "expected_attempts": attempts if attempts is not None else job.attempts,
        },
        follow=True,
    )


# -- the list ---------------------------------------------------------------------------


def test_list_shows_status_task_queue_priority_attempts_and_times(admin_client):
    start = timezone.now() - dt.timedelta(seconds=90)
    job = JobFactory(
        queue="emails",
        priority=7,
        status="failed",
        attempts=2,
        max_attempts=3,
        started_at=start,
        finished_at=start + dt.timedelta(seconds=5),
    )

    response = admin_client.get(admin_url("job_changelist"))

    html = content(response)
    assert _listed_ids(response) == [job.pk]
    for header in (
        "status",
        "task",
        "queue",
        "priority",
        "attempts",
        "arguments",
        "progress",
        "error",
        "time",
    ):
        assert f">{header.capitalize()}<" in html or f">{header}<" in html.lower()
    assert '<span class="te-status te-status-failed">failed</span>' in html
    assert ADD in html and "emails" in html and "2/3" in html and "5.00 s" in html


def test_list_shows_a_job_claimed_ahead_as_queued_and_reserved(admin_client):
    reserved = JobFactory(status="queued", token=uuid.uuid4(), worker_id=uuid.uuid4())
    free = JobFactory(status="queued")

    html = content(admin_client.get(admin_url("job_changelist")))

    label = '<span class="te-status te-status-queued">queued</span>'
    assert html.count(f'{label} <span class="te-reserved">reserved</span>') == 1
    assert html.count(label) == 2
    assert reserved.reserved and not free.reserved


def test_list_is_newest_first_and_sortable_by_id_only(admin_client):
    older, newer = JobFactory(), JobFactory()

    response = admin_client.get(admin_url("job_changelist"))

    assert _listed_ids(response) == [newer.pk, older.pk]
    assert response.context["cl"].sortable_by == ("id",)


def test_filters_by_status_queue_task_and_created_time(admin_client):
    QueueFactory(name="emails")
    QueueFactory(name="reports")
    emails = JobFactory(queue="emails")
    failed = JobFactory(queue="reports", status="failed", task_name=NOOP)
    old = JobFactory(queue="reports", created_at=timezone.now() - dt.timedelta(days=30))
    url = admin_url("job_changelist")

    assert _listed_ids(admin_client.get(url, {"status": "failed"})) == [failed.pk]
    assert _listed_ids(admin_client.get(url, {"queue": "emails"})) == [emails.pk]
    assert _listed_ids(admin_client.get(url, {"task": NOOP})) == [failed.pk]
    # The "Past 7 days" link of the filter: an aware midnight.
    since = str(
        (timezone.now() - dt.timedelta(days=7)).replace(hour=0, minute=0, second=0, microsecond=0)
    )
    recent = _listed_ids(admin_client.get(url, {"created_at__gte": since}))
    assert old.pk not in recent and emails.pk in recent


def test_filter_choices_come_from_the_queue_table_and_the_task_registry(admin_client):
    QueueFactory(name="declared-queue")
    JobFactory(queue="undeclared-queue", task_name="gone.renamed_task")

    response = admin_client.get(admin_url("job_changelist"))

    specs = {spec.title: spec for spec in response.context["cl"].filter_specs}
    queue_choices = [value for value, _ in specs["queue"].lookup_choices]
    task_choices = [value for value, _ in specs["task"].lookup_choices]
    assert queue_choices == ["declared-queue"]
    assert ADD in task_choices and "gone.renamed_task" not in task_choices
    assert [value for value, _ in specs["status"].lookup_choices] == list(JobStatus.values)


def test_no_facet_counts_even_when_asked(admin_client):
    JobFactory()

    response = admin_client.get(admin_url("job_changelist"), {"_facets": "True"})

    assert response.status_code == 200
    assert "Show counts" not in content(response)


def test_search_by_id_dedup_key_and_task_name(admin_client):
    invoice = JobFactory(dedup_key="invoice-42")
    noop = JobFactory(task_name=NOOP)
    other = JobFactory()
    url = admin_url("job_changelist")

    assert _listed_ids(admin_client.get(url, {"q": str(other.pk)})) == [other.pk]
    assert _listed_ids(admin_client.get(url, {"q": f"#{other.pk}"})) == [other.pk]
    assert _listed_ids(admin_client.get(url, {"q": "invoice-42"})) == [invoice.pk]
    assert _listed_ids(admin_client.get(url, {"q": "invoice"})) == []  # dedup keys: exact
    assert _listed_ids(admin_client.get(url, {"q": NOOP})) == [noop.pk]
    assert _listed_ids(admin_client.get(url, {"q": "NOOP"})) == [
        noop.pk
    ]  # part of a registered name
    assert _listed_ids(admin_client.get(url, {"q": "99999999999999999999999"})) == []


def test_list_with_filters_and_search_runs_a_bounded_number_of_queries(
    admin_client, django_assert_max_num_queries
):
    QueueFactory(name="emails")
    for _ in range(60):
        JobFactory(queue="emails", status="failed", attempts=3)
    url = admin_url("job_changelist")
    params = {"status": "failed", "queue": "emails", "task": ADD, "q": "add", "p": "2"}

    # session, user, queue choices, capped count, the page's rows: no query per row; on
    # PostgreSQL, the search's two reads of matching ids (at rest, and queued or running).
    with django_assert_max_num_queries(7 if connection.vendor == "sqlite" else 9):
        response = admin_client.get(url, params)

    assert response.status_code == 200
    assert len(response.context["cl"].result_list) == 10  # 60 rows, 50 per page, page 2


def test_list_reads_only_the_columns_it_shows(admin_client, django_assert_max_num_queries):
    JobFactory(args=["x" * 10_000], traceback="y" * 10_000)

    with django_assert_max_num_queries(10) as queries:
        admin_client.get(admin_url("job_changelist"))

    page_query = next(
        q["sql"]
        for q in queries.captured_queries
        if "ORDER BY" in q["sql"] and "taskengine_job" in q["sql"]
    )
    # Of the arguments, a bounded prefix only (of the traceback, nothing).
    unbounded = re.sub(r'LEFT\(\("taskengine_job"\."(args|kwargs)"\)::text, \d+\)', "", page_query)
    unbounded = re.sub(
        r'SUBSTR\(CAST\("taskengine_job"\."(args|kwargs)" AS text\), 1, \d+\)', "", unbounded
    )
    assert '"traceback"' not in page_query and '"args"' not in unbounded


def test_every_count_of_the_unfiltered_list_is_capped(admin_client, django_assert_max_num_queries):
    JobFactory.create_batch(3)

    with django_assert_max_num_queries(10) as queries:
        admin_client.get(admin_url("job_changelist"))

    counts = [q["sql"] for q in queries.captured_queries if "COUNT(" in q["sql"].upper()]
    assert counts, "expected a capped count of a small table"
    assert all("LIMIT 10001" in sql for sql in counts), counts


@postgres_only
def test_unfiltered_list_on_postgresql_uses_the_planner_estimate_not_count(
    admin_client, django_assert_max_num_queries, monkeypatch
):
    JobFactory.create_batch(30)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE taskengine_job")
    # Pretend 30 rows is a big table, as a million would be with the default cap.
    monkeypatch.setattr(EstimatedCountPaginator, "count_cap", 10)

    with django_assert_max_num_queries(10) as queries:
        response = admin_client.get(admin_url("job_changelist"))

    sqls = [q["sql"] for q in queries.captured_queries]
    assert not [sql for sql in sqls if "COUNT(" in sql.upper()], sqls
    assert any("reltuples" in sql for sql in sqls)
    assert "about 30 jobs" in content(response)
    assert len(response.context["cl"].result_list) == 30


def test_a_filter_matching_more_than_the_cap_says_more_than(admin_client, monkeypatch):
    monkeypatch.setattr(EstimatedCountPaginator, "count_cap", 5)
    monkeypatch.setattr(job_admin.JobAdmin, "list_per_page", 4)
    JobFactory.create_batch(9, status="failed")

    url = admin_url("job_changelist")
    response = admin_client.get(url, {"status": "failed"})

    assert "more than 5 jobs" in content(response)
    # An inexact count never hides rows: page 3 of "6" rows still shows the ninth job.
    last = admin_client.get(url, {"status": "failed", "p": "3"})
    assert last.status_code == 200
    assert len(last.context["cl"].result_list) == 1


def test_an_exact_small_count_is_shown_as_is(admin_client):
    JobFactory.create_batch(2)

    assert "2 jobs" in content(admin_client.get(admin_url("job_changelist")))


# -- the job page ---------------------------------------------------------------------


def test_job_page_shows_arguments_and_result_as_indented_json(admin_client):
    job = JobFactory(
        args=[1, {"to": "a@example.com"}],
        kwargs={"retry": True},
        succeeded=True,
        result={"sent": 2},
        dedup_key="mail-7",
    )

    html = content(admin_client.get(admin_url("job_change", job.pk)))

    args = "[\n  1,\n  {\n    &quot;to&quot;: &quot;a@example.com&quot;\n  }\n]"
    assert f'<pre class="te-pre">{args}</pre>' in html
    assert '<pre class="te-pre">{\n  &quot;retry&quot;: true\n}</pre>' in html
    assert '<pre class="te-pre">{\n  &quot;sent&quot;: 2\n}</pre>' in html
    assert "mail-7" in html


def test_job_page_shows_the_event_a_job_waits_for_and_its_waits_done(admin_client):
    job = JobFactory(waiting_for="paid:<17>", waits=[{"sleep": 5.0}, {"event": "paid:<17>"}])

    html = content(admin_client.get(admin_url("job_change", job.pk)))

    assert "paid:&lt;17&gt;" in html  # escaped
    assert "paid:<17>" not in html
    assert "Durable waits done" in html
    assert "&quot;sleep&quot;: 5.0" in html


def test_job_page_links_the_jobs_it_waits_for_and_those_that_wait_for_it(admin_client):
    first = JobFactory(status="succeeded")
    second = JobFactory(blocked=True)
    third = JobFactory(blocked=True)
    Dependency.objects.create(job_id=second.pk, after_id=first.pk)
    Dependency.objects.create(job_id=second.pk, after_id=999_999)
    Dependency.objects.create(job_id=third.pk, after_id=second.pk)

    html = content(admin_client.get(admin_url("job_change", second.pk)))

    first_url = admin_url("job_change", first.pk)
    third_url = admin_url("job_change", third.pk)
    assert f'<a href="{first_url}">{first.pk}</a> (succeeded)' in html
    assert "999999</a> (deleted) (waiting)" in html
    assert f'waited for by: <a href="{third_url}">{third.pk}</a> (queued)' in html


def test_job_page_shows_error_traceback_and_every_attempt(admin_client):
    worker_id = uuid.uuid4()
    start = timezone.now() - dt.timedelta(minutes=5)
    job = JobFactory(
        status="failed",
        attempts=2,
        max_attempts=2,
        error="ValueError: bad row",
        traceback='Traceback (most recent call last):\n  File "x.py", line 1\nValueError: bad row',
        finished_at=timezone.now(),
    )
    AttemptFactory(
        job=job,
        number=1,
        worker_id=worker_id,
        outcome="orphaned",
        started_at=start,
        finished_at=start + dt.timedelta(seconds=3),
        error="worker died",
    )
    AttemptFactory(
        job=job,
        number=2,
        worker_id=worker_id,
        outcome="failed",
        started_at=start,
        finished_at=start + dt.timedelta(seconds=75),
        error="ValueError: bad row",
    )

    html = content(admin_client.get(admin_url("job_change", job.pk)))

    traceback = (
        "Traceback (most recent call last):\n  File &quot;x.py&quot;, line 1\nValueError: bad row"
    )
    assert f'<pre class="te-pre">{traceback}</pre>' in html
    attempts = html[html.index('id="job-attempts"') :]
    assert attempts.count('<tr class="te-attempt"') == 2
    assert str(worker_id) in attempts
    assert "3.00 s" in attempts and "1 min 15 s" in attempts
    assert "worker died" in attempts and ">failed<" in attempts


def test_job_page_shows_the_tasks_on_orphan_policy(admin_client):
    known = JobFactory(task_name=ADD)
    parked = JobFactory(task_name="tests.testapp.tasks.charge_card")
    unknown = JobFactory(task_name="gone.renamed_task")

    assert ">retry</div>" in content(admin_client.get(admin_url("job_change", known.pk)))
    assert ">park</div>" in content(admin_client.get(admin_url("job_change", parked.pk)))
    assert "unknown task (not registered in this process)" in content(
        admin_client.get(admin_url("job_change", unknown.pk))
    )


def test_job_page_is_read_only(admin_client):
    job = JobFactory()

    response = admin_client.get(admin_url("job_change", job.pk))

    assert response.context["has_change_permission"] is False
    assert 'name="_save"' not in content(response)
    assert (
        admin_client.post(admin_url("job_change", job.pk), {"status": "succeeded"}).status_code
        == 403
    )
    assert Job.objects.get(pk=job.pk).status == "queued"
    assert admin_client.get(admin_url("job_add")).status_code == 403
    assert admin_client.get(admin_url("job_delete", job.pk)).status_code == 403


def test_why_not_running_names_the_paused_queue_task_delay_and_missing_workers(admin_client):
    QueueFactory(
        name="emails",
        paused=True,
        paused_by="alice",
        pause_reason="smtp outage",
        paused_at=timezone.now() - dt.timedelta(minutes=10),
    )
    Pause.objects.create(scope=PauseScope.TASK, target=ADD, paused_by="bob")
    job = JobFactory(queue="emails", run_after=timezone.now() + dt.timedelta(minutes=3))

    response = admin_client.get(admin_url("job_change", job.pk))

    html = content(response)
    box = html[html.index('id="job-explanation"') :]
    assert "Why is this job not running?" in box
    codes = [reason.code for reason in response.context["te_explanation"].reasons]
    assert codes == ["not_due", "queue_paused", "task_paused", "no_worker"]
    assert "Queue &#x27;emails&#x27; is paused by alice 10" in box
    assert "(&quot;smtp outage&quot;)" in box
    assert f"Task type {ADD} is paused by bob" in box
    assert "No live worker takes jobs from queue &#x27;emails&#x27;" in box


def test_why_not_running_for_a_running_job_whose_worker_died(admin_client):
    worker = WorkerFactory(last_heartbeat_at=timezone.now() - dt.timedelta(minutes=5))
    job = JobFactory(running=True, worker_id=worker.id)

    html = content(admin_client.get(admin_url("job_change", job.pk)))

    assert "What is this job doing?" in html
    assert 'data-reason="worker_dead"' in html
    assert "the job will be rescued" in html


def test_no_explanation_box_for_a_finished_job(admin_client):
    job = JobFactory(succeeded=True)

    assert 'id="job-explanation"' not in content(admin_client.get(admin_url("job_change", job.pk)))


# -- job actions --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "state, buttons",
    [
        ({"status": "queued"}, ["Pause", "Cancel", "Run now"]),
        ({"status": "paused"}, ["Resume", "Cancel"]),
        ({"status": "failed", "attempts": 3}, ["Retry"]),
        ({"status": "cancelled"}, ["Retry"]),
        # at the task's next checkpoint, or (a hard stop) at once
        ({"running": True}, ["Pause", "Cancel", "Pause now", "Cancel now"]),
        ({"succeeded": True}, []),
    ],
)
def test_job_page_offers_the_actions_that_fit_its_state(admin_client, state, buttons):
    job = JobFactory(**state)

    response = admin_client.get(admin_url("job_change", job.pk))

    assert [b["label"] for b in response.context["te_job_actions"]] == buttons
    html = content(response)
    for button in response.context["te_job_actions"]:
        assert f'data-action="{button["data_action"]}">{button["label"]}</button>' in html
        assert f'action="{button["url"]}"' in html
    if buttons:
        assert f'name="expected_status" value="{job.status}"' in html
        assert f'name="expected_attempts" value="{job.attempts}"' in html


@pytest.mark.parametrize(
    "state, action, after",
    [
        ({"status": "queued"}, "pause", {"status": "paused"}),
        ({"status": "paused"}, "resume", {"status": "queued"}),
        ({"status": "queued"}, "cancel", {"status": "cancelled"}),
        ({"status": "paused"}, "cancel", {"status": "cancelled"}),
        (
            {"status": "failed", "attempts": 3, "max_attempts": 3},
            "retry",
            {"status": "queued", "max_attempts": 6},
        ),
        (
            {"status": "cancelled", "attempts": 1, "max_attempts": 3},
            "retry",
            {"status": "queued", "max_attempts": 4},
        ),
    ],
)
def test_each_job_action_applies_and_is_logged(admin_client, state, action, after):
    job = JobFactory(**state)

    response = _post_action(admin_client, job, action)

    assert response.redirect_chain[-1][0] == admin_url("job_change", job.pk)
    job.refresh_from_db()
    assert {key: getattr(job, key) for key in after} == after
    [message] = response.context["messages"]
    assert message.level == messages.SUCCESS
    [entry] = LogEntry.objects.filter(object_id=str(job.pk))
    assert entry.user.username == "admin" and state["status"] in entry.get_change_message()


@pytest.mark.parametrize("action", ["pause", "cancel"])
def test_pause_or_cancel_on_a_running_job_asks_it_to_stop_at_its_next_checkpoint(
    admin_client, action
):
    job = JobFactory(running=True)

    response = _post_action(admin_client, job, action)

    job.refresh_from_db()
    assert job.status == "running" and job.stop_requested == action
    assert messages_of(response) == [
        f"Asked job {job.pk} to {action} at its next checkpoint (a task that never checkpoints "
        "finishes its current attempt)."
    ]
    [entry] = LogEntry.objects.filter(object_id=str(job.pk))
    assert entry.get_change_message().startswith(f"Asked to {action} at its next checkpoint")

    again = _post_action(admin_client, job, action, status="running", attempts=1)

    [message] = again.context["messages"]
    assert message.level == messages.ERROR and "already asked" in str(message)


def test_run_now_makes_a_delayed_job_due(admin_client):
    job = JobFactory(run_after=timezone.now() + dt.timedelta(hours=3))

    _post_action(admin_client, job, "run_now")

    job.refresh_from_db()
    assert job.status == "queued" and job.run_after <= timezone.now()


def test_a_second_click_on_retry_is_refused_and_never_applied_twice(admin_client):
    job = JobFactory(status="failed", attempts=3, max_attempts=3)

    _post_action(admin_client, job, "retry")
    response = _post_action(admin_client, job, "retry", status="failed", attempts=3)

    [message] = response.context["messages"]
    assert message.level == messages.ERROR
    assert str(message) == (
        f"Job {job.pk} is queued: retry applies only to failed or cancelled jobs. "
        "Nothing was changed."
    )
    job.refresh_from_db()
    assert job.status == "queued" and job.max_attempts == 6  # extended once, not twice
    assert LogEntry.objects.filter(object_id=str(job.pk)).count() == 1


def test_an_action_on_a_job_that_changed_meanwhile_is_refused(admin_client):
    # The operator saw attempt 2; a worker has since retried it (now attempt 3, failed again).
    job = JobFactory(status="failed", attempts=3, max_attempts=3)

    response = _post_action(admin_client, job, "retry", status="failed", attempts=2)

    assert messages_of(response) == [
        f"Job {job.pk} changed since you looked at it (now failed, attempt 3). Nothing was "
        "changed; look again and choose anew."
    ]
    job.refresh_from_db()
    assert job.status == "failed" and job.max_attempts == 3


def test_an_action_without_the_state_the_operator_saw_is_a_bad_request(admin_client):
    job = JobFactory()

    response = admin_client.post(admin_url("job_cancel", job.pk))

    assert response.status_code == 400
    assert Job.objects.get(pk=job.pk).status == "queued"


def test_an_action_on_a_missing_job_says_so(admin_client):
    response = admin_client.post(
        admin_url("job_cancel", 999_999),
        {"expected_status": "queued", "expected_attempts": 0},
    )

    assert response.status_code == 302
    shown = messages_of(admin_client.get(response["Location"], follow=True))
    assert "No job with id 999999." in shown


# -- bulk actions -----------------------------------------------------------------------


def test_bulk_actions_are_offered(admin_client):
    JobFactory()

    html = content(admin_client.get(admin_url("job_changelist")))

    for value, label in [
        ("pause_selected", "Pause selected jobs"),
        ("resume_selected", "Resume selected jobs"),
        ("retry_selected", "Retry selected jobs"),
        ("cancel_selected", "Cancel selected jobs"),
        ("run_selected_now", "Run selected jobs now"),
    ]:
        assert f'<option value="{value}">{label}</option>' in html
    assert "delete_selected" not in html


def test_bulk_cancel_reports_applied_and_refused_counts(admin_client):
    queued = JobFactory.create_batch(2)
    done = JobFactory(succeeded=True)
    ids = [str(job.pk) for job in [*queued, done]]

    response = admin_client.post(
        admin_url("job_changelist"),
        {"action": "cancel_selected", "_selected_action": ids, "index": "0"},
        follow=True,
    )

    assert set(Job.objects.filter(status="cancelled").values_list("pk", flat=True)) == {
        job.pk for job in queued
    }
    applied, refused = response.context["messages"]
    assert applied.level == messages.SUCCESS and str(applied).startswith("Cancelled 2 jobs: ")
    assert refused.level == messages.WARNING
    assert str(refused).startswith(
        f"Cancel refused for 1 job (left unchanged): Job {done.pk} is succeeded: cancel applies "
        "only to queued"
    )
    assert LogEntry.objects.count() == 2


@pytest.mark.parametrize(
    "action, state, after",
    [
        ("pause_selected", {"status": "queued"}, "paused"),
        ("resume_selected", {"status": "paused"}, "queued"),
        ("retry_selected", {"status": "failed", "attempts": 3}, "queued"),
        ("run_selected_now", {"status": "queued"}, "queued"),
    ],
)
def test_each_bulk_action_applies(admin_client, action, state, after):
    job = JobFactory(run_after=timezone.now() + dt.timedelta(hours=1), **state)

    response = admin_client.post(
        admin_url("job_changelist"),
        {"action": action, "_selected_action": [str(job.pk)], "index": "0"},
        follow=True,
    )

    job.refresh_from_db()
    assert job.status == after
    [message] = response.context["messages"]
    assert message.level == messages.SUCCESS
    if action in ("retry_selected", "run_selected_now"):
        assert job.run_after <= timezone.now()


def test_a_bulk_action_over_too_many_jobs_changes_nothing(admin_client, monkeypatch):
    monkeypatch.setattr(job_admin, "BULK_ACTION_LIMIT", 2)
    JobFactory.create_batch(3)

    response = admin_client.post(
        admin_url("job_changelist"),
        {
            "action": "cancel_selected",
            "select_across": "1",
            "_selected_action": ["0"],
            "index": "0",
        },
        follow=True,
    )

    [message] = messages_of(response)
    assert message.startswith("Cancel: more than 2 jobs are selected")
    assert not Job.objects.filter(status="cancelled").exists()


# -- hard stops ---------------------------------------------------------------------------


def test_a_running_job_offers_pause_now_and_cancel_now_next_to_the_cooperative_ones(
    admin_client,
):
    job = JobFactory(running=True)
    response = admin_client.get(admin_url("job_change", job.pk))
    labels = [b["label"] for b in response.context["te_job_actions"]]
    assert labels == ["Pause", "Cancel", "Pause now", "Cancel now"]
    assert 'data-action="cancel-now-job">Cancel now</button>' in content(response)


@pytest.mark.parametrize(
    ("action", "request_"), [("hard_cancel", "cancel:hard"), ("hard_pause", "pause:hard")]
)
def test_a_hard_stop_is_confirmed_on_a_page_of_its_own_then_applied_and_audited(
    admin_client, action, request_
):
    job = JobFactory(running=True, task_name="<script>alert(1)</script>")
    url = admin_url(f"job_{action}", job.pk)
    assert admin_client.get(url).status_code == 405  # POST only

    confirm = _post_action(admin_client, job, action)

    job.refresh_from_db()
    assert job.stop_requested == "" and not AuditEntry.objects.exists()  # nothing changed yet
    html = content(confirm)
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html and "<script>alert(1)" not in html
    assert 'name="confirmed" value="yes"' in html and f'action="{url}"' in html
    assert 'name="expected_status" value="running"' in html

    response = admin_client.post(
        url,
        {"expected_status": "running", "expected_attempts": job.attempts, "confirmed": "yes"},
        follow=True,
    )

    job.refresh_from_db()
    assert (job.status, job.stop_requested) == ("running", request_)
    [message] = response.context["messages"]
    assert message.level == messages.SUCCESS and "ends the attempt" in str(message)
    [entry] = AuditEntry.objects.all()
    assert (entry.action, entry.actor, entry.source, entry.object_id) == (
        f"{action}_job",
        "admin",
        "admin",
        str(job.pk),
    )
    [log] = LogEntry.objects.filter(object_id=str(job.pk))
    assert "its attempt is ended with its process" in log.get_change_message()


def test_a_hard_stop_needs_the_permission_of_its_cooperative_action():
    from tests.admin_helpers import staff_client

    job = JobFactory(running=True)
    client = staff_client("pause_job")
    body = {"expected_status": "running", "expected_attempts": job.attempts, "confirmed": "yes"}
    assert client.post(admin_url("job_hard_cancel", job.pk), body).status_code == 403
    assert client.post(admin_url("job_hard_pause", job.pk), body).status_code == 302
    job.refresh_from_db()
    assert job.stop_requested == "pause:hard"


def test_pages_deep_in_the_list_show_the_same_rows(admin_client, monkeypatch):
    """Past ``seek_from`` rows a page reads its ids first, then those rows: the same jobs, in the
    same order, filtered or not (the last page too)."""
    monkeypatch.setattr(job_admin.JobAdmin, "list_per_page", 4)
    jobs = JobFactory.create_batch(14, status="failed") + JobFactory.create_batch(3)
    newest_first = sorted((job.pk for job in jobs), reverse=True)
    failed_first = sorted((job.pk for job in jobs[:14]), reverse=True)
    url = admin_url("job_changelist")

    def shown(**params: str) -> list[int]:
        response = admin_client.get(url, params)
        return [job.pk for job in response.context["cl"].result_list]

    for seek_from in (1_000, 4):  # not used, then used from the second page on
        monkeypatch.setattr(EstimatedCountPaginator, "seek_from", seek_from)
        assert shown(p="2") == newest_first[4:8]
        assert shown(p="5") == newest_first[16:]
        assert shown(p="3", status="failed") == failed_first[8:12]
        assert shown(p="4", status="failed") == failed_first[12:]


def test_searched_pages_show_the_matches_in_either_order(admin_client, monkeypatch):
    """A searched list's pages are read by the ids the search found (PostgreSQL): the same
    jobs as the search's own condition gives, newest or oldest first, filters included."""
    monkeypatch.setattr(job_admin.JobAdmin, "list_per_page", 3)
    failed = JobFactory.create_batch(5, status="failed", args=["paged-word"])
    queued = JobFactory.create_batch(3, args=["paged-word"])
    JobFactory.create_batch(2, args=["other-word"])
    newest_first = sorted((job.pk for job in failed + queued), reverse=True)
    failed_first = sorted((job.pk for job in failed), reverse=True)
    url = admin_url("job_changelist")

    def shown(**params: str) -> tuple[list[int], int]:
        with CaptureQueriesContext(connection) as captured:
            changelist = admin_client.get(url, {"q": "paged-word", **params}).context["cl"]
        if connection.vendor == "postgresql":
            # Only the search itself holds the condition on every match, not the page's read.
            assert len([q for q in captured.captured_queries if "ANY(" in q["sql"]]) == 0
        return [job.pk for job in changelist.result_list], changelist.result_count

    assert shown() == (newest_first[:3], 8)
    assert shown(p="3") == (newest_first[6:], 8)
    assert shown(o="1") == (newest_first[::-1][:3], 8)
    assert shown(o="1", p="2") == (newest_first[::-1][3:6], 8)
    assert shown(status="failed", p="2") == (failed_first[3:], 5)
