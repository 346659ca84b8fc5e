"""The completer: finished attempts written in one batch through a real worker session."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import pytest
from django.db import connection

from django_taskengine.core import lifecycle
from django_taskengine.models import Attempt, AttemptOutcome, Job, JobStatus
from django_taskengine.signals import job_finished
from django_taskengine.worker.claimer import Claimer, Running
from django_taskengine.worker.completer import Completer
from django_taskengine.worker.runner import RunResult
from tests.testapp.tasks import add, always_fail

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def reported() -> Iterator[list[tuple[int, str]]]:
    """(job id, attempt outcome) of every ``job_finished`` signal sent during the test."""
    received: list[tuple[int, str]] = []

    def receiver(sender: object, job_id: int, outcome: str, **_: object) -> None:
        received.append((job_id, outcome))

    job_finished.connect(receiver)
    yield received
    job_finished.disconnect(receiver)


def _start_all(claimer: Claimer) -> list[Running]:
    """Take the claimed jobs from the inbox as runner threads do."""
    entries = claimer.take_unstarted()
    for entry in entries:
        entry.started = time.monotonic()
    return entries


def _advisory_locks() -> int:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND database = "
            "(SELECT oid FROM pg_database WHERE datname = current_database())"
        )
        return cursor.fetchone()[0]


def test_a_batch_of_outcomes_is_written_in_one_flush_and_counted(session, reported):
    ok, failing = add.enqueue(1, 2), always_fail.enqueue()
    claimer = Claimer(concurrency=2)
    claimer.claim(session)
    completer = Completer(claimer)
    for entry in _start_all(claimer):
        if entry.job.id == ok.id:
            outcome = lifecycle.succeeded(entry.job, "3")
        else:
            outcome = lifecycle.raised(entry.job, ValueError("boom"))
        completer.done.append((entry, RunResult(outcome)))
    completer.collect()
    assert not claimer.running and not completer.done
    assert len(completer.outcomes) == 2
    if connection.vendor == "postgresql":
        assert len(completer.unlock) == 2
        assert _advisory_locks() == 2
    completer.flush(session)
    assert completer.outcomes == [] and completer.unlock == []
    assert (completer.succeeded, completer.failed) == (1, 0)  # jobs: the failed one is retried
    if connection.vendor == "postgresql":
        assert _advisory_locks() == 0
    ok.refresh_from_db()
    failing.refresh_from_db()
    assert (ok.status, ok.result) == (JobStatus.SUCCEEDED, 3)
    # One attempt of two: the failure is retried.
    assert (failing.status, failing.error) == (JobStatus.QUEUED, "ValueError: boom")
    assert Attempt.objects.count() == 2
    assert sorted(reported) == sorted(
        [(ok.id, AttemptOutcome.SUCCEEDED), (failing.id, AttemptOutcome.FAILED)]
    )


def test_an_outcome_the_store_fences_out_is_reported_superseded_and_not_counted(session, reported):
    job = add.enqueue(1, 2)
    claimer = Claimer(concurrency=1)
    claimer.claim(session)
    (entry,) = _start_all(claimer)
    # Meanwhile another attempt took the job over (a rescue, say): the token moved on.
    Job.objects.filter(id=job.id).update(token=uuid.uuid4())
    completer = Completer(claimer)
    completer.done.append((entry, RunResult(lifecycle.succeeded(entry.job, "3"))))
    completer.collect()
    completer.flush(session)
    assert reported == [(job.id, AttemptOutcome.SUPERSEDED)]
    assert (completer.succeeded, completer.failed) == (0, 0)
    job.refresh_from_db()
    assert job.status == JobStatus.RUNNING and job.result is None
    assert not Attempt.objects.filter(outcome=AttemptOutcome.SUCCEEDED).exists()


def test_a_given_up_attempt_is_written_once_and_its_late_result_ignored(session, reported):
    job = add.enqueue(1, 2)
    claimer = Claimer(concurrency=1)
    claimer.claim(session)
    (entry,) = _start_all(claimer)
    completer = Completer(claimer)
    completer.give_up(entry, lifecycle.timed_out(entry.job))
    assert entry.abandoned and job.id not in claimer.running
    # The thread finishes after all: its result must not overwrite the timeout.
    completer.done.append((entry, RunResult(lifecycle.succeeded(entry.job, "3"))))
    completer.collect()
    completer.flush(session)
    assert reported == [(job.id, AttemptOutcome.TIMED_OUT)]
    assert (completer.succeeded, completer.failed) == (0, 0)  # jobs: the timed-out one is retried
    job.refresh_from_db()
    assert job.status == JobStatus.QUEUED and job.result is None
    assert list(Attempt.objects.values_list("outcome", flat=True)) == [AttemptOutcome.TIMED_OUT]


def test_an_already_committed_outcome_is_reported_without_a_write(session, reported):
    job = add.enqueue(1, 2)
    claimer = Claimer(concurrency=1)
    claimer.claim(session)
    (entry,) = _start_all(claimer)
    completer = Completer(claimer)
    outcome = lifecycle.succeeded(entry.job, "3")
    completer.done.append((entry, RunResult(outcome, committed=True)))
    completer.collect()
    assert completer.outcomes == []
    assert reported == [(job.id, AttemptOutcome.SUCCEEDED)]
    assert completer.succeeded == 1
    # Only its lock (where there is one) waits for the flush.
    assert completer.unlock == ([job.id] if entry.job.locked else [])


@pytest.mark.parametrize("burst", [True, False])
def test_burst_mode_waits_for_a_quick_retry_it_scheduled(session, burst):
    always_fail.enqueue()  # retry_backoff=0.05
    claimer = Claimer(concurrency=1)
    claimer.claim(session)
    (entry,) = _start_all(claimer)
    completer = Completer(claimer, burst=burst)
    outcome = lifecycle.raised(entry.job, ValueError("boom"))
    completer.done.append((entry, RunResult(outcome)))
    completer.collect()
    before = time.monotonic()
    completer.flush(session)
    if burst:
        assert completer.burst_retry_until >= before + outcome.retry_delay
    else:
        assert completer.burst_retry_until == 0.0
