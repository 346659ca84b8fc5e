"""A worker's admin page: its state, the jobs it holds, its history, and the buttons that ask it
to drain, resume, stop or hard-stop — POST only, for holders of ``control_worker``."""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone

from django_taskengine.models import Attempt, Worker
from tests.admin_helpers import admin_url, content, messages_of, staff_client
from tests.factories import JobFactory, WorkerFactory

pytestmark = pytest.mark.django_db

ACTIONS = ("drain", "resume", "stop", "hard_stop")


def _page(client, worker) -> str:
    response = client.get(admin_url("worker_change", worker.id))
    assert response.status_code == 200
    return content(response)


def test_the_page_shows_state_times_held_jobs_and_history(admin_client):
    worker = WorkerFactory(hostname="web-1", pid=4242, queues=["emails"], concurrency=4)
    running = JobFactory(running=True, worker_id=worker.id, progress_current=30, progress_total=120)
    reserved = JobFactory(worker_id=worker.id, token=running.token)  # queued, claimed ahead
    JobFactory(running=True)  # another worker's
    done = JobFactory(succeeded=True)
    start = timezone.now() - dt.timedelta(seconds=3)
    Attempt.objects.create(
        job=done, number=1, worker_id=worker.id, started_at=start, outcome="succeeded"
    )
    failed = JobFactory(status="failed", attempts=2)
    Attempt.objects.create(
        job=failed,
        number=2,
        worker_id=worker.id,
        started_at=start,
        outcome="failed",
        error="ValueError: bad input\nmore lines",
    )
    Attempt.objects.create(job=failed, number=1, worker_id=None, outcome="failed")

    html = _page(admin_client, worker)

    assert 'data-te-live="worker-state"' in html
    assert 'data-te-live="worker-jobs"' in html and 'data-te-live="worker-history"' in html
    assert '<span class="te-worker-state te-worker-live"' in html
    assert "1 running, 1 reserved" in html
    assert html.count('class="te-held-job"') == 2
    assert f'href="{admin_url("job_change", running.id)}"' in html
    assert f'href="{admin_url("job_change", reserved.id)}"' in html
    assert '<progress class="te-worker-progress" max="120" value="30"></progress> 25%' in html
    assert html.count('class="te-past-attempt"') == 2  # this worker's only, newest first
    assert html.index(f'data-job="{failed.id}"') < html.index(f'data-job="{done.id}"')
    assert "ValueError: bad input" in html and "more lines" not in html
    assert "<time datetime=" in html and " UTC" in html  # exact times, with the zone
    assert "emails" in html and "4242" in html


def test_buttons_follow_the_state_and_hide_from_view_only_users(admin_client):
    viewer = staff_client("view_worker", username="viewer")
    worker = WorkerFactory()
    html = _page(admin_client, worker)
    assert {"drain-worker", "stop-worker", "hard-stop-worker"} <= set(
        part.split('"')[0] for part in html.split('data-action="')[1:]
    )
    assert 'data-action="resume-worker"' not in html

    Worker.objects.filter(id=worker.id).update(
        control_requested="drain", control_requested_at=timezone.now(), control_requested_by="al"
    )
    html = _page(admin_client, worker)
    assert 'data-action="resume-worker"' in html and 'data-action="drain-worker"' not in html
    assert "Drain requested by al at" in html
    assert '<span class="te-worker-state te-worker-draining"' in html

    Worker.objects.filter(id=worker.id).update(last_heartbeat_at=timezone.now())
    html = _page(viewer, worker)
    assert '<span class="te-worker-state te-worker-drained"' in html  # live: buttons possible
    assert "-worker" not in "".join(html.split('data-action="')[1:2])
    assert "formaction" not in html

    stopped = WorkerFactory(stopped_at=timezone.now())
    assert "formaction" not in _page(admin_client, stopped)


def test_a_drained_worker_says_so_once_it_has_heard_and_runs_nothing(admin_client):
    asked = timezone.now() - dt.timedelta(seconds=2)
    worker = WorkerFactory(
        control_requested="drain", control_requested_at=asked, last_heartbeat_at=timezone.now()
    )
    assert '<span class="te-worker-state te-worker-drained"' in _page(admin_client, worker)
    JobFactory(running=True, worker_id=worker.id)
    assert '<span class="te-worker-state te-worker-draining"' in _page(admin_client, worker)


@pytest.mark.parametrize("action", ACTIONS)
def test_requests_need_the_permission_and_a_post(action):
    # The users first: a worker without heartbeats for RESCUE_GRACE is presumed dead.
    viewer = staff_client("view_worker", username="viewer")
    operator = staff_client("view_worker", "control_worker", username="op")
    worker = WorkerFactory(control_requested="drain" if action == "resume" else "")
    url = admin_url(f"worker_{action}", worker.id)
    assert viewer.post(url).status_code == 403
    assert operator.get(url).status_code == 405
    worker.refresh_from_db()
    assert worker.control_requested == ("drain" if action == "resume" else "")

    response = operator.post(url, {"reason": "deploy"}, follow=True)

    worker.refresh_from_db()
    expected = {"drain": "drain", "resume": "", "stop": "stop", "hard_stop": "kill"}[action]
    assert worker.control_requested == expected
    assert worker.control_requested_by == "op"
    assert "at its next heartbeat" in messages_of(response)[0]


def test_a_refused_request_says_why(admin_client):
    worker = WorkerFactory(hostname="gone", stopped_at=timezone.now())
    response = admin_client.post(admin_url("worker_stop", worker.id), follow=True)
    assert messages_of(response) == [
        f"Worker gone:{worker.pid} has already stopped; there is nothing to stop."
    ]
    silent = WorkerFactory(last_heartbeat_at=timezone.now() - dt.timedelta(minutes=5))
    response = admin_client.post(admin_url("worker_drain", silent.id), follow=True)
    assert "presumed dead" in messages_of(response)[0]


def test_the_list_labels_job_counts_and_links_to_the_page(admin_client):
    worker = WorkerFactory(hostname="web-9", jobs_succeeded=5, jobs_failed=2)
    html = content(admin_client.get(admin_url("worker_changelist")))
    assert '<th class="column-jobs_succeeded' in html or "succeeded" in html
    assert '<td class="field-failed">2</td>' in html
    assert admin_url("worker_change", worker.id) in html
    assert 'title="' in html  # the heartbeat's exact time on hover


def test_the_page_takes_few_queries(admin_client, django_assert_max_num_queries):
    worker = WorkerFactory()
    for _ in range(5):
        JobFactory(running=True, worker_id=worker.id)
        Attempt.objects.create(
            job=JobFactory(succeeded=True), number=1, worker_id=worker.id, outcome="succeeded"
        )
    with django_assert_max_num_queries(12):
        admin_client.get(admin_url("worker_change", worker.id))
