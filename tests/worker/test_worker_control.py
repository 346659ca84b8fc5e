"""An operator's requests to one worker process — drain, resume, stop, hard stop — carried out
by real ``run_workers`` processes within a heartbeat, and refused where nobody would carry them
out.

"Within a heartbeat" is measured as the time from the request until the process's first
heartbeat after it (the heartbeat that reads the request also acts on it), bounded by the
configured HEARTBEAT_INTERVAL plus a fixed allowance for a loaded test machine.
"""

from __future__ import annotations

import datetime as dt
import time

import pytest
from django.utils import timezone

from django_taskengine import operations as ops
from django_taskengine.conf import taskengine_settings
from django_taskengine.core import lifecycle
from django_taskengine.models import Attempt, AttemptOutcome, Job, JobStatus, Worker
from tests.factories import WorkerFactory
from tests.helpers import process_alive, wait_for
from tests.testapp.models import LedgerEntry
from tests.testapp.tasks import always_fail, record, sleep_and_record

pytestmark = pytest.mark.django_db(transaction=True)

#: Scheduling delays of a busy two-core test machine, on top of the heartbeat interval.
ALLOWANCE = 1.5


def within_a_heartbeat() -> float:
    return taskengine_settings.HEARTBEAT_INTERVAL + ALLOWANCE


def _started(job: Job, attempt: int = 1) -> LedgerEntry | None:
    return LedgerEntry.objects.filter(job_id=job.id, attempt=attempt).first()


def _worker_of(job: Job) -> Worker:
    job.refresh_from_db()
    assert job.worker_id is not None
    return Worker.objects.get(id=job.worker_id)


def _status(job: Job) -> str:
    job.refresh_from_db()
    return job.status


def _heard_after(worker: Worker, moment: dt.datetime) -> bool:
    """The process sent a heartbeat (or stopped) after ``moment``: it has read a request."""
    worker.refresh_from_db()
    return worker.last_heartbeat_at > moment or worker.stopped_at is not None


def _carried_out_within_a_heartbeat(worker: Worker) -> float:
    """Seconds from the request just written until the process read it; asserts the bound."""
    asked = time.monotonic()
    worker.refresh_from_db()
    assert worker.control_requested_at is not None
    wait_for(
        lambda: _heard_after(worker, worker.control_requested_at),
        timeout=30,
        interval=0.01,
        message="the worker's next heartbeat",
    )
    took = time.monotonic() - asked
    assert took <= within_a_heartbeat(), (took, within_a_heartbeat())
    return took


def _heartbeats(worker: Worker, count: int) -> None:
    """Wait until the process has sent ``count`` more heartbeats (a bounded look at a quiet
    process: it is alive and looping, and had every chance to claim)."""
    for _ in range(count):
        worker.refresh_from_db()
        seen = worker.last_heartbeat_at
        wait_for(lambda seen=seen: _heard_after(worker, seen), timeout=30, message="a heartbeat")


def test_drain_claims_nothing_new_finishes_the_running_job_and_resume_claims_again(
    start_workers,
):
    sleeper = sleep_and_record.enqueue(seconds=1.5)
    workers = start_workers("--processes", "1", "--concurrency", "1")
    wait_for(lambda: _started(sleeper), timeout=30, message="the sleeper to start")
    worker = _worker_of(sleeper)

    ops.drain_worker(worker.id, by="alice", reason="deploy")
    _carried_out_within_a_heartbeat(worker)
    waiting = [record.enqueue(label=f"after-drain-{n}") for n in range(3)]

    assert wait_for(lambda: _status(sleeper) == JobStatus.SUCCEEDED, timeout=30)
    _heartbeats(worker, 6)  # well past a poll interval: an undrained worker would have claimed
    assert [_status(job) for job in waiting] == [JobStatus.QUEUED] * 3
    assert LedgerEntry.objects.filter(label__startswith="after-drain").count() == 0
    worker.refresh_from_db()
    assert (worker.control_requested, worker.stopped_at) == ("drain", None)
    assert process_alive(worker.pid)  # stays up, idle

    ops.resume_worker(worker.id, by="alice")
    for job in waiting:
        wait_for(lambda job=job: _status(job) == JobStatus.SUCCEEDED, timeout=30)
    ran_in = LedgerEntry.objects.filter(label__startswith="after-drain").values_list("pid")
    assert set(ran_in) == {(worker.pid,)}
    assert workers.proc.poll() is None
    assert "draining at an operator's request" in workers.log()
    assert "resumed by an operator" in workers.log()


def test_drain_gives_back_the_jobs_claimed_ahead_untouched(start_workers):
    # 20 ms jobs on one thread: the worker soon claims a few ahead of its thread (reserved).
    ids = [record.enqueue(label=f"short-{n}", sleep=0.02).pk for n in range(300)]
    start_workers("--processes", "1", "--concurrency", "1")
    reserved = Job.objects.filter(pk__in=ids, status=JobStatus.QUEUED, token__isnull=False)
    wait_for(reserved.exists, timeout=30, interval=0.01, message="jobs claimed ahead")
    worker = Worker.objects.get(stopped_at__isnull=True)

    ops.drain_worker(worker.id)
    _carried_out_within_a_heartbeat(worker)

    wait_for(lambda: not reserved.exists(), timeout=within_a_heartbeat(), interval=0.01)
    held = Job.objects.filter(pk__in=ids, token__isnull=False)
    wait_for(lambda: not held.exists(), timeout=30, message="the running job to finish")
    done = Job.objects.filter(pk__in=ids, status=JobStatus.SUCCEEDED).count()
    _heartbeats(worker, 4)
    assert Job.objects.filter(pk__in=ids, status=JobStatus.SUCCEEDED).count() == done < 300
    # Back in the queue as they were: no attempt counted, never started.
    waiting = Job.objects.filter(pk__in=ids, status=JobStatus.QUEUED)
    assert waiting.count() == 300 - done
    assert not waiting.filter(attempts__gt=0).exists()
    # A job the worker had started ahead of its thread (its start written, no thread free yet)
    # comes back too, that run recorded as interrupted before it began; none ran.
    for job in waiting.filter(started_at__isnull=False):
        runs = list(Attempt.objects.filter(job=job).values_list("outcome", "error"))
        assert runs == [(AttemptOutcome.INTERRUPTED, lifecycle.NOT_STARTED_ERROR)], runs
    assert not LedgerEntry.objects.filter(
        job_id__in=list(waiting.values_list("pk", flat=True))
    ).exists()


def test_stop_finishes_the_running_job_exits_and_is_not_replaced(start_workers):
    sleeper = sleep_and_record.enqueue(seconds=1.5)
    workers = start_workers("--processes", "2", "--concurrency", "1")
    wait_for(lambda: _started(sleeper), timeout=30, message="the sleeper to start")
    wait_for(lambda: Worker.objects.filter(stopped_at__isnull=True).count() == 2, timeout=30)
    worker = _worker_of(sleeper)

    ops.stop_worker(worker.id, by="alice")
    _carried_out_within_a_heartbeat(worker)

    # Exits once its job finished, within the shutdown timeout.
    wait_for(lambda: not process_alive(worker.pid), timeout=30, message="the process to exit")
    sleeper.refresh_from_db()
    assert (sleeper.status, sleeper.attempts) == (JobStatus.SUCCEEDED, 1)
    worker.refresh_from_db()
    assert worker.stopped_at is not None and worker.control_requested == "stop"
    # Not replaced: the supervisor and its other process run on, and they alone take jobs.
    after = record.enqueue(label="after-stop")
    assert wait_for(lambda: _status(after) == JobStatus.SUCCEEDED, timeout=30)
    other = Worker.objects.exclude(id=worker.id).get()
    assert other.stopped_at is None and _started(after).pid == other.pid
    assert workers.proc.poll() is None
    assert Worker.objects.count() == 2
    assert "stopped by an operator; not starting a new one" in workers.log()


def test_hard_stop_ends_the_process_now_and_its_job_is_rescued_and_run_elsewhere(
    start_workers,
):
    sleeper = sleep_and_record.enqueue(seconds=30.0)
    workers = start_workers("--processes", "2", "--concurrency", "1")
    wait_for(lambda: _started(sleeper), timeout=30, message="the sleeper to start")
    wait_for(lambda: Worker.objects.filter(stopped_at__isnull=True).count() == 2, timeout=30)
    worker = _worker_of(sleeper)
    asked = time.monotonic()

    ops.hard_stop_worker(worker.id, by="alice", reason="wedged")

    wait_for(lambda: not process_alive(worker.pid), timeout=30, message="the process to end")
    gone = time.monotonic() - asked
    assert gone <= within_a_heartbeat(), gone
    # Its job goes back to the queue by the rescue and another process runs it: nothing lost.
    second = wait_for(lambda: _started(sleeper, attempt=2), timeout=30, message="the rerun")
    assert second.pid != worker.pid
    sleeper.refresh_from_db()
    assert sleeper.status == JobStatus.RUNNING and sleeper.worker_id != worker.id
    assert list(sleeper.attempt_set.values_list("outcome", flat=True)) == ["orphaned"]
    assert LedgerEntry.objects.filter(job_id=sleeper.id).count() == 2
    assert workers.proc.poll() is None
    assert Worker.objects.count() == 2  # not replaced


def test_worker_rows_count_jobs_that_failed_not_attempts(start_workers):
    failing = always_fail.enqueue()  # two attempts, then failed
    fine = [record.enqueue(label=f"ok-{n}") for n in range(3)]
    workers = start_workers("--burst", "--processes", "1", "--concurrency", "1")
    assert workers.wait(timeout=60) == 0
    failing.refresh_from_db()
    assert (failing.status, failing.attempts) == (JobStatus.FAILED, 2)
    assert all(_status(job) == JobStatus.SUCCEEDED for job in fine)
    worker = Worker.objects.get()
    assert (worker.jobs_succeeded, worker.jobs_failed) == (3, 1)


# -- refusals (no process needed) -------------------------------------------------------------


def test_requests_to_a_stopped_or_silent_worker_are_refused_and_not_recorded():
    stopped = WorkerFactory(hostname="gone", stopped_at=timezone.now())
    silent = WorkerFactory(
        hostname="silent", last_heartbeat_at=timezone.now() - dt.timedelta(minutes=5)
    )
    with pytest.raises(ops.ActionRefused, match="gone:.* has already stopped"):
        ops.stop_worker(stopped.id)
    with pytest.raises(ops.ActionRefused, match="presumed dead"):
        ops.drain_worker(silent.id)
    assert set(Worker.objects.values_list("control_requested", flat=True)) == {""}
    assert ops.audit_entries("worker", using="default") == []


def test_requests_follow_drain_stop_hard_stop_and_are_audited():
    worker = WorkerFactory(hostname="w1")
    with pytest.raises(ops.ActionRefused, match="not draining"):
        ops.resume_worker(worker.id)
    ops.drain_worker(str(worker.id), by="alice", reason="deploy", source="cli")
    with pytest.raises(ops.ActionRefused, match="already draining"):
        ops.drain_worker(worker.id)
    assert ops.stop_worker(worker.id, by="bob").control_requested == "stop"
    with pytest.raises(ops.ActionRefused, match="is stopping; it cannot be asked to drain"):
        ops.drain_worker(worker.id)
    done = ops.hard_stop_worker(worker.id, by="carol")
    assert (done.control_requested, done.control_requested_by) == ("kill", "carol")
    assert done.control_requested_at is not None
    with pytest.raises(ops.ActionRefused, match="being hard-stopped"):
        ops.stop_worker(worker.id)
    entries = ops.audit_entries("worker", worker.id, using="default")
    assert [(e.action, e.actor) for e in reversed(entries)] == [
        ("drain_worker", "alice"),
        ("stop_worker", "bob"),
        ("hard_stop_worker", "carol"),
    ]
    assert entries[-1].reason == "deploy" and entries[-1].source == "cli"


def test_an_unknown_worker_is_not_found():
    with pytest.raises(ops.NotFound, match="not a worker id"):
        ops.drain_worker("web-1")
    with pytest.raises(ops.NotFound, match="no worker process"):
        ops.drain_worker("00000000-0000-0000-0000-000000000001")


def test_the_command_line_asks_the_same_and_says_when_it_is_refused():
    from io import StringIO

    from django.core.management import CommandError, call_command

    worker = WorkerFactory(hostname="w2")
    out = StringIO()
    call_command("taskengine", "worker", "drain", str(worker.id), "--by", "ops", stdout=out)
    assert f"worker w2:{worker.pid} ({worker.id}) asked to drain" in out.getvalue()
    worker.refresh_from_db()
    assert (worker.control_requested, worker.control_requested_by) == ("drain", "ops")
    call_command("taskengine", "worker", "kill", str(worker.id), "--reason", "wedged", stdout=out)
    worker.refresh_from_db()
    assert worker.control_requested == "kill"
    entry = ops.audit_entries("worker", worker.id, using="default")[0]
    assert (entry.action, entry.source, entry.reason) == ("hard_stop_worker", "cli", "wedged")
    with pytest.raises(CommandError, match="being hard-stopped.*Nothing was changed"):
        call_command("taskengine", "worker", "stop", str(worker.id))
