"""The console's per-minute statistics, as real workers write them: counts per queue and minute
that match the jobs and attempts in the tables, wait times in the right buckets, running time."""

from __future__ import annotations

from collections import Counter

import pytest
from django.db.models import Sum

from django_taskengine.core.wait_histogram import bucket_of
from django_taskengine.models import Attempt, AttemptOutcome, Job, JobStatus, MinuteStats
from django_taskengine.stats_models import ALL_QUEUES, WAIT_COLUMNS
from django_taskengine.testing import run_jobs
from django_taskengine.worker.stats import minute_of, prune_minute_stats
from tests.helpers import wait_for
from tests.testapp.tasks import add, always_fail, in_other_queue, record

pytestmark = pytest.mark.django_db(transaction=True)


def _rows() -> dict[tuple[str, int], MinuteStats]:
    return {(row.queue, row.minute): row for row in MinuteStats.objects.all()}


def _waits(row: MinuteStats) -> list[int]:
    return [getattr(row, column) for column in WAIT_COLUMNS]


def test_run_workers_leaves_the_right_counts_per_queue_and_minute(start_workers):
    for n in range(12):
        add.enqueue(n, n)
    for n in range(5):
        in_other_queue.enqueue(n)
    # Two attempts each: one retried, then failed for good.
    for _ in range(3):
        always_fail.using(queue="flaky").enqueue()
    slow = record.using(queue="slow").enqueue(label="slow", sleep=1.5)

    workers = start_workers("--burst", "--processes", "2", "--concurrency", "2")
    assert workers.wait(timeout=90) == 0, workers.log()[-3000:]

    expected: Counter[tuple[str, int, str]] = Counter()
    for job in Job.objects.all():
        if job.status == JobStatus.SUCCEEDED:
            expected[job.queue, minute_of(job.finished_at), "succeeded"] += 1
        else:
            assert job.status == JobStatus.FAILED, job
            expected[job.queue, minute_of(job.finished_at), "failed"] += 1
    for attempt in Attempt.objects.select_related("job"):
        assert attempt.outcome != AttemptOutcome.SUPERSEDED
        key = (attempt.job.queue, minute_of(attempt.started_at))
        expected[*key, "started"] += 1
        if attempt.outcome == AttemptOutcome.FAILED and attempt.number < attempt.job.max_attempts:
            expected[attempt.job.queue, minute_of(attempt.finished_at), "retried"] += 1
    flaky_end = Job.objects.filter(queue="flaky")[0].finished_at
    assert expected["flaky", minute_of(flaky_end), "failed"]

    rows = _rows()
    found: Counter[tuple[str, int, str]] = Counter()
    overall: Counter[tuple[str, int, str]] = Counter()
    for (queue, minute), row in rows.items():
        if queue == ALL_QUEUES:
            for kind in ("succeeded", "failed", "retried"):
                if getattr(row, kind):
                    overall["*", minute, kind] = getattr(row, kind)
            overall["*", minute, "started"] = sum(_waits(row))
            continue
        for kind in ("succeeded", "failed", "retried"):
            if getattr(row, kind):
                found[queue, minute, kind] = getattr(row, kind)
        if sum(_waits(row)):
            found[queue, minute, "started"] = sum(_waits(row))
    assert found == expected
    # The rows of every queue hold the sums, minute by minute.
    summed: Counter[tuple[str, int, str]] = Counter()
    for (_, minute, kind), count in expected.items():
        summed["*", minute, kind] += count
    assert +overall == summed

    # Jobs that ran once: their wait (from created_at, which is their run_after) is in the
    # bucket it belongs to.
    ran_once = Job.objects.filter(queue__in=["default", "other", "slow"])
    buckets: Counter[tuple[str, int, int]] = Counter()
    for job in ran_once:
        wait = (job.started_at - max(job.created_at, job.run_after)).total_seconds()
        buckets[job.queue, minute_of(job.started_at), bucket_of(wait)] += 1
    for (queue, minute, bucket), count in buckets.items():
        assert _waits(rows[queue, minute])[bucket] == count

    # The slow job ran about 1.5 s: its running time is counted once, in full.
    slow.refresh_from_db()
    ran = (slow.finished_at - slow.started_at).total_seconds()
    counted = MinuteStats.objects.filter(queue="slow").aggregate(s=Sum("running_seconds"))["s"]
    assert ran >= 1.5
    assert counted == pytest.approx(ran, abs=0.05)


def test_a_long_job_counts_as_running_while_it_runs(start_workers):
    job = record.using(queue="long").enqueue(label="long", sleep=8.0)
    workers = start_workers("--processes", "1", "--concurrency", "1")

    def counted() -> float:
        total = MinuteStats.objects.filter(queue="long").aggregate(s=Sum("running_seconds"))["s"]
        return total or 0.0

    # Before the job ends, a flush (every 5 s) has added the time it has run so far.
    wait_for(lambda: counted() > 1.0, timeout=30, message="running time counted")
    job.refresh_from_db()
    assert job.status == JobStatus.RUNNING
    finished = job.wait(timeout=30)
    assert finished.status == JobStatus.SUCCEEDED
    ran = (finished.finished_at - finished.started_at).total_seconds()
    wait_for(lambda: abs(counted() - ran) < 0.1, timeout=15, message="running time in full")
    workers.kill()


def test_run_jobs_counts_too_and_old_rows_are_pruned():
    add.enqueue(1, 2)
    always_fail.enqueue()
    run_jobs(retries=True)
    rows = list(MinuteStats.objects.filter(queue="default"))
    assert MinuteStats.objects.filter(queue=ALL_QUEUES).count() == len(rows)
    assert sum(row.succeeded for row in rows) == 1
    assert sum(row.failed for row in rows) == 1
    assert sum(row.retried for row in rows) == 1
    assert sum(sum(_waits(row)) for row in rows) == 3

    MinuteStats.objects.create(queue="default", minute=rows[0].minute - 3 * 24 * 60)
    assert prune_minute_stats("default") == 1
    assert MinuteStats.objects.filter(queue="default").count() == len(rows)
