"""Quotas (flow_claim and flow_quota_claim in store/sql/postgres.sql): while a queue's limits
are far from binding, a claim in one statement that read only that queue's lane grants its
worker a number of starts in the lane, which it makes without the flow lock until the quota
ends. Every flow claim counts a quota's starts as running (its concurrency limit) and its rate
window holds them at the quota's end, so the limits hold whichever way a job starts."""

from __future__ import annotations

import time
import uuid
from bisect import bisect_right

import pytest
from django.db import connection

from django_taskengine import operations
from django_taskengine.core import lifecycle
from django_taskengine.core.flow import QUOTA_SECONDS, Usage, record_starts
from django_taskengine.models import FlowQuota, Job, JobStatus, RateWindow
from django_taskengine.store.flow_source import Ask, Quota, policy, policy_json
from tests.helpers import committed_db, direct_connection, each_in_a_thread, in_thread, wait_for
from tests.testapp.flow_tasks import five_per_second, flow_step

pytestmark = [
    committed_db,
    pytest.mark.skipif(connection.vendor != "postgresql", reason="PostgreSQL statements"),
]

STEP = "tests.testapp.flow_tasks.flow_step"


def _fast(session, *, start, quota, after=""):
    """A claim in one statement that asks for a quota of ``quota`` starts."""
    source = session._flow_source
    ask = Ask(after=after, per_lane=start, cap=4 * start + 16)
    return source.fast(
        ask, start=start, park=[], policy=policy_json(session.flow.seen), quota=quota
    )


def _learn_limits(session):
    """A claim made job by job that starts nothing: the session reads the limits in force."""
    session.flow.binding = True
    session.flow.claim(session._flow_source, free=0, start=0, park=())


def _running_in(read, queue):
    return sum(n for kind, n in read.running if kind.queue == queue)


def _granted(session):
    """Four jobs under a queue limit far from binding, one started by a claim in one statement
    that granted a quota (returned as it came back)."""
    operations.set_queue_limits("flow", concurrency=100)
    for n in range(4):
        flow_step.enqueue(label=str(n))
    _learn_limits(session)
    fast = _fast(session, start=1, quota=8)
    assert fast.started and fast.quota is not None
    return fast


def _minute_quota(session):
    """The quota :func:`_granted` grants, with its end a minute on, so that what a test shows
    does not depend on how fast it runs."""
    fast = _granted(session)
    return Quota(fast.quota.lane, fast.quota.starts, fast.read.now + 60)


def test_a_claim_far_from_its_limit_quotas_starts_that_every_claim_counts(open_sessions):
    operations.set_queue_limits("flow", concurrency=100)
    for n in range(20):
        flow_step.enqueue(label=str(n))
    holder, other = open_sessions(2)
    _learn_limits(holder)
    _learn_limits(other)
    fast = _fast(holder, start=2, quota=8)
    assert fast.started and len(fast.jobs) == 2
    assert fast.quota is not None
    assert (fast.quota.lane, fast.quota.starts) == ("q:flow", 8)
    assert fast.quota.until == pytest.approx(fast.read.now + QUOTA_SECONDS)
    row = FlowQuota.objects.get()
    assert (row.worker_id, row.scope, row.starts) == (holder.worker.id, "q:flow", 8)
    # Another worker's claim counts the 2 started and the 8 through_quota as running.
    counted = _fast(other, start=1, quota=0)
    assert counted.started
    assert _running_in(counted.read, "flow") == 2 + 8
    # So does the count a worker of the previous release reads (taskengine_flow_usage).
    with direct_connection() as conn:
        (running,) = conn.execute(
            "SELECT o_running FROM taskengine_flow_usage(%s)",
            [other._flow_source.lock_key],
        ).fetchone()
    assert ["flow", "", None, None, 8] in running
    assert sum(n for queue, _, _, _, n in running if queue == "flow") == 3 + 8


def test_a_limit_holds_while_a_quota_has_starts_left(open_sessions):
    """Another worker claims what the limit leaves beside the quota's starts; the holder then
    makes them: the limit is reached, not exceeded."""
    operations.set_queue_limits("flow", concurrency=20)
    for n in range(40):
        flow_step.enqueue(label=str(n))
    holder, other = open_sessions(2)
    _learn_limits(holder)
    _learn_limits(other)
    fast = _fast(holder, start=2, quota=8)  # 2 started + 8 through_quota: half the limit
    assert fast.quota is not None
    # A quota of a minute: what this test shows must not depend on how fast it runs.
    quota = Quota(fast.quota.lane, fast.quota.starts, fast.read.now + 60)
    FlowQuota.objects.update(until=quota.until)
    taken = []
    while claimed := other.claim(4):
        other.flow.notified()
        taken += claimed
    assert len(taken) == 20 - 2 - 8
    assert len(holder._flow_source.quota_claim(quota, limit=8, tasks=[])) == 8
    assert Job.objects.filter(status=JobStatus.RUNNING).count() == 20


def test_a_grant_deletes_the_quotas_that_ended_a_minute_ago(session):
    """Dead workers leave their quota rows behind: a grant deletes the other workers' rows
    that ended over a minute ago, and keeps the rest (they count no more once ended)."""
    now = time.time()
    dead, recent, live = (uuid.uuid4() for _ in range(3))
    FlowQuota.objects.bulk_create(
        [
            FlowQuota(worker_id=dead, scope="q:flow", starts=8, until=now - 600),
            FlowQuota(worker_id=dead, scope="q:other", starts=8, until=now - 61),
            FlowQuota(worker_id=recent, scope="q:flow", starts=8, until=now - 30),
            FlowQuota(worker_id=live, scope="q:flow", starts=8, until=now + 600),
        ]
    )
    _granted(session)
    left = set(FlowQuota.objects.values_list("worker_id", "scope"))
    assert left == {(recent, "q:flow"), (live, "q:flow"), (session.worker.id, "q:flow")}


@pytest.mark.parametrize(
    "limits",
    [
        # 2 to start + 8 through_quota would be more than half the limit.
        {"concurrency": 19},
        {"rate_limit": "19/m"},
    ],
)
def test_no_quota_while_a_limit_is_near(session, limits):
    operations.set_queue_limits("flow", **limits)
    for n in range(4):
        flow_step.enqueue(label=str(n))
    _learn_limits(session)
    fast = _fast(session, start=2, quota=8)
    assert fast.started and fast.quota is None
    assert not FlowQuota.objects.exists()


def test_no_quota_for_a_claim_that_read_another_lane_or_another_scope(session):
    operations.set_queue_limits("flow", concurrency=1000)
    operations.set_queue_limits("capped", concurrency=1000)
    flow_step.using(queue="flow").enqueue(label="a")
    flow_step.using(queue="capped").enqueue(label="b")
    _learn_limits(session)
    two_lanes = _fast(session, start=1, quota=8)
    assert two_lanes.started and two_lanes.quota is None, "another lane waits"
    # A task type with its own limit: its jobs belong to its scope as well.
    Job.objects.filter(queue="capped").delete()
    five_per_second.using(queue="flow").enqueue(label="c")
    _learn_limits(session)
    task_scope = _fast(session, start=1, quota=8)
    assert task_scope.started and task_scope.quota is None
    assert not FlowQuota.objects.exists()


def test_a_quota_starts_jobs_of_its_lane_only_until_its_end(session):
    operations.set_queue_limits("flow", concurrency=100)
    jobs = [flow_step.enqueue(label=str(n)) for n in range(6)]
    other_task = five_per_second.using(queue="flow", priority=-5).enqueue(label="t")
    Job.objects.filter(id=other_task.id).update(flow_key="q:flow")  # as if enqueued before
    _learn_limits(session)
    fast = _fast(session, start=1, quota=8)
    assert [job.id for job in fast.jobs] == [jobs[0].id] and fast.quota is not None
    source = session._flow_source
    # A quota of a minute: what this test shows must not depend on how fast it runs.
    quota = Quota(fast.quota.lane, fast.quota.starts, fast.read.now + 60)
    started = source.quota_claim(quota, limit=3, tasks=[five_per_second.name])
    assert [job.id for job in started] == [job.id for job in jobs[1:4]], "claim order"
    rows = Job.objects.filter(id__in=[job.id for job in started])
    assert all(job.status == JobStatus.RUNNING and job.attempts == 1 for job in rows)
    assert all(job.started_at.timestamp() <= quota.until for job in rows)
    assert Job.objects.get(id=other_task.id).status == JobStatus.QUEUED
    ended = Quota(fast.quota.lane, fast.quota.starts, fast.read.now - 1)
    assert source.quota_claim(ended, limit=2, tasks=[]) == [], "the database's clock decides"
    assert Job.objects.filter(status=JobStatus.QUEUED).count() == 3


@pytest.mark.parametrize("pause", ["queue", "task"])
def test_a_quota_starts_nothing_once_a_pause_has_returned(session, pause):
    quota = _minute_quota(session)
    if pause == "queue":
        operations.pause_queue("flow")
    else:
        operations.pause_task(STEP)
    assert session._flow_source.quota_claim(quota, limit=3, tasks=[]) == []
    assert Job.objects.filter(status=JobStatus.QUEUED).count() == 3


def test_a_quota_starts_no_park_job_ahead_of_a_free_thread(session):
    """A task parked when its worker dies is never started ahead of a thread free to run it
    (it would be parked having never run): through a quota either."""
    fast = _granted(session)
    held, source = session.flow.quota, session._flow_source

    def hold_for_a_minute():
        held.granted(fast)
        held.held = Quota(fast.quota.lane, fast.quota.starts, fast.read.now + 60)
        held.ends = time.monotonic() + 60

    hold_for_a_minute()
    assert held.claim(source, free=1, start=3, park=[STEP]) == []
    assert Job.objects.filter(status=JobStatus.RUNNING).count() == 1
    assert held.held is None, "dropped: the next claim reads every lane"
    hold_for_a_minute()
    assert len(held.claim(source, free=3, start=3, park=[STEP])) == 3


def test_a_quota_claim_waits_while_a_flow_claim_holds_the_lock(session):
    """A claim that counts (it holds the flow lock alone) never runs while a claim through a
    quota is making starts it could not see: the quota claim waits for it, and starts after."""
    quota = _minute_quota(session)
    source = session._flow_source
    results: list = []
    errors: list = []
    with direct_connection() as holder, direct_connection() as probe:
        with holder.transaction():
            holder.execute("SELECT pg_advisory_xact_lock(%s)", [source.lock_key])
            thread = in_thread(
                lambda: source.quota_claim(quota, limit=2, tasks=[]), results, errors
            )
            wait_for(
                lambda: probe.execute(
                    "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' "
                    "AND NOT granted AND mode = 'ShareLock')"
                ).fetchone()[0],
                timeout=10,
                message="the quota claim waiting for the lock",
            )
            assert Job.objects.filter(status=JobStatus.RUNNING).count() == 1
            (released,) = holder.execute("SELECT clock_timestamp()").fetchone()
    thread.join(10)
    assert not errors, errors
    (started,) = results
    assert len(started) == 2
    assert all(job.started_at >= released for job in started)


def test_a_rate_quota_counts_its_starts_at_its_end_before_the_last_entry(session):
    operations.set_queue_limits("flow", rate_limit="100/s")
    for n in range(6):
        flow_step.enqueue(label=str(n))
    _learn_limits(session)
    fast = _fast(session, start=2, quota=8)
    assert fast.quota is not None
    now, until = fast.read.now, fast.quota.until
    assert until == pytest.approx(now + QUOTA_SECONDS)
    written = RateWindow.objects.get(scope="q:flow").starts
    assert [value for entry in written for value in entry] == pytest.approx([until, 8, now, 2])
    # A later claim's starts join the last entry, never the quota's: its stamp stays.
    rules = policy(fast.read.queues)
    usage = Usage(now + 0.001, starts={"q:flow": written})
    jobs = [job for job, _ in session._flow_source.candidates(Ask(per_lane=2, cap=2))]
    after = record_starts(rules, usage, jobs)["q:flow"]
    assert after[0] == pytest.approx([until, 8])
    assert after[1] == pytest.approx([now + 0.001, 2 + len(jobs)])


def _work_side_by_side(sessions, queue, *, finish_at_once):
    """Sessions claim in threads until no job of ``queue`` waits: each holds what it claims
    until it can claim no more (or, ``finish_at_once``, finishes it at once). Returns the
    number of jobs running after each claim, and the number of claims made through quotas."""
    seen: list[int] = []
    through_quota = [0]
    for session in sessions:
        source = session._flow_source
        claim = source.quota_claim

        def counting(*args, _claim=claim, **kwargs):
            through_quota[0] += 1
            return _claim(*args, **kwargs)

        source.quota_claim = counting

    def work(session):
        held = []
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            session.flow.notified()
            claimed = session.claim(2)
            held += claimed
            seen.append(Job.objects.filter(queue=queue, status=JobStatus.RUNNING).count())
            if held and (finish_at_once or not claimed):
                session.finish(
                    [lifecycle.succeeded(job, "null") for job in held],
                    [job.id for job in held if job.locked],
                )
                held = []
            elif not held and not Job.objects.filter(queue=queue, status=JobStatus.QUEUED):
                return

    each_in_a_thread(work, sessions)
    return seen, through_quota[0]


def test_sessions_claiming_through_quotas_and_job_by_job_never_exceed_a_limit(open_sessions):
    """Four sessions claim 2 at a time under a queue limit of 100 and hold their jobs until
    they can claim no more: the first claims quota starts (100 is far from binding then), the
    later ones are made job by job as the limit binds; never more than 100 run."""
    operations.set_queue_limits("flow", concurrency=100)
    jobs = [flow_step.enqueue(label=str(n)) for n in range(300)]
    seen, through_quota = _work_side_by_side(open_sessions(4), "flow", finish_at_once=False)
    assert through_quota, "some claims went through quotas"
    assert max(seen) <= 100, f"at most 100 running, seen {max(seen)}"
    assert max(seen) >= 50, "the limit was approached"
    finished = Job.objects.filter(id__in=[job.id for job in jobs])
    assert finished.filter(status=JobStatus.SUCCEEDED).count() == len(jobs)
    assert not finished.filter(attempts__gt=1).exists()


def test_sessions_claiming_through_quotas_never_exceed_a_rate_limit(open_sessions):
    """300 jobs under 100/s, claimed by four sessions through quotas while the window is at
    most half full and job by job after: no interval of a second holds more than 100 starts,
    by the start times the database stamped."""
    operations.set_queue_limits("flow", rate_limit="100/s")
    jobs = [flow_step.enqueue(label=str(n)) for n in range(300)]
    _, through_quota = _work_side_by_side(open_sessions(4), "flow", finish_at_once=True)
    assert through_quota, "some claims went through quotas"
    finished = Job.objects.filter(id__in=[job.id for job in jobs])
    assert finished.filter(status=JobStatus.SUCCEEDED).count() == len(jobs)
    starts = sorted(job.started_at.timestamp() for job in finished)
    busiest = max(bisect_right(starts, at + 1.0) - n for n, at in enumerate(starts))
    assert busiest <= 100, f"{busiest} starts in one second"


def test_a_session_claims_on_through_its_quota_without_being_woken(session):
    """A claim through a quota that makes its last starts, fewer than the session could take,
    still leaves the session looking for more at its next round."""
    operations.set_queue_limits("flow", concurrency=1000)
    jobs = [flow_step.enqueue(label=str(n)) for n in range(30)]
    _learn_limits(session)
    session.flow.notified()
    taken = session.claim(4)  # in one statement, with a quota of 16 starts
    assert session.flow.quota.held is not None
    while claimed := session.claim(10):  # 10, then the quota's last 6, ...
        taken += claimed
    assert sorted(job.id for job in taken) == [job.id for job in jobs]
