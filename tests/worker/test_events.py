"""``send_event(name, payload)`` and ``ctx.wait_for_event(name, timeout=...)``: a parked job
holds no thread and uses no attempt, wakes when its event is sent (only if the sender's
transaction commits) or when its wait times out, and gets an event sent before it waited —
with real worker processes, on PostgreSQL and SQLite."""

from __future__ import annotations

import pytest
from django.db import transaction

from django_taskengine import NotJSONError, send_event
from django_taskengine.models import Event, Job, JobStatus
from tests.factories import claimed_job
from tests.helpers import attempt_outcomes, burst, ledger_labels, wait_for
from tests.testapp.models import LedgerEntry
from tests.testapp.sleep_tasks import wait_after_a_moment, wait_for_payment, wait_then_sleep

with_workers = pytest.mark.django_db(transaction=True)


def _parked(job: Job) -> bool:
    job.refresh_from_db()
    return job.status == JobStatus.QUEUED and job.waiting_for is not None


@with_workers
def test_a_parked_job_wakes_when_its_event_is_sent(start_workers):
    job = wait_for_payment.enqueue(order=17)
    start_workers("--processes", "1", "--concurrency", "1")
    wait_for(lambda: _parked(job), timeout=30, message="the job to park")
    assert job.waiting_for == "paid:17"
    assert job.attempts == 0
    assert job.error.startswith("waiting for event 'paid:17' (ctx.wait_for_event)")
    # Parked: the only thread is free for other work meanwhile.
    other = wait_for_payment.enqueue(order=18)
    wait_for(lambda: _parked(other), timeout=30, message="a second job to park")

    event_id = send_event("paid:17", {"amount": 42})

    finished = job.wait(timeout=30)
    assert (finished.status, finished.result, finished.attempts) == (
        JobStatus.SUCCEEDED,
        {"amount": 42},
        1,
    )
    assert attempt_outcomes(finished) == ["snoozed", "succeeded"]
    assert ledger_labels(finished.id) == ["start", "start", "got {'amount': 42}"]
    assert finished.waiting_for is None
    assert Event.objects.get(pk=event_id).payload == {"amount": 42}
    other.refresh_from_db()
    assert other.status == JobStatus.QUEUED  # another order's event: still parked


@with_workers
def test_an_event_sent_before_the_wait_is_got_at_once(start_workers):
    job = wait_for_payment.enqueue(order=5)
    send_event("paid:5", "early")

    burst(start_workers, job)

    assert (job.status, job.result) == (JobStatus.SUCCEEDED, "early")
    assert attempt_outcomes(job) == ["succeeded"]  # never parked


@with_workers
def test_an_event_sent_before_the_job_was_enqueued_does_not_count(start_workers):
    send_event("paid:6", "too early")
    job = wait_for_payment.enqueue(order=6, timeout=0.3)

    burst(start_workers, job)

    assert (job.status, job.result) == (JobStatus.SUCCEEDED, None)
    assert attempt_outcomes(job) == ["snoozed", "succeeded"]


@with_workers
def test_a_wait_that_times_out_returns_none(start_workers):
    job = wait_for_payment.enqueue(order=7, timeout=0.5)

    burst(start_workers, job)

    assert (job.status, job.result, job.attempts) == (JobStatus.SUCCEEDED, None, 1)
    assert ledger_labels(job.id) == ["start", "start", "got None"]
    # An event sent after the wait ended does not change what it returned.
    send_event("paid:7", "late")
    assert Job.objects.get(pk=job.pk).status == JobStatus.SUCCEEDED


@with_workers
def test_an_event_in_a_rolled_back_transaction_is_not_sent(start_workers):
    job = wait_for_payment.enqueue(order=8, timeout=2)
    start_workers("--processes", "1")
    wait_for(lambda: _parked(job), timeout=30, message="the job to park")

    with pytest.raises(RuntimeError), transaction.atomic():
        send_event("paid:8", "never")
        raise RuntimeError("the sender's transaction fails")

    assert not Event.objects.exists()
    finished = job.wait(timeout=30)
    assert finished.result is None  # timed out: the event was never sent


@with_workers
def test_an_event_sent_as_its_job_parks_is_not_missed(start_workers):
    # Each job's event is sent once the job has started: while it works, as it decides to
    # park, or once parked. A job that parked unseen by its event would wait out its minute.
    jobs = [wait_after_a_moment.enqueue(name=f"race:{n}", delay=(n % 5) * 0.01) for n in range(20)]
    start_workers("--processes", "2", "--concurrency", "2")
    for n, job in enumerate(jobs):
        wait_for(
            lambda job=job: LedgerEntry.objects.filter(job_id=job.id).exists(),
            timeout=30,
            message=f"job {n} to start",
        )
        send_event(f"race:{n}", n)
    for n, job in enumerate(jobs):
        assert job.wait(timeout=30).result == n


@with_workers
def test_waits_and_sleeps_keep_their_order_across_runs(start_workers):
    job = wait_then_sleep.enqueue(order=9)
    send_event("paid:9", [1, 2])

    burst(start_workers, job)

    assert (job.status, job.result) == (JobStatus.SUCCEEDED, [1, 2])
    assert attempt_outcomes(job) == ["snoozed", "succeeded"]
    assert [wait.get("event", "sleep") for wait in job.waits] == ["paid:9", "sleep"]


@pytest.mark.django_db
def test_a_bad_event_is_refused_when_it_is_sent():
    with pytest.raises(ValueError, match="send_event\\(name\\) must be a non-empty string"):
        send_event("", 1)
    with pytest.raises(NotJSONError, match="an event's payload is stored as JSON"):
        send_event("paid:1", {"when": object()})
    assert not Event.objects.exists()


def test_a_bad_wait_is_refused():
    from django_taskengine.context import TaskContext

    ctx = TaskContext(claimed_job())
    with pytest.raises(ValueError, match="ctx.wait_for_event\\(name\\) must be"):
        ctx.wait_for_event("")
    with pytest.raises(ValueError, match="^ctx.wait_for_event\\(timeout\\) needs a finite"):
        ctx.wait_for_event("x", timeout=-1)
    with pytest.raises(TypeError, match="not available in an atomic task"):
        TaskContext(claimed_job(), atomic=True).wait_for_event("x")
