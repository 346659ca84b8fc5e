"""An idle worker scans the job table once a POLL_INTERVAL (PostgreSQL dispatch): the turns of
its loop for heartbeats and rescue rounds do not scan, and whatever makes a job due now wakes
it (NOTIFY), a retry that its own outcome write sent back to the queue included."""

from __future__ import annotations

import json
import time

import pytest
from django.db import connection

from django_taskengine.conf import taskengine_settings
from django_taskengine.models import Attempt, Job, JobStatus
from tests.helpers import direct_connection, wait_for
from tests.testapp.tasks import fail_then_succeed, keep_idempotency_key, noop

pytestmark = pytest.mark.django_db(transaction=True)

#: Far longer than any wait below; the test settings' heartbeats and rescue rounds (every
#: 0.25 s) turn the worker's loop as usual.
LONG_POLL = {"POLL_INTERVAL": 60.0}


@pytest.fixture
def idle_worker(start_workers):
    if connection.vendor != "postgresql":
        pytest.skip("wake-ups are PostgreSQL's NOTIFY; other databases scan on every turn")
    if taskengine_settings.DISPATCH.get("BACKEND") != "postgres":
        pytest.skip("under a dispatch backend the relay delivers jobs as they fall due")
    workers = start_workers("--processes", "1", TASKENGINE_TEST_OVERRIDES=json.dumps(LONG_POLL))
    # A first job shows it claiming; its claim after the job is the last scan that finds none.
    assert noop.enqueue().wait(timeout=30).status == JobStatus.SUCCEEDED, workers.log()
    return workers


def test_a_job_that_falls_due_waits_for_the_next_poll_not_the_next_heartbeat(idle_worker):
    delayed = noop.using(run_after=0.3).enqueue()
    # Due in 0.3 s and told of by no notification: 2 s later (eight heartbeats and rescue
    # rounds of the worker), it has not been claimed.
    deadline = time.monotonic() + 2.3
    while time.monotonic() < deadline:
        assert Job.objects.get(pk=delayed.pk).status == JobStatus.QUEUED, idle_worker.log()
        time.sleep(0.05)
    # An enqueue notifies: the worker scans, and takes both.
    woken = noop.enqueue()
    assert woken.wait(timeout=10).status == JobStatus.SUCCEEDED, idle_worker.log()
    assert delayed.wait(timeout=10).status == JobStatus.SUCCEEDED, idle_worker.log()


def test_a_retry_due_at_once_wakes_the_workers(idle_worker):
    """The write that sends a job back due now notifies its queue, as an enqueue does: the
    other workers' scans find it at once (the writer's own next claim would anyway)."""
    channel = taskengine_settings.NOTIFY_CHANNEL
    listener = direct_connection()
    try:
        listener.execute(f'LISTEN "{channel}"')
        # retry_backoff 0: the failed first attempt's write sends the job back due now.
        job = keep_idempotency_key.enqueue(failures=1)
        _wait_succeeded(job, idle_worker)
        # Backoff 0.05 s: due later, told of by no notification; its worker scans for it when
        # it falls due (it wrote it), not a poll interval later.
        later = fail_then_succeed.enqueue(failures=1)
        _wait_succeeded(later, idle_worker)
        # A notification of our own, last: what the writes sent arrived before it.
        listener.execute("SELECT pg_notify(%s, 'end')", [channel])
        payloads = []
        for notice in listener.notifies(timeout=10):
            if notice.payload == "end":
                break
            payloads.append(notice.payload)
    finally:
        listener.close()
    # The enqueue and the retry of `job`, the enqueue of `later`.
    assert payloads == ["default", "default", "default"]
    first, second = Attempt.objects.filter(job_id=job.pk).order_by("number")
    assert first.outcome == "failed"
    assert (second.started_at - first.finished_at).total_seconds() < 5


def _wait_succeeded(job: Job, workers) -> None:
    # Not job.wait(): its mark on a job still claimable notifies the queue too.
    wait_for(
        lambda: Job.objects.get(pk=job.pk).status == JobStatus.SUCCEEDED,
        timeout=10,
        message=f"job {job.pk} to succeed\n{workers.log()}",
    )


def test_a_delayed_job_starts_by_the_poll_interval(start_workers):
    if connection.vendor != "postgresql":
        pytest.skip("other databases scan on every turn")
    workers = start_workers("--processes", "1", TASKENGINE_TEST_OVERRIDES='{"POLL_INTERVAL": 1}')
    assert noop.enqueue().wait(timeout=30).status == JobStatus.SUCCEEDED, workers.log()
    delayed = noop.using(run_after=0.3).enqueue()
    finished = delayed.wait(timeout=10)
    assert finished.status == JobStatus.SUCCEEDED, workers.log()
    # Within a poll interval of falling due (and the loop's wait for its next turn).
    assert (finished.started_at - finished.run_after).total_seconds() < 2.5
