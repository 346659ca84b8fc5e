"""The statements a worker runs every second or faster (the claim, the write of outcomes,
the heartbeat, the rescue) keep their shape of plan whatever the table's statistics say. A
worker's session plans them once, generically (``plan_settings``), with the statistics of that
moment: a plan that is only right for some statistics is wrong for the rest of the session.
Each test sets up statistics that misled an earlier form of the statement, and reads the
generic plan of what the worker runs."""

from __future__ import annotations

import re
import time
import uuid
from typing import Any

import pytest
from django.db import connection
from django.utils import timezone

from django_taskengine.conf import taskengine_settings
from django_taskengine.core.attempts import Outcome
from django_taskengine.core.statuses import AttemptOutcome
from django_taskengine.dispatch.options import RedisDispatch
from django_taskengine.dispatch.relay import Relay
from django_taskengine.models import Job, JobStatus, Queue, Worker
from django_taskengine.store import get_store
from django_taskengine.store.base import WorkerInfo
from django_taskengine.store.flow_source import FLOW_LOCK_ID
from django_taskengine.store.postgres_claims import outcome_params
from django_taskengine.store.postgres_session import (
    RESCUER_LOCK_ID,
    START_FENCE_LOCK_ID,
    engine_lock_key,
)
from django_taskengine.store.sql import query
from tests.helpers import claim_statement_params

pytestmark = [
    pytest.mark.django_db,
    pytest.mark.skipif(connection.vendor != "postgresql", reason="PostgreSQL's planner"),
]

PLACEHOLDER = re.compile(r"%\((\w+)\)[sb]")


def generic_plan(name: str, params: dict[str, Any], *, analyze: bool) -> list[str]:
    """EXPLAIN the named statement's generic plan (PREPAREd with $n placeholders, run with
    plan_cache_mode forced, as the worker session runs it). With ``analyze`` it runs, in the
    test's transaction, which is rolled back."""
    names: list[str] = []

    def placeholder(match: re.Match[str]) -> str:
        if match.group(1) not in names:
            names.append(match.group(1))
        return f"${names.index(match.group(1)) + 1}"

    statement = PLACEHOLDER.sub(placeholder, query(name))
    head = "EXPLAIN (ANALYZE) " if analyze else "EXPLAIN "
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL plan_cache_mode = force_generic_plan")
        cursor.execute(f"PREPARE plan_probe AS {statement}")
        try:
            arguments = ", ".join(["%s"] * len(names))
            cursor.execute(f"{head}EXECUTE plan_probe({arguments})", [params[n] for n in names])
            return [row[0] for row in cursor.fetchall()]
        finally:
            cursor.execute("DEALLOCATE plan_probe")


def _jobs(count: int, **fields: Any) -> list[Job]:
    fields = {"task_name": "plans.noop", "queue": "default", **fields}
    return Job.objects.bulk_create(
        [Job(**fields) for _ in range(count)],
        batch_size=5_000,
    )


def test_the_claim_reads_the_claim_index_in_order_even_when_every_job_is_queued():
    # Statistics taken during a backlog: one queue, one task, every row queued. The pause
    # checks were anti-joins estimated at one row, and the claim became a scan and sort of
    # every queued job, once per claim.
    _jobs(20_000)
    Queue.objects.create(name="default")
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE taskengine_job, taskengine_queue, taskengine_pause")
    plan = generic_plan(
        "claim_jobs",
        claim_statement_params(),
        analyze=False,
    )
    text = "\n".join(plan)
    scans = re.findall(r"(\w+ Scan)(?: using (\w+))? on taskengine_job ", text)
    assert ("Index Scan", "taskengine_job_claimable_idx") in scans, text
    # Two scans of the claim index, each locking what it takes: the first starts at the
    # session's cursor (its index condition), the second at the next lower priority.
    assert scans.count(("Index Scan", "taskengine_job_claimable_idx")) == 2, text
    assert text.count("LockRows") == 2, text
    conditions = re.findall(r"Index Cond: (.*)", text)
    assert any("priority = $" in c and "ROW(run_after, id) > ROW(" in c for c in conditions), text
    assert any("priority < $" in c for c in conditions), text
    # The claimed rows are updated by primary key; nothing else reads the job table.
    assert set(scans) <= {
        ("Index Scan", "taskengine_job_claimable_idx"),
        ("Index Scan", "taskengine_job_pkey"),
    }, text


def test_a_claim_through_a_quota_reads_its_lane_in_order_when_one_task_fills_the_queue():
    # Statistics taken during a backlog of one task in a queue with a limit: the task types
    # a quota skips were `<> ALL` of an array, estimated to keep no row, and the claim read
    # and sorted the whole backlog (15 ms a claim of 250 against 1.7 ms from the index).
    _jobs(20_000, queue="mail", flow_key="q:mail")
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE taskengine_job, taskengine_pause")
    params = {
        "fence": engine_lock_key(START_FENCE_LOCK_ID),
        "lane": "q:mail",
        "queue": "mail",
        "tasks": ["plans.limited"],
        "limit": 250,
        "lock": engine_lock_key(FLOW_LOCK_ID),
        "until": time.time() + 60,
        "worker": uuid.uuid4(),
        "ns": taskengine_settings.ADVISORY_LOCK_NAMESPACE,
    }
    text = "\n".join(generic_plan("flow_quota_claim", params, analyze=True))
    scans = re.findall(r"(\w+ Scan)(?: using (\w+))? on taskengine_job ", text)
    assert ("Index Scan", "taskengine_job_flow_idx") in scans, text
    assert set(scans) <= {
        ("Index Scan", "taskengine_job_flow_idx"),
        ("Index Scan", "taskengine_job_pkey"),
    }, text
    assert "Sort" not in text, text
    assert Job.objects.filter(status=JobStatus.RUNNING).count() == 250, text


def test_the_engines_own_sessions_never_compile_a_plan():
    # The estimated costs of the flow claim and of the relay's round pass jit_above_cost once
    # the table is analysed with a backlog: compiling took 100 ms of a flow claim that runs in
    # 5, and 14-40 ms of a relay round that runs in 2.
    info = WorkerInfo(id=uuid.uuid4(), hostname="test", pid=1, queues=[], concurrency=1)
    session = get_store().open_session(info)
    try:
        assert session.conn.execute("SHOW jit").fetchone() == ("off",)
        assert session.conn.execute("SHOW plan_cache_mode").fetchone() == ("force_generic_plan",)
    finally:
        session.close()
    options = RedisDispatch("redis://127.0.0.1:6379/0", None, 100, 10.0, 10.0, 1_000, 0.01)
    relay = Relay(options, "default", uuid.uuid4())
    relay._connect()
    try:
        assert relay._conn is not None
        assert relay._conn.execute("SHOW jit").fetchone() == ("off",)
    finally:
        relay._close_database()


def test_the_write_of_outcomes_takes_each_job_by_its_key_and_joins_nothing_square():
    # Statistics taken while nothing ran (the usual case for a worker's first plan), then a
    # batch of 200 outcomes: the running-jobs index looked empty, and the write matched every
    # running job against every outcome.
    _jobs(2_000)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE taskengine_job")
    now = timezone.now()
    tokens = [uuid.uuid4() for _ in range(200)]
    running = _jobs(200, status=JobStatus.RUNNING, started_at=now, attempts=1)
    for job, token in zip(running, tokens, strict=True):
        job.token = token
    Job.objects.bulk_update(running, ["token"])
    n = len(running)
    # Full batches of successes, encoded as the worker encodes them.
    outcomes = [
        Outcome(
            job_id=job.id,
            token=token,
            attempt=1,
            status=JobStatus.SUCCEEDED,
            outcome=AttemptOutcome.SUCCEEDED,
            started_at=now,
            finished_at=now,
            result_json="null",
        )
        for job, token in zip(running, tokens, strict=True)
    ]
    params = outcome_params(
        outcomes, uuid.uuid4(), taskengine_settings.ADVISORY_LOCK_NAMESPACE, unlock=[]
    )
    plan = generic_plan("write_outcomes", params, analyze=True)
    text = "\n".join(plan)
    assert Job.objects.filter(status=JobStatus.SUCCEEDED).count() == n, text
    scans = re.findall(r"Scan (?:using (\w+) )?on taskengine_job", text)
    assert scans and set(scans) == {"taskengine_job_pkey"}, text
    removed = [int(x) for x in re.findall(r"Rows Removed by Join Filter: (\d+)", text)]
    assert sum(removed) < n, text


def test_the_heartbeat_finds_the_workers_jobs_by_their_keys():
    # The running-jobs index keeps an entry for every job run since the last vacuum (all of
    # them while a transaction holds the xmin horizon): a search by worker would step over
    # them all, every second, in every worker.
    # Statistics of a table with a few jobs (a worker's first plan, on a fresh deployment): a
    # probe that named the worker and the status took the running-jobs index for it.
    worker = uuid.uuid4()
    running = _jobs(20, status=JobStatus.RUNNING, worker_id=worker, attempts=1)
    Job.objects.filter(id__in=[j.id for j in running[:3]]).update(stop_requested="pause")
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE taskengine_job")
    known = [j.id for j in running[:10]]
    params = {"ok": 0, "failed": 0, "worker": worker, "ids": known}
    plan = generic_plan("heartbeat", params, analyze=False)
    text = "\n".join(plan)
    indexes = re.findall(r"Scan using (\w+) on taskengine_job\b", text)
    indexes += re.findall(r"Bitmap Index Scan on (taskengine_job\w*)", text)
    assert "Seq Scan on taskengine_job " not in text, text
    assert indexes and set(indexes) == {"taskengine_job_pkey"}, text
    with connection.cursor() as cursor:
        cursor.execute(query("heartbeat"), params)
        # No worker row (the test registered none), so no operator request for it; the stop
        # requests of the jobs it knows.
        assert cursor.fetchone() == (0, [j.id for j in running[:3]], ["pause"] * 3, None)


def test_the_rescue_looks_up_the_jobs_of_silent_workers_by_worker():
    # A scan of every running and reserved job would step over the entries the running index
    # keeps per job since the last vacuum, once a second.
    live, silent = uuid.uuid4(), uuid.uuid4()
    now = timezone.now()
    Worker.objects.create(id=live, hostname="h", pid=1, started_at=now, last_heartbeat_at=now)
    Worker.objects.create(
        id=silent, hostname="h", pid=2, started_at=now, last_heartbeat_at=now, stopped_at=now
    )
    # The history a job table keeps (retention), the jobs a live worker runs, and a silent
    # worker's two.
    _jobs(20_000, status=JobStatus.SUCCEEDED, finished_at=now, attempts=1)
    _jobs(200, status=JobStatus.RUNNING, worker_id=live, attempts=1)
    _jobs(2, status=JobStatus.RUNNING, worker_id=silent, attempts=1)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE taskengine_job, taskengine_worker")
    params = {
        "rescuer_key": engine_lock_key(RESCUER_LOCK_ID),
        "ns": taskengine_settings.ADVISORY_LOCK_NAMESPACE,
        "grace": 10.0,
        "everyone": False,
    }
    text = "\n".join(generic_plan("select_orphans", params, analyze=True))
    # Costs a plan for a statement run once a second should have: none that makes the server
    # compile it (an earlier version turned sequential scans off, and the disabled scan of the
    # workers' table cost it 400 ms of JIT per rescue).
    assert "JIT:" not in text, text
    # The sweep for workers without a row is not run; every scan of the job table that is
    # reads the silent worker's two jobs by its index condition.
    scans = [
        line
        for line in re.findall(r"(?:Scan using|Scan on) taskengine_job\w*.*", text)
        if "never executed" not in line
    ]
    assert scans, text
    for line in scans:
        assert "Seq Scan" not in line, text
        assert int(re.search(r"actual .* rows=(\d+)", line).group(1)) <= 2, text
    assert "Index Cond: (worker_id = " in text, text


def test_a_fan_in_with_one_dependency_left_is_checked_at_its_first_row():
    # A fan-in of 2,000 whose 1,999 oldest dependencies finished (they finish about in the
    # order they were added): each write that finishes one asks whether the fan-in is ready.
    # The check looks for an unfinished dependency newest first, and must stop at the first.
    from django_taskengine.core.dependencies import BATCH_CALLBACKS
    from django_taskengine.core.statuses import ACTIVE_STATUSES
    from django_taskengine.models import Dependency

    # Four earlier fan-ins of 500 that ended: the table holds other jobs' rows too.
    for _ in range(4):
        (done,) = _jobs(1)
        Dependency.objects.bulk_create(
            [Dependency(job_id=done.id, after_id=part.id) for part in _jobs(500)]
        )
    parts = _jobs(2_000, status=JobStatus.SUCCEEDED)
    Job.objects.filter(id=parts[-1].id).update(status=JobStatus.RUNNING)
    (join,) = _jobs(1, blocked=True)
    Dependency.objects.bulk_create(
        [Dependency(job_id=join.id, after_id=part.id) for part in parts], batch_size=5_000
    )
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE taskengine_job, taskengine_dependency")
    params = {
        "ids": [join.id],
        "callbacks": list(BATCH_CALLBACKS),
        "active": list(ACTIVE_STATUSES),
    }
    text = "\n".join(generic_plan("waiting_jobs", params, analyze=True))
    backward = re.findall(
        r"Index (?:Only )?Scan Backward using taskengine_dep_unique on taskengine_dependency o"
        r" .*actual time=\S+ rows=(\d+) loops=(\d+)",
        text,
    )
    assert backward, text
    assert all(int(rows) <= 1 for rows, _ in backward), text
    Job.objects.filter(id=parts[-1].id).update(status=JobStatus.SUCCEEDED)
    with connection.cursor() as cursor:
        cursor.execute(query("waiting_jobs"), params)
        assert [row[0] for row in cursor.fetchall()] == [join.id]
