"""The worker admin: processes with their heartbeats and running jobs, stale ones marked."""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone

from tests.admin_helpers import admin_url, content
from tests.factories import JobFactory, WorkerFactory

pytestmark = pytest.mark.django_db


def _rows(response) -> dict[str, object]:
    return {str(worker.id): worker for worker in response.context["cl"].result_list}


def test_worker_list_shows_host_pid_queues_heartbeat_and_counts(admin_client):
    busy = WorkerFactory(
        hostname="web-1", pid=4242, queues=["emails", "reports"], jobs_succeeded=17, jobs_failed=2
    )
    idle = WorkerFactory(hostname="web-2", queues=[])
    JobFactory.create_batch(2, running=True, worker_id=busy.id)
    JobFactory(succeeded=True, worker_id=idle.id)  # finished: not running now

    response = admin_client.get(admin_url("worker_changelist"))

    rows = _rows(response)
    assert rows[str(busy.id)].te_running == 2
    assert rows[str(idle.id)].te_running == 0
    html = content(response)
    assert "web-1" in html and "4242" in html and "emails, reports" in html
    assert '<td class="field-queue_names">all</td>' in html
    assert '<td class="field-succeeded">17</td>' in html
    assert '<td class="field-running_now">2</td>' in html
    assert ">now</time>" in html or ">1 s ago</time>" in html


def test_stale_workers_are_marked_and_stopped_ones_greyed(admin_client):
    WorkerFactory(hostname="alive")
    WorkerFactory(hostname="silent", last_heartbeat_at=timezone.now() - dt.timedelta(minutes=3))
    WorkerFactory(hostname="gone", stopped_at=timezone.now())

    html = content(admin_client.get(admin_url("worker_changelist")))

    assert 'class="te-worker-state te-worker-live"' in html
    assert 'class="te-worker-state te-worker-stale"' in html
    assert 'class="te-worker-state te-worker-stopped"' in html
    assert '<span class="te-stopped">gone</span>' in html
    assert "3 min ago" in html


@pytest.mark.parametrize(
    "state, expected",
    [
        ("live", {"alive"}),
        ("stale", {"silent"}),
        ("stopped", {"gone"}),
    ],
)
def test_worker_list_filters_by_state(admin_client, state, expected):
    WorkerFactory(hostname="alive")
    WorkerFactory(hostname="silent", last_heartbeat_at=timezone.now() - dt.timedelta(minutes=3))
    WorkerFactory(hostname="gone", stopped_at=timezone.now())

    response = admin_client.get(admin_url("worker_changelist"), {"state": state})

    assert {w.hostname for w in response.context["cl"].result_list} == expected


def test_running_counts_take_one_query_for_the_page(admin_client, django_assert_max_num_queries):
    for _ in range(2):
        JobFactory(running=True, worker_id=WorkerFactory().id)
    with django_assert_max_num_queries(10) as few:
        admin_client.get(admin_url("worker_changelist"))
    for _ in range(30):
        JobFactory(running=True, worker_id=WorkerFactory().id)

    with django_assert_max_num_queries(len(few.captured_queries)):
        response = admin_client.get(admin_url("worker_changelist"))

    assert sum(w.te_running for w in response.context["cl"].result_list) == 32


def test_workers_are_read_only(admin_client):
    worker = WorkerFactory()

    page = admin_client.get(admin_url("worker_change", worker.id))

    assert page.status_code == 200 and 'name="_save"' not in content(page)
    assert admin_client.get(admin_url("worker_add")).status_code == 403
    assert admin_client.get(admin_url("worker_delete", worker.id)).status_code == 403
    assert "delete_selected" not in content(admin_client.get(admin_url("worker_changelist")))
