"""ctx.idempotency_key: one per run of a job, never shared between two jobs, even across
databases; kept by automatic retries, changed by an operator's retry."""

from __future__ import annotations

import os
import uuid

import pytest
from django.db import connection

from django_taskengine import operations as ops
from django_taskengine import task
from django_taskengine.context import TaskContext
from django_taskengine.models import Job, JobStatus
from django_taskengine.store import WorkerInfo
from django_taskengine.store.inprocess import InProcessSession
from django_taskengine.testing import run_jobs
from tests.factories import claimed_job

pytestmark = pytest.mark.django_db(transaction=True)

#: (job id, attempt, key) of every attempt of `keyed`, in order.
SEEN: list[tuple[int, int, str]] = []


@task(takes_context=True, max_attempts=3, retry_backoff=0.0)
def keyed(ctx, failures=0):
    SEEN.append((ctx.job_id, ctx.attempt, ctx.idempotency_key))
    if ctx.attempt <= failures:
        raise RuntimeError(f"planned failure on attempt {ctx.attempt}")
    return ctx.idempotency_key


@pytest.fixture(autouse=True)
def _forget_keys():
    SEEN.clear()


def _restart_job_ids_at(next_id: int) -> None:
    """What a recreated (or another) database does: hand out the same job ids again."""
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(
                "SELECT setval(pg_get_serial_sequence('taskengine_job', 'id'), %s, false)",
                [next_id],
            )
        else:
            cursor.execute(
                "UPDATE sqlite_sequence SET seq = %s WHERE name = 'taskengine_job'", [next_id - 1]
            )


@pytest.mark.parametrize("bulk", [False, True], ids=["enqueue", "bulk_enqueue"])
def test_a_job_with_the_id_of_a_job_of_another_database_gets_another_key(bulk):
    def enqueue_and_run() -> tuple[int, str]:
        if bulk:
            (job, _) = keyed.bulk_enqueue([((), {}), ((), {})])
        else:
            job = keyed.enqueue()
        (ran, *_) = run_jobs()
        assert ran.id == job.id and ran.status == JobStatus.SUCCEEDED
        return job.id, ran.result

    first_id, first_key = enqueue_and_run()
    Job.objects.all().delete()
    _restart_job_ids_at(first_id)
    second_id, second_key = enqueue_and_run()

    assert second_id == first_id
    assert second_key != first_key
    assert first_key.startswith("taskengine-") and second_key.startswith("taskengine-")


def test_automatic_retries_keep_the_key_and_an_operator_retry_changes_it():
    job = keyed.enqueue(failures=5)
    run_jobs(retries=True)
    assert Job.objects.get(pk=job.pk).status == JobStatus.FAILED
    first_run = [key for _, _, key in SEEN]
    assert len(first_run) == 3 and len(set(first_run)) == 1

    SEEN.clear()
    ops.retry_job(job.pk)
    run_jobs(retries=True)
    second_run = [key for _, _, key in SEEN]
    assert len(second_run) == 3 and len(set(second_run)) == 1
    assert second_run[0] != first_run[0]


def test_every_enqueued_job_holds_the_uid_stored_on_its_row():
    jobs = [keyed.enqueue(), *keyed.bulk_enqueue([((), {}), ((), {"failures": 0})])]
    stored = dict(Job.objects.values_list("id", "uid"))
    assert {job.id: job.uid for job in jobs} == stored
    assert len(set(stored.values())) == 3


def test_a_claim_carries_the_uid_of_the_row_into_the_attempts_key():
    job = keyed.enqueue()
    info = WorkerInfo(id=uuid.uuid4(), hostname="test", pid=os.getpid(), queues=[], concurrency=1)
    (claimed,) = InProcessSession(job._state.db, info, [job.pk]).claim(1)
    assert claimed.uid == Job.objects.get(pk=job.pk).uid
    assert TaskContext(claimed).idempotency_key == f"taskengine-{claimed.uid}"


def test_a_job_handed_to_its_task_without_a_uid_is_refused_a_key():
    job = keyed.enqueue()
    handmade = claimed_job(id=job.pk, task_name=keyed.name, queue=job.queue, max_attempts=3)
    with pytest.raises(RuntimeError, match="without its uid"):
        TaskContext(handmade).idempotency_key  # noqa: B018
