"""The Prometheus metrics view: who may see it, what it exposes, and that it is computed from
the database (so correct across processes) without touching prometheus_client's global state.
Also the worker's structured log record, the other half of "signals, logs and metrics"."""

from __future__ import annotations

import datetime as dt
import math
import subprocess
import sys

import prometheus_client
import pytest
from django.contrib.auth.models import User
from django.core.exceptions import ImproperlyConfigured
from django.db import connection
from django.test import override_settings
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from django_taskengine.metrics import DURATION_BUCKETS, duration_histogram
from django_taskengine.models import JobStatus
from django_taskengine.testing import run_jobs
from tests.factories import JobFactory, QueueFactory, WorkerFactory
from tests.helpers import REPO_ROOT, worker_env
from tests.testapp.tasks import add, always_fail

pytestmark = pytest.mark.django_db

URL = "/taskengine/metrics"


@pytest.fixture
def staff_client(client):
    client.force_login(User.objects.create_user("ops", is_staff=True))
    return client


def scrape(client, **headers) -> dict[str, dict[tuple, float]]:
    """Fetch the metrics; ``{sample name: {sorted label items: value}}``."""
    response = client.get(URL, headers=headers)
    assert response.status_code == 200, response.content
    samples: dict[str, dict[tuple, float]] = {}
    for family in text_string_to_metric_families(response.content.decode()):
        for sample in family.samples:
            samples.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return samples


def finished_job(queue: str, task_name: str, seconds: float, status=JobStatus.SUCCEEDED, ago=60.0):
    end = timezone.now() - dt.timedelta(seconds=ago)
    return JobFactory(
        queue=queue,
        task_name=task_name,
        status=status,
        attempts=1,
        started_at=end - dt.timedelta(seconds=seconds),
        finished_at=end,
    )


# -- access -----------------------------------------------------------------------------------


def test_the_url_is_included_under_a_name():
    assert reverse("taskengine:metrics") == URL


def test_anonymous_requests_are_refused_with_a_bearer_challenge(client):
    response = client.get(URL)
    assert response.status_code == 401
    assert response["WWW-Authenticate"] == 'Bearer realm="taskengine metrics"'
    assert b"staff user" in response.content


def test_logged_in_users_who_are_not_staff_are_refused(client):
    client.force_login(User.objects.create_user("someone"))
    assert client.get(URL).status_code == 403


def test_staff_users_see_the_metrics(staff_client):
    response = staff_client.get(URL)
    assert response.status_code == 200
    # The classic text format (its version depends on the prometheus-client release).
    assert response["Content-Type"].startswith("text/plain; version=")
    assert response["Cache-Control"].startswith("max-age=0")


def test_a_bearer_token_admits_a_scraper_and_a_wrong_one_does_not(client):
    with override_settings(TASKENGINE={"METRICS_TOKEN": "s3cret-token"}):
        assert client.get(URL, headers={"Authorization": "Bearer s3cret-token"}).status_code == 200
        assert client.get(URL, headers={"Authorization": "bearer s3cret-token"}).status_code == 200
        wrong = client.get(URL, headers={"Authorization": "Bearer s3cret-tokeN"})
        assert wrong.status_code == 401 and b"METRICS_TOKEN" in wrong.content
        assert client.get(URL, headers={"Authorization": "Basic s3cret-token"}).status_code == 401
    # Without a configured token, no header gets in.
    assert client.get(URL, headers={"Authorization": "Bearer "}).status_code == 401


def test_allow_anonymous_opens_it(client):
    with override_settings(TASKENGINE={"METRICS_ALLOW_ANONYMOUS": True}):
        assert client.get(URL).status_code == 200


def test_only_get(staff_client):
    assert staff_client.post(URL).status_code == 405


@pytest.mark.parametrize(
    ("settings", "error_id"),
    [
        ({"METRICS_TOKEN": ""}, "taskengine.E021"),
        ({"METRICS_TOKEN": 1234}, "taskengine.E021"),
        ({"METRICS_ALLOW_ANONYMOUS": "yes"}, "taskengine.E022"),
        ({"EAGER": 1}, "taskengine.E022"),
        ({"EAGER_PROPAGATE": None}, "taskengine.E022"),
    ],
)
def test_checks_report_bad_metrics_and_eager_settings(settings, error_id):
    from django_taskengine.checks import check_settings

    with override_settings(TASKENGINE=settings):
        assert [m.id for m in check_settings()] == [error_id]


# -- content ----------------------------------------------------------------------------------


def test_exposition_has_jobs_by_status_due_oldest_throughput_workers_durations(staff_client):
    now = timezone.now()
    QueueFactory(name="idle")
    JobFactory(queue="emails", run_after=now - dt.timedelta(seconds=120))
    JobFactory(queue="emails", run_after=now - dt.timedelta(seconds=10))
    JobFactory(queue="emails", run_after=now + dt.timedelta(hours=1))
    JobFactory(queue="emails", running=True)
    JobFactory(queue="emails", status=JobStatus.PAUSED)
    finished_job("emails", "app.send", 0.02)
    finished_job("emails", "app.send", 3.0)
    finished_job("emails", "app.send", 45.0, status=JobStatus.FAILED)
    finished_job("emails", "app.send", 1.0, ago=3600)  # outside the window
    JobFactory(queue="emails", status=JobStatus.CANCELLED, finished_at=now)
    WorkerFactory()
    WorkerFactory()
    WorkerFactory(last_heartbeat_at=now - dt.timedelta(minutes=10))  # dead
    QueueFactory(name="held", on_pause=True)

    samples = scrape(staff_client)

    jobs = samples["taskengine_jobs"]
    assert jobs[(("queue", "emails"), ("status", "queued"))] == 3
    assert jobs[(("queue", "emails"), ("status", "running"))] == 1
    assert jobs[(("queue", "emails"), ("status", "paused"))] == 1
    assert jobs[(("queue", "emails"), ("status", "failed"))] == 1
    assert jobs[(("queue", "idle"), ("status", "queued"))] == 0
    assert samples["taskengine_jobs_due"][(("queue", "emails"),)] == 2
    oldest = samples["taskengine_oldest_due_job_age_seconds"]
    assert 119 <= oldest[(("queue", "emails"),)] < 180
    assert oldest[(("queue", "idle"),)] == 0
    assert samples["taskengine_queue_paused"] == {
        (("queue", "emails"),): 0,
        (("queue", "held"),): 1,
        (("queue", "idle"),): 0,
    }
    recent = samples["taskengine_jobs_finished_recently"]
    assert recent[(("queue", "emails"), ("status", "succeeded"))] == 2
    assert recent[(("queue", "emails"), ("status", "failed"))] == 1
    assert recent[(("queue", "emails"), ("status", "cancelled"))] == 1
    assert recent[(("queue", "idle"), ("status", "succeeded"))] == 0
    assert samples["taskengine_recent_window_seconds"] == {(): 300}
    assert samples["taskengine_workers_alive"] == {(): 2}

    labels = (("queue", "emails"), ("task", "app.send"))
    buckets = {
        dict(key)["le"]: value
        for key, value in samples["taskengine_job_duration_seconds_bucket"].items()
        if (("queue", "emails"),) == tuple(i for i in key if i[0] == "queue")
    }
    assert buckets["0.025"] == 1 and buckets["2.5"] == 1 and buckets["5.0"] == 2
    assert buckets["30.0"] == 2 and buckets["60.0"] == 3 and buckets["+Inf"] == 3
    assert samples["taskengine_job_duration_seconds_gcount"][labels] == 3
    assert samples["taskengine_job_duration_seconds_gsum"][labels] == pytest.approx(48.02, abs=0.01)


def test_openmetrics_is_negotiated_and_declares_a_gauge_histogram(staff_client):
    finished_job("default", "app.t", 0.5)
    accept = "application/openmetrics-text; version=1.0.0"
    response = staff_client.get(URL, headers={"Accept": accept})
    assert response["Content-Type"].startswith("application/openmetrics-text")
    text = response.content.decode()
    assert "# TYPE taskengine_job_duration_seconds gaugehistogram" in text
    assert text.rstrip().endswith("# EOF")


@pytest.mark.parametrize("seconds", [0.004, 0.005, 0.3, 7.0, 4000.0])
def test_durations_are_bucketed_in_sql_with_cumulative_bounds(seconds):
    finished_job("q", "app.t", seconds)
    since = timezone.now() - dt.timedelta(minutes=5)
    [(points, total)] = duration_histogram(since, connection.alias).values()
    assert total == pytest.approx(seconds, abs=1e-3)
    assert [bound for bound, _ in points] == [*map(float, DURATION_BUCKETS), math.inf]
    expected = [1 if seconds <= bound else 0 for bound in DURATION_BUCKETS] + [1]
    assert [count for _, count in points] == expected


def test_durations_come_from_the_database_so_every_process_sees_a_workers_jobs(staff_client):
    # Jobs run by run_jobs stand for a worker process: nothing in this process counted them.
    add.enqueue(1, 2)
    always_fail.enqueue()
    run_jobs(retries=True)
    samples = scrape(staff_client)
    counts = samples["taskengine_job_duration_seconds_gcount"]
    assert counts[(("queue", "default"), ("task", "tests.testapp.tasks.add"))] == 1
    assert counts[(("queue", "default"), ("task", "tests.testapp.tasks.always_fail"))] == 1


def test_a_scrape_makes_the_same_few_queries_however_many_queues(staff_client):
    def queries() -> int:
        with CaptureQueriesContext(connection) as captured:
            staff_client.get(URL)
        return len(captured)

    JobFactory(queue="a")
    finished_job("a", "app.t", 1.0)
    one = queries()
    for name in "bcdefgh":
        JobFactory(queue=name)
        finished_job(name, "app.t", 1.0)
    assert queries() == one


def test_the_global_registry_is_left_alone(staff_client):
    before = set(prometheus_client.REGISTRY._collector_to_names)
    scrape(staff_client)
    scrape(staff_client)
    assert set(prometheus_client.REGISTRY._collector_to_names) == before
    assert not any(
        name.startswith("taskengine") for name in prometheus_client.REGISTRY._names_to_collectors
    )


def test_without_prometheus_client_the_view_says_what_to_install(staff_client, monkeypatch):
    monkeypatch.setitem(sys.modules, "prometheus_client", None)
    install = r"pip install 'django-taskengine\[prometheus\]'"
    with pytest.raises(ImproperlyConfigured, match=install):
        staff_client.get(URL)


def test_importing_the_package_and_its_urls_does_not_import_prometheus_client():
    code = (
        "import sys, django; django.setup(); "
        "import django_taskengine.urls, django_taskengine.metrics, django_taskengine.testing; "
        "from django.urls import resolve; resolve('/taskengine/metrics'); "
        "assert 'prometheus_client' not in sys.modules, 'imported'"
    )
    completed = subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO_ROOT,
        env=worker_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert completed.returncode == 0, completed.stderr


# -- the structured log record ----------------------------------------------------------------


def test_each_attempt_logs_one_record_with_task_job_attempt_queue_outcome_and_duration(caplog):
    ok = add.using(queue="maths").enqueue(1, 2)
    bad = always_fail.enqueue()
    with caplog.at_level("INFO", logger="django_taskengine.worker"):
        run_jobs(retries=True)
    records = [r for r in caplog.records if hasattr(r, "job_id")]
    summary = [
        (r.task_name, r.job_id, r.attempt, r.queue, r.outcome, r.job_status, r.levelname)
        for r in records
    ]
    assert summary == [
        ("tests.testapp.tasks.add", ok.id, 1, "maths", "succeeded", "succeeded", "INFO"),
        ("tests.testapp.tasks.always_fail", bad.id, 1, "default", "failed", "queued", "WARNING"),
        ("tests.testapp.tasks.always_fail", bad.id, 2, "default", "failed", "failed", "ERROR"),
    ]
    assert all(isinstance(r.duration_ms, float) and r.duration_ms >= 0 for r in records)
    message = records[0].getMessage()
    assert message.startswith(f"tests.testapp.tasks.add job {ok.id} attempt 1/3 succeeded (")
