"""Safety of the admin: state changes only by POST with CSRF, only with the custom permission
(buttons hidden without it, 403 on a forged POST), and everything from job rows escaped."""

from __future__ import annotations

import pytest
from django.test import Client

from django_taskengine.models import Job, Pause, PauseScope, Queue
from tests.admin_helpers import admin_url, content, staff_client
from tests.factories import AttemptFactory, JobFactory, QueueFactory

pytestmark = pytest.mark.django_db

ADD = "tests.testapp.tasks.add"
SCRIPT = "<script>alert(1)</script>"
ESCAPED = "&lt;script&gt;alert(1)&lt;/script&gt;"

QUEUE_URLS = [
    ("queue_pause", ["emails"]),
    ("queue_resume", ["emails"]),
    ("queue_pause_all", []),
    ("queue_resume_all", []),
    ("queue_pause_task", []),
    ("queue_resume_task", []),
]
JOB_ACTIONS = ["pause", "resume", "retry", "cancel", "run_now"]


def _snapshot() -> list[tuple]:
    """Everything an action could change."""
    return [
        *Queue.objects.order_by("name").values_list("name", "paused", "paused_by", "paused_until"),
        *Pause.objects.order_by("id").values_list("scope", "target"),
        *Job.objects.order_by("id").values_list(
            "id", "status", "run_after", "max_attempts", "stop_requested"
        ),
    ]


@pytest.fixture
def engine_state():
    QueueFactory(name="emails", on_pause=True)
    Pause.objects.create(scope=PauseScope.TASK, target=ADD)
    return {
        "queued": JobFactory(),
        "paused": JobFactory(status="paused"),
        "failed": JobFactory(status="failed", attempts=3),
    }


# -- POST only ----------------------------------------------------------------------------


@pytest.mark.parametrize("name, args", QUEUE_URLS)
def test_get_on_a_queue_action_url_is_405_and_changes_nothing(
    admin_client, engine_state, name, args
):
    before = _snapshot()

    response = admin_client.get(admin_url(name, *args), {"task_name": ADD})

    assert response.status_code == 405
    assert response["Allow"] == "POST"
    assert _snapshot() == before


@pytest.mark.parametrize("action", JOB_ACTIONS)
def test_get_on_a_job_action_url_is_405_and_changes_nothing(admin_client, engine_state, action):
    before = _snapshot()
    for job in engine_state.values():
        url = admin_url(f"job_{action}", job.pk)
        query = {"expected_status": job.status, "expected_attempts": job.attempts}
        assert admin_client.get(url, query).status_code == 405
    assert _snapshot() == before


def test_a_post_without_the_csrf_token_is_refused(engine_state):
    from django.contrib.auth.models import User

    user = User.objects.create_superuser("root", "root@example.com", "unused")
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    before = _snapshot()

    assert client.post(admin_url("queue_resume", "emails")).status_code == 403
    assert client.post(admin_url("queue_pause_all")).status_code == 403
    job = engine_state["failed"]
    response = client.post(
        admin_url("job_retry", job.pk), {"expected_status": "failed", "expected_attempts": 3}
    )
    assert response.status_code == 403
    assert _snapshot() == before


def test_anonymous_posts_go_to_the_login_page_and_change_nothing(client, engine_state):
    before = _snapshot()

    response = client.post(admin_url("queue_resume", "emails"))

    assert response.status_code == 302 and "/admin/login/" in response["Location"]
    job = engine_state["queued"]
    response = client.post(
        admin_url("job_cancel", job.pk), {"expected_status": "queued", "expected_attempts": 0}
    )
    assert response.status_code == 302 and "/admin/login/" in response["Location"]
    assert _snapshot() == before


# -- permissions --------------------------------------------------------------------------


@pytest.mark.parametrize("name, args", QUEUE_URLS)
def test_staff_without_pause_queue_get_403_on_a_forged_post(engine_state, name, args):
    client = staff_client("view_queue", *[p for p in ("pause_job", "retry_job", "cancel_job")])
    before = _snapshot()

    response = client.post(admin_url(name, *args), {"task_name": ADD})

    assert response.status_code == 403
    assert _snapshot() == before


def test_staff_without_pause_queue_see_no_pause_buttons_or_bulk_actions(engine_state):
    client = staff_client("view_queue", "view_overview")

    html = content(client.get(admin_url("queue_changelist")))
    assert "emails" in html
    assert "data-action=" not in html
    assert "pause_selected" not in html and "resume_selected" not in html
    assert admin_url("queue_pause_all") not in html

    html = content(client.get(admin_url("queue_change", "emails")))
    assert "data-action=" not in html

    html = content(client.get(admin_url("overview_changelist")))
    assert "data-action=" not in html
    assert f'<tr data-task="{ADD}">' in html  # the pauses are shown, without buttons


def test_a_forged_bulk_action_without_the_permission_changes_nothing(engine_state):
    client = staff_client("view_queue", "view_job")
    before = _snapshot()

    client.post(
        admin_url("queue_changelist"),
        {"action": "resume_selected", "_selected_action": ["emails"], "index": "0"},
    )
    client.post(
        admin_url("job_changelist"),
        {
            "action": "retry_selected",
            "_selected_action": [str(engine_state["failed"].pk)],
            "index": "0",
        },
    )

    assert _snapshot() == before


def test_pause_queue_alone_is_enough_to_see_and_use_the_queue_list(engine_state):
    client = staff_client("pause_queue")

    html = content(client.get(admin_url("queue_changelist")))

    assert 'data-action="resume-queue"' in html and "pause_selected" in html
    client.post(admin_url("queue_resume", "emails"))
    assert not Queue.objects.get(name="emails").paused


@pytest.mark.parametrize(
    "permission, allowed",
    [
        ("pause_job", {"pause", "resume"}),
        ("retry_job", {"retry", "run_now"}),
        ("cancel_job", {"cancel"}),
    ],
)
def test_each_job_permission_allows_its_actions_only(engine_state, permission, allowed):
    client = staff_client("view_job", permission)
    jobs = {
        "pause": engine_state["queued"],
        "resume": engine_state["paused"],
        "retry": engine_state["failed"],
        "cancel": engine_state["queued"],
        "run_now": engine_state["queued"],
    }
    labels = {
        "pause": "Pause",
        "resume": "Resume",
        "retry": "Retry",
        "cancel": "Cancel",
        "run_now": "Run now",
    }
    bulk = {
        "pause": "pause_selected",
        "resume": "resume_selected",
        "retry": "retry_selected",
        "cancel": "cancel_selected",
        "run_now": "run_selected_now",
    }

    changelist = content(client.get(admin_url("job_changelist")))
    for action in JOB_ACTIONS:
        assert (f'<option value="{bulk[action]}">' in changelist) == (action in allowed)

    for action in sorted(set(JOB_ACTIONS) - allowed):
        job = jobs[action]
        page = client.get(admin_url("job_change", job.pk))
        assert labels[action] not in [b["label"] for b in page.context["te_job_actions"]]
        before = _snapshot()
        response = client.post(
            admin_url(f"job_{action}", job.pk),
            {"expected_status": job.status, "expected_attempts": job.attempts},
        )
        assert response.status_code == 403
        assert _snapshot() == before

    for action in sorted(allowed):
        job = jobs[action]
        page = client.get(admin_url("job_change", job.pk))
        assert labels[action] in [b["label"] for b in page.context["te_job_actions"]]


def test_a_job_permission_alone_lets_staff_see_jobs(engine_state):
    client = staff_client("retry_job")
    job = engine_state["failed"]

    assert client.get(admin_url("job_changelist")).status_code == 200
    assert (
        client.post(
            admin_url("job_retry", job.pk), {"expected_status": "failed", "expected_attempts": 3}
        ).status_code
        == 302
    )
    assert Job.objects.get(pk=job.pk).status == "queued"


def test_staff_without_any_engine_permission_see_nothing():
    JobFactory()
    client = staff_client(username="outsider")

    assert client.get(admin_url("job_changelist")).status_code == 403
    assert client.get(admin_url("queue_changelist")).status_code == 403
    assert client.get(admin_url("worker_changelist")).status_code == 403


# -- escaping -----------------------------------------------------------------------------


def test_job_rows_are_shown_escaped_everywhere(admin_client):
    QueueFactory(name=SCRIPT)
    job = JobFactory(
        task_name=SCRIPT,
        queue=SCRIPT,
        args=[SCRIPT],
        kwargs={SCRIPT: SCRIPT},
        status="failed",
        attempts=1,
        result={"html": SCRIPT},
        error=SCRIPT,
        traceback=f"Traceback\n{SCRIPT}",
        dedup_key=SCRIPT,
    )
    AttemptFactory(job=job, outcome="failed", error=SCRIPT)

    pages = {
        "job page": admin_client.get(admin_url("job_change", job.pk)),
        "job list": admin_client.get(admin_url("job_changelist")),
        "job search": admin_client.get(admin_url("job_changelist"), {"q": SCRIPT}),
        "job filtered": admin_client.get(
            admin_url("job_changelist"), {"queue": SCRIPT, "task": SCRIPT}
        ),
        "queue list": admin_client.get(admin_url("queue_changelist")),
        "queue page": admin_client.get(admin_url("queue_change", SCRIPT)),
        "overview": admin_client.get(admin_url("overview_changelist")),
    }

    for where, response in pages.items():
        assert response.status_code == 200, where
        html = content(response)
        assert SCRIPT not in html, where
        assert ESCAPED in html or "&lt;script&gt;" in html, where
    job_page = content(pages["job page"])
    assert job_page.count("&lt;script&gt;alert(1)&lt;/script&gt;") >= 7
    assert f'<pre class="te-pre">[\n  &quot;{ESCAPED}&quot;\n]</pre>' in job_page


def test_pause_reasons_and_names_are_shown_escaped(admin_client):
    QueueFactory(name="emails", paused=True, paused_by=SCRIPT, pause_reason=SCRIPT)
    Pause.objects.create(
        scope=PauseScope.TASK, target=SCRIPT, paused_by=SCRIPT, pause_reason=SCRIPT
    )
    Pause.objects.create(scope=PauseScope.ENGINE, paused_by=SCRIPT, pause_reason=SCRIPT)
    job = JobFactory(queue="emails", task_name=SCRIPT)

    for url in [
        admin_url("queue_changelist"),
        admin_url("queue_change", "emails"),
        admin_url("overview_changelist"),
        admin_url("job_change", job.pk),
    ]:
        html = content(admin_client.get(url))
        assert SCRIPT not in html, url
        assert ESCAPED in html, url


def test_messages_about_hostile_names_are_escaped(admin_client):
    response = admin_client.post(
        admin_url("queue_pause_task"), {"task_name": SCRIPT, "reason": SCRIPT}, follow=True
    )

    html = content(response)
    assert Pause.objects.get(scope=PauseScope.TASK).target == SCRIPT
    assert SCRIPT not in html and f"Paused task type {ESCAPED}" in html
