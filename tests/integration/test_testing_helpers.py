"""django_taskengine.testing: run_jobs, eager mode and the enqueue assertions, used the way a
project's own tests use them: plain ``@pytest.mark.django_db`` tests, inside a transaction."""

from __future__ import annotations

import datetime as dt

import pytest
from django.db import connection, transaction
from django.test import override_settings
from django.utils import timezone

from django_taskengine import task
from django_taskengine.models import Attempt, AttemptOutcome, Job, JobStatus
from django_taskengine.operations import pause_queue
from django_taskengine.signals import job_finished, job_started
from django_taskengine.testing import (
    JobFailed,
    assert_enqueued,
    assert_not_enqueued,
    eager,
    enqueued_jobs,
    run_jobs,
)
from tests.testapp import bad_tasks
from tests.testapp.models import LedgerEntry
from tests.testapp.tasks import (
    add,
    always_fail,
    fail_then_succeed,
    in_other_queue,
    noop,
    record_atomic,
    returns_object,
    steps,
)

pytestmark = pytest.mark.django_db


@task(name="tests.helpers.welcome_then_followup")
def welcome_then_followup(user_id):
    """Enqueues a follow-up job, as tasks often do."""
    add.enqueue(user_id, 100)
    return "welcomed"


@task(name="tests.helpers.atomic_then_fail", atomic=True, max_attempts=1, takes_context=True)
def atomic_then_fail(ctx):
    LedgerEntry.objects.create(job_id=ctx.job_id, attempt=ctx.attempt, label="rolled back", pid=0)
    raise RuntimeError("after writing")


# -- run_jobs ----------------------------------------------------------------------------------


def test_run_jobs_runs_every_due_job_in_this_transaction_and_records_it():
    first = add.enqueue(1, 2)
    second = noop.enqueue()
    ran = run_jobs()
    assert [job.id for job in ran] == [first.id, second.id]
    assert [(job.status, job.result, job.attempts) for job in ran] == [
        ("succeeded", 3, 1),
        ("succeeded", None, 1),
    ]
    attempts = Attempt.objects.filter(job_id=first.id)
    assert [(a.number, a.outcome) for a in attempts] == [(1, AttemptOutcome.SUCCEEDED)]
    assert Job.objects.get(id=first.id).worker_id is None


def test_run_jobs_leaves_jobs_that_are_not_due_or_paused_and_honours_queue_and_max_jobs():
    later = add.using(run_after=dt.timedelta(hours=1)).enqueue(1, 1)
    paused = add.using(queue="held").enqueue(2, 2)
    pause_queue("held", by="test")
    others = [in_other_queue.enqueue(n) for n in range(3)]
    mine = add.enqueue(3, 3)

    assert [job.id for job in run_jobs(queue="other", max_jobs=2)] == [o.id for o in others[:2]]
    assert [job.id for job in run_jobs()] == [others[2].id, mine.id]
    assert run_jobs() == []
    assert Job.objects.get(id=later.id).status == JobStatus.QUEUED
    assert Job.objects.get(id=paused.id).status == JobStatus.QUEUED


def test_run_jobs_gives_each_job_one_attempt_and_leaves_the_retry_for_later():
    job = fail_then_succeed.enqueue(failures=1)
    [ran] = run_jobs()
    assert (ran.status, ran.attempts) == ("queued", 1)
    assert ran.error == "RuntimeError: planned failure on attempt 1"
    assert "planned failure" in ran.traceback
    assert ran.run_after > Attempt.objects.get(job_id=job.id).finished_at
    # Even once the retry is due, a later call is needed.
    Job.objects.filter(id=job.id).update(run_after=timezone.now())
    [again] = run_jobs()
    assert (again.status, again.attempts) == ("succeeded", 2)
    assert again.result == "succeeded on attempt 2"


def test_run_jobs_with_retries_runs_attempts_back_to_back_until_the_job_is_finished():
    flaky = fail_then_succeed.enqueue(failures=2)
    hopeless = always_fail.enqueue()
    ran = {job.id: job for job in run_jobs(retries=True)}
    assert (ran[flaky.id].status, ran[flaky.id].attempts) == ("succeeded", 3)
    assert (ran[hopeless.id].status, ran[hopeless.id].attempts) == ("failed", 2)
    assert list(Attempt.objects.filter(job_id=hopeless.id).values_list("number", "outcome")) == [
        (1, "failed"),
        (2, "failed"),
    ]


def test_run_jobs_runs_the_jobs_that_tasks_enqueue():
    welcome_then_followup.enqueue(7)
    ran = run_jobs()
    assert [(job.task_name, job.result) for job in ran] == [
        ("tests.helpers.welcome_then_followup", "welcomed"),
        ("tests.testapp.tasks.add", 107),
    ]


def test_run_jobs_records_failures_without_raising():
    job = returns_object.enqueue()
    [ran] = run_jobs()
    assert ran.id == job.id and ran.status == JobStatus.FAILED
    assert ran.error.startswith("NotJSONError: ")
    assert "return value is stored as JSON" in ran.error


@pytest.mark.parametrize(
    ("bad_task", "error"),
    [(bad_tasks.raises_system_exit, "SystemExit: 3"), (bad_tasks.raises_keyboard_interrupt, "")],
)
def test_run_jobs_records_a_base_exception_of_a_task_and_goes_on(bad_task, error):
    bad = bad_task.enqueue(3) if error else bad_task.enqueue()
    good = add.enqueue(1, 1)
    ran = {job.id: job for job in run_jobs()}
    name = error or "KeyboardInterrupt"
    assert (ran[bad.id].status, ran[bad.id].error) == (JobStatus.FAILED, name)
    assert f"raise {name.split(':')[0]}" in ran[bad.id].traceback
    assert ran[good.id].status == JobStatus.SUCCEEDED


@pytest.mark.parametrize(
    "leaves_open", [bad_tasks.leaves_atomic_open, bad_tasks.atomic_leaves_inner_open]
)
def test_run_jobs_rolls_back_a_transaction_a_task_left_open_and_fails_the_job(leaves_open):
    kept = LedgerEntry.objects.create(job_id=0, attempt=0, label="the test's own row", pid=0)
    bad = leaves_open.enqueue()
    good = record_atomic.enqueue(label="after")
    ran = {job.id: job for job in run_jobs()}
    assert ran[bad.id].status == JobStatus.FAILED and ran[bad.id].attempts == 1
    assert ran[bad.id].error.startswith("the task left a transaction open: a transaction.atomic()")
    assert ran[good.id].status == JobStatus.SUCCEEDED
    assert not LedgerEntry.objects.filter(job_id=bad.id).exists()
    assert set(LedgerEntry.objects.values_list("id", flat=True)) == {
        kept.id,
        LedgerEntry.objects.get(label="after").id,
    }


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    "leaves_open",
    [
        bad_tasks.leaves_atomic_open,
        bad_tasks.leaves_raw_begin_open,
        bad_tasks.turns_autocommit_off,
        bad_tasks.atomic_leaves_inner_open,
    ],
)
def test_run_jobs_outside_a_transaction_rolls_back_what_a_task_left_open(leaves_open):
    bad = leaves_open.enqueue()
    good = record_atomic.enqueue(label="after")
    ran = {job.id: job for job in run_jobs()}
    assert ran[bad.id].status == JobStatus.FAILED
    assert "the task left a transaction open" in ran[bad.id].error
    assert ran[good.id].status == JobStatus.SUCCEEDED
    assert list(LedgerEntry.objects.values_list("label", flat=True)) == ["after"]
    assert connection.get_autocommit() and not connection.in_atomic_block


def test_run_jobs_fails_a_job_whose_arguments_python_cannot_load():
    bad = add.enqueue(1, 2)
    good = add.enqueue(2, 2)
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE taskengine_job SET args = %s WHERE id = %s", ["[" + "1" * 5001 + "]", bad.id]
        )
    ran = {job.id: job for job in run_jobs()}
    assert ran[bad.id].status == JobStatus.FAILED
    assert f"corrupted arguments: job {bad.id}'s args" in ran[bad.id].error
    assert ran[good.id].result == 4


def test_atomic_tasks_commit_or_roll_back_in_a_savepoint_of_the_test_transaction():
    good = record_atomic.enqueue(label="kept")
    bad = atomic_then_fail.enqueue()
    ran = {job.id: job for job in run_jobs()}
    assert ran[good.id].status == JobStatus.SUCCEEDED
    assert ran[bad.id].status == JobStatus.FAILED
    assert list(LedgerEntry.objects.values_list("label", flat=True)) == ["kept"]


def test_checkpoints_and_progress_are_saved_on_the_job():
    job = steps.enqueue(total=3, step_sleep=0, label="s")
    [ran] = run_jobs()
    assert ran.status == JobStatus.SUCCEEDED and ran.result == {"steps": 3}
    assert ran.checkpoint == {"next": 3}
    assert (ran.progress_current, ran.progress_total) == (3, 3)
    assert LedgerEntry.objects.filter(job_id=job.id).count() == 3


def test_run_jobs_sends_the_workers_signals_and_log_line(caplog):
    events = []

    def started(sender, job_id, attempt, **kwargs):
        events.append(("started", job_id, attempt))

    def finished(sender, job_id, outcome, status, **kwargs):
        events.append(("finished", job_id, outcome, status))

    job_started.connect(started)
    job_finished.connect(finished)
    try:
        job = add.enqueue(1, 1)
        with caplog.at_level("INFO", logger="django_taskengine.worker"):
            run_jobs()
    finally:
        job_started.disconnect(started)
        job_finished.disconnect(finished)
    assert events == [("started", job.id, 1), ("finished", job.id, "succeeded", "succeeded")]
    [record] = [r for r in caplog.records if getattr(r, "job_id", None) == job.id]
    assert record.task_name == "tests.testapp.tasks.add" and record.outcome == "succeeded"


@pytest.mark.django_db(transaction=True)
def test_run_jobs_works_outside_a_transaction_too():
    job = add.enqueue(4, 5)
    [ran] = run_jobs()
    assert (ran.id, ran.status, ran.result) == (job.id, "succeeded", 9)


@pytest.mark.parametrize("value", [0, -1, 1.5, True])
def test_run_jobs_refuses_a_bad_max_jobs(value):
    with pytest.raises(ValueError, match="max_jobs"):
        run_jobs(max_jobs=value)


# -- eager mode ------------------------------------------------------------------------------


def test_eager_enqueue_runs_the_job_at_once_through_the_runner():
    with eager():
        job = add.enqueue(2, 3)
    assert (job.status, job.result, job.attempts) == ("succeeded", 5, 1)
    assert job.created is True
    assert Attempt.objects.get(job_id=job.id).outcome == AttemptOutcome.SUCCEEDED


def test_eager_runs_every_attempt_and_records_the_failure_without_raising():
    with eager():
        job = always_fail.enqueue()
        flaky = fail_then_succeed.enqueue(failures=2)
    assert (job.status, job.attempts) == ("failed", 2)
    assert job.error == "ValueError: this task always fails"
    assert (flaky.status, flaky.attempts) == ("succeeded", 3)


def test_eager_propagate_raises_job_failed_with_the_error_and_traceback():
    with eager(propagate=True), pytest.raises(JobFailed) as caught:
        always_fail.enqueue()
    assert caught.value.job.status == JobStatus.FAILED
    message = str(caught.value)
    assert "failed after 2 attempts: ValueError: this task always fails" in message
    assert 'raise ValueError("this task always fails")' in message


def test_eager_through_override_settings_and_as_a_decorator():
    with override_settings(TASKENGINE={"EAGER": True}):
        assert add.enqueue(1, 1).status == JobStatus.SUCCEEDED

    @eager()
    def enqueue_in_eager_mode():
        return add.enqueue(2, 2)

    assert enqueue_in_eager_mode().result == 4
    assert add.enqueue(3, 3).status == JobStatus.QUEUED  # and off again afterwards


def test_eager_runs_only_the_jobs_it_enqueues():
    earlier = add.enqueue(1, 1)
    with eager():
        now = add.enqueue(2, 2)
    assert now.status == JobStatus.SUCCEEDED
    assert Job.objects.get(id=earlier.id).status == JobStatus.QUEUED


def test_eager_leaves_deferred_jobs_and_paused_queues_to_a_later_run_jobs():
    pause_queue("held", by="test")
    with eager():
        later = add.using(run_after=dt.timedelta(minutes=5)).enqueue(1, 1)
        held = add.using(queue="held").enqueue(1, 1)
    assert later.status == JobStatus.QUEUED and held.status == JobStatus.QUEUED


def test_eager_bulk_enqueue_and_dedup():
    with eager():
        jobs = add.bulk_enqueue([((1, 1), {}), ((2, 2), {})])
        assert [job.result for job in jobs] == [2, 4]
        first = add.using(dedup_key="k", run_after=dt.timedelta(minutes=5)).enqueue(5, 5)
        again = add.using(dedup_key="k").enqueue(5, 5)
    assert first.status == JobStatus.QUEUED
    assert (again.id, again.created, again.status) == (first.id, False, JobStatus.QUEUED)


def test_eager_jobs_roll_back_with_the_enqueuing_transaction():
    with eager():
        with pytest.raises(ZeroDivisionError), transaction.atomic():
            record_atomic.enqueue(label="gone")
            1 / 0  # noqa: B018 - the caller's transaction fails after the eager run
    assert not Job.objects.exists() and not LedgerEntry.objects.exists()


def test_without_eager_the_hook_is_not_called(monkeypatch):
    from django_taskengine.worker import inprocess

    def fail(*args, **kwargs):
        raise AssertionError("the eager hook ran with EAGER off")

    monkeypatch.setattr(inprocess, "run_enqueued_eagerly", fail)
    assert add.enqueue(1, 1).status == JobStatus.QUEUED


# -- assertions ------------------------------------------------------------------------------


def test_assert_enqueued_matches_arguments_after_the_json_round_trip():
    add.enqueue([1, 2], 3)
    add.enqueue(a=5, b=6)
    assert len(assert_enqueued(add)) == 2
    assert_enqueued(add, (1, 2), 3)  # a tuple equals the list that was stored
    assert_enqueued(add, a=5, b=6, count=1)
    assert_enqueued("tests.testapp.tasks.add", count=2)
    assert_enqueued(add.using(queue="x"), a=5, b=6)
    assert_not_enqueued(add, 9, 9)
    assert_not_enqueued(noop)


def test_assert_enqueued_counts_jobs_in_any_status():
    with eager():
        add.enqueue(1, 1)
    assert_enqueued(add, 1, 1, count=1)


def test_assert_enqueued_failure_says_what_was_expected_and_what_exists():
    add.enqueue(1, 2)
    with pytest.raises(AssertionError) as caught:
        assert_enqueued(add, 1, 3)
    message = str(caught.value)
    assert (
        "Expected tests.testapp.tasks.add(1, 3) to be enqueued at least once; found none."
    ) in message
    assert "args=[1, 2] kwargs={} queue='default'" in message

    with pytest.raises(AssertionError, match="to be enqueued twice; found once"):
        assert_enqueued(add, count=2)
    with pytest.raises(AssertionError, match=r"not to be enqueued; found once"):
        assert_not_enqueued(add, 1, 2)
    with pytest.raises(AssertionError, match="No job of tests.testapp.tasks.noop exists"):
        assert_enqueued(noop)


def test_enqueued_jobs_filters_by_task_and_queue():
    a = add.enqueue(1, 1)
    b = in_other_queue.enqueue(1)
    assert list(enqueued_jobs()) == [a, b]
    assert list(enqueued_jobs(in_other_queue)) == [b]
    assert list(enqueued_jobs(queue="default")) == [a]


def test_assertions_refuse_what_is_not_a_task():
    with pytest.raises(TypeError, match="expected a @task or a task name"):
        assert_enqueued(42)


@eager()
def test_eager_decorates_a_pytest_test_as_in_the_readme():
    job = add.enqueue(20, 22)
    assert (job.status, job.result) == ("succeeded", 42)


def test_in_process_a_hard_cancel_is_carried_out_at_the_next_checkpoint():
    from tests.testapp.tasks import stops_itself

    job = stops_itself.enqueue()
    [finished] = run_jobs()
    assert finished.pk == job.pk
    assert finished.status == JobStatus.CANCELLED and finished.result is None
    assert list(finished.attempt_set.values_list("outcome", flat=True)) == ["cancelled"]
