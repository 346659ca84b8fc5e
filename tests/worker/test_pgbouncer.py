"""Workers behind a real PgBouncer in transaction pooling mode: task code and enqueues go through
the pooler (a pool of two server connections for sixteen task threads), the engine's own
connections go to the server directly (``TASKENGINE["DIRECT_DATABASE_URL"]``), and every
guarantee holds: each job runs once, atomic tasks commit their work with their end, a
SIGKILLed worker's job is rescued within seconds."""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Iterator

import pytest
from django.db import connection

from devsupport.pgbouncer import Bouncer
from django_taskengine.models import Attempt, Job, JobStatus, Worker
from tests.helpers import wait_for
from tests.testapp.models import LedgerEntry
from tests.testapp.tasks import record, record_backend, sleep_and_record

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(connection.vendor != "postgresql", reason="PgBouncer pools PostgreSQL"),
    pytest.mark.skipif(
        Bouncer.unavailable_reason() is not None, reason=str(Bouncer.unavailable_reason())
    ),
]

POOL_SIZE = 2


@pytest.fixture
def bouncer() -> Iterator[Bouncer]:
    settings = connection.settings_dict
    pooler = Bouncer(
        settings["HOST"] or "127.0.0.1", int(settings["PORT"] or 5432), pool_size=POOL_SIZE
    )
    pooler.start()
    yield pooler
    pooler.stop()


def _direct_url() -> str:
    settings = connection.settings_dict
    return (
        f"postgres://{settings['USER']}@{settings['HOST'] or '127.0.0.1'}:"
        f"{settings['PORT'] or 5432}/{settings['NAME']}"
    )


def _behind(bouncer: Bouncer) -> dict[str, str]:
    """A worker command's environment: DATABASES through the pooler, the engine's own
    connections direct."""
    return {
        "DATABASE_URL": bouncer.url(str(connection.settings_dict["NAME"])),
        "TASKENGINE_TEST_POOLED": "1",
        "TASKENGINE_TEST_OVERRIDES": json.dumps({"DIRECT_DATABASE_URL": _direct_url()}),
    }


def _finished(ids: list[int]) -> bool:
    return not Job.objects.filter(id__in=ids).exclude(status=JobStatus.SUCCEEDED).exists()


def test_workers_behind_a_transaction_pooler_run_every_job_once(bouncer, start_workers):
    atomic = [record_backend.enqueue(label=f"a{n}") for n in range(150)]
    plain = [record.enqueue(label=f"p{n}") for n in range(150)]
    ids = [job.id for job in atomic + plain]
    commands = [
        start_workers("--processes", "2", "--concurrency", "4", **_behind(bouncer))
        for _ in range(2)
    ]
    wait_for(lambda: _finished(ids), timeout=90, message="every job succeeded")
    for command in commands:
        assert "ERROR" not in command.log(), command.log()

    assert not Job.objects.filter(id__in=ids, attempts__gt=1).exists()
    assert Attempt.objects.filter(job_id__in=ids).count() == len(ids)
    ran = list(LedgerEntry.objects.filter(job_id__in=ids).values_list("job_id", flat=True))
    assert sorted(ran) == sorted(ids), "each job's work committed once"
    # Sixteen task threads ran their transactions on the pool's server connections.
    backends = set(
        Job.objects.filter(id__in=[j.id for j in atomic]).values_list("result", flat=True)
    )
    assert 1 <= len(backends) <= POOL_SIZE, backends
    workers = Worker.objects.values_list("pid", flat=True)
    assert len(workers) == 4


def test_a_sigkilled_worker_behind_the_pooler_loses_its_job_for_seconds(bouncer, start_workers):
    # Its advisory lock was taken on its direct connection: it goes with the process, at once,
    # and not with a pooled connection another client goes on using.
    job = sleep_and_record.enqueue(seconds=1.0)
    start_workers("--processes", "2", **_behind(bouncer))
    wait_for(
        lambda: (
            Job.objects.filter(id=job.id, status=JobStatus.RUNNING).exists()
            and LedgerEntry.objects.filter(job_id=job.id).exists()
        ),
        timeout=30,
        message="first attempt running",
    )
    job.refresh_from_db()
    os.kill(Worker.objects.get(id=job.worker_id).pid, signal.SIGKILL)
    killed_at = time.monotonic()
    wait_for(
        lambda: Job.objects.filter(id=job.id, status=JobStatus.RUNNING, attempts=2).exists(),
        timeout=30,
        message="rescued attempt running",
    )
    recovery = time.monotonic() - killed_at
    finished = job.wait(timeout=30)
    assert finished.status == JobStatus.SUCCEEDED and finished.attempts == 2
    outcomes = list(finished.attempt_set.order_by("number").values_list("outcome", flat=True))
    assert outcomes == ["orphaned", "succeeded"]
    assert recovery < 5, f"rescue took {recovery:.1f} s"


def test_a_worker_whose_own_connection_goes_through_the_pooler_says_what_to_set(
    bouncer, start_workers
):
    # Without DIRECT_DATABASE_URL the worker's own session goes through the pooler too: its
    # prepared statements land on server connections that do not have them.
    env = {**_behind(bouncer), "TASKENGINE_TEST_OVERRIDES": "{}"}
    command = start_workers("--processes", "2", "--concurrency", "4", **env)
    for n in range(100):
        record.enqueue(label=str(n))
    wait_for(
        lambda: "TASKENGINE['DIRECT_DATABASE_URL']" in command.log(),
        timeout=60,
        message="the worker's hint",
    )
