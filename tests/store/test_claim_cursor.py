"""A PostgreSQL worker session's claim starts its scan of the claim index at a cursor (the last
job it claimed) while scans from the head of the queue are slow, as they are while a
transaction holds the xmin horizon: each claimed job's index entry stays until vacuum may
remove it, and a scan from the head steps over all of them. Jobs that sort before the cursor
are claimed by the next scan from the head, which comes every so often."""

from __future__ import annotations

import datetime as dt
import time
from typing import Any

import psycopg
import pytest
from django.db import connection
from django.utils import timezone

from django_taskengine import operations
from django_taskengine.models import Job
from django_taskengine.store import postgres_plain_claim
from django_taskengine.store.postgres_plain_claim import (
    CLAIM_FROM_HEAD,
)
from django_taskengine.store.sql import query
from tests.helpers import claim_statement_params, direct_connection, wait_for
from tests.testapp.tasks import noop

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(connection.vendor != "postgresql", reason="PostgreSQL's MVCC"),
]


def _enqueue(count: int, priority: int = 0) -> list[int]:
    return [job.id for job in noop.using(priority=priority).bulk_enqueue([((), {})] * count)]


def _index_entries_a_claim_reads(conn: psycopg.Connection, after: tuple[int, Any, int]) -> int:
    """Entries of the claim index that a claim of 100 from ``after`` reads (live or not; the
    claim runs, then is rolled back)."""
    params = claim_statement_params(after=after)
    # The backend's counts not yet reported: read before and after.
    count = "SELECT pg_stat_get_xact_tuples_returned('taskengine_job_claimable_idx'::regclass)"
    with conn.transaction(force_rollback=True):
        (before,) = conn.execute(count).fetchone()
        assert len(conn.execute(query("claim_jobs"), params).fetchall()) == 100
        (after_claim,) = conn.execute(count).fetchone()
    return int(after_claim - before)


def test_under_a_held_horizon_a_claim_from_the_cursor_skips_the_jobs_claimed_before_it(session):
    _enqueue(4_000)
    with direct_connection() as holder, direct_connection() as probe:
        # A report in the web app: a REPEATABLE READ transaction that has read something.
        holder.execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
        holder.execute("SELECT count(*) FROM taskengine_queue").fetchone()
        claimed = [job.id for _ in range(30) for job in session.claim(100)]
        assert len(claimed) == 3_000
        last = Job.objects.get(id=claimed[-1])
        cursor = (last.priority, last.run_after, last.id)
        from_head = _index_entries_a_claim_reads(probe, CLAIM_FROM_HEAD)
        from_cursor = _index_entries_a_claim_reads(probe, cursor)
        holder.execute("COMMIT")
    # From the head, the entries of every job claimed since the horizon was held (each leads to
    # a row version that the held snapshot may still see), then 100. From the cursor, 100.
    assert from_head >= 3_100, (from_head, from_cursor)
    assert from_cursor < 200, (from_head, from_cursor)


def test_jobs_that_sort_before_the_cursor_are_claimed_by_the_next_scan_from_the_head(
    session, monkeypatch
):
    # Every scan from the head counts as slow: claims go from the cursor, and from the head
    # again after FULL_SCAN_GAP_MAX seconds.
    monkeypatch.setattr(postgres_plain_claim, "CHEAP_HEAD_SCAN", -1.0)
    monkeypatch.setattr(postgres_plain_claim, "FULL_SCAN_GAP", 10**6)
    monkeypatch.setattr(postgres_plain_claim, "FULL_SCAN_GAP_MAX", 1.0)
    backlog = _enqueue(300)
    began = time.monotonic()
    first = session.claim(10)
    assert [job.id for job in first] == backlog[:10]
    urgent = _enqueue(1, priority=5)[0]
    # As a job enqueued in a transaction that began a minute ago, or one rescued (it keeps its
    # place): before the cursor.
    late = noop.using(run_after=timezone.now() - dt.timedelta(minutes=1)).enqueue().id
    second = session.claim(10)
    from_cursor = time.monotonic() - began < 1.0
    if from_cursor:
        # From the cursor: the next jobs in order, not those before it.
        assert [job.id for job in second] == backlog[10:20]
    claimed = [job.id for job in first + second]

    def urgent_claimed() -> bool:
        claimed.extend(job.id for job in session.claim(10))
        return urgent in claimed

    wait_for(urgent_claimed, timeout=10, interval=0.01, message="the urgent job's claim")
    if from_cursor:
        # Not before the next scan from the head, one gap after the first claim.
        assert time.monotonic() - began >= 1.0
    # The backlog goes on from the cursor; the late job comes with a scan from the head.
    wait_for(
        lambda: claimed.extend(job.id for job in session.claim(50)) or len(claimed) == 302,
        timeout=20,
        interval=0.01,
        message="every job's claim",
    )
    assert sorted(claimed) == sorted([*backlog, urgent, late])


@pytest.mark.parametrize(
    ("pause", "resume", "args"),
    [
        (operations.pause_queue, operations.resume_queue, ("default",)),
        (operations.pause_task, operations.resume_task, (noop.name,)),
        (operations.pause_all, operations.resume_all, ()),
    ],
    ids=["queue", "task", "all"],
)
def test_a_claim_from_the_cursor_takes_nothing_paused(session, monkeypatch, pause, resume, args):
    # Both of the claim's scans check the pauses: the scan after the cursor (its priority) and
    # the scan of lower priorities.
    monkeypatch.setattr(postgres_plain_claim, "CHEAP_HEAD_SCAN", -1.0)
    monkeypatch.setattr(postgres_plain_claim, "FULL_SCAN_GAP", 10**6)
    monkeypatch.setattr(postgres_plain_claim, "FULL_SCAN_GAP_MAX", 60.0)
    backlog = _enqueue(20)
    lower = _enqueue(5, priority=-1)
    assert [job.id for job in session.claim(5)] == backlog[:5]  # from the head; now the cursor
    pause(*args)
    assert session.claim(50) == []
    resume(*args)
    assert [job.id for job in session.claim(50)] == backlog[5:] + lower
