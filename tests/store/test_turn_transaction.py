"""A PostgreSQL worker's turn in one transaction: the outcomes of the jobs that ended are sent
with the turn's first claim statement, in one pipeline, and committed with it (one WAL flush,
one round trip): if that statement fails, nothing is written; if a later claim of the same
turn fails, the outcomes stay written and the worker knows it."""

from __future__ import annotations

import json

import psycopg
import pytest
from django.db import connection
from django.utils import timezone

from django_taskengine import operations
from django_taskengine.core import lifecycle
from django_taskengine.models import Attempt, Job
from django_taskengine.store import ClaimFailedAfterWrite
from django_taskengine.store.base import Outcome
from django_taskengine.store.flow_source import FLOW_LOCK_ID
from django_taskengine.store.postgres_claims import Riding, claim_rows, outcome_params
from django_taskengine.store.postgres_plain_claim import engine_lock_key
from django_taskengine.worker.claimer import Claimer
from django_taskengine.worker.completer import Completer
from django_taskengine.worker.runner import RunResult
from tests.factories import JobFactory
from tests.helpers import direct_connection
from tests.testapp.flow_tasks import flow_step
from tests.testapp.tasks import noop

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(connection.vendor != "postgresql", reason="PostgreSQL's sessions"),
]


def succeeded(claimed) -> Outcome:
    return Outcome(
        job_id=claimed.id,
        token=claimed.token,
        attempt=claimed.attempt,
        status="succeeded",
        outcome="succeeded",
        started_at=claimed.started_at,
        finished_at=timezone.now(),
        result_json=json.dumps(None),
    )


def xmin_of(*ids: int) -> set[int]:
    """The transaction ids that wrote the jobs' current row versions."""
    with direct_connection() as conn:
        rows = conn.execute(
            "SELECT xmin::text FROM taskengine_job WHERE id = ANY(%s)", [list(ids)]
        ).fetchall()
    return {int(row[0]) for row in rows}


def test_the_outcomes_and_the_next_claim_are_written_by_one_transaction(session):
    first, second = JobFactory(), JobFactory()
    (claimed,) = session.claim(1)
    applied, jobs = session.finish_then_claim(
        [succeeded(claimed)], [claimed.id], 1, free=1, start=1
    )
    assert applied == {first.pk}
    assert [job.id for job in jobs] == [second.pk]
    assert Job.objects.get(pk=first.pk).status == "succeeded"
    assert len(xmin_of(first.pk, second.pk)) == 1
    # A finish alone commits on its own.
    third = JobFactory()
    (claimed_third,) = session.claim(1)
    session.finish([succeeded(jobs[0])], [second.pk])
    assert len(xmin_of(second.pk, claimed_third.id)) == 2
    assert claimed_third.id == third.pk


def test_a_statement_that_fails_after_the_write_takes_the_write_back(session):
    job = JobFactory()
    (claimed,) = session.claim(1)
    riding = Riding()
    riding.params = outcome_params([succeeded(claimed)], session.worker.id, session.ns, [])
    with pytest.raises(psycopg.errors.DivisionByZero):
        claim_rows(session.conn, riding, "SELECT 1 / 0", {})
    assert riding.row is None
    job.refresh_from_db()
    assert (job.status, job.token) == ("running", claimed.token)
    assert not Attempt.objects.filter(job=job).exists()
    # The session is usable, and the same outcome is written by the next finish.
    assert session.is_usable()
    assert session.finish([succeeded(claimed)], [claimed.id]) == {job.pk}
    assert Job.objects.get(pk=job.pk).status == "succeeded"


def test_a_flow_claim_counts_the_outcomes_written_in_its_transaction(session):
    # One slot: each job that ends frees it for the next, in the same turn, whichever of the
    # plain and the flow claim goes first (they take turns) and carries the write.
    operations.set_queue_limits("flow", concurrency=1)
    jobs = [flow_step.enqueue(label=str(n)) for n in range(4)]
    session.flow.notified()
    (running,) = session.claim(1)
    assert running.id == jobs[0].id
    for following in jobs[1:]:
        applied, claimed = session.finish_then_claim(
            [succeeded(running)], [running.id], 1, free=1, start=1
        )
        assert applied == {running.id}
        assert [job.id for job in claimed] == [following.id]
        (running,) = claimed
    assert Job.objects.filter(status="running").count() == 1


def _flow_claim_fails_after_the_plain_one(session):
    """The next claim of ``session``: the plain claim first (it carries the write), then a
    flow claim that fails: another connection holds the flow lock past the session's
    lock_timeout. Returns that connection (holding the lock)."""
    operations.set_queue_limits("flow", concurrency=5)
    flow_step.enqueue()
    holder = direct_connection()
    holder.execute("SELECT pg_advisory_lock(%s)", [engine_lock_key(FLOW_LOCK_ID)])
    session.conn.execute("SET lock_timeout = '200ms'")
    session.flow._flow_first = True  # the plain claim's turn comes first
    session.flow.notified()  # the flow claim is due after it
    return holder


def test_a_claim_that_fails_after_the_write_says_the_outcomes_are_written(session):
    job = noop.enqueue()
    (claimed,) = session.claim(1)
    holder = _flow_claim_fails_after_the_plain_one(session)
    try:
        with pytest.raises(ClaimFailedAfterWrite) as failed:
            session.finish_then_claim([succeeded(claimed)], [claimed.id], 2, free=2, start=2)
    finally:
        holder.close()
    assert failed.value.applied == {job.id}
    assert isinstance(failed.value.__cause__, psycopg.errors.LockNotAvailable)
    assert Job.objects.get(pk=job.id).status == "succeeded"


def test_the_worker_keeps_outcomes_written_before_a_claim_failed(session):
    job = noop.enqueue()
    claimer = Claimer(concurrency=1)
    claimer.claim(session)
    completer = Completer(claimer)
    (entry,) = claimer.take_unstarted()
    completer.done.append((entry, RunResult(lifecycle.succeeded(entry.job, "null"))))
    completer.collect()
    holder = _flow_claim_fails_after_the_plain_one(session)
    try:
        with pytest.raises(psycopg.errors.LockNotAvailable):
            completer.flush(session, claimer.ask())
    finally:
        holder.close()
    # Written once and reported: nothing is left to write again after the reconnect.
    assert completer.outcomes == [] and completer.unwritten() == []
    assert completer.succeeded == 1
    assert Job.objects.get(pk=job.id).status == "succeeded"
    assert list(Attempt.objects.filter(job_id=job.id).values_list("outcome", flat=True)) == [
        "succeeded"
    ]
