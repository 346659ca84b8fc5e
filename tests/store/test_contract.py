"""The store contract: every worker session, driven in-process — claims, fenced finishes,
heartbeats, relock and rescue.

Each test runs against every store that can serve the test database: on PostgreSQL the
PostgreSQL store (advisory locks, its own connection), the ORM store and the in-process store
(leases, on the calling thread's connection); on SQLite the ORM and in-process stores. A
PostgreSQL session opens its own connection, so these tests commit (``transaction=True``) for
it to see their rows.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import threading
import uuid
from types import SimpleNamespace
from typing import Any

import pytest
from django.db import connection
from django.utils import timezone

from django_taskengine import task
from django_taskengine.conf import taskengine_settings
from django_taskengine.core import lifecycle
from django_taskengine.core.lifecycle import ORPHAN_ERROR
from django_taskengine.models import Attempt, Job, Queue, Worker
from django_taskengine.registry import tasks as registry
from django_taskengine.store import (
    ClaimedJob,
    Outcome,
    WorkerInfo,
    WorkerSession,
    get_store,
)
from django_taskengine.store.generic import GenericStore
from django_taskengine.store.inprocess import InProcessSession
from tests.factories import JobFactory, QueueFactory
from tests.helpers import wait_for
from tests.settings import BACKEND

pytestmark = [
    pytest.mark.django_db(transaction=True, available_apps=["django_taskengine"]),
    pytest.mark.timeout(60),
]


@task(on_orphan="park")
def parked_on_orphan():
    """A task that must not run twice: an orphaned attempt fails it instead of retrying."""


#: The stores under contract on this test run's database. "postgres-ids": PostgreSQL's, its
#: claims of ids a dispatch backend delivers (Redis Streams dispatch: claim_ids), here every
#: queued job's id, so that the claim itself must hold every condition the contract states.
STORES = (
    ["postgres", "postgres-ids", "orm", "inprocess"]
    if BACKEND == "postgres"
    else ["orm", "inprocess"]
)
_current = {"store": STORES[0]}


@pytest.fixture(autouse=True, params=STORES)
def store_kind(request):
    """Run every test of this module against each store."""
    _current["store"] = request.param
    return request.param


def is_postgres() -> bool:
    """The store under test is PostgreSQL's (advisory locks, not leases)."""
    return _current["store"].startswith("postgres")


class EveryQueuedJob:
    """Deliveries (store/base.py) of the ids of queued jobs, claimable or not, the first in
    claim order up to the claim's limit (as a reader hands them over), and never a scan: what a
    dispatch backend delivers is all such a claim may take."""

    def take(self, limit: int) -> list[Any]:
        queued = Job.objects.filter(status="queued").order_by("-priority", "run_after", "id")
        ids = queued.values_list("id", flat=True)[:limit]
        return [SimpleNamespace(job_id=job_id) for job_id in ids]

    def done(self, deliveries: list[Any]) -> None:
        pass

    def keep(self, deliveries: list[Any]) -> None:
        pass

    def held(self, deliveries: list[Any]) -> None:
        pass

    def should_scan(self) -> bool:
        return False


def new_session(info: WorkerInfo) -> WorkerSession:
    """An unregistered session of the store under test."""
    kind = _current["store"]
    if kind.startswith("postgres"):
        session = get_store().open_session(info)
        if kind == "postgres-ids":
            session.deliveries = EveryQueuedJob()
        return session
    if kind == "orm":
        return GenericStore(get_store().alias).open_session(info)
    return InProcessSession(get_store().alias, info, None)


@pytest.fixture
def open_session():
    """Open registered worker sessions; all are closed at the end of the test."""
    opened: list[WorkerSession] = []

    def open_(*queues: str) -> WorkerSession:
        info = WorkerInfo(
            id=uuid.uuid4(),
            hostname="test-host",
            pid=os.getpid(),
            queues=list(queues),
            concurrency=1,
        )
        session = new_session(info)
        session.register()
        opened.append(session)
        return session

    yield open_
    for session in opened:
        session.close()


def outcome(claimed: ClaimedJob, status: str = "succeeded", **changes) -> Outcome:
    values = {
        "job_id": claimed.id,
        "token": claimed.token,
        "attempt": claimed.attempt,
        "status": status,
        "outcome": "succeeded" if status == "succeeded" else "failed",
        "started_at": claimed.started_at,
        "finished_at": timezone.now(),
        "result_json": json.dumps({"ok": claimed.id}) if status == "succeeded" else None,
    }
    values.update(changes)
    return Outcome(**values)


def ago(seconds: float) -> dt.datetime:
    return timezone.now() - dt.timedelta(seconds=seconds)


def orphan_jobs_of(session: WorkerSession) -> None:
    """Make a session's running and reserved jobs look as if its worker process died."""
    if is_postgres():
        session.close()  # the advisory locks go with the connection
        Worker.objects.filter(id=session.worker.id).update(last_heartbeat_at=ago(300))
    else:
        Job.objects.filter(worker_id=session.worker.id).update(lease_expires_at=ago(1))


def rescue_orphans(rescuer: WorkerSession) -> list[Any]:
    """What ``rescuer`` rescues once the orphans are rescuable (within 10 s)."""
    return wait_for(
        lambda: rescuer.rescue(registry.parked_on_orphan()),
        timeout=10,
        message="the orphan to be rescued",
    )


def advisory_lock_held(job_id: int) -> bool:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted "
            "AND classid = %s AND objid = %s AND objsubid = 2 "
            "AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
            [taskengine_settings.ADVISORY_LOCK_NAMESPACE, job_id],
        )
        return cursor.fetchone()[0] > 0


# -- claim ----------------------------------------------------------------------------------


def test_claim_marks_a_due_job_running_for_this_worker(open_session):
    job = JobFactory(args=[4, 5], kwargs={"k": 1}, max_attempts=4, retry_backoff=0.5)
    session = open_session()
    (claimed,) = session.claim(10)
    assert claimed.id == job.pk
    assert (claimed.task_name, claimed.args, claimed.kwargs) == (job.task_name, [4, 5], {"k": 1})
    assert (claimed.attempt, claimed.max_attempts, claimed.retry_backoff) == (1, 4, 0.5)
    assert isinstance(claimed.token, uuid.UUID)
    assert claimed.locked is is_postgres()
    job.refresh_from_db()
    assert job.status == "running"
    assert job.attempts == 1
    assert job.token == claimed.token
    assert job.worker_id == session.worker.id
    assert job.started_at is not None
    assert session.claim(10) == []


def test_claim_takes_at_most_the_limit(open_session):
    JobFactory.create_batch(5)
    session = open_session()
    assert len(session.claim(2)) == 2
    assert len(session.claim(2)) == 2
    assert len(session.claim(2)) == 1
    assert Job.objects.filter(status="running").count() == 5


def test_claim_order_is_priority_then_run_after_then_id(open_session):
    same_time = ago(10)
    low_a = JobFactory(priority=0, run_after=same_time)
    high_late = JobFactory(priority=5, run_after=ago(1))
    high_early = JobFactory(priority=5, run_after=ago(20))
    low_b = JobFactory(priority=0, run_after=same_time)
    lowest_oldest = JobFactory(priority=-1, run_after=ago(100))
    session = open_session()
    order = [session.claim(1)[0].id for _ in range(5)]
    assert order == [high_early.pk, high_late.pk, low_a.pk, low_b.pk, lowest_oldest.pk]


def test_a_job_not_yet_due_is_not_claimed(open_session):
    JobFactory(run_after=timezone.now() + dt.timedelta(minutes=5))
    due = JobFactory()
    session = open_session()
    assert [c.id for c in session.claim(10)] == [due.pk]
    assert session.claim(10) == []


def test_a_paused_queue_is_never_claimed_from(open_session):
    QueueFactory(name="held", on_pause=True)
    held = JobFactory.create_batch(3, queue="held", priority=100)
    free = JobFactory(queue="default")
    session = open_session()
    assert [c.id for c in session.claim(10)] == [free.pk]
    assert session.claim(10) == []
    assert set(Job.objects.filter(queue="held").values_list("status", flat=True)) == {"queued"}
    # A worker serving only that queue claims nothing either.
    assert open_session("held").claim(10) == []
    assert len(held) == 3


def test_a_timed_pause_still_running_is_not_claimed_from(open_session):
    QueueFactory(name="later", on_pause=True, paused_until=timezone.now() + dt.timedelta(hours=1))
    JobFactory(queue="later")
    assert open_session().claim(10) == []


def test_a_timed_pause_that_has_ended_is_claimed_from(open_session):
    QueueFactory(name="resumed", on_pause=True, paused_until=ago(1))
    job = JobFactory(queue="resumed")
    assert [c.id for c in open_session().claim(10)] == [job.pk]


def test_an_unpaused_queue_row_does_not_block_claims(open_session):
    QueueFactory(name="open", paused=False)
    job = JobFactory(queue="open")
    assert [c.id for c in open_session().claim(10)] == [job.pk]


def test_a_worker_claims_only_from_its_queues(open_session):
    mine = JobFactory(queue="emails")
    JobFactory(queue="reports", priority=10)
    session = open_session("emails", "sms")
    assert [c.id for c in session.claim(10)] == [mine.pk]
    assert session.claim(10) == []


def test_only_queued_jobs_are_claimed(open_session):
    for status in ("running", "succeeded", "failed", "cancelled", "paused"):
        JobFactory(status=status)
    assert open_session().claim(10) == []


def test_concurrent_sessions_never_claim_the_same_job(open_session):
    jobs = JobFactory.create_batch(40)
    barrier = threading.Barrier(4, timeout=20)
    claimed: list[list[int]] = [[] for _ in range(4)]
    errors: list[BaseException] = []

    def work(index: int) -> None:
        try:
            info = WorkerInfo(uuid.uuid4(), "test-host", os.getpid(), [], 1)
            session = new_session(info)
            session.register()
            try:
                barrier.wait()
                while batch := session.claim(3):
                    claimed[index].extend(job.id for job in batch)
            finally:
                session.close()
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=40)
    assert errors == []
    every_claim = [job_id for ids in claimed for job_id in ids]
    assert sorted(every_claim) == sorted(job.pk for job in jobs)
    assert Job.objects.filter(status="running", attempts=1).count() == 40


def test_claim_takes_the_jobs_advisory_lock_and_finish_releases_it(open_session):
    if not is_postgres():
        pytest.skip("only the PostgreSQL store takes advisory locks; the others use leases")
    job = JobFactory()
    session = open_session()
    (claimed,) = session.claim(1)
    assert claimed.locked is True
    assert advisory_lock_held(job.pk)
    session.finish([outcome(claimed)], unlock=[job.pk])
    assert not advisory_lock_held(job.pk)


# -- finish ---------------------------------------------------------------------------------


def test_finish_writes_the_success_and_records_the_attempt(open_session):
    job = JobFactory()
    session = open_session()
    (claimed,) = session.claim(1)
    applied = session.finish([outcome(claimed)], unlock=[claimed.id])
    assert applied == {job.pk}
    job.refresh_from_db()
    assert job.status == "succeeded"
    assert job.result == {"ok": job.pk}
    assert job.finished_at is not None
    assert (job.token, job.worker_id, job.lease_expires_at) == (None, None, None)
    (attempt,) = Attempt.objects.filter(job=job)
    assert (attempt.number, attempt.outcome, attempt.worker_id) == (
        1,
        "succeeded",
        session.worker.id,
    )


def test_finish_then_claim_writes_the_outcomes_then_claims_the_next_jobs(open_session):
    first, second, third = JobFactory(), JobFactory(), JobFactory()
    session = open_session()
    (claimed,) = session.claim(1)
    applied, jobs = session.finish_then_claim([outcome(claimed)], [claimed.id], 2, free=2, start=2)
    if jobs is None:  # the store does not claim with a write: the caller claims as usual
        jobs = session.claim(2)
    assert applied == {first.pk}
    assert [job.id for job in jobs] == [second.pk, third.pk]
    assert not any(job.reserved for job in jobs)
    assert Job.objects.get(pk=first.pk).status == "succeeded"
    assert Attempt.objects.get(job_id=first.pk).outcome == "succeeded"
    assert {j.pk: j.status for j in Job.objects.filter(pk__in=[second.pk, third.pk])} == {
        second.pk: "running",
        third.pk: "running",
    }


def test_a_finish_with_a_stale_token_changes_nothing_and_is_recorded_as_superseded(open_session):
    job = JobFactory()
    first = open_session()
    (stale,) = first.claim(1)
    # The job is taken from the first worker (rescued) and claimed again by a second one.
    Job.objects.filter(pk=job.pk).update(status="queued", token=None, worker_id=None)
    second = open_session()
    (current,) = second.claim(1)
    assert current.id == job.pk and current.token != stale.token

    applied = first.finish([outcome(stale, result_json='"late"')], unlock=[job.pk])

    assert applied == set()
    job.refresh_from_db()
    assert job.status == "running"
    assert job.token == current.token
    assert job.worker_id == second.worker.id
    assert job.result is None
    assert job.attempts == 2
    (attempt,) = Attempt.objects.filter(job=job)
    assert (attempt.number, attempt.outcome, attempt.worker_id) == (
        1,
        "superseded",
        first.worker.id,
    )
    # The current attempt still completes.
    assert second.finish([outcome(current)], unlock=[job.pk]) == {job.pk}
    job.refresh_from_db()
    assert job.status == "succeeded"


@pytest.mark.parametrize("status", ["cancelled", "queued", "succeeded"])
def test_a_finish_after_the_job_left_running_is_superseded(open_session, status):
    job = JobFactory()
    session = open_session()
    (claimed,) = session.claim(1)
    Job.objects.filter(pk=job.pk).update(status=status)
    assert session.finish([outcome(claimed, status="failed", error="late")], unlock=[]) == set()
    job.refresh_from_db()
    assert job.status == status
    assert job.error == ""
    assert Attempt.objects.get(job=job).outcome == "superseded"


def test_one_finish_fences_each_outcome_separately(open_session):
    jobs = JobFactory.create_batch(3)
    session = open_session()
    claimed = session.claim(3)
    middle = claimed[1]
    Job.objects.filter(pk=middle.id).update(token=uuid.uuid4())
    applied = session.finish([outcome(c) for c in claimed], unlock=[c.id for c in claimed])
    assert applied == {claimed[0].id, claimed[2].id}
    statuses = dict(Job.objects.values_list("pk", "status"))
    assert statuses == {jobs[0].pk: "succeeded", jobs[1].pk: "running", jobs[2].pk: "succeeded"}
    outcomes = dict(Attempt.objects.values_list("job_id", "outcome"))
    assert outcomes == {
        jobs[0].pk: "succeeded",
        jobs[1].pk: "superseded",
        jobs[2].pk: "succeeded",
    }


def test_a_retry_requeues_the_job_after_its_delay(open_session):
    job = JobFactory()
    session = open_session()
    (claimed,) = session.claim(1)
    before = timezone.now()
    applied = session.finish(
        [
            outcome(
                claimed,
                status="queued",
                error="RuntimeError: boom",
                traceback="tb",
                retry_delay=30.0,
            )
        ],
        unlock=[job.pk],
    )
    assert applied == {job.pk}
    job.refresh_from_db()
    assert job.status == "queued"
    assert job.attempts == 1
    assert job.error == "RuntimeError: boom"
    assert job.finished_at is None
    assert job.token is None
    assert (
        before + dt.timedelta(seconds=25)
        <= job.run_after
        <= timezone.now() + dt.timedelta(seconds=31)
    )
    assert session.claim(1) == []
    attempt = Attempt.objects.get(job=job)
    assert (attempt.outcome, attempt.error, attempt.traceback) == (
        "failed",
        "RuntimeError: boom",
        "tb",
    )


def test_an_interrupted_attempt_gives_its_attempt_back(open_session):
    job = JobFactory()
    session = open_session()
    (claimed,) = session.claim(1)
    session.finish(
        [outcome(claimed, status="queued", outcome="interrupted", refund_attempt=True)],
        unlock=[job.pk],
    )
    job.refresh_from_db()
    assert (job.status, job.attempts) == ("queued", 0)
    assert Attempt.objects.get(job=job).outcome == "interrupted"
    (again,) = session.claim(1)
    assert again.attempt == 1


def test_a_job_given_back_at_shutdown_keeps_its_place(open_session):
    job = JobFactory(run_after=ago(3600))
    job.refresh_from_db()
    due = job.run_after
    session = open_session()
    (claimed,) = session.claim(1)
    session.finish([lifecycle.interrupted(claimed)], unlock=[job.pk])
    job.refresh_from_db()
    # Due an hour ago, it stays ahead of everything enqueued since.
    assert (job.status, job.run_after, job.attempts) == ("queued", due, 0)


def test_a_final_failure_is_kept_with_its_error(open_session):
    job = JobFactory(max_attempts=1)
    session = open_session()
    (claimed,) = session.claim(1)
    session.finish(
        [outcome(claimed, status="failed", error="ValueError: no", traceback="Traceback…")],
        unlock=[job.pk],
    )
    job.refresh_from_db()
    assert (job.status, job.error, job.traceback) == ("failed", "ValueError: no", "Traceback…")
    assert job.finished_at is not None


# -- stop requests: they belong to the job, and the write that ends an attempt is fenced on them


def _failure(claimed: ClaimedJob) -> Outcome:
    return outcome(claimed, status="queued", error="RuntimeError: boom", retry_delay=0.0)


def test_a_finish_decided_without_the_jobs_stop_request_is_fenced_out_and_told_it(open_session):
    job = JobFactory()
    session = open_session()
    (claimed,) = session.claim(1)
    # An operator cancels the job after its worker decided to retry it.
    Job.objects.filter(pk=job.pk).update(stop_requested="cancel")
    retry = _failure(claimed)

    assert session.finish([retry], unlock=[]) == set()

    assert retry.stop_request_now == "cancel"
    job.refresh_from_db()
    assert (job.status, job.token, job.stop_requested) == ("running", claimed.token, "cancel")
    assert not Attempt.objects.filter(job=job).exists()  # not superseded: written again below
    decided = lifecycle.apply_stop_request(retry, retry.stop_request_now)
    assert session.finish([decided], unlock=[job.pk]) == {job.pk}
    job.refresh_from_db()
    assert (job.status, job.stop_requested, job.token) == ("cancelled", "", None)
    assert job.finished_at is not None
    assert list(Attempt.objects.filter(job=job).values_list("outcome", flat=True)) == ["failed"]


def test_a_finish_with_the_jobs_stop_request_applies_and_settles_it(open_session):
    job = JobFactory()
    session = open_session()
    (claimed,) = session.claim(1)
    Job.objects.filter(pk=job.pk).update(stop_requested="pause:queue")
    decided = lifecycle.apply_stop_request(_failure(claimed), "pause:queue")
    assert session.finish([decided], unlock=[job.pk]) == {job.pk}
    job.refresh_from_db()
    # Paused, and it keeps the request that paused it: which pause to resume it with.
    assert (job.status, job.stop_requested, job.attempts) == ("paused", "pause:queue", 1)
    assert job.finished_at is None


def test_a_stale_token_is_superseded_whatever_the_stop_request(open_session):
    job = JobFactory()
    session = open_session()
    (claimed,) = session.claim(1)
    Job.objects.filter(pk=job.pk).update(token=uuid.uuid4(), stop_requested="cancel")
    retry = _failure(claimed)
    assert session.finish([retry], unlock=[]) == set()
    assert retry.stop_request_now is None
    assert Attempt.objects.get(job=job).outcome == "superseded"


@pytest.mark.parametrize(("request_", "status"), [("cancel", "cancelled"), ("pause", "paused")])
def test_the_rescue_of_an_orphan_carries_out_its_pending_stop_request(
    open_session, request_, status
):
    job = JobFactory(max_attempts=3)
    dead = open_session()
    dead.claim(1)
    Job.objects.filter(pk=job.pk).update(stop_requested=request_)
    rescuer = open_session()
    orphan_jobs_of(dead)
    rescued = rescue_orphans(rescuer)
    assert [(r.id, r.status) for r in rescued] == [(job.pk, status)]
    job.refresh_from_db()
    assert job.status == status
    assert job.stop_requested == ("pause" if status == "paused" else "")
    assert Attempt.objects.get(job=job).outcome == "orphaned"
    assert rescuer.claim(1) == []  # not run again


def test_finish_of_nothing_is_a_no_op(open_session):
    assert open_session().finish([], unlock=[]) == set()


# -- worker rows ----------------------------------------------------------------------------


def test_register_heartbeat_and_unregister_maintain_the_worker_row(open_session):
    session = open_session("emails")
    row = Worker.objects.get(id=session.worker.id)
    assert (row.hostname, row.pid, row.queues, row.stopped_at) == (
        "test-host",
        os.getpid(),
        ["emails"],
        None,
    )
    Worker.objects.filter(id=session.worker.id).update(last_heartbeat_at=ago(60))
    session.heartbeat([], succeeded=4, failed=1)
    row.refresh_from_db()
    assert row.last_heartbeat_at > ago(10)
    assert (row.jobs_succeeded, row.jobs_failed) == (4, 1)
    session.unregister()
    row.refresh_from_db()
    assert row.stopped_at is not None


def test_a_heartbeat_recreates_a_deleted_worker_row(open_session):
    session = open_session()
    Worker.objects.filter(id=session.worker.id).delete()
    session.heartbeat([], succeeded=0, failed=0)
    assert Worker.objects.filter(id=session.worker.id, stopped_at__isnull=True).exists()


def test_relock_requeues_running_jobs_the_worker_does_not_know_about(open_session):
    # A claim whose reply was lost with the connection left jobs running under this worker.
    first, second = JobFactory.create_batch(2)
    session = open_session()
    claimed = session.claim(2)
    known = [c for c in claimed if c.id == first.pk]
    session.relock(known)
    first.refresh_from_db()
    second.refresh_from_db()
    assert first.status == "running"
    assert (second.status, second.attempts, second.token) == ("queued", 0, None)
    if is_postgres():
        assert known[0].locked is True


def test_relock_keeps_the_reservations_it_knows_and_gives_back_the_others(open_session):
    # A claim whose reply was lost reserved jobs this worker does not know: nobody would start
    # them, and no rescue frees a live worker's jobs.
    known, lost = JobFactory.create_batch(2)
    session = open_session()
    claimed = session.claim(2, free=0, start=0)
    assert [job.reserved for job in claimed] == [True, True]
    session.relock([c for c in claimed if c.id == known.pk])
    known.refresh_from_db()
    lost.refresh_from_db()
    assert (known.status, known.token is not None) == ("queued", True)
    assert (lost.status, lost.attempts, lost.token, lost.worker_id) == ("queued", 0, None, None)
    # The one it kept still starts; the other is claimable by anyone.
    assert [job.id for job in session.start([c for c in claimed if c.id == known.pk])] == [known.pk]
    assert [job.id for job in open_session().claim(10)] == [lost.pk]


# -- rescue ---------------------------------------------------------------------------------


def test_an_orphaned_job_is_requeued_with_an_orphaned_attempt(open_session):
    job = JobFactory(max_attempts=3)
    dead = open_session()
    (claimed,) = dead.claim(1)
    rescuer = open_session()
    orphan_jobs_of(dead)

    rescued = rescue_orphans(rescuer)

    assert [(r.id, r.attempt, r.status) for r in rescued] == [(job.pk, 1, "queued")]
    job.refresh_from_db()
    assert job.status == "queued"
    assert job.attempts == 1
    assert job.error == ORPHAN_ERROR
    assert (job.token, job.worker_id, job.finished_at) == (None, None, None)
    attempt = Attempt.objects.get(job=job)
    assert (attempt.number, attempt.outcome, attempt.worker_id) == (1, "orphaned", dead.worker.id)
    assert attempt.started_at == claimed.started_at
    # It runs again as a new attempt.
    (again,) = rescuer.claim(1)
    assert (again.id, again.attempt) == (job.pk, 2)


def test_a_dead_workers_reserved_jobs_go_back_untouched(open_session):
    run_after = ago(60)
    jobs = [
        JobFactory(task_name=parked_on_orphan.name, max_attempts=1, run_after=run_after)
        for _ in range(3)
    ]
    dead = open_session()
    # One started for the only thread; a parked task is never started ahead.
    claimed = dead.claim(3, free=1, start=3, park=[parked_on_orphan.name])
    assert [job.reserved for job in claimed] == [False, True, True]
    rescuer = open_session()
    orphan_jobs_of(dead)

    rescued = rescue_orphans(rescuer)

    assert sorted((r.id, r.status, r.reserved) for r in rescued) == [
        (jobs[0].pk, "failed", False),  # it was running: parked
        (jobs[1].pk, "queued", True),
        (jobs[2].pk, "queued", True),
    ]
    for job in jobs[1:]:
        job.refresh_from_db()
        # As they were before the claim: no attempt, no record, their place kept.
        assert (job.status, job.attempts, job.started_at, job.error) == ("queued", 0, None, "")
        assert (job.token, job.worker_id, job.run_after) == (None, None, run_after)
        assert not Attempt.objects.filter(job=job).exists()
        if is_postgres():
            assert not advisory_lock_held(job.pk)
    again = rescuer.claim(10)
    assert [(job.id, job.attempt) for job in again] == [(jobs[1].pk, 1), (jobs[2].pk, 1)]


def test_start_is_fenced_by_the_reservation_and_checks_pauses_again(open_session):
    jobs = [JobFactory() for _ in range(3)]
    session = open_session()
    claimed = session.claim(3, free=0, start=0)
    assert [job.reserved for job in claimed] == [True, True, True]
    assert Job.objects.filter(status="queued", token__isnull=False).count() == 3
    Job.objects.filter(pk=jobs[1].pk).update(status="cancelled", token=None, worker_id=None)
    started = session.start(claimed[:2])
    assert [job.id for job in started] == [jobs[0].pk]
    assert (started[0].attempt, started[0].reserved) == (1, False)
    # Starting again (a retry after a lost reply) is a no-op that returns it.
    assert [job.id for job in session.start(claimed[:1])] == [jobs[0].pk]
    Job.objects.filter(pk=jobs[0].pk).update(status="queued")  # not ours any more
    Queue.objects.update_or_create(name=jobs[2].queue, defaults={"paused": True})
    assert session.start(claimed[2:]) == []
    jobs[2].refresh_from_db()
    assert (jobs[2].status, jobs[2].attempts, jobs[2].token) == ("queued", 0, None)
    if is_postgres():
        assert not advisory_lock_held(jobs[2].pk)


def test_a_rescued_job_keeps_its_run_after_and_runs_before_later_jobs(open_session):
    # Its worker died, not the job: it keeps its place ahead of the work enqueued after it.
    first_due = ago(60)
    job = JobFactory(max_attempts=3, run_after=first_due)
    dead = open_session()
    dead.claim(1)
    later = JobFactory(run_after=ago(30))
    rescuer = open_session()
    orphan_jobs_of(dead)
    rescue_orphans(rescuer)
    job.refresh_from_db()
    assert (job.status, job.run_after) == ("queued", first_due)
    assert [c.id for c in rescuer.claim(2)] == [job.pk, later.pk]


def test_an_orphaned_job_with_no_attempts_left_fails(open_session):
    job = JobFactory(max_attempts=1)
    dead = open_session()
    dead.claim(1)
    rescuer = open_session()
    orphan_jobs_of(dead)
    rescued = rescue_orphans(rescuer)
    assert [(r.id, r.status) for r in rescued] == [(job.pk, "failed")]
    job.refresh_from_db()
    assert job.status == "failed"
    assert job.finished_at is not None
    assert job.error == ORPHAN_ERROR
    assert Attempt.objects.get(job=job).outcome == "orphaned"


def test_an_orphaned_job_of_a_park_task_fails_instead_of_running_again(open_session):
    job = JobFactory(task_name=parked_on_orphan.name, args=[], max_attempts=5)
    dead = open_session()
    dead.claim(1)
    rescuer = open_session()
    orphan_jobs_of(dead)
    rescued = rescue_orphans(rescuer)
    assert [(r.id, r.status) for r in rescued] == [(job.pk, "failed")]


def test_a_late_finish_after_a_rescue_is_superseded(open_session):
    job = JobFactory()
    slow = open_session()
    (claimed,) = slow.claim(1)
    rescuer = open_session()
    if is_postgres():
        # The worker is alive but was cut off: its lock went (as in a database restart) and
        # it missed its heartbeats, so its job was rescued; now it reports, late.
        slow.finish([], unlock=[job.pk])
        Worker.objects.filter(id=slow.worker.id).update(last_heartbeat_at=ago(300))
    else:
        Job.objects.filter(pk=job.pk).update(lease_expires_at=ago(1))
    rescue_orphans(rescuer)

    assert slow.finish([outcome(claimed)], unlock=[]) == set()
    job.refresh_from_db()
    assert job.status == "queued"
    assert job.result is None
    assert list(Attempt.objects.filter(job=job).values_list("outcome", flat=True)) == [
        "orphaned",
        "superseded",
    ]


def test_lease_store_a_job_whose_lease_is_current_is_not_rescued(open_session):
    if is_postgres():
        pytest.skip("the PostgreSQL store rescues by advisory lock and heartbeat, tested below")
    JobFactory()
    worker = open_session()
    worker.claim(1)
    Worker.objects.filter(id=worker.worker.id).update(last_heartbeat_at=ago(3600))
    assert open_session().rescue([]) == []
    assert Job.objects.get().status == "running"


def test_lease_store_a_heartbeat_renews_the_leases_of_running_jobs(open_session):
    if is_postgres():
        pytest.skip("the PostgreSQL store uses no leases")
    job = JobFactory()
    worker = open_session()
    (claimed,) = worker.claim(1)
    Job.objects.filter(pk=job.pk).update(lease_expires_at=ago(1))
    worker.heartbeat([claimed], succeeded=0, failed=0)
    job.refresh_from_db()
    assert job.lease_expires_at > timezone.now() + dt.timedelta(
        seconds=taskengine_settings.LEASE_SECONDS / 2
    )
    assert open_session().rescue([]) == []


def test_lease_store_a_heartbeat_with_a_stale_token_does_not_renew_the_lease(open_session):
    if is_postgres():
        pytest.skip("the PostgreSQL store uses no leases")
    job = JobFactory()
    worker = open_session()
    (claimed,) = worker.claim(1)
    Job.objects.filter(pk=job.pk).update(lease_expires_at=ago(1), token=uuid.uuid4())
    worker.heartbeat([claimed], succeeded=0, failed=0)
    job.refresh_from_db()
    assert job.lease_expires_at < timezone.now()


def test_lock_store_a_job_whose_worker_holds_its_lock_is_not_rescued_despite_an_old_heartbeat(
    open_session,
):
    if not is_postgres():
        pytest.skip("only the PostgreSQL store takes advisory locks")
    job = JobFactory()
    alive = open_session()
    (claimed,) = alive.claim(1)
    assert claimed.locked
    Worker.objects.filter(id=alive.worker.id).update(last_heartbeat_at=ago(3600))
    assert open_session().rescue([]) == []
    job.refresh_from_db()
    assert (job.status, job.token) == ("running", claimed.token)
    assert not Attempt.objects.exists()


def test_lock_store_a_free_lock_is_not_enough_while_the_worker_heartbeats(open_session):
    if not is_postgres():
        pytest.skip("only the PostgreSQL store takes advisory locks")
    job = JobFactory()
    worker = open_session()
    worker.claim(1)
    rescuer = open_session()
    # The lock vanishes (as in a database restart) but the worker keeps heartbeating.
    worker.close()
    wait_for(lambda: not advisory_lock_held(job.pk), timeout=10, message="the lock to go")
    Worker.objects.filter(id=worker.worker.id).update(last_heartbeat_at=timezone.now())
    assert rescuer.rescue([]) == []
    assert Job.objects.get(pk=job.pk).status == "running"
    # Once the heartbeat is older than RESCUE_GRACE, the job is rescued.
    grace = taskengine_settings.RESCUE_GRACE
    Worker.objects.filter(id=worker.worker.id).update(last_heartbeat_at=ago(grace + 1))
    assert [r.id for r in rescuer.rescue([])] == [job.pk]
    assert Job.objects.get(pk=job.pk).status == "queued"


def test_lock_store_a_stopped_worker_with_a_free_lock_is_rescued_at_once(open_session):
    if not is_postgres():
        pytest.skip("only the PostgreSQL store takes advisory locks")
    job = JobFactory()
    worker = open_session()
    worker.claim(1)
    rescuer = open_session()
    worker.unregister()
    worker.close()
    rescued = rescue_orphans(rescuer)
    assert [r.id for r in rescued] == [job.pk]


def test_lock_store_a_running_job_of_an_unknown_worker_with_a_free_lock_is_rescued(open_session):
    if not is_postgres():
        pytest.skip("only the PostgreSQL store takes advisory locks")
    job = JobFactory(running=True)  # its worker never registered a row
    rescued = open_session().rescue([])
    assert [(r.id, r.status) for r in rescued] == [(job.pk, "queued")]


def test_lock_store_jobs_of_unknown_workers_are_looked_for_once_every_so_many_rescues(
    open_session,
):
    # Rescues look up silent workers' jobs by worker; finding jobs whose worker has no row
    # takes a scan of every running job, made by one rescue in RESCUES_PER_SWEEP.
    if not is_postgres():
        pytest.skip("only the PostgreSQL store takes advisory locks")
    from django_taskengine.store.postgres_session import RESCUES_PER_SWEEP

    rescuer = open_session()
    assert rescuer.rescue([]) == []  # the first one looks
    job = JobFactory(running=True)
    found_by = [n for n in range(1, RESCUES_PER_SWEEP + 1) if rescuer.rescue([])]
    assert found_by == [RESCUES_PER_SWEEP]
    job.refresh_from_db()
    assert job.status == "queued"
