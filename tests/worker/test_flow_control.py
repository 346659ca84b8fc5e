"""Flow control across real worker processes: three ``run_workers`` commands of two processes
each, every limit proved from the attempts' start and finish times."""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import time

import pytest
from django.db import connection

from django_taskengine import operations
from django_taskengine.models import Attempt, FlowQuota, Job, JobStatus, Worker
from tests.helpers import wait_for
from tests.testapp.flow_tasks import (
    five_per_second,
    flow_fails,
    flow_step,
    per_tenant,
    per_tenant_two,
    two_at_a_time,
)

pytestmark = pytest.mark.django_db(transaction=True)

SECOND = dt.timedelta(seconds=1)


def _fleet(start_workers, commands=3, **env):
    return [start_workers("--processes", "2", "--concurrency", "4", **env) for _ in range(commands)]


def _all_finished(ids) -> bool:
    return (
        not Job.objects.filter(id__in=ids)
        .exclude(status__in=(JobStatus.SUCCEEDED, JobStatus.FAILED))
        .exists()
    )


def _runs(jobs):
    """(job id, started, finished) of every attempt of ``jobs``."""
    return list(
        Attempt.objects.filter(job_id__in=[job.id for job in jobs]).values_list(
            "job_id", "started_at", "finished_at"
        )
    )


def most_at_once(runs) -> int:
    """The most attempts running at one moment (one that ends as another starts: not both)."""
    events = sorted(
        [(started, 1) for _, started, _ in runs] + [(finished, -1) for _, _, finished in runs],
        key=lambda event: (event[0], event[1]),
    )
    running = peak = 0
    for _, step in events:
        running += step
        peak = max(peak, running)
    return peak


def most_starts_in_a_second(runs) -> int:
    starts = sorted(started for _, started, _ in runs)
    return max(sum(1 for s in starts[i:] if s < first + SECOND) for i, first in enumerate(starts))


def test_every_limit_holds_across_three_commands(start_workers):
    operations.set_queue_limits("flow", concurrency=3)
    queue_limited = [flow_step.enqueue(seconds=0.2, label=f"q{n}") for n in range(12)]
    task_limited = [
        two_at_a_time.using(queue=queue).enqueue(seconds=0.2) for queue in ("a", "b") * 4
    ]
    grouped = {
        group: [per_tenant.using(group=group).enqueue(seconds=0.1) for _ in range(4)]
        for group in ("g1", "g2", "g3")
    }
    rated = [five_per_second.enqueue(label=str(n)) for n in range(15)]
    sequence = [
        flow_step.using(queue="seq", sequence="order-17").enqueue(seconds=0.05, label=str(n))
        for n in range(3)
    ]
    sequence.append(flow_fails.using(queue="seq", sequence="order-17").enqueue(label="fails"))
    sequence += [
        flow_step.using(queue="seq", sequence="order-17").enqueue(seconds=0.05, label=str(n))
        for n in range(3, 6)
    ]
    everything = queue_limited + task_limited + sum(grouped.values(), []) + rated + sequence
    # What is checked here is the limits. On SQLite a worker owns a running job by a lease, and
    # with six processes writing, one can wait for SQLite's write lock longer than the suite's
    # 2-second lease: the job is then rescued while it runs and runs again (its two attempts
    # overlap in the counts), as a lease promises (see test_drain.py).
    _fleet(start_workers, TASKENGINE_TEST_OVERRIDES=json.dumps({"LEASE_SECONDS": 60}))
    wait_for(lambda: _all_finished([j.id for j in everything]), timeout=90, message="all ran")

    assert 2 <= most_at_once(_runs(queue_limited)) <= 3
    assert most_at_once(_runs(task_limited)) == 2
    for group, jobs in grouped.items():
        assert most_at_once(_runs(jobs)) == 1, group
    assert most_at_once(_runs(sum(grouped.values(), []))) > 1, "groups run side by side"
    assert most_starts_in_a_second(_runs(rated)) <= 5
    runs = sorted(_runs(sequence), key=lambda run: run[1])
    assert [run[0] for run in runs] == [job.id for job in sequence], "in enqueue order"
    assert most_at_once(runs) == 1
    statuses = dict(Job.objects.filter(id__in=[j.id for j in sequence]).values_list("id", "status"))
    assert [statuses[job.id] for job in sequence] == ["succeeded"] * 3 + ["failed"] + [
        "succeeded"
    ] * 3
    assert not Job.objects.filter(id__in=[j.id for j in everything], attempts__gt=1).exists()


@pytest.mark.skipif(connection.vendor != "postgresql", reason="quotas are PostgreSQL's")
def test_a_rate_limit_holds_while_workers_start_through_quotas(start_workers):
    """A queue with a rate limit of 80/s (less than the fleet would start), and a concurrency
    limit it never reaches: while its window is at most half full, workers start its jobs
    through quotas (docs/guide/flow-control.md, "Quotas"), then job by job; no second holds
    more than 80 starts."""
    operations.set_queue_limits("flow", concurrency=10_000, rate_limit="80/s")
    flow_step.bulk_enqueue([((), {"label": str(n)}) for n in range(400)])
    jobs = list(Job.objects.filter(queue="flow"))
    # One thread a process: claims of one job, quotas of 8, which the limit has room for.
    for _ in range(3):
        start_workers("--processes", "2", "--concurrency", "1")
    wait_for(lambda: _all_finished([j.id for j in jobs]), timeout=90, message="all ran")
    assert FlowQuota.objects.exists(), "workers were granted quotas"
    assert most_starts_in_a_second(_runs(jobs)) <= 80
    assert not Job.objects.filter(id__in=[j.id for j in jobs], attempts__gt=1).exists()


def test_a_small_tenant_is_served_while_a_large_one_has_ten_thousand_queued(start_workers):
    per_tenant_two.using(group="large").bulk_enqueue([((), {"seconds": 0.05})] * 10_000)
    small = per_tenant_two.using(group="small").bulk_enqueue([((), {})] * 10)
    _fleet(start_workers, commands=1)
    began = time.monotonic()
    wait_for(lambda: _all_finished([job.id for job in small]), timeout=60, message="small done")
    took = time.monotonic() - began
    left = Job.objects.filter(group_key="large", status=JobStatus.QUEUED).count()
    assert left > 9_000, f"the large tenant ran {10_000 - left} jobs meanwhile"
    # Ten jobs, two at a time, each within a claim round or two of the previous: the time is
    # the fleet's start, not the large tenant's backlog.
    assert took < 30, f"the small tenant's 10 jobs took {took:.1f} s"


def test_slots_come_back_when_a_killed_workers_jobs_are_rescued(start_workers):
    operations.set_queue_limits("flow", concurrency=1)
    jobs = [flow_step.enqueue(seconds=1.5, label=str(n)) for n in range(3)]
    _fleet(start_workers, commands=1)
    wait_for(
        lambda: Job.objects.filter(id=jobs[0].id, status=JobStatus.RUNNING).exists(),
        timeout=30,
        message="the first job running",
    )
    victim = Worker.objects.get(id=Job.objects.get(id=jobs[0].id).worker_id).pid
    os.kill(victim, signal.SIGKILL)
    wait_for(lambda: _all_finished([job.id for job in jobs]), timeout=60, message="all ran")
    runs = _runs(jobs)
    assert most_at_once(runs) == 1
    first = Job.objects.get(id=jobs[0].id)
    assert first.status == JobStatus.SUCCEEDED and first.attempts == 2
    outcomes = list(first.attempt_set.order_by("number").values_list("outcome", flat=True))
    assert outcomes == ["orphaned", "succeeded"]
