"""The job table's indexes on status are partial (django_taskengine/job_indexes.py): queries
by status and by task must say which partial index they mean, select what ``status IN`` selects,
and on PostgreSQL never read the whole table, finished history included."""

from __future__ import annotations

import datetime as dt
import itertools
import uuid

import pytest
from django.db import connection
from django.db.models import Q
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from django_taskengine.admin.failures import failure_groups
from django_taskengine.admin.job_list import search_jobs
from django_taskengine.inspection import explain_job, queue_stats, task_is_known
from django_taskengine.job_indexes import ANY_STATUS, status_in
from django_taskengine.models import Job, JobStatus
from django_taskengine.operations.pauses import _queues_with_queued_jobs, release_ended_pauses

pytestmark = pytest.mark.django_db

STATUSES = list(JobStatus.values)


def _one_of_each() -> None:
    """A job of every status in two queues and two tasks, and a reserved queued one."""
    now = timezone.now()
    jobs = [
        Job(task_name=task, queue=queue, status=status, finished_at=now)
        for status, queue, task in itertools.product(STATUSES, ("q1", "q2"), ("t1", "t2"))
    ]
    jobs.append(Job(task_name="t1", queue="q1", token=uuid.uuid4(), worker_id=uuid.uuid4()))
    Job.objects.bulk_create(jobs)


def test_status_in_selects_what_status_in_selects():
    _one_of_each()
    for size in (1, 2, 3, len(STATUSES)):
        for statuses in itertools.combinations(STATUSES, size):
            got = set(Job.objects.filter(status_in(*statuses)).values_list("id", flat=True))
            want = set(Job.objects.filter(status__in=statuses).values_list("id", flat=True))
            assert got == want, statuses
    assert Job.objects.filter(ANY_STATUS).count() == Job.objects.count()


@pytest.mark.parametrize("statuses", [(), ("queud",), ("queued", "done")])
def test_status_in_refuses_what_is_not_a_status(statuses):
    with pytest.raises(ValueError, match="not job statuses"):
        status_in(*statuses)


def test_a_task_known_only_by_its_queued_or_running_jobs_is_known():
    Job.objects.create(task_name="gone.queued", token=uuid.uuid4())
    Job.objects.create(task_name="gone.running", status=JobStatus.RUNNING)
    assert task_is_known("gone.queued") and task_is_known("gone.running")
    assert not task_is_known("never.seen")


def _plans(queries: list[dict[str, str]]) -> list[str]:
    plans = []
    with connection.cursor() as cursor:
        for captured in queries:
            sql = captured["sql"]
            if "taskengine_job" not in sql or not sql.lstrip().upper().startswith("SELECT"):
                continue
            cursor.execute("EXPLAIN " + sql)
            plans.append(sql + "\n" + "\n".join(row[0] for row in cursor.fetchall()))
    return plans


@pytest.mark.skipif(connection.vendor != "postgresql", reason="PostgreSQL's planner")
def test_operator_queries_by_status_and_task_read_indexes_not_the_history():
    # 20,000 finished jobs of history and a few hundred of every other kind, as a queue that
    # has run for a while holds; the planner's statistics up to date.
    now = timezone.now()
    history = [
        Job(
            task_name=f"t{i % 5}",
            queue=f"q{i % 3}",
            status=JobStatus.SUCCEEDED,
            started_at=now - dt.timedelta(seconds=i),
            finished_at=now - dt.timedelta(seconds=i),
        )
        for i in range(20_000)
    ]
    Job.objects.bulk_create(history, batch_size=5_000)
    for i, status in enumerate(STATUSES * 40):
        Job.objects.create(task_name=f"t{i % 5}", queue=f"q{i % 3}", status=status)
    reserved = Job.objects.create(task_name="t1", queue="q1", token=uuid.uuid4())
    Job.objects.filter(status=JobStatus.PAUSED).update(stop_requested="pause:queue")
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE taskengine_job")

    with CaptureQueriesContext(connection) as captured:
        queue_stats()
        task_is_known("not.registered")
        _queues_with_queued_jobs(Q(task_name="t1"), "default")
        release_ended_pauses()
        explain_job(reserved)
        for status in STATUSES:
            list(Job.objects.filter(status_in(status)).values("id")[:100])
        list(Job.objects.filter(ANY_STATUS, task_name="t3").values("id")[:100])
        list(search_jobs(Job.objects.all(), "t2").values("id")[:100])
        failure_groups(now - dt.timedelta(days=1), using="default")
    plans = _plans(captured.captured_queries)
    assert len(plans) >= 13, plans
    for plan in plans:
        assert "Seq Scan on taskengine_job" not in plan, plan
    # The failures page reads failed jobs only, not every success of its window. The queue
    # statistics count failed jobs as COUNT(*) through an index of failed jobs (an index-only
    # scan once the table is vacuumed: COUNT(id) would read every row, the id not being in it).
    failures = [p for p in plans if "LEFT(" in p and "finished_at" in p]
    assert failures and "taskengine_job_failed_idx" in failures[0], failures
    failed_counts = [p for p in plans if "COUNT(*)" in p and "GROUP BY" in p and "failed" in p]
    assert failed_counts, plans
    assert any(
        index in failed_counts[0]
        for index in ("taskengine_job_rest_status_idx", "taskengine_job_failed_idx")
    ), failed_counts
