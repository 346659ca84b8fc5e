"""Uniqueness modes (django_taskengine/core/dedup.py): skip, replace, debounce, throttle."""

from __future__ import annotations

import datetime as dt
import threading
import uuid

import pytest
from django.db import connection
from django.utils import timezone

from django_taskengine.models import Job
from django_taskengine.testing import run_jobs
from tests.factories import JobFactory
from tests.helpers import committed_db, in_thread
from tests.testapp.tasks import add, noop

pytestmark = pytest.mark.django_db


def _seconds_from_now(moment: dt.datetime) -> float:
    return (moment - timezone.now()).total_seconds()


# -- replace --------------------------------------------------------------------------------


def test_replace_writes_over_a_waiting_holder():
    later = timezone.now() + dt.timedelta(hours=1)
    first = add.using(dedup_key="r", dedup="replace").enqueue(1, 2)
    second = add.using(dedup_key="r", dedup="replace", priority=7, run_after=later).enqueue(3, 4)
    assert (first.created, first.dedup_outcome) == (True, "created")
    assert (second.created, second.dedup_outcome) == (False, "replaced")
    assert second.pk == first.pk
    job = Job.objects.get()
    assert (job.args, job.priority, job.run_after, job.dedup_mode) == ([3, 4], 7, later, "replace")
    assert (second.args, second.priority) == ([3, 4], 7)


def test_replace_without_run_after_makes_the_holder_due_now():
    add.using(dedup_key="r", dedup="replace", run_after=3600).enqueue(1, 2)
    add.using(dedup_key="r", dedup="replace").enqueue(3, 4)
    assert _seconds_from_now(Job.objects.get().run_after) < 60


def test_replace_leaves_a_running_holder_alone_and_queues_a_new_job_after_it():
    running = JobFactory(
        dedup_key="r", dedup_mode="replace", status="running", started_at=timezone.now(), args=[0]
    )
    new = add.using(dedup_key="r", dedup="replace").enqueue(1, 2)
    assert (new.created, new.dedup_outcome) == (True, "created")
    again = add.using(dedup_key="r", dedup="replace").enqueue(5, 6)
    assert (again.pk, again.dedup_outcome) == (new.pk, "replaced")
    running.refresh_from_db()
    assert (running.status, running.args) == ("running", [0])
    assert Job.objects.get(pk=new.pk).args == [5, 6]


def test_replace_after_the_holder_started_once_adds_a_job_even_while_it_waits_for_a_retry():
    # It started: its attempt ran with its arguments, and the retry continues that work.
    retrying = JobFactory(
        dedup_key="r", dedup_mode="replace", status="queued", attempts=1, started_at=timezone.now()
    )
    new = add.using(dedup_key="r", dedup="replace").enqueue(1, 2)
    assert new.created and new.pk != retrying.pk


@pytest.mark.parametrize("status", ["running", "queued", "paused"])
def test_replace_returns_a_holder_of_another_mode_untouched(status):
    held = JobFactory(dedup_key="r", status=status, args=[9])  # dedup="skip": held while active
    got = add.using(dedup_key="r", dedup="replace").enqueue(1, 2)
    assert (got.pk, got.created, got.dedup_outcome) == (held.pk, False, "skipped")
    assert Job.objects.get().args == [9]


def test_a_paused_holder_that_never_started_is_replaced_and_stays_paused():
    held = JobFactory(dedup_key="r", dedup_mode="replace", status="paused")
    got = add.using(dedup_key="r", dedup="replace").enqueue(1, 2)
    assert (got.pk, got.dedup_outcome, got.status, got.args) == (
        held.pk,
        "replaced",
        "paused",
        [1, 2],
    )


@committed_db
def test_replace_takes_a_reserved_holder_back_from_its_worker(session):
    first = add.using(dedup_key="r", dedup="replace").enqueue(1, 2)
    (reserved,) = session.claim(1, free=0, start=0)
    assert reserved.reserved and reserved.args == [1, 2]
    replaced = add.using(dedup_key="r", dedup="replace").enqueue(3, 4)
    assert (replaced.pk, replaced.dedup_outcome) == (first.pk, "replaced")
    # The worker cannot start what it reserved with the old arguments; the next claim gets the
    # new ones.
    assert session.start([reserved]) == []
    (claimed,) = session.claim(1)
    assert (claimed.id, claimed.args) == (first.pk, [3, 4])


def test_a_replaced_job_runs_with_the_last_arguments():
    add.using(dedup_key="r", dedup="replace").enqueue(1, 2)
    add.using(dedup_key="r", dedup="replace").enqueue(10, 20)
    (job,) = run_jobs()
    assert (job.status, job.result) == ("succeeded", 30)


def test_a_skip_enqueue_while_a_replace_job_runs_adds_a_job():
    # A replace job holds its key only until it starts, whatever the next call's mode.
    JobFactory(dedup_key="r", dedup_mode="replace", status="running", started_at=timezone.now())
    assert add.using(dedup_key="r").enqueue(1, 2).created


# -- debounce -------------------------------------------------------------------------------


def test_debounce_runs_a_burst_once_a_window_after_the_last_call_with_its_arguments():
    first = add.using(dedup_key="d", dedup="debounce", dedup_window=60).enqueue(1, 1)
    assert 55 < _seconds_from_now(Job.objects.get().run_after) <= 60
    Job.objects.update(run_after=timezone.now() + dt.timedelta(seconds=5))  # the window runs
    last = add.using(dedup_key="d", dedup="debounce", dedup_window=60).enqueue(2, 2)
    assert (first.dedup_outcome, last.dedup_outcome) == ("created", "debounced")
    assert last.pk == first.pk and not last.created
    job = Job.objects.get()
    assert job.args == [2, 2] and 55 < _seconds_from_now(job.run_after) <= 60
    assert run_jobs() == []  # not due yet
    Job.objects.update(run_after=timezone.now())
    (ran,) = run_jobs()
    assert ran.result == 4


def test_debounce_takes_a_timedelta_window():
    add.using(dedup_key="d", dedup="debounce", dedup_window=dt.timedelta(minutes=2)).enqueue(1, 1)
    assert 115 < _seconds_from_now(Job.objects.get().run_after) <= 120


@committed_db
@pytest.mark.timeout(60)
def test_eight_threads_debouncing_one_key_at_once_leave_one_job_with_one_of_their_arguments():
    barrier = threading.Barrier(8, timeout=20)

    def enqueue(n: int) -> tuple[int, str]:
        connection.ensure_connection()
        barrier.wait()
        job = add.using(dedup_key="burst", dedup="debounce", dedup_window=30).enqueue(n, 0)
        return job.pk, job.dedup_outcome

    results: list = []
    errors: list = []
    threads = [in_thread(lambda n=n: enqueue(n), results, errors) for n in range(8)]
    for thread in threads:
        thread.join(timeout=40)
    assert errors == []
    (job,) = Job.objects.filter(dedup_key="burst")
    assert job.args[0] in range(8)
    assert sorted(outcome for _, outcome in results) == ["created"] + ["debounced"] * 7
    assert {pk for pk, _ in results} == {job.pk}


# -- throttle -------------------------------------------------------------------------------


def test_throttle_drops_calls_inside_the_window_even_after_the_job_finished():
    first = add.using(dedup_key="t", dedup="throttle", dedup_window=60).enqueue(1, 1)
    Job.objects.filter(pk=first.pk).update(status="succeeded", finished_at=timezone.now())
    again = add.using(dedup_key="t", dedup="throttle", dedup_window=60).enqueue(2, 2)
    assert (again.pk, again.created, again.dedup_outcome) == (first.pk, False, "throttled")
    assert again.args == [1, 1] and Job.objects.count() == 1


def test_throttle_adds_a_job_once_the_holders_window_has_passed():
    first = add.using(dedup_key="t", dedup="throttle", dedup_window=60).enqueue(1, 1)
    Job.objects.filter(pk=first.pk).update(
        status="succeeded", created_at=timezone.now() - dt.timedelta(seconds=61)
    )
    again = add.using(dedup_key="t", dedup="throttle", dedup_window=60).enqueue(2, 2)
    assert (again.created, again.dedup_outcome) == (True, "created")
    assert again.pk != first.pk


def test_an_active_throttled_job_still_holds_its_key_after_its_window():
    first = add.using(dedup_key="t", dedup="throttle", dedup_window=60).enqueue(1, 1)
    Job.objects.filter(pk=first.pk).update(
        status="running", started_at=timezone.now(), created_at=timezone.now() - dt.timedelta(1)
    )
    again = add.using(dedup_key="t", dedup="throttle", dedup_window=60).enqueue(2, 2)
    assert (again.pk, again.dedup_outcome) == (first.pk, "throttled")


@committed_db
@pytest.mark.timeout(60)
def test_eight_threads_throttling_one_key_at_once_leave_one_job():
    barrier = threading.Barrier(8, timeout=20)

    def enqueue() -> str:
        connection.ensure_connection()
        barrier.wait()
        return (
            add.using(dedup_key="burst", dedup="throttle", dedup_window=30)
            .enqueue(1, 2)
            .dedup_outcome
        )

    results: list = []
    errors: list = []
    threads = [in_thread(enqueue, results, errors) for _ in range(8)]
    for thread in threads:
        thread.join(timeout=40)
    assert errors == []
    assert Job.objects.filter(dedup_key="burst").count() == 1
    assert sorted(results) == ["created"] + ["throttled"] * 7


# -- bulk enqueue ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("mode", "window", "then", "stored"),
    [
        ("skip", None, "skipped", [0, 0]),
        ("replace", None, "replaced", [2, 2]),
        ("debounce", 30, "debounced", [2, 2]),
        ("throttle", 30, "throttled", [0, 0]),
    ],
)
def test_bulk_enqueue_says_per_call_which_job_it_got(mode, window, then, stored):
    calls = [((i, i), {}) for i in range(3)]
    jobs = add.using(dedup_key="b", dedup=mode, dedup_window=window).bulk_enqueue(calls)
    (job,) = Job.objects.all()
    assert [j.pk for j in jobs] == [job.pk] * 3
    assert [(j.created, j.dedup_outcome) for j in jobs] == [(True, "created")] + [(False, then)] * 2
    assert job.args == stored


@pytest.mark.parametrize(
    ("mode", "window", "got"),
    [("replace", None, "replaced"), ("debounce", 30, "debounced"), ("throttle", 30, "throttled")],
)
def test_bulk_enqueue_on_a_held_key_adds_nothing(mode, window, got):
    held = add.using(dedup_key="b", dedup=mode, dedup_window=window).enqueue(9, 9)
    jobs = add.using(dedup_key="b", dedup=mode, dedup_window=window).bulk_enqueue(
        [((1, 1), {}), ((2, 2), {})]
    )
    assert [(j.pk, j.dedup_outcome) for j in jobs] == [(held.pk, got)] * 2
    assert Job.objects.count() == 1


# -- refused options ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"dedup_key": "k", "dedup": "latest"}, "dedup must be one of skip, replace"),
        ({"dedup": "replace"}, "needs a dedup_key"),
        ({"dedup_key": "k", "dedup": "debounce"}, "needs dedup_window"),
        ({"dedup_key": "k", "dedup": "throttle", "dedup_window": 0}, "needs dedup_window"),
        ({"dedup_key": "k", "dedup": "throttle", "dedup_window": True}, "needs dedup_window"),
        ({"dedup_key": "k", "dedup": "throttle", "dedup_window": "5"}, "needs dedup_window"),
        ({"dedup_key": "k", "dedup_window": 5}, "applies to 'debounce' and 'throttle'"),
        (
            {"dedup_key": "k", "dedup": "debounce", "dedup_window": 5, "run_after": 10},
            "sets run_after itself",
        ),
    ],
)
def test_a_mode_that_cannot_apply_is_refused_before_anything_is_written(options, message):
    with pytest.raises(ValueError, match=message):
        add.using(**options).enqueue(1, 2)
    assert not Job.objects.exists()


def test_a_job_loaded_from_the_database_says_its_mode():
    noop.using(dedup_key=str(uuid.uuid4()), dedup="throttle", dedup_window=5).enqueue()
    assert Job.objects.get().dedup_mode == "throttle"
