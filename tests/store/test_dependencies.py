"""Dependencies: ``.using(after=[…], on_dependency_failure=…)`` (core/dependencies.py)."""

from __future__ import annotations

import datetime as dt
import threading

import pytest
from django.db import connection, transaction
from django.utils import timezone

from django_taskengine import operations
from django_taskengine.core.lifecycle import failed, succeeded
from django_taskengine.models import Dependency, Job
from django_taskengine.operations.common import ActionRefused
from django_taskengine.operations.jobs import sweep_dependencies
from django_taskengine.retention import prune
from django_taskengine.store.sql import query
from django_taskengine.testing import run_jobs
from tests.helpers import committed_db, in_thread
from tests.testapp.tasks import add, always_fail, noop, results_of_dependencies

pytestmark = pytest.mark.django_db


def _status(job: Job) -> tuple[str, bool]:
    job.refresh_from_db()
    return job.status, job.blocked


def test_a_job_runs_only_after_the_one_it_follows_succeeded_and_reads_its_result():
    first = add.enqueue(1, 2)
    second = results_of_dependencies.using(after=[first]).enqueue()
    assert (second.status, second.blocked, second.created) == ("queued", True, True)
    assert run_jobs(max_jobs=1) == [Job.objects.get(pk=first.pk)]  # the only one due
    assert _status(second) == ("queued", False)
    (ran,) = run_jobs()
    assert (ran.pk, ran.status, ran.result) == (second.pk, "succeeded", {str(first.pk): 3})


def test_a_fan_in_waits_for_every_job_and_takes_ids_or_jobs():
    parts = [add.enqueue(i, i) for i in range(3)]
    total = results_of_dependencies.using(after=[parts[0], parts[1].pk, parts[2]]).enqueue()
    run_jobs(max_jobs=2)
    assert _status(total) == ("queued", True)
    run_jobs()
    total.refresh_from_db()
    assert total.result == {str(p.pk): 2 * i for i, p in enumerate(parts)}


def test_a_failed_dependency_cancels_the_chain_after_it_with_the_reason():
    first = always_fail.using(max_attempts=1).enqueue()
    second = noop.using(after=[first]).enqueue()
    third = noop.using(after=[second]).enqueue()
    run_jobs()
    second.refresh_from_db()
    third.refresh_from_db()
    assert (second.status, second.blocked) == ("cancelled", False)
    assert second.error == f"cancelled: dependency job {first.pk} ended failed"
    assert third.status == "cancelled"
    assert third.error == f"cancelled: dependency job {second.pk} ended cancelled"
    assert second.attempt_set.count() == 0 and second.finished_at is not None


def test_on_dependency_failure_run_runs_it_whatever_the_dependency_ended():
    first = always_fail.using(max_attempts=1).enqueue()
    second = results_of_dependencies.using(after=[first], on_dependency_failure="run").enqueue()
    run_jobs()
    second.refresh_from_db()
    assert (second.status, second.result) == ("succeeded", {str(first.pk): None})


def test_a_dependency_already_finished_at_enqueue_is_decided_at_once():
    done = add.enqueue(1, 1)
    failed = always_fail.using(max_attempts=1).enqueue()
    run_jobs()
    ready = noop.using(after=[done]).enqueue()
    assert (ready.status, ready.blocked) == ("queued", False)
    assert ready.run_after <= timezone.now()
    doomed = noop.using(after=[done, failed]).enqueue()
    assert (doomed.status, doomed.error) == (
        "cancelled",
        f"cancelled: dependency job {failed.pk} ended failed",
    )


def test_run_after_still_applies_once_the_dependencies_allow():
    first = add.enqueue(1, 1)
    later = timezone.now() + dt.timedelta(hours=1)
    second = noop.using(after=[first], run_after=later).enqueue()
    run_jobs()
    second.refresh_from_db()
    assert (second.status, second.blocked, second.run_after) == ("queued", False, later)


def test_an_unknown_dependency_is_refused_and_nothing_is_written():
    first = add.enqueue(1, 1)
    with pytest.raises(ValueError, match=r"after names no job with id 999999"):
        noop.using(after=[first, 999999]).enqueue()
    assert list(Job.objects.values_list("pk", flat=True)) == [first.pk]
    assert not Dependency.objects.exists()


@pytest.mark.parametrize(
    ("options", "error", "message"),
    [
        ({"after": "12"}, TypeError, "after must be a list of jobs or job ids"),
        ({"after": [True]}, TypeError, "after takes jobs and job ids"),
        ({"after": [0]}, TypeError, "after takes jobs and job ids"),
        ({"after": [1], "on_dependency_failure": "skip"}, ValueError, "must be 'cancel' or 'run'"),
        ({"on_dependency_failure": "run"}, ValueError, "applies to jobs enqueued with after"),
    ],
)
def test_bad_dependency_options_are_refused(options, error, message):
    with pytest.raises(error, match=message):
        noop.using(**options).enqueue()


def test_bulk_enqueue_after_blocks_every_job():
    first = add.enqueue(1, 1)
    jobs = add.using(after=[first]).bulk_enqueue([((i, i), {}) for i in range(3)])
    assert [j.blocked for j in jobs] == [True] * 3
    assert Dependency.objects.filter(after_id=first.pk).count() == 3
    run_jobs()
    assert sorted(Job.objects.values_list("result", flat=True)) == [0, 2, 2, 4]


def test_an_operator_cancel_of_the_dependency_cancels_what_waits_for_it():
    first = add.using(run_after=3600).enqueue(1, 1)
    second = noop.using(after=[first]).enqueue()
    operations.cancel_job(first.pk, by="ops")
    assert _status(second) == ("cancelled", False)


def test_run_now_does_not_skip_the_dependencies():
    first = add.using(run_after=3600).enqueue(1, 1)
    second = noop.using(after=[first]).enqueue()
    with pytest.raises(ActionRefused, match="waits for the jobs it was enqueued after"):
        operations.run_job_now(second.pk, by="ops")
    assert _status(second) == ("queued", True)


def test_retrying_the_failed_dependency_brings_back_the_jobs_cancelled_because_of_it():
    first = always_fail.using(max_attempts=1).enqueue()
    second = noop.using(after=[first]).enqueue()
    third = noop.using(after=[second]).enqueue()
    unrelated = noop.using(after=[add.enqueue(1, 1)]).enqueue()
    run_jobs()
    with pytest.raises(ActionRefused, match=f"waits for job {first.pk}, which is failed"):
        operations.retry_job(second.pk, by="ops")
    operations.retry_job(first.pk, by="ops")
    assert [_status(j) for j in (second, third)] == [("queued", True)] * 2
    assert _status(unrelated) == ("succeeded", False)
    # It fails again (its retries included): they are cancelled again.
    run_jobs(retries=True)
    assert [_status(j)[0] for j in (first, second, third)] == ["failed", "cancelled", "cancelled"]


def test_a_paused_waiting_job_stays_paused_when_its_dependencies_succeed():
    first = add.enqueue(1, 1)
    second = noop.using(after=[first]).enqueue()
    operations.pause_job(second.pk, by="ops")
    run_jobs()
    assert _status(second) == ("paused", False)
    operations.resume_job(second.pk, by="ops")
    (ran,) = run_jobs()
    assert (ran.pk, ran.status) == (second.pk, "succeeded")


def test_the_sweep_decides_what_a_crash_left_undecided():
    first = add.enqueue(1, 1)
    second = noop.using(after=[first]).enqueue()
    # As if the worker that finished it died before deciding for the jobs that wait for it.
    Job.objects.filter(pk=first.pk).update(status="succeeded", finished_at=timezone.now())
    assert _status(second) == ("queued", True)
    assert sweep_dependencies(connection.alias) == 1
    assert _status(second) == ("queued", False)
    assert sweep_dependencies(connection.alias) == 0


def test_retention_deletes_the_dependencies_of_the_jobs_it_deletes():
    first = add.enqueue(1, 1)
    second = noop.using(after=[first]).enqueue()
    run_jobs()
    Job.objects.update(finished_at=timezone.now() - dt.timedelta(days=30))
    prune(ages={"succeeded": dt.timedelta(days=1)})
    assert not Job.objects.exists() and not Dependency.objects.exists()
    assert second.pk  # both were pruned


@committed_db
@pytest.mark.skipif("connection.vendor != 'postgresql'", reason="SQLite writers take turns")
@pytest.mark.timeout(60)
def test_a_dependency_finishing_while_the_dependent_is_enqueued_is_seen_at_commit(session):
    first = add.enqueue(1, 1)
    (claimed,) = session.claim(1)
    enqueued, release = threading.Event(), threading.Event()

    def enqueue_after() -> int:
        with transaction.atomic():
            job = noop.using(after=[first]).enqueue()
            enqueued.set()
            release.wait(timeout=20)
        return job.pk

    results: list = []
    errors: list = []
    thread = in_thread(enqueue_after, results, errors)
    assert enqueued.wait(timeout=20)
    # The dependency finishes while the enqueue's transaction is open: its writer cannot see
    # the new job yet, and the enqueue saw it running.
    session.finish([succeeded(claimed, "2")], [])
    release.set()
    thread.join(timeout=20)
    assert errors == []
    (second_id,) = results
    assert Job.objects.get(pk=second_id).blocked is False


@committed_db
@pytest.mark.timeout(120)
def test_the_last_two_dependencies_finishing_at_once_on_two_workers_decide_once(open_sessions):
    for _ in range(5):
        parts = [add.enqueue(i, i) for i in range(2)]
        join = noop.using(after=parts).enqueue()
        sessions = open_sessions(2)
        claimed = [session.claim(1)[0] for session in sessions]
        barrier = threading.Barrier(2, timeout=20)

        def finish(session, job, barrier=barrier) -> None:
            connection.ensure_connection()
            barrier.wait()
            session.finish([succeeded(job, "null")], [])

        results: list = []
        errors: list = []
        threads = [
            in_thread(lambda s=s, j=j: finish(s, j), results, errors)
            for s, j in zip(sessions, claimed, strict=True)
        ]
        for thread in threads:
            thread.join(timeout=30)
        assert errors == []
        join.refresh_from_db()
        assert (join.status, join.blocked, join.run_after <= timezone.now()) == (
            "queued",
            False,
            True,
        )
        Job.objects.filter(pk=join.pk).update(status="succeeded")  # not claimed next round


@pytest.mark.skipif("connection.vendor != 'postgresql'", reason="the workers' SQL decision")
def test_a_decision_is_written_only_for_a_job_still_waiting():
    # Two workers may both see a job's last mark and both decide: the second must not undo
    # what the first did (here: the job was made due and has started since).
    first = add.enqueue(1, 1)
    second = noop.using(after=[first]).enqueue()
    Job.objects.filter(pk=second.pk).update(blocked=False, status="running")
    params = {
        "ids": [second.pk],
        "actions": ["cancel"],
        "dues": [None],
        "errors": ["cancelled: dependency job 1 ended failed"],
        "batches": [None],
        "channel": "taskengine_test",
    }
    with connection.cursor() as cursor:
        cursor.execute(query("decide_waiting_jobs"), params)
        assert cursor.fetchone()[0] == []
    second.refresh_from_db()
    assert (second.status, second.blocked, second.error) == ("running", False, "")


@committed_db
def test_a_fan_out_wider_than_one_decision_is_decided_whole_and_cascades(open_sessions):
    # 1,200 jobs wait for one: the worker decides them a chunk at a time (DECIDE_CHUNK on
    # PostgreSQL), and what waits for a job it cancels is decided after.
    root = always_fail.using(max_attempts=1).enqueue()
    fan = noop.using(after=[root]).bulk_enqueue([((), {})] * 1_199)
    anyway = noop.using(after=[root], on_dependency_failure="run").enqueue()
    last = noop.using(after=[fan[-1]]).enqueue()
    (session,) = open_sessions(1)
    (claimed,) = session.claim(1)
    assert claimed.id == root.pk
    session.finish([failed(claimed, "boom", retryable=False)], [])
    statuses = dict(
        Job.objects.filter(pk__in=[j.pk for j in fan]).values_list("status", "blocked").distinct()
    )
    assert statuses == {"cancelled": False}
    assert _status(anyway) == ("queued", False)
    assert _status(last) == ("cancelled", False)


@pytest.mark.parametrize(
    ("root", "expected"),
    [
        ("running", "soon"),
        ("queued", "soon"),
        ("queued, its task paused", "none"),  # nobody may run it: a burst may exit
        ("succeeded", "undecided"),  # the decision is being written
    ],
)
def test_a_burst_looks_at_a_wide_fan_out_by_probes_not_by_a_scan_per_waiting_job(
    root: str, expected: str
) -> None:
    """What a draining worker expects of a fan-out of 2,000 steps, by the state of the job
    they wait for, with statistics taken before any job waited (the planner puts the waiting
    jobs at one row). Each look reads the job table a bounded number of times: a scan of it per
    waiting job read it 2,000 times (39 s at 10,000 steps)."""
    from django_taskengine import Workflow
    from django_taskengine.store.orm_dependencies import waiting_outlook

    noop.bulk_enqueue([((), {})] * 200)
    steps = 2_000
    on_postgresql = connection.vendor == "postgresql"
    if on_postgresql:
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE taskengine_job")
            # The edges as a table no one has analyzed since it was emptied (as after a
            # deployment, or a benchmark's TRUNCATE): whatever earlier tests left is forgotten.
            cursor.execute("TRUNCATE taskengine_dependency")
    wf = Workflow("wide fan-out")
    first = wf.add(noop, name="root")
    for _ in range(steps):
        wf.add(noop, after=[first])
    wf.enqueue()
    status = root.split(",")[0]
    finished = timezone.now() if status == "succeeded" else None
    Job.objects.filter(step="root").update(status=status, finished_at=finished)
    if root.endswith("paused"):
        operations.pause_task(noop.name)

    def rows_read() -> int:
        if not on_postgresql:
            return 0
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT coalesce(seq_tup_read, 0) + coalesce(idx_tup_fetch, 0) "
                "FROM pg_stat_xact_user_tables WHERE relname = 'taskengine_job'"
            )
            return int(cursor.fetchone()[0])

    with transaction.atomic():
        before = rows_read()
        outlook = waiting_outlook(connection.alias, [])
        read = rows_read() - before
    assert outlook == expected
    assert read < 20 * steps, f"{read} job rows read for {steps} waiting jobs"
