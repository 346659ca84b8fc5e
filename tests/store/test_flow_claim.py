"""Flow control at the store: what one worker session's claims take when limits hold jobs back,
on PostgreSQL and SQLite (the worker tests prove the limits across processes)."""

from __future__ import annotations

import os
import sqlite3
import time
import uuid

import pytest
from django.db import connection

from django_taskengine import operations
from django_taskengine.core import lifecycle
from django_taskengine.models import Job, JobStatus, Queue, RateWindow
from django_taskengine.store import WorkerInfo, get_store
from django_taskengine.store.flow_source import Ask
from tests.helpers import committed_db, in_thread
from tests.testapp.flow_tasks import (
    five_per_second,
    flow_step,
    per_tenant,
    per_tenant_two,
    two_at_a_time,
)
from tests.testapp.tasks import noop

pytestmark = committed_db


def _finish(session, jobs):
    session.finish(
        [lifecycle.succeeded(job, "null") for job in jobs],
        [job.id for job in jobs if job.locked],
    )


def _claim(session, limit=10):
    # A fresh look every time: the claimer's pacing (how soon it looks again at jobs held back
    # by their limits) is the worker's business, not these tests'.
    session.flow.notified()
    return session.claim(limit)


def test_jobs_of_a_limited_queue_take_turns_up_to_the_limit(session):
    operations.set_queue_limits("flow", concurrency=2)
    jobs = [flow_step.enqueue(label=str(n)) for n in range(5)]
    assert {job.id for job in jobs} == set(
        Job.objects.filter(flow_key="q:flow").values_list("id", flat=True)
    )
    first = _claim(session)
    assert [job.id for job in first] == [jobs[0].id, jobs[1].id]
    assert all(not job.reserved for job in first), "flow jobs are started, never reserved"
    assert _claim(session) == []
    _finish(session, first[:1])
    second = _claim(session)
    assert [job.id for job in second] == [jobs[2].id]
    assert _claim(session) == []


def test_a_queue_without_limits_is_claimed_as_before(session):
    jobs = [noop.enqueue() for _ in range(3)]
    assert not Job.objects.exclude(flow_key=None).exists()
    claimed = session.claim(10)
    assert sorted(job.id for job in claimed) == [job.id for job in jobs]


def test_the_plain_claim_never_takes_a_job_under_flow_control(session):
    operations.set_queue_limits("flow", concurrency=1)
    held = flow_step.enqueue()
    plain = noop.enqueue()
    taken = session._claim_plain(10, free=10, start=10, park=())
    assert [job.id for job in taken] == [plain.id]
    assert Job.objects.get(id=held.id).status == JobStatus.QUEUED


def test_a_task_limit_counts_across_queues(session):
    first = two_at_a_time.using(queue="a").enqueue()
    second = two_at_a_time.using(queue="b").enqueue()
    third = two_at_a_time.using(queue="c").enqueue()
    assert Job.objects.get(id=first.id).flow_key == f"t:{two_at_a_time.name}"
    assert sorted(job.id for job in _claim(session)) == [first.id, second.id]
    assert _claim(session) == []
    Job.objects.filter(id=third.id).update(priority=5)
    assert _claim(session) == []


def test_groups_take_turns_and_each_holds_its_own_limit(session):
    a = [per_tenant.using(group="a").enqueue(label=f"a{n}") for n in range(3)]
    b = [per_tenant.using(group="b").enqueue(label=f"b{n}") for n in range(3)]
    claimed = _claim(session)
    assert sorted(job.id for job in claimed) == [a[0].id, b[0].id]
    _finish(session, claimed)
    assert sorted(job.id for job in _claim(session)) == [a[1].id, b[1].id]


def test_a_group_limit_above_one(session):
    jobs = [per_tenant_two.using(group="t").enqueue() for _ in range(4)]
    assert [job.id for job in _claim(session)] == [jobs[0].id, jobs[1].id]


def test_a_small_group_is_served_next_to_a_large_one(session):
    big = per_tenant_two.using(group="big").bulk_enqueue([((), {}) for _ in range(500)])
    small = per_tenant_two.using(group="small").enqueue()
    claimed = _claim(session, limit=4)
    assert small.id in {job.id for job in claimed}
    assert len([job for job in claimed if job.id != small.id]) == 2
    assert big


def test_lanes_take_turns_from_one_claim_to_the_next(session):
    # One job per claim: the lanes are served round-robin, not the first lane every time.
    for group in ("a", "b", "c"):
        flow_step.using(sequence=f"s-{group}").bulk_enqueue([((), {}) for _ in range(3)])
    seen = []
    for _ in range(3):
        (job,) = _claim(session, limit=1)
        seen.append(Job.objects.get(id=job.id).sequence_key)
        _finish(session, [job])
    assert sorted(seen) == ["s-a", "s-b", "s-c"]


def test_a_claim_reads_each_lane_once_from_the_one_after_its_cursor_round_to_it(session):
    # The cursor's own lane comes last, and once: read twice, its jobs would be offered twice.
    for queue in ("la", "lb", "lc"):
        operations.set_queue_limits(queue, concurrency=10)
        flow_step.using(queue=queue).bulk_enqueue([((), {}) for _ in range(2)])
    offered = session._flow_source.candidates(Ask(after="q:lb", per_lane=5, cap=50))
    assert [lane for _, lane in offered] == ["q:lc"] * 2 + ["q:la"] * 2 + ["q:lb"] * 2
    assert len({job.id for job, _ in offered}) == 6


def test_a_sequence_runs_one_at_a_time_in_enqueue_order(session):
    jobs = [flow_step.using(sequence="order-17").enqueue(label=str(n)) for n in range(3)]
    # A later member's higher priority does not put it first.
    Job.objects.filter(id=jobs[2].id).update(priority=9)
    for expected in jobs:
        (job,) = _claim(session)
        assert job.id == expected.id
        assert _claim(session) == []
        _finish(session, [job])


def test_a_sequence_member_that_ends_failed_does_not_block_the_next(session):
    first = flow_step.using(sequence="s").enqueue()
    second = flow_step.using(sequence="s").enqueue()
    (job,) = _claim(session)
    session.finish([lifecycle.failed(job, "boom", retryable=False)], [job.id] if job.locked else [])
    assert Job.objects.get(id=first.id).status == JobStatus.FAILED
    assert [job.id for job in _claim(session)] == [second.id]


def test_a_sequence_waits_for_its_first_member_to_be_retried(session):
    first = flow_step.using(sequence="s").enqueue()
    flow_step.using(sequence="s").enqueue()
    (job,) = _claim(session)
    session.finish([lifecycle.failed(job, "boom")], [job.id] if job.locked else [])
    assert Job.objects.get(id=first.id).status == JobStatus.QUEUED
    # Due later (its backoff): nothing after it may run meanwhile.
    assert _claim(session) == []


def test_a_rate_limit_counts_starts_in_a_sliding_window(session):
    jobs = five_per_second.bulk_enqueue([((), {}) for _ in range(8)])
    first = _claim(session)
    assert len(first) == 5
    assert _claim(session) == []
    window = RateWindow.objects.get(scope=f"t:{five_per_second.name}")
    assert sum(n for _, n in window.starts) == 5
    _finish(session, first)
    # Finishing frees no rate: only time does.
    assert _claim(session) == []
    time.sleep(1.05)
    assert len(_claim(session)) == 3
    assert len(jobs) == 8


def test_a_runtime_limit_overrides_the_setting_until_cleared(session, settings):
    settings.TASKENGINE = {**settings.TASKENGINE, "QUEUES": {"flow": {"concurrency": 1}}}
    operations.sync_settings()
    queue = Queue.objects.get(name="flow")
    assert (queue.concurrency, queue.rate_limit) == (1, "")
    operations.set_queue_limits("flow", concurrency=3, rate_limit="10/m")
    queue.refresh_from_db()
    assert (queue.concurrency, queue.rate_limit) == (3, "10/m")
    operations.set_queue_limits("flow", concurrency=None)
    queue.refresh_from_db()
    assert (queue.concurrency, queue.rate_limit) == (None, "10/m")
    operations.set_queue_limits("flow", concurrency=operations.SETTING, rate_limit=None)
    queue.refresh_from_db()
    assert (queue.concurrency, queue.rate_limit) == (1, "")


def test_a_queue_that_gets_a_limit_sends_its_waiting_jobs_to_the_flow_claim(session):
    waiting = flow_step.enqueue()
    assert Job.objects.get(id=waiting.id).flow_key is None
    operations.set_queue_limits("flow", concurrency=1)
    assert Job.objects.get(id=waiting.id).flow_key == "q:flow"
    operations.set_queue_limits("flow", concurrency=None)
    assert Job.objects.get(id=waiting.id).flow_key is None
    assert [job.id for job in session.claim(10)] == [waiting.id]


def test_jobs_enqueued_without_their_lane_are_given_it(session):
    stray = flow_step.enqueue()
    operations.set_queue_limits("flow", concurrency=1)
    # As if enqueued by a process that did not know of the limit yet.
    Job.objects.filter(id=stray.id).update(flow_key=None)
    assert session.claim(10) == [] or pytest.fail("a stray must not be claimed past the limit")
    assert operations.adopt_strays() == 1
    assert [job.id for job in _claim(session)] == [stray.id]


@pytest.mark.parametrize("value", [0, -1, "5", 1.5, True])
def test_a_bad_concurrency_is_refused(value):
    with pytest.raises((TypeError, ValueError), match="concurrency"):
        operations.set_queue_limits("flow", concurrency=value)


@pytest.mark.parametrize("value", ["14", "14/d", "0/s", "x/s", 14])
def test_a_bad_rate_is_refused(value):
    with pytest.raises(ValueError, match="rate_limit"):
        operations.set_queue_limits("flow", rate_limit=value)


@pytest.mark.parametrize("way", ["job by job", "in one statement"])
@pytest.mark.parametrize("scope", ["queue", "task", "engine"])
def test_the_flow_claim_starts_nothing_paused(session, scope, way):
    operations.set_queue_limits("flow", concurrency=5)
    job = flow_step.enqueue()
    if way == "in one statement":
        # A claim that starts nothing reads the limits; none binds, so the next claims are
        # made in one statement where the store has it (PostgreSQL; SQLite claims job by job).
        session.flow.claim(session._flow_source, free=0, start=0, park=())
        assert not session.flow.binding
    pause, resume = {
        "queue": (lambda: operations.pause_queue("flow"), lambda: operations.resume_queue("flow")),
        "task": (
            lambda: operations.pause_task(flow_step.name),
            lambda: operations.resume_task(flow_step.name),
        ),
        "engine": (operations.pause_all, operations.resume_all),
    }[scope]
    pause()
    assert _claim(session) == []
    assert Job.objects.get(id=job.id).status == JobStatus.QUEUED
    resume()
    assert [claimed.id for claimed in _claim(session)] == [job.id]


def test_a_flow_claim_that_fails_starts_nothing_and_lets_the_next_claim_in(session, monkeypatch):
    # The claim fails after it took the flow lock and read the counts: its transaction is
    # rolled back (the lock released, no job started), and the next claim, of this session or
    # another one, takes the jobs.
    operations.set_queue_limits("flow", concurrency=2)
    jobs = [flow_step.enqueue(label=str(n)) for n in range(2)]
    source = session._flow_source

    def fail(*args, **kwargs):
        raise RuntimeError("the claim fails before it starts its jobs")

    monkeypatch.setattr(source, "start", fail)
    with pytest.raises(RuntimeError, match="fails before"):
        _claim(session)
    monkeypatch.undo()
    assert not Job.objects.filter(status=JobStatus.RUNNING).exists()
    info = WorkerInfo(id=uuid.uuid4(), hostname="test", pid=os.getpid(), queues=[], concurrency=1)
    other = get_store().open_session(info)
    try:
        other.register()
        assert sorted(job.id for job in _claim(other)) == [job.id for job in jobs]
    finally:
        other.close()
    assert _claim(session) == []


def test_on_sqlite_a_claim_that_can_take_nothing_does_not_wait_for_the_write_lock(open_sessions):
    # SQLite has one write lock for the whole database: a worker whose jobs are held back by
    # their limits, looking again every 50 ms, or an idle one polling, would otherwise keep
    # heartbeats, outcomes and task code waiting for it.
    if connection.vendor != "sqlite":
        pytest.skip("SQLite's write lock")
    session, idle = open_sessions(2)
    operations.set_queue_limits("flow", concurrency=1)
    jobs = [flow_step.enqueue(label=str(n)) for n in range(2)]
    assert [job.id for job in _claim(session)] == [jobs[0].id]
    writer = sqlite3.connect(connection.settings_dict["NAME"], timeout=0, isolation_level=None)
    writer.execute("BEGIN IMMEDIATE")
    results: list = []
    errors: list = []
    try:
        # Held back by a limit (each claim runs the flow claim first, then the plain one), and
        # a session that has not claimed yet (its plain claim runs first).
        claims = in_thread(
            lambda: [_claim(session), _claim(session), idle.claim(10)], results, errors
        )
        claims.join(timeout=10)
        ended_under_the_lock = not claims.is_alive()
    finally:
        writer.rollback()
        writer.close()
    claims.join(timeout=30)
    assert ended_under_the_lock, "a claim that could take nothing waited for the write lock"
    assert errors == [] and results == [[[], [], []]]
