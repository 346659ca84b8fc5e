"""A hard stop ends the attempt: an operator's hard cancel or hard pause of a running task that
never checkpoints stops its code with its worker process (replaced by the supervisor), and only
then is the job marked cancelled or paused — with real worker processes.

The task under test appends a timestamped line to a file every 20 ms and never checkpoints: the
file shows when its code last ran.
"""

from __future__ import annotations

import datetime as dt
import time
from pathlib import Path

import pytest

from django_taskengine import operations as ops
from django_taskengine.models import Job, JobStatus
from tests.helpers import process_alive, wait_for
from tests.testapp.models import LedgerEntry
from tests.testapp.tasks import beats_into_file, fail_when_told, sleep_and_record, steps

pytestmark = pytest.mark.django_db(transaction=True)


def _started(job: Job, attempt: int = 1) -> LedgerEntry | None:
    return LedgerEntry.objects.filter(job_id=job.id, attempt=attempt).first()


def _status(job: Job, status: str) -> bool:
    job.refresh_from_db()
    return job.status == status


def _beats(path: Path, attempt: int) -> list[float]:
    """The times (time.time()) at which the task's attempt ``attempt`` wrote to ``path``."""
    if not path.exists():
        return []
    lines = [line.split() for line in path.read_text().splitlines()]
    return [float(when) for number, when in lines if int(number) == attempt]


def _assert_code_stopped(path: Path, attempt: int, marked_at: dt.datetime, pid: int) -> None:
    """The attempt's code no longer runs: its process is gone, it wrote nothing after the job
    was marked, and nothing more comes."""
    assert not process_alive(pid), (
        "the job was marked while the stopped attempt's process was alive"
    )
    beats = _beats(path, attempt)
    assert beats, "the task never ran"
    assert max(beats) <= marked_at.timestamp(), (max(beats), marked_at.timestamp())
    time.sleep(0.3)  # ten beats' worth: a live thread would have written by now
    assert _beats(path, attempt) == beats


def test_a_hard_cancel_ends_a_task_without_checkpoints_and_spares_its_sibling(
    start_workers, tmp_path
):
    path = tmp_path / "beats"
    job = beats_into_file.enqueue(path=str(path))
    sibling = sleep_and_record.enqueue(seconds=3.0)
    workers = start_workers("--processes", "1", "--concurrency", "2", "--shutdown-timeout", "30")
    start = wait_for(lambda: _started(job), timeout=30, message="the attempt to start")
    wait_for(lambda: _started(sibling), timeout=30, message="the sibling to start")
    asked = time.monotonic()

    ops.cancel_job(job.id, hard=True, by="alice", reason="runaway")

    job.refresh_from_db()
    assert job.status == JobStatus.RUNNING and job.stop_requested == "cancel:hard"
    wait_for(lambda: _status(job, JobStatus.CANCELLED), timeout=60, message="the hard cancel")
    took = time.monotonic() - asked
    logs = workers.log()
    _assert_code_stopped(path, 1, job.finished_at, start.pid)
    assert job.stop_requested == "" and job.finished_at is not None
    assert "hard stop" in job.error
    assert list(job.attempt_set.values_list("outcome", flat=True)) == ["cancelled"]
    assert _started(job, attempt=2) is None  # never run again
    # The sibling on the same process ran to its end first; the process exited after it.
    finished = sibling.wait(timeout=30)
    assert finished.status == JobStatus.SUCCEEDED, logs[-3000:]
    assert list(finished.attempt_set.values_list("outcome", flat=True)) == ["succeeded"]
    assert finished.finished_at <= job.finished_at
    assert took < 20, (took, logs[-3000:])
    warnings = [line for line in logs.splitlines() if "hard-cancelled by an operator" in line]
    assert len(warnings) == 1 and " WARNING " in warnings[0] and f"job {job.id} " in warnings[0]
    assert "asked to be replaced" in logs
    # The replacement process runs jobs as usual.
    assert sleep_and_record.enqueue(seconds=0).wait(timeout=30).status == JobStatus.SUCCEEDED


def test_a_hard_cancel_of_a_lone_task_ends_it_within_seconds(start_workers, tmp_path):
    path = tmp_path / "beats"
    job = beats_into_file.enqueue(path=str(path))
    start_workers("--processes", "1", "--concurrency", "1")
    start = wait_for(lambda: _started(job), timeout=30, message="the attempt to start")
    asked = time.monotonic()
    ops.cancel_job(job.id, hard=True)
    wait_for(lambda: _status(job, JobStatus.CANCELLED), timeout=30, message="the hard cancel")
    took = time.monotonic() - asked
    _assert_code_stopped(path, 1, job.finished_at, start.pid)
    # The heartbeat that brings the request, the process's exit, and the replacement's rescue
    # (RESCUE_GRACE 1.5 s + a heartbeat in the test settings; a lease of 2 s on SQLite).
    assert took < 10, took
    print(f"hard cancel of a lone task: cancelled {took:.2f} s after the request")


def test_a_hard_stopped_attempt_whose_thread_ends_first_is_recorded_then(start_workers):
    # It fails on its own 3 s after its start, while its sibling keeps the process busy.
    job = fail_when_told.enqueue(seconds=3.0)
    sibling = sleep_and_record.enqueue(seconds=10.0)
    start_workers("--processes", "1", "--concurrency", "2", "--shutdown-timeout", "30")
    start = wait_for(lambda: _started(job), timeout=30, message="the attempt to start")
    wait_for(lambda: _started(sibling), timeout=30, message="the sibling to start")

    ops.cancel_job(job.id, hard=True)

    wait_for(lambda: _status(job, JobStatus.CANCELLED), timeout=30, message="the hard cancel")
    # Recorded as its thread ended, not at the exit: the process still runs the sibling.
    assert process_alive(start.pid)
    sibling.refresh_from_db()
    assert sibling.status == JobStatus.RUNNING
    assert list(job.attempt_set.values_list("outcome", flat=True)) == ["cancelled"]
    assert "hard stop" in job.error
    assert sibling.wait(timeout=30).status == JobStatus.SUCCEEDED
    assert _started(job, attempt=2) is None


def test_a_hard_pause_ends_the_attempt_and_a_resume_runs_only_after_its_code_stopped(
    start_workers, tmp_path
):
    path = tmp_path / "beats"
    job = beats_into_file.enqueue(path=str(path))
    # Two processes: the other one is free to take the resumed job at once.
    start_workers("--processes", "2", "--concurrency", "1")
    first = wait_for(lambda: _started(job), timeout=30, message="the attempt to start")
    asked = time.monotonic()
    ops.pause_job(job.id, hard=True)
    wait_for(lambda: _status(job, JobStatus.PAUSED), timeout=30, message="the hard pause")
    took = time.monotonic() - asked
    assert job.stop_requested == "pause:hard"  # which pause holds it (only resume_job ends it)
    assert job.attempts == 0  # a pause does not use up an attempt
    assert list(job.attempt_set.values_list("outcome", flat=True)) == ["paused"]
    _assert_code_stopped(path, 1, job.attempt_set.get().finished_at, first.pid)
    stopped_at = max(_beats(path, 1))

    ops.resume_job(job.id)

    # The resumed run (attempt 1 again: the pause gave the attempt back) runs in a live process.
    second = wait_for(lambda: _second(job), timeout=30, message="the resumed run")
    assert second.pid != first.pid and process_alive(second.pid)
    wait_for(lambda: _beats_after(path, stopped_at), timeout=30, message="the resumed run's beats")
    assert took < 10, took
    print(f"hard pause of a lone task: paused {took:.2f} s after the request")


def _second(job: Job) -> LedgerEntry | None:
    """The start of the run after the resume (a pause refunds the attempt: same number)."""
    starts = list(LedgerEntry.objects.filter(job_id=job.id, label="start").order_by("id"))
    return starts[1] if len(starts) > 1 else None


def _beats_after(path: Path, moment: float) -> list[float]:
    return [when for when in _beats(path, 1) if when > moment]


def test_pausing_a_task_type_with_stop_running_pauses_its_running_jobs_until_resumed(
    start_workers,
):
    job = steps.enqueue(total=300, step_sleep=0.01)
    other = sleep_and_record.enqueue(seconds=1.5)
    start_workers("--processes", "1", "--concurrency", "2")
    wait_for(lambda: _started(other), timeout=30, message="the other task to start")
    wait_for(lambda: (job.refresh_from_db() or job.progress_current or 0) >= 5, timeout=30)

    ops.pause_task(steps.name, stop_running=True)

    wait_for(lambda: _status(job, JobStatus.PAUSED), timeout=30, message="the task's pause")
    assert job.stop_requested == "pause:task"
    assert other.wait(timeout=30).status == JobStatus.SUCCEEDED  # another task type runs on
    done = job.progress_current

    ops.resume_task(steps.name)

    finished = job.wait(timeout=60)
    assert finished.status == JobStatus.SUCCEEDED
    assert finished.result == {"steps": 300}
    # It went on from its checkpoint, not from the start.
    assert LedgerEntry.objects.filter(job_id=job.id, label="steps-0").count() == 1
    assert done and done < 300
