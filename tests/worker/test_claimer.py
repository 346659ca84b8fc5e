"""The claimer: how many jobs a worker claims ahead of its threads, and the jobs it holds."""

from __future__ import annotations

import os
import uuid

import pytest

from django_taskengine import operations
from django_taskengine.models import Attempt, Job, JobStatus
from django_taskengine.store import WorkerInfo, get_store
from django_taskengine.worker.claimer import MAX_PREFETCH, START_WINDOW, Claimer, Running
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


def test_very_short_jobs_are_started_ahead_a_few_milliseconds_of_work_only():
    claimer = Claimer(concurrency=2)
    claimer.adapt_prefetch(0.001)  # 1 ms jobs: 100 ms of work claimed, 20 ms started ahead
    assert START_WINDOW == 0.01
    assert (claimer.prefetch, claimer.start_ahead) == (100, 20)
    claimer = Claimer(concurrency=1)
    claimer.adapt_prefetch(0.02)  # 20 ms jobs: 2 claimed ahead, none started ahead
    assert (claimer.prefetch, claimer.start_ahead) == (2, 0)


def test_sub_millisecond_jobs_are_claimed_only_as_far_as_they_are_started():
    # Reserving one would cost a row update and a round trip more than running it.
    claimer = Claimer(concurrency=1)
    claimer.adapt_prefetch(0.0005)
    assert (claimer.prefetch, claimer.start_ahead) == (20, 20)


@pytest.fixture
def session():
    info = WorkerInfo(id=uuid.uuid4(), hostname="test", pid=os.getpid(), queues=[], concurrency=2)
    session = get_store().open_session(info)
    session.register()
    yield session
    session.close()


def _states(jobs):
    """Each job's (status, attempts, has started_at, owned by a worker)."""
    rows = Job.objects.filter(pk__in=[job.pk for job in jobs]).order_by("pk")
    return [(j.status, j.attempts, j.started_at is not None, j.token is not None) for j in rows]


RUNNING = (JobStatus.RUNNING, 1, True, True)
RESERVED = (JobStatus.QUEUED, 0, False, True)
FREE = (JobStatus.QUEUED, 0, False, False)


@pytest.mark.django_db(transaction=True)
def test_jobs_claimed_ahead_are_reserved_queued_and_start_when_a_thread_is_free(session):
    jobs = [add.enqueue(i, i) for i in range(3)]
    claimer = Claimer(concurrency=2)
    claimer.prefetch = 2
    # Room for 4, only 3 due: the claim says the queue is exhausted.
    assert claimer.claim(session) is True
    assert set(claimer.running) == {job.id for job in jobs}
    assert claimer.claimed_total == 3
    # One job per thread starts; the third waits reserved: no attempt, no start time.
    assert _states(jobs) == [RUNNING, RUNNING, RESERVED]
    assert [entry.job.id for entry in claimer.reserved] == [jobs[2].id]
    claimer.start_reserved(session)  # no thread is free yet
    assert _states(jobs) == [RUNNING, RUNNING, RESERVED]
    claimer.running.pop(jobs[0].id)  # a thread finished its job
    claimer.start_reserved(session)
    assert _states(jobs)[2] == RUNNING
    assert not claimer.reserved
    taken = [entry.job for entry in claimer.take_unstarted()]
    assert [job.id for job in taken] == [job.id for job in jobs]
    assert taken[2].attempt == 1 and taken[2].started_at is not None


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("pause", ["queue", "task", "all"])
def test_a_reserved_job_does_not_start_once_a_pause_has_returned(session, pause):
    jobs = [add.enqueue(i, i) for i in range(3)]
    claimer = Claimer(concurrency=1)
    claimer.prefetch = 2
    claimer.claim(session)
    assert _states(jobs) == [RUNNING, RESERVED, RESERVED]
    if pause == "queue":
        operations.pause_queue("default")
    elif pause == "task":
        operations.pause_task(add.name)
    else:
        operations.pause_all()
    claimer.running.pop(jobs[0].id)
    claimer.start_reserved(session)  # one free thread: one tries to start
    assert _states(jobs)[1:] == [FREE, RESERVED]
    claimer.start_reserved(session)
    # Back in the queue untouched, where the pause holds them; the worker forgot them.
    assert _states(jobs)[1:] == [FREE, FREE]
    assert set(claimer.running) == set() and not claimer.reserved
    assert claimer.claim(session) is True
    assert not claimer.running


@pytest.mark.django_db(transaction=True)
def test_an_operator_takes_a_reserved_job_from_its_worker(session):
    jobs = [add.enqueue(i, i) for i in range(3)]
    claimer = Claimer(concurrency=1)
    claimer.prefetch = 2
    claimer.claim(session)
    operations.cancel_job(jobs[1].pk)
    operations.pause_job(jobs[2].pk)
    assert _states(jobs)[1:] == [
        (JobStatus.CANCELLED, 0, False, False),
        (JobStatus.PAUSED, 0, False, False),
    ]
    claimer.running.pop(jobs[0].id)
    claimer.start_reserved(session)
    claimer.start_reserved(session)
    assert _states(jobs)[1:] == [
        (JobStatus.CANCELLED, 0, False, False),
        (JobStatus.PAUSED, 0, False, False),
    ]
    assert not claimer.running


@pytest.mark.django_db(transaction=True)
def test_reserved_jobs_given_back_are_untouched_and_claimable(session):
    jobs = [add.enqueue(i, i) for i in range(3)]
    claimer = Claimer(concurrency=1)
    claimer.prefetch = 2
    claimer.claim(session)
    assert claimer.release_reserved(session) == 2
    assert _states(jobs) == [RUNNING, FREE, FREE]
    assert list(claimer.running) == [jobs[0].id]
    assert not Attempt.objects.filter(job_id__in=[jobs[1].pk, jobs[2].pk]).exists()
    other = Claimer(concurrency=2)
    other.claim(session)
    assert set(other.running) == {jobs[1].id, jobs[2].id}


@pytest.mark.django_db(transaction=True)
def test_jobs_parked_on_a_dead_worker_are_never_started_ahead(session):
    jobs = [add.enqueue(i, i) for i in range(4)]
    claimer = Claimer(concurrency=1, park=[add.name])
    claimer.prefetch = claimer.start_ahead = 3
    claimer.claim(session)
    # One for the thread, whatever its task; the rest of a parked task wait reserved.
    assert _states(jobs) == [RUNNING, RESERVED, RESERVED, RESERVED]
    claimer = Claimer(concurrency=1)
    claimer.prefetch = claimer.start_ahead = 3
    Job.objects.update(status=JobStatus.QUEUED, token=None, worker_id=None, attempts=0)
    claimer.claim(session)
    assert _states(jobs) == [RUNNING] * 4
