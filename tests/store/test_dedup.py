"""Deduplication: at most one active job per dedup_key, enforced by the database."""

from __future__ import annotations

import threading

import pytest
from django.db import connection, transaction

from django_taskengine.models import ACTIVE_STATUSES, TERMINAL_STATUSES, Job
from tests.factories import JobFactory
from tests.helpers import committed_db, in_thread
from tests.testapp.tasks import add, noop

pytestmark = pytest.mark.django_db


def test_second_enqueue_with_the_same_key_returns_the_existing_job():
    first = add.using(dedup_key="sum:1").enqueue(1, 2)
    second = add.using(dedup_key="sum:1").enqueue(3, 4)
    assert first.created is True
    assert second.created is False
    assert second.pk == first.pk
    assert second.args == [1, 2]
    assert second.status == "queued"
    assert Job.objects.filter(dedup_key="sum:1").count() == 1


def test_different_keys_make_different_jobs():
    first = add.using(dedup_key="sum:1").enqueue(1, 2)
    second = add.using(dedup_key="sum:2").enqueue(1, 2)
    assert second.created is True
    assert second.pk != first.pk


def test_jobs_without_a_key_are_never_deduplicated():
    jobs = [add.enqueue(1, 2) for _ in range(3)]
    assert len({job.pk for job in jobs}) == 3
    assert all(job.created for job in jobs)


@pytest.mark.parametrize("status", [s for s in ACTIVE_STATUSES if s != "queued"])
def test_a_running_or_paused_job_still_holds_its_key(status):
    existing = JobFactory(dedup_key="sum:3", status=status)
    again = add.using(dedup_key="sum:3").enqueue(1, 2)
    assert again.created is False
    assert again.pk == existing.pk
    assert again.status == status


@pytest.mark.parametrize("status", TERMINAL_STATUSES)
def test_a_finished_job_releases_its_key(status):
    first = add.using(dedup_key="sum:4").enqueue(1, 2)
    Job.objects.filter(pk=first.pk).update(status=status)
    again = add.using(dedup_key="sum:4").enqueue(1, 2)
    assert again.created is True
    assert again.pk != first.pk
    assert Job.objects.filter(dedup_key="sum:4", status="queued").count() == 1
    # And the new job holds the key in turn.
    assert add.using(dedup_key="sum:4").enqueue(5, 6).pk == again.pk


def test_the_key_is_shared_by_all_tasks():
    # "At most one active job per dedup_key" (DESIGN.md invariant 5), whatever the task.
    first = add.using(dedup_key="shared").enqueue(1, 2)
    other = noop.using(dedup_key="shared").enqueue()
    assert other.created is False
    assert other.pk == first.pk
    assert other.task_name == "tests.testapp.tasks.add"


def test_bulk_enqueue_with_a_key_makes_one_job():
    jobs = add.using(dedup_key="bulk").bulk_enqueue([((i, i), {}) for i in range(5)])
    assert len(jobs) == 5
    assert {job.pk for job in jobs} == {jobs[0].pk}
    assert [job.created for job in jobs] == [True, False, False, False, False]
    assert Job.objects.get(dedup_key="bulk").args == [0, 0]


def test_bulk_enqueue_with_a_key_already_held_makes_none():
    first = add.using(dedup_key="held").enqueue(9, 9)
    jobs = add.using(dedup_key="held").bulk_enqueue([((1, 1), {}), ((2, 2), {})])
    assert [job.pk for job in jobs] == [first.pk, first.pk]
    assert [job.created for job in jobs] == [False, False]
    assert Job.objects.count() == 1


def test_a_duplicate_inside_a_transaction_leaves_it_usable():
    with transaction.atomic():
        first = add.using(dedup_key="tx").enqueue(1, 2)
        second = add.using(dedup_key="tx").enqueue(1, 2)
        third = add.enqueue(3, 4)
    assert second.pk == first.pk and second.created is False
    assert Job.objects.filter(pk=third.pk).exists()


@committed_db
def test_a_key_from_a_rolled_back_enqueue_is_free():
    class Boom(Exception):
        pass

    with pytest.raises(Boom):
        with transaction.atomic():
            add.using(dedup_key="rolled-back").enqueue(1, 2)
            raise Boom
    job = add.using(dedup_key="rolled-back").enqueue(1, 2)
    assert job.created is True


@committed_db
@pytest.mark.timeout(60)
def test_eight_threads_enqueueing_one_key_at_once_leave_exactly_one_job():
    barrier = threading.Barrier(8, timeout=20)

    def enqueue() -> tuple[int, bool]:
        connection.ensure_connection()
        barrier.wait()
        job = add.using(dedup_key="race").enqueue(1, 2)
        return job.pk, job.created

    results: list = []
    errors: list = []
    threads = [in_thread(enqueue, results, errors) for _ in range(8)]
    for thread in threads:
        thread.join(timeout=40)
    assert not any(thread.is_alive() for thread in threads)
    assert errors == []
    assert Job.objects.filter(dedup_key="race").count() == 1
    job_id = Job.objects.get(dedup_key="race").pk
    assert sorted(results) == [(job_id, False)] * 7 + [(job_id, True)]


@committed_db
@pytest.mark.timeout(60)
def test_a_key_held_by_an_uncommitted_enqueue_that_rolls_back_goes_to_the_waiting_one():
    # The second enqueue must wait for the first transaction's outcome, not check-then-insert:
    # when the first rolls back, the second creates the job.
    enqueued = threading.Event()
    release = threading.Event()

    def first() -> int:
        with transaction.atomic():
            job = add.using(dedup_key="pending").enqueue(1, 2)
            enqueued.set()
            release.wait(timeout=20)
            transaction.set_rollback(True)
        return job.pk

    def second() -> tuple[int, bool]:
        enqueued.wait(timeout=20)
        job = add.using(dedup_key="pending").enqueue(3, 4)
        return job.pk, job.created

    first_results: list = []
    second_results: list = []
    errors: list = []
    first_thread = in_thread(first, first_results, errors)
    assert enqueued.wait(timeout=20)
    second_thread = in_thread(second, second_results, errors)
    second_thread.join(timeout=0.5)
    assert second_thread.is_alive(), "the second enqueue did not wait for the first"
    release.set()
    first_thread.join(timeout=20)
    second_thread.join(timeout=20)
    assert errors == []
    ((job_id, created),) = second_results
    assert created is True
    assert list(Job.objects.values_list("pk", "args")) == [(job_id, [3, 4])]
