"""A job that never returns holds its thread, never the jobs its worker claimed with it."""

from __future__ import annotations

import time

import pytest

from django_taskengine.models import Attempt, AttemptOutcome, Job, JobStatus
from django_taskengine.worker.claimer import STALLED_AFTER, Claimer, Running
from tests.factories import claimed_job
from tests.helpers import wait_for
from tests.testapp.models import LedgerEntry
from tests.testapp.tasks import record, sleep_and_record

pytestmark = pytest.mark.django_db(transaction=True)


def test_jobs_claimed_behind_a_never_returning_job_go_to_another_worker(start_workers):
    # A few quick jobs first: once a worker has seen how short jobs are, it claims ahead.
    for index in range(5):
        record.using(priority=20).enqueue(label=f"warm-up-{index}")
    hang = sleep_and_record.using(priority=10).enqueue(seconds=3600, label="never returns")
    behind = [record.enqueue(label=f"behind-{i}") for i in range(3)]
    # One thread: the worker claims the hanging job and more behind it.
    start_workers("--concurrency", "1")
    wait_for(lambda: LedgerEntry.objects.filter(job_id=hang.id).exists(), message="hang started")
    # Claimed ahead: reserved (queued, owned), or started ahead if they are very short.
    held = wait_for(
        lambda: list(Job.objects.filter(pk__in=[j.pk for j in behind], token__isnull=False)),
        message="a job claimed with the hanging one",
    )
    second_started = time.monotonic()
    start_workers("--concurrency", "1")
    for job in behind:
        wait_for(
            lambda job=job: Job.objects.get(pk=job.pk).status == JobStatus.SUCCEEDED,
            timeout=20,
            message=f"job {job.pk} claimed behind the hanging job to succeed elsewhere",
        )
    # Given back within a few seconds, not when the hanging job ends (never).
    assert time.monotonic() - second_started < 15
    for job in held:
        job.refresh_from_db()
        assert job.attempts == 1, "the attempt it never started is given back"
        outcomes = list(Attempt.objects.filter(job_id=job.pk).values_list("outcome", flat=True))
        assert outcomes[-1] == AttemptOutcome.SUCCEEDED
    assert Job.objects.get(pk=hang.pk).status == JobStatus.RUNNING


def _entry(job_id: int, claimed: float, started: float | None) -> Running:
    return Running(claimed_job(id=job_id), claimed=claimed, started=started)


@pytest.mark.parametrize(
    ("threads", "started_ago", "waited", "given_back"),
    [
        (1, STALLED_AFTER + 1, STALLED_AFTER + 1, True),
        (1, STALLED_AFTER - 1, STALLED_AFTER + 1, False),  # the running job is not overrunning
        (1, STALLED_AFTER + 1, STALLED_AFTER - 1, False),  # not waited long enough yet
        (2, STALLED_AFTER + 1, STALLED_AFTER + 1, False),  # a thread is free to take it
    ],
)
def test_the_claimer_gives_back_only_jobs_stuck_behind_overrunning_ones(
    threads, started_ago, waited, given_back
):
    claimer = Claimer(concurrency=threads)
    claimer.prefetch = threads  # as after jobs ran: claiming ahead
    now = time.monotonic()
    running = _entry(1, claimed=now - started_ago, started=now - started_ago)
    waiting = _entry(2, claimed=now - waited, started=None)
    claimer.running.update({1: running, 2: waiting})
    claimer.inbox.put(waiting)
    assert claimer.stalled(now) is given_back
    assert claimer.prefetch == (0 if given_back else threads)
