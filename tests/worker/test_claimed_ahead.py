"""Jobs a worker claimed ahead of its threads, with real worker processes: reserved, not started.

A worker claims a few jobs beyond its idle threads so that short jobs come in batches. Those
jobs are reserved: queued, owned by the worker, with no attempt counted and no start time, until
a thread is free. A pause that has returned stops them; a worker's death gives them back as
they were.
"""

from __future__ import annotations

import os
import signal

import pytest
from django.db import connection

from django_taskengine import operations
from django_taskengine.models import Job, JobStatus, Worker
from django_taskengine.store.postgres_plain_claim import RESCUER_LOCK_ID, engine_lock_key
from tests.helpers import direct_connection, wait_for
from tests.testapp.models import LedgerEntry
from tests.testapp.tasks import charge_card, record

pytestmark = pytest.mark.django_db(transaction=True)


def _reserved(ids: list[int]) -> list[Job]:
    return list(Job.objects.filter(pk__in=ids, status=JobStatus.QUEUED, token__isnull=False))


def _owned(ids: list[int]) -> list[Job]:
    """The jobs a worker holds: running, or claimed ahead."""
    return list(Job.objects.filter(pk__in=ids, token__isnull=False))


def _sessions_of(pid: int) -> int:
    """The worker process ``pid``'s own sessions on the server (those its claims and outcomes
    go through)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE %s",
            [f"taskengine-worker %:{pid}"],
        )
        return cursor.fetchone()[0]


def _ran() -> set[int]:
    return set(LedgerEntry.objects.values_list("job_id", flat=True))


def test_jobs_claimed_ahead_wait_queued_and_none_starts_after_a_pause_returns(start_workers):
    # 20 ms jobs on one thread: the worker claims about 50 ms of work, two jobs beyond its thread.
    jobs = [record.enqueue(label=f"job-{index}", sleep=0.02) for index in range(60)]
    ids = [job.pk for job in jobs]
    start_workers("--concurrency", "1")
    owned = wait_for(
        lambda: (
            [job for job in _owned(ids) if job.pk not in _ran()] if len(_owned(ids)) >= 2 else []
        ),
        message="jobs claimed ahead",
    )
    # Waiting for a thread is not running: no attempt, no start time (one thread: at most one
    # of them may have started since).
    waiting = [job for job in owned if job.status == JobStatus.QUEUED]
    assert len(waiting) >= len(owned) - 1
    assert all(job.attempts == 0 and job.started_at is None for job in waiting)

    operations.pause_queue("default")
    running_at_pause = set(
        Job.objects.filter(pk__in=ids, status=JobStatus.RUNNING).values_list("pk", flat=True)
    )
    ran_before = set(LedgerEntry.objects.values_list("job_id", flat=True))
    # One thread: at most its one job was running when the pause returned, and beside it at most
    # one whose attempt had ended with its outcome not yet written (a worker starts its next job
    # before it writes the last one's outcome; seen under load).
    assert len(running_at_pause) <= 2
    # That job finishes, and the reserved ones go back to the queue, untouched.
    wait_for(
        lambda: (
            not Job.objects.filter(pk__in=ids, status=JobStatus.RUNNING).exists()
            and not _reserved(ids)
        ),
        message="the running job to finish and the reserved ones to be given back",
    )
    ran_after = set(LedgerEntry.objects.values_list("job_id", flat=True)) - ran_before
    assert ran_after <= running_at_pause, "a job started after the pause returned"
    assert not Job.objects.filter(pk__in=ids, status=JobStatus.QUEUED, attempts__gt=0).exists()

    operations.resume_queue("default")
    wait_for(
        lambda: Job.objects.filter(pk__in=ids, status=JobStatus.SUCCEEDED).count() == len(ids),
        timeout=60,
        message="every job to succeed after the resume",
    )
    assert sorted(LedgerEntry.objects.values_list("job_id", flat=True)) == sorted(ids)


def test_park_jobs_a_killed_worker_had_only_reserved_run_later(start_workers):
    # Jobs that must never run twice: a worker's death parks (fails) the ones it had started.
    # Those it had only claimed ahead never started: they must run, not be parked.
    jobs = [charge_card.enqueue(seconds=0.02) for _ in range(40)]
    ids = [job.pk for job in jobs]
    start_workers("--concurrency", "1")
    wait_for(
        lambda: Job.objects.filter(pk__in=ids, token__isnull=False).count() >= 2,
        message="a job running and others claimed ahead",
    )
    owner = Job.objects.filter(pk__in=ids, token__isnull=False).values_list("worker_id").first()
    assert owner is not None
    pid = Worker.objects.get(id=owner[0]).pid
    held = Job.objects.filter(pk__in=ids, worker_id=owner[0])
    if connection.vendor == "postgresql":
        # What it sent before it died still runs and commits in its server session, even a
        # statement the session had yet to read when it looked idle: its jobs are read once
        # that session is gone, and no rescue touches them before (the rescuer's lock).
        guard = direct_connection()
        try:
            guard.execute("SELECT pg_advisory_lock(%s)", [engine_lock_key(RESCUER_LOCK_ID)])
            os.kill(pid, signal.SIGKILL)
            wait_for(lambda: not _sessions_of(pid), message="its server session to end")
            started = set(held.filter(status=JobStatus.RUNNING).values_list("pk", flat=True))
            reserved = set(held.filter(status=JobStatus.QUEUED).values_list("pk", flat=True))
        finally:
            guard.close()
    else:
        # Frozen first, so that what it holds is seen exactly as it dies with it.
        os.kill(pid, signal.SIGSTOP)
        started = set(held.filter(status=JobStatus.RUNNING).values_list("pk", flat=True))
        reserved = set(held.filter(status=JobStatus.QUEUED).values_list("pk", flat=True))
        os.kill(pid, signal.SIGKILL)
    # One thread: its job, and at most one whose thread finished and whose outcome the worker
    # had yet to write.
    assert len(started) <= 2, started
    # The supervisor's replacement rescues the dead worker's jobs and drains the queue.
    wait_for(
        lambda: (
            not Job.objects.filter(
                pk__in=ids, status__in=[JobStatus.QUEUED, JobStatus.RUNNING]
            ).exists()
        ),
        timeout=60,
        message="every job to end",
    )
    failed = set(
        Job.objects.filter(pk__in=ids, status=JobStatus.FAILED).values_list("pk", flat=True)
    )
    # Only jobs it had started are parked; those it had only reserved ran, once each.
    assert failed <= started, (failed, started)
    runs = list(LedgerEntry.objects.values_list("job_id", flat=True))
    assert sorted(runs) == sorted(set(runs)), "a job ran twice"
    succeeded = set(
        Job.objects.filter(pk__in=ids, status=JobStatus.SUCCEEDED).values_list("pk", flat=True)
    )
    assert reserved <= succeeded
    assert succeeded | failed == set(ids)
    assert succeeded <= set(runs)
