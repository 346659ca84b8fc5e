"""The flow claim in one statement (flow_claim in store/sql/postgres.sql): it starts a claim's
jobs only when every one of them may start, and then does what the claim made job by job in
Python would have done; when a limit would bind it starts nothing and the worker claims job by
job (tests/store/test_flow_claim.py proves those claims)."""

from __future__ import annotations

import time

import pytest
from django.db import connection

from django_taskengine import operations
from django_taskengine.core import lifecycle
from django_taskengine.core.flow import FlowJob, Usage, record_starts
from django_taskengine.models import Job, JobStatus, RateWindow
from django_taskengine.store.flow_source import Ask, policy, policy_json
from django_taskengine.store.sql import query
from tests.helpers import committed_db, each_in_a_thread
from tests.testapp.flow_tasks import flow_step, per_tenant

pytestmark = [
    committed_db,
    pytest.mark.skipif("connection.vendor != 'postgresql'", reason="a PostgreSQL function"),
]

QUEUES = [("lq", 3, "5/s"), ("cq", 4, ""), ("rq", None, "100/m")]


def _fast(session, *, start, rooms=None, after=""):
    """One claim in one statement, made the way the worker makes it (from the lane after
    ``after``)."""
    source = session._flow_source
    seen = session.flow.seen
    ask = Ask(after=after, per_lane=start, rooms=rooms or {}, cap=4 * start + 16)
    return source.fast(ask, start=start, park=[], policy=policy_json(seen))


def _learn_limits(session):
    """A claim made job by job that starts nothing: the session reads the limits in force."""
    session.flow.binding = True
    session.flow.claim(session._flow_source, free=0, start=0, park=())
    assert not session.flow.binding


@pytest.mark.parametrize(
    "queue, task, group, sequence",
    [
        (queue, task, group, sequence)
        for queue in ("lq", "cq", "rq", "free")
        for task in (
            "tests.testapp.flow_tasks.two_at_a_time",
            "tests.testapp.flow_tasks.five_per_second",
            "tests.testapp.flow_tasks.per_tenant",
            "tests.testapp.flow_tasks.flow_step",
        )
        for group in (None, "tenant-1")
        for sequence in (None, "order-7")
    ],
)
def test_the_database_and_python_agree_on_a_jobs_scopes(queue, task, group, sequence):
    rules = policy(QUEUES)
    job = FlowJob(0, queue, task, group, sequence)
    assert rules.tasks, "the test tasks with limits are registered"
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT o_key, o_concurrency, o_rate_count, o_rate_seconds "
            "FROM taskengine_flow_scopes(%s::jsonb, %s, %s, %s, %s)",
            [policy_json(QUEUES), queue, task, group, sequence],
        )
        found = sorted(cursor.fetchall())
    expected = sorted(
        (
            key,
            concurrency,
            None if rate is None else rate.count,
            None if rate is None else rate.seconds,
        )
        for key, concurrency, rate in rules.scopes(job)
    )
    assert found == expected


def test_while_no_limit_binds_one_statement_starts_the_claim(session):
    operations.set_queue_limits("flow", concurrency=10)
    jobs = [flow_step.enqueue(label=str(n)) for n in range(5)]
    _learn_limits(session)
    fast = _fast(session, start=3)
    assert fast.started
    assert [claimed.id for claimed in fast.jobs] == [job.id for job in jobs[:3]]
    assert fast.kinds == {("flow", "tests.testapp.flow_tasks.flow_step", None, None): 3}
    assert fast.last_lane == "q:flow"
    assert fast.offered == 3, "the lane is read for as many as the claim wants"
    assert fast.read.running == [], "the counts are those before the claim"
    started = Job.objects.filter(status=JobStatus.RUNNING).order_by("id")
    assert [job.id for job in started] == [job.id for job in jobs[:3]]
    assert all(job.attempts == 1 and job.token for job in started)


def test_one_statement_returns_the_jobs_it_started_in_claim_order(session):
    # Claim order is priority first: here the reverse of the rows' order in the table.
    operations.set_queue_limits("flow", concurrency=10)
    jobs = [flow_step.using(priority=n).enqueue(label=str(n)) for n in range(6)]
    _learn_limits(session)
    fast = _fast(session, start=4)
    assert fast.started
    assert [claimed.id for claimed in fast.jobs] == [job.id for job in jobs[:1:-1]]


def test_one_statement_counts_its_jobs_by_queue_task_group_and_sequence(session):
    # What the next claim's hints are made from: each kind under the scopes it counts for.
    grouped = per_tenant.using(group="tenant-1").enqueue()
    sequenced = flow_step.using(sequence="order-7").enqueue(label="s")
    _learn_limits(session)
    fast = _fast(session, start=2)
    assert fast.started
    assert sorted(claimed.id for claimed in fast.jobs) == sorted([grouped.id, sequenced.id])
    assert fast.kinds == {
        (grouped.queue, "tests.testapp.flow_tasks.per_tenant", "tenant-1", None): 1,
        ("flow", "tests.testapp.flow_tasks.flow_step", None, "order-7"): 1,
    }


def test_a_claim_made_by_the_worker_goes_on_in_one_statement_while_nothing_binds(session):
    operations.set_queue_limits("flow", concurrency=10)
    jobs = [flow_step.enqueue(label=str(n)) for n in range(6)]
    _learn_limits(session)
    session.flow.notified()
    first = session.claim(2)
    assert [job.id for job in first] == [job.id for job in jobs[:2]]
    assert not session.flow.binding
    session.flow.notified()
    assert [job.id for job in session.claim(4)] == [job.id for job in jobs[2:6]]


def test_nothing_starts_in_one_statement_when_a_limit_would_bind(session):
    operations.set_queue_limits("flow", concurrency=2)
    jobs = [flow_step.enqueue(label=str(n)) for n in range(5)]
    _learn_limits(session)
    fast = _fast(session, start=3)
    assert not fast.started
    assert fast.jobs == []
    assert not Job.objects.filter(status=JobStatus.RUNNING).exists()
    # The worker's claim then decides job by job: two start, and the limit is reached: the
    # next claims are made job by job too.
    session.flow.notified()
    assert [job.id for job in session.claim(3)] == [job.id for job in jobs[:2]]
    assert session.flow.binding


def test_a_limit_changed_since_the_worker_read_it_is_never_exceeded(session):
    operations.set_queue_limits("flow", concurrency=10)
    jobs = [flow_step.enqueue(label=str(n)) for n in range(5)]
    _learn_limits(session)
    operations.set_queue_limits("flow", concurrency=1)
    fast = _fast(session, start=5)
    assert not fast.started, "the worker's limits are not those in force"
    assert fast.read.queues == [("flow", 1, "")]
    session.flow.notified()
    assert [job.id for job in session.claim(5)] == [jobs[0].id]


def test_a_lane_read_short_of_what_it_holds_is_left_to_the_claim_made_job_by_job(session):
    operations.set_queue_limits("flow", concurrency=10)
    jobs = [flow_step.enqueue(label=str(n)) for n in range(5)]
    _learn_limits(session)
    # The previous claim's counts left room for one: that lane is read for one only.
    fast = _fast(session, start=5, rooms={"q:flow": 1})
    assert not fast.started
    session.flow.hints = Ask(rooms={"q:flow": 1})
    session.flow.notified()
    assert [job.id for job in session.claim(5)] == [job.id for job in jobs]


@pytest.mark.parametrize(
    "before, entries",
    [
        # One start too old to count, one half a minute ago, one a moment ago (inside the
        # grain of 0.6 s: the claim's starts join it).
        ([[-90, 4], [-30, 2], [-0.1, 1]], 2),
        # Far from the limit (6 of 100 with the claim's), an entry 5 s old takes them (the
        # coarse grain, 15 s).
        ([[-90, 4], [-30, 2], [-5, 1]], 2),
        # Near it (51 of 100), the fine grain holds: the claim's starts get an entry.
        ([[-30, 40], [-5, 8]], 3),
    ],
)
def test_the_rate_window_is_written_as_python_writes_it(session, before, entries):
    operations.set_queue_limits("flow", rate_limit="100/m")
    jobs = [flow_step.enqueue(label=str(n)) for n in range(3)]
    _learn_limits(session)
    now = time.time()
    before = [[now + age, n] for age, n in before]
    RateWindow.objects.update_or_create(scope="q:flow", defaults={"starts": before})
    fast = _fast(session, start=3)
    assert fast.started
    rules = policy(fast.read.queues)
    expected = record_starts(
        rules,
        Usage(fast.read.now, starts={"q:flow": before}),
        [FlowJob(job.id, "flow", flow_step.name) for job in jobs],
    )
    written = RateWindow.objects.get(scope="q:flow").starts
    assert len(written) == entries and written[-1][1] == (4 if entries == 2 else 3)
    flat = [value for entry in written for value in entry]
    assert flat == pytest.approx([value for entry in expected["q:flow"] for value in entry])
    assert fast.read.windows["q:flow"] == written


def test_jobs_under_flow_control_are_counted_only_for_a_concurrency_limit(session):
    operations.set_queue_limits("flow", rate_limit="100/m")
    operations.set_queue_limits("capped", concurrency=3)
    for n in range(4):
        flow_step.using(queue="flow").enqueue(label=str(n))
        flow_step.using(queue="capped").enqueue(label=str(n))
    _learn_limits(session)
    # The first claim takes the first lane ("q:capped"), whose limit needs the count; none
    # run yet.
    first = _fast(session, start=2)
    assert first.started and {job.queue for job in first.jobs} == {"capped"}
    assert first.read.running == []
    # The next lane, under its rate limit alone, is not counted.
    under_rate = _fast(session, start=2, after="q:capped")
    assert under_rate.started and {job.queue for job in under_rate.jobs} == {"flow"}
    assert under_rate.read.running == []
    # A claim of both lanes, the rate-limited one first, is counted for the other: two more of
    # "capped" would make four running under a limit of three, and nothing starts.
    both = _fast(session, start=4, after="q:capped")
    assert not both.started and both.jobs == []
    assert sorted((kind.queue, n) for kind, n in both.read.running) == [
        ("capped", 2),
        ("flow", 2),
    ]
    assert Job.objects.filter(queue="capped", status=JobStatus.RUNNING).count() == 2


#: The previous release's claim in one statement: its candidates as an array, passed to
#: taskengine_flow_claim (migration 0033), which workers of that release call while a rolling
#: upgrade has both releases claiming.
PREVIOUS_RELEASE_CLAIM = """
SELECT f.* FROM taskengine_flow_claim(
    %(lock)s::bigint,
    ARRAY(SELECT ROW(c.id, c.queue, c.task_name, c.group_key, c.sequence_key, c.k,
                     c.cap)::taskengine_flow_candidate
          FROM ({candidates}) AS c ORDER BY c.n, c.priority DESC, c.run_after, c.id),
    %(start)s::integer, %(park)s::text[], %(policy)s::jsonb, %(grain)s::float8,
    %(worker)s::uuid, %(ns)s::integer) AS f
"""


def _previous_release_claim(session, *, start):
    source = session._flow_source
    params = source._ask(Ask(per_lane=start, cap=4 * start + 16))
    params.update(
        lock=source.lock_key,
        start=start,
        park=[],
        policy=policy_json(session.flow.seen),
        grain=0.01,
        worker=source.worker,
        ns=source.ns,
    )
    sql = PREVIOUS_RELEASE_CLAIM.format(candidates=query("flow_candidates"))
    rows = source.conn.execute(sql, params).fetchall()
    return [row[0] for row in rows if row[0] is not None]


def test_a_worker_of_the_previous_release_and_one_of_this_release_share_the_limits(session):
    """During a rolling upgrade both claims run: each counts what the other started."""
    operations.set_queue_limits("flow", concurrency=3)
    jobs = [flow_step.enqueue(label=str(n)) for n in range(5)]
    _learn_limits(session)
    assert _fast(session, start=2).started
    assert _previous_release_claim(session, start=2) == [], "2 + 2 running would be 4 of 3"
    assert _previous_release_claim(session, start=1) == [jobs[2].id]
    assert not _fast(session, start=1).started, "3 are running, the limit"
    assert Job.objects.filter(status=JobStatus.RUNNING).count() == 3


def test_a_rate_window_with_no_room_for_the_whole_claim_starts_nothing(session):
    operations.set_queue_limits("flow", rate_limit="5/m")
    for n in range(4):
        flow_step.enqueue(label=str(n))
    _learn_limits(session)
    RateWindow.objects.update_or_create(scope="q:flow", defaults={"starts": [[time.time(), 2]]})
    assert not _fast(session, start=4).started
    session.flow.notified()
    assert len(session.claim(4)) == 3


def test_sessions_claiming_side_by_side_never_exceed_a_limit(open_sessions):
    """Four sessions claim and finish at once under a queue limit of 5: whichever way each
    claim is made (one statement while it has room, job by job once the limit binds), the
    running jobs committed at any moment are never more than 5, and every job runs once."""
    operations.set_queue_limits("flow", concurrency=5)
    jobs = [flow_step.enqueue(label=str(n)) for n in range(120)]
    sessions = open_sessions(4)
    seen: list[int] = []
    ways = {"fast": 0, "job by job": 0}

    def work(session):
        held = []
        deadline = time.monotonic() + 60
        turn = 0
        while time.monotonic() < deadline:
            turn += 1
            session.flow.notified()
            fast = not session.flow.binding
            claimed = session.claim(2)
            if claimed:
                ways["fast" if fast else "job by job"] += 1
            held += claimed
            seen.append(Job.objects.filter(queue="flow", status=JobStatus.RUNNING).count())
            if held and turn % 2 == 0:
                # Finish what it holds every other turn: the limit is reached, freed and
                # reached again.
                _finish_jobs(session, held)
                held = []
            elif (
                not held and not Job.objects.filter(queue="flow", status=JobStatus.QUEUED).exists()
            ):
                return

    each_in_a_thread(work, sessions)
    assert max(seen) <= 5, f"at most 5 running, seen {max(seen)}"
    assert max(seen) >= 3, "the sessions ran jobs side by side"
    assert ways["fast"] and ways["job by job"], ways
    finished = Job.objects.filter(id__in=[job.id for job in jobs])
    assert finished.filter(status=JobStatus.SUCCEEDED).count() == len(jobs)
    assert not finished.filter(attempts__gt=1).exists()


def _finish_jobs(session, jobs):
    session.finish(
        [lifecycle.succeeded(job, "null") for job in jobs],
        [job.id for job in jobs if job.locked],
    )


def test_the_count_of_running_jobs_is_read_by_an_index_scan_at_every_call(session):
    """taskengine_flow_running reads the jobs started or claimed ahead under flow control
    through their index by an index scan whatever the planner would prefer (here, made to
    prefer reading the table: random reads priced as a slow disk's), and the plan it keeps for
    the session is that one too."""
    operations.set_queue_limits("flow", concurrency=50)
    for n in range(300):
        flow_step.enqueue(label=str(n))
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE taskengine_job")
    _learn_limits(session)
    assert len(_fast(session, start=3).jobs) == 3
    plans: list[str] = []
    raw = connection.connection
    handler = lambda notice: plans.append(notice.message_primary or "")  # noqa: E731
    raw.add_notice_handler(handler)
    counts = []
    with connection.cursor() as cursor:
        try:
            cursor.execute("LOAD 'auto_explain'")
            cursor.execute("SET auto_explain.log_min_duration = 0")
            cursor.execute("SET auto_explain.log_nested_statements = on")
            cursor.execute("SET auto_explain.log_level = notice")
            cursor.execute("SET random_page_cost = 10000")
            for _ in range(3):
                cursor.execute("SELECT taskengine_flow_running()::text")
                counts.append(cursor.fetchone()[0])
        finally:
            # The connection serves the tests after this one: as it was.
            for setting in (
                "auto_explain.log_min_duration",
                "auto_explain.log_nested_statements",
                "auto_explain.log_level",
                "random_page_cost",
            ):
                cursor.execute(f"RESET {setting}")
            raw.remove_notice_handler(handler)
    assert counts == ['[["flow", "tests.testapp.flow_tasks.flow_step", null, null, 3]]'] * 3
    counting = [plan for plan in plans if "taskengine_job j" in plan]
    assert len(counting) == 3
    for plan in counting:
        assert "Index Scan using taskengine_job_flow_active_idx" in plan, plan
        assert "Bitmap" not in plan, plan
