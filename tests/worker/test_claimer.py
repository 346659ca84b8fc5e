"""The claimer: how many jobs a worker claims ahead of its threads, and the jobs it holds."""

from __future__ import annotations

import os
import uuid

import pytest

from django_taskengine.models import Job, JobStatus
from django_taskengine.store import WorkerInfo, get_store
from django_taskengine.worker.claimer import MAX_PREFETCH, Claimer, Running
from tests.testapp.tasks import add


def _hold(claimer: Claimer, count: int) -> None:
    """Pretend ``count`` jobs are claimed (the sizing rules only count them)."""
    for index in range(count):
        claimer.running[index] = Running(job=None)  # type: ignore[arg-type]


def test_a_fresh_claimer_asks_for_one_job_per_thread_and_none_ahead():
    claimer = Claimer(concurrency=4)
    assert claimer.prefetch == 0
    assert claimer.room() == 4


def test_it_refills_only_once_half_the_prefetched_jobs_are_used():
    claimer = Claimer(concurrency=4)
    claimer.prefetch = 4  # threads 4, prefetch 4: refill at 6 held or fewer
    _hold(claimer, 7)
    assert claimer.room() == 0
    claimer.running.pop(0)
    assert claimer.room() == 2  # back up to 4 + 4


def test_max_jobs_caps_what_is_claimed_over_the_whole_run():
    claimer = Claimer(concurrency=4, max_jobs=5)
    claimer.prefetch = 4
    assert claimer.room() == 5
    claimer.claimed_total = 4
    assert claimer.room() == 1
    claimer.claimed_total = 5
    assert claimer.room() == 0


def test_very_short_jobs_are_prefetched_in_batches_of_at_most_max_prefetch():
    claimer = Claimer(concurrency=2)
    for _ in range(20):
        claimer.adapt_prefetch(0.00001)
    assert claimer.prefetch == MAX_PREFETCH
    assert claimer.room() == 2 + MAX_PREFETCH


def test_long_jobs_are_not_prefetched_beyond_the_threads():
    claimer = Claimer(concurrency=2)
    claimer.adapt_prefetch(1.0)
    assert claimer.prefetch == 0
    assert claimer.room() == 2


def test_prefetch_follows_a_moving_average_of_run_times():
    claimer = Claimer(concurrency=1)
    claimer.adapt_prefetch(0.001)  # 50 ms of 1 ms jobs
    assert claimer.prefetch == 50
    claimer.adapt_prefetch(0.011)  # mean 0.8 * 1 + 0.2 * 11 = 3 ms
    assert claimer.prefetch == 16


@pytest.mark.django_db(transaction=True)
def test_claimed_jobs_wait_in_the_inbox_until_taken_back_unstarted():
    jobs = [add.enqueue(i, i) for i in range(3)]
    info = WorkerInfo(id=uuid.uuid4(), hostname="test", pid=os.getpid(), queues=[], concurrency=2)
    session = get_store().open_session(info)
    try:
        session.register()
        claimer = Claimer(concurrency=2)
        claimer.prefetch = 2
        # Room for 4, only 3 due: the claim says the queue is exhausted.
        assert claimer.claim(session) is True
        assert set(claimer.running) == {job.id for job in jobs}
        assert claimer.claimed_total == 3
        assert Job.objects.filter(status=JobStatus.RUNNING).count() == 3
        unstarted = claimer.take_unstarted()
        assert [entry.job.id for entry in unstarted] == [job.id for job in jobs]
        assert claimer.inbox.empty()
        # Taking them back from the inbox leaves them held until their outcomes are written.
        assert len(claimer.running) == 3
    finally:
        session.close()
