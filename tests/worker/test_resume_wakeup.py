"""A resume wakes idle workers (PostgreSQL NOTIFY at commit): a resumed job starts at once, not
at the next poll."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable

import pytest
from django.db import connection, transaction

from django_taskengine import operations as ops
from django_taskengine.models import Job
from tests.helpers import wait_for
from tests.testapp.models import LedgerEntry
from tests.testapp.tasks import noop, record

pytestmark = pytest.mark.django_db(transaction=True)

#: Far longer than the bound below: a job that starts within it was woken, not polled for. The
#: heartbeats and rescue rounds are far apart too, so that the worker's connection rests while
#: it waits (see _worker_rests).
LONG_POLL = {
    "POLL_INTERVAL": 60.0,
    "HEARTBEAT_INTERVAL": 30.0,
    "RESCUE_INTERVAL": 60.0,
    "RESCUE_GRACE": 60.0,
}
WOKEN_WITHIN = 10.0


@pytest.fixture
def idle_worker(start_workers):
    if connection.vendor != "postgresql":
        pytest.skip("wake-ups are PostgreSQL's LISTEN/NOTIFY; other databases poll")
    start_workers("--processes", "1", TASKENGINE_TEST_OVERRIDES=json.dumps(LONG_POLL))
    # A first job shows it running; once its connection has rested for a while since, it waits
    # (between polls an idle worker's loop sends nothing; its heartbeats are far off).
    waits = _worker_rests()
    assert noop.enqueue().wait(timeout=30).status == "succeeded"
    wait_for(waits, timeout=30, message="the worker to wait")


def _database_now() -> dt.datetime:
    with connection.cursor() as cursor:
        cursor.execute("SELECT clock_timestamp()")
        return cursor.fetchone()[0]


def _worker_rests() -> Callable[[], bool]:
    """Whether the worker's own connection has sent nothing for half a second, half a second
    or more from now: it has done what a wake-up sent before now made it do (under PostgreSQL
    dispatch a claim, within milliseconds; under Redis Streams dispatch perhaps nothing), and
    waits."""
    since = _database_now()

    def rests() -> bool:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                "AND application_name LIKE 'taskengine-worker%%' AND state = 'idle' "
                "AND state_change < clock_timestamp() - interval '0.5 seconds' "
                "AND clock_timestamp() > %s + interval '0.5 seconds'",
                [since],
            )
            return cursor.fetchone()[0] == 1

    return rests


def _started(job: Job) -> bool:
    return LedgerEntry.objects.filter(job_id=job.id).exists()


#: For each scope: how to hold a job back, and how to resume it.
SCOPES = {
    "job": (lambda job: ops.pause_job(job.id), lambda job: ops.resume_job(job.id)),
    "queue": (lambda job: ops.pause_queue("default"), lambda job: ops.resume_queue("default")),
    "task": (lambda job: ops.pause_task(record.name), lambda job: ops.resume_task(record.name)),
    "engine": (lambda job: ops.pause_all(), lambda job: ops.resume_all()),
}


@pytest.mark.parametrize("scope", list(SCOPES))
def test_an_idle_worker_starts_a_resumed_job_at_once(idle_worker, scope):
    pause, resume = SCOPES[scope]
    # Held back in the enqueue's own transaction: the enqueue's wake-up finds nothing to run.
    waits = _worker_rests()
    with transaction.atomic():
        job = record.enqueue(label="resumed")
        pause(job)
    # The enqueue woke the worker; it found nothing it may run, and waits again.
    wait_for(waits, timeout=30, message="the worker to wait")
    resume(job)
    wait_for(lambda: _started(job), timeout=WOKEN_WITHIN, message="the resumed job to start")


#: Actions that make a job due now: how to hold the job back first, and the action.
DUE_NOW = {
    "run_now": (
        lambda job: Job.objects.filter(pk=job.pk).update(run_after=job.run_after + HOUR),
        lambda job: ops.run_job_now(job.id),
    ),
    "retry": (
        lambda job: Job.objects.filter(pk=job.pk).update(status="failed"),
        lambda job: ops.retry_job(job.id),
    ),
}
HOUR = dt.timedelta(hours=1)


@pytest.mark.parametrize("action", list(DUE_NOW))
def test_an_idle_worker_starts_a_job_made_due_by_an_operator_at_once(idle_worker, action):
    hold, act = DUE_NOW[action]
    waits = _worker_rests()
    with transaction.atomic():
        job = record.enqueue(label=action)
        hold(job)
    wait_for(waits, timeout=30, message="the worker to wait")
    act(job)
    wait_for(lambda: _started(job), timeout=WOKEN_WITHIN, message=f"the job to start ({action})")
