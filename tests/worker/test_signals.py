"""Signals as deployments send them: to the whole process group (systemd's default
``KillMode=control-group``, honcho, ``kill -TERM -<pgid>``) or to ``run_workers`` alone.

SIGTERM and SIGINT always give running jobs the full ``--shutdown-timeout``, however many times
a worker process receives them; "stop now" is SIGQUIT, or a second SIGTERM/SIGINT sent to the
supervisor itself.
"""

from __future__ import annotations

import os
import signal

import pytest

from django_taskengine.models import Job, JobStatus
from tests.helpers import WorkerCommand, child_pids, wait_for
from tests.testapp.models import LedgerEntry
from tests.testapp.tasks import sleep_and_record

pytestmark = pytest.mark.django_db(transaction=True)


def _started(job: Job) -> bool:
    return LedgerEntry.objects.filter(job_id=job.id).exists()


def _send(workers: WorkerCommand, sig: int, *, to_group: bool) -> None:
    if to_group:
        os.killpg(workers.pid, sig)  # the command runs as its own process group
    else:
        workers.signal(sig)


@pytest.mark.parametrize("to_group", [True, False], ids=["to-the-group", "to-the-supervisor"])
def test_sigterm_lets_the_running_job_finish_within_the_shutdown_timeout(start_workers, to_group):
    job = sleep_and_record.enqueue(seconds=3.0)
    workers = start_workers("--processes", "2", "--concurrency", "1", "--shutdown-timeout", "60")
    wait_for(lambda: _started(job), timeout=30, message="the job to start")
    _send(workers, signal.SIGTERM, to_group=to_group)
    assert workers.wait(timeout=60) == 0, workers.log()[-3000:]
    job.refresh_from_db()
    assert (job.status, job.attempts) == (JobStatus.SUCCEEDED, 1), workers.log()[-3000:]
    assert list(job.attempt_set.values_list("outcome", flat=True)) == ["succeeded"]
    assert "stopping now" not in workers.log()


def test_repeated_sigterm_to_the_group_never_escalates(start_workers):
    job = sleep_and_record.enqueue(seconds=3.0)
    workers = start_workers("--processes", "1", "--concurrency", "1", "--shutdown-timeout", "60")
    wait_for(lambda: _started(job), timeout=30, message="the job to start")
    os.killpg(workers.pid, signal.SIGTERM)
    wait_for(lambda: "supervisor got SIGTERM" in workers.log(), timeout=20, message="first signal")
    # The worker process also gets the supervisor's SIGTERM: three in all, still no escalation
    # in the worker; only the supervisor's own second signal would mean "stop now".
    for pid in _worker_pids(workers):
        os.kill(pid, signal.SIGTERM)
    assert workers.wait(timeout=60) == 0, workers.log()[-3000:]
    job.refresh_from_db()
    assert (job.status, job.attempts) == (JobStatus.SUCCEEDED, 1), workers.log()[-3000:]


@pytest.mark.parametrize(
    "how", ["sigquit-to-the-supervisor", "sigquit-to-the-group", "second-sigterm-to-the-supervisor"]
)
def test_stop_now_requeues_the_running_job_at_once(start_workers, how):
    job = sleep_and_record.enqueue(seconds=120.0)
    workers = start_workers("--processes", "2", "--concurrency", "1", "--shutdown-timeout", "120")
    wait_for(lambda: _started(job), timeout=30, message="the job to start")
    if how == "second-sigterm-to-the-supervisor":
        workers.signal(signal.SIGTERM)
        wait_for(lambda: "supervisor got SIGTERM" in workers.log(), timeout=20, message="signal")
        workers.signal(signal.SIGTERM)
    else:
        _send(workers, signal.SIGQUIT, to_group=how == "sigquit-to-the-group")
    # Far sooner than the job's 120 s or the shutdown timeout's.
    assert workers.wait(timeout=45) == 0, workers.log()[-3000:]
    job.refresh_from_db()
    assert job.status == JobStatus.QUEUED, workers.log()[-3000:]
    assert job.attempts == 0 and job.worker_id is None and job.token is None
    # Signals reach the workers one after the other (the supervisor passes them on in turn): on a
    # busy machine a sibling not yet stopping may claim the requeued job, and requeue it too.
    # Either way no attempt is counted and nothing else is recorded.
    outcomes = list(job.attempt_set.values_list("outcome", flat=True))
    assert outcomes and set(outcomes) == {"interrupted"}, outcomes
    log = workers.log()
    assert "stopping now" in log and "1 running job(s) requeued" in log, log[-3000:]
    assert not Job.objects.filter(status=JobStatus.RUNNING).exists()


def _worker_pids(workers: WorkerCommand) -> list[int]:
    return wait_for(lambda: child_pids(workers.pid), timeout=10, message="worker processes")
