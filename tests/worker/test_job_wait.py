"""``job.wait()`` on PostgreSQL: told by the worker that ends the job's attempt, not polling —
for a plain task (write_outcomes) and an atomic one (finish_atomic); and polling again when no
worker writes the end."""

from __future__ import annotations

import json
import threading
import time

import pytest
from django.db import connection
from django.utils import timezone

from django_taskengine import operations as ops
from django_taskengine.conf import taskengine_settings
from django_taskengine.dispatch.options import redis_dispatch
from django_taskengine.dispatch.streams import GROUP, STREAMS, client, prefix, workers_group
from django_taskengine.models import Job, JobStatus, JobTimeoutError, Worker
from django_taskengine.store.sql import query
from tests.helpers import direct_connection, wait_for
from tests.testapp.tasks import add, noop, record_atomic, sleep_and_record

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif("connection.vendor != 'postgresql'"),
]

#: The waiter's poll interval in these tests: a wait that returns well before it was told.
SLOW_POLL = 30.0


def _idle_worker(start_workers) -> None:
    start_workers("--processes", "1")
    wait_for(Worker.objects.exists, timeout=30, message="the worker to register")


def _running(job: Job) -> None:
    wait_for(
        lambda: Job.objects.filter(pk=job.pk, status=JobStatus.RUNNING).exists(),
        timeout=30,
        message="the job to start",
    )


@pytest.mark.parametrize(
    ("task", "kwargs", "expected"),
    [(sleep_and_record, {"seconds": 1.0}, "slept"), (record_atomic, {"sleep": 1.0}, 1)],
    ids=["plain", "atomic"],
)
def test_wait_is_told_when_a_worker_finishes_the_job(start_workers, task, kwargs, expected):
    _idle_worker(start_workers)
    job = task.enqueue(**kwargs)
    _running(job)  # so that the wait has to be told: the job is not finished when it begins
    began = time.monotonic()

    finished = job.wait(timeout=60, poll_interval=SLOW_POLL)

    assert time.monotonic() - began < SLOW_POLL / 3
    assert (finished.status, finished.result) == (JobStatus.SUCCEEDED, expected)
    assert Job.objects.get(pk=job.pk).notify_finish  # the mark the worker read


def test_many_threads_waiting_on_their_jobs_are_all_told(start_workers):
    _idle_worker(start_workers)
    jobs = [sleep_and_record.enqueue(seconds=0.5, label=str(n)) for n in range(8)]
    _running(jobs[0])
    results: dict[int, object] = {}

    def wait(job: Job) -> None:
        try:
            results[job.pk] = job.wait(timeout=60, poll_interval=SLOW_POLL).result
        finally:
            connection.close()

    threads = [threading.Thread(target=wait, args=(job,)) for job in jobs]
    began = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert time.monotonic() - began < SLOW_POLL / 3
    assert results == {job.pk: "slept" for job in jobs}


def test_a_waits_mark_on_a_claimable_job_wakes_its_queues_workers():
    """The mark's lock may have made a claim pass the job by: a job the mark finds claimable
    wakes its queue's workers at the mark's commit; a job not due yet wakes none."""
    channel = taskengine_settings.NOTIFY_CHANNEL
    listener = direct_connection()
    try:
        listener.execute(f'LISTEN "{channel}"')
        due = noop.enqueue()
        later = noop.using(run_after=3600).enqueue()
        for job in (later, due):
            with pytest.raises(JobTimeoutError):
                job.wait(timeout=0.01)
        # A notification of our own, last: what the marks sent arrived before it.
        listener.execute("SELECT pg_notify(%s, 'end')", [channel])
        payloads = []
        for notice in listener.notifies(timeout=10):
            if notice.payload == "end":
                break
            payloads.append(notice.payload)
    finally:
        listener.close()
    # The enqueue of `due`, then the mark of `due` (the mark of `later` sent nothing).
    assert payloads == ["default", "default"]


def test_a_job_a_claim_passed_by_under_a_waits_mark_starts_when_the_mark_commits(start_workers):
    """job.wait() right after an enqueue marks the job as the claims its enqueue woke reach it:
    a claim that meets the mark's lock passes the job by (SKIP LOCKED). The job must start once
    the mark commits, while the worker's other job runs: under Redis Streams dispatch, the claim
    that passed it by must not have used up its delivery (no scan, no publishing again, would
    find it within the test)."""
    held = noop.enqueue()
    long = sleep_and_record.enqueue(seconds=5.0, label="long")
    mark = direct_connection()
    mark.autocommit = False
    try:
        # The mark of a wait on `held`, its transaction held open while the worker claims.
        params = {"id": held.pk, "channel": taskengine_settings.NOTIFY_CHANNEL}
        assert mark.execute(query("watch_finish"), params).fetchone() is not None
        # Neither a poll nor (under Redis Streams dispatch) the relay's publishing again may
        # start it within the test.
        overrides: dict[str, object] = {"POLL_INTERVAL": 60}
        if taskengine_settings.DISPATCH.get("BACKEND") == "redis-streams":
            overrides["DISPATCH"] = {**taskengine_settings.DISPATCH, "REPUBLISH_AFTER": 60}
        start_workers(
            "--processes",
            "1",
            "--concurrency",
            "2",
            TASKENGINE_TEST_OVERRIDES=json.dumps(overrides),
        )
        # The claim that took `long` passed `held` by; with a slot free the worker idles.
        _running(long)
        wait_for(lambda: _delivery_used_up(held.pk), timeout=30, message="held's delivery")
        assert Job.objects.get(pk=held.pk).status == JobStatus.QUEUED
        mark.commit()
    finally:
        mark.close()
    # Not job.wait(): its own mark would wake the worker.
    wait_for(
        lambda: Job.objects.filter(pk=held.pk, status=JobStatus.SUCCEEDED).exists(),
        timeout=30,
        message="the held job to run",
    )
    long.refresh_from_db()
    assert long.status == JobStatus.RUNNING or (
        Job.objects.get(pk=held.pk).started_at < long.finished_at
    ), "the held job waited for the next claim after the long one"


def _delivery_used_up(job_id: int) -> bool:
    """Under Redis Streams dispatch: the job's entry was delivered and acknowledged (its claim
    was tried). Always true under PostgreSQL dispatch."""
    options = redis_dispatch()
    if options is None:
        return True
    redis = client(options)
    try:
        base = prefix(options, taskengine_settings.DATABASE)
        for stream in (key(base, "default") for key in STREAMS):
            entries = [e for e, f in redis.xrange(stream) if f.get("id") == str(job_id)]
            if not entries:
                continue
            group = workers_group(redis.xinfo_groups(stream))
            pending = {p["message_id"] for p in redis.xpending_range(stream, GROUP, "-", "+", 1000)}
            delivered = group is not None and _entry_key(group["last-delivered-id"]) >= max(
                _entry_key(e) for e in entries
            )
            return delivered and not pending.intersection(entries)
        return False
    finally:
        redis.close()


def _entry_key(entry: str) -> tuple[int, int]:
    ms, seq = entry.split("-")
    return int(ms), int(seq)


def test_an_end_no_worker_writes_is_seen_by_polling():
    job = add.enqueue(a=1, b=1)  # no worker: an operator cancels it
    timer = threading.Timer(0.3, lambda: (ops.cancel_job(job.pk), connection.close()))
    timer.start()
    try:
        finished = job.wait(timeout=30, poll_interval=0.2)
    finally:
        timer.join()
    assert finished.status == JobStatus.CANCELLED
    assert finished.finished_at <= timezone.now()
