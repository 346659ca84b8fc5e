"""Retention: old finished jobs go, with their attempts, in bounded batches; active jobs stay."""

from __future__ import annotations

import datetime as dt
import re
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.db import connection
from django.test import override_settings
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from django_taskengine.checks import check_settings
from django_taskengine.models import Attempt, AuditEntry, Event, Job, JobStatus, Worker
from django_taskengine.retention import (
    PRUNE_LOCK_ID,
    format_age,
    parse_age,
    prune,
    prune_duty,
    retention_ages,
)
from django_taskengine.store.sql import query
from django_taskengine.worker.maintenance import DUTIES
from tests.factories import AttemptFactory, JobFactory, WorkerFactory
from tests.helpers import direct_connection, wait_for

pytestmark = pytest.mark.django_db

DAY = dt.timedelta(days=1)
MS = dt.timedelta(milliseconds=1)


def finished(status: str, age: dt.timedelta, **extra) -> Job:
    """A job of ``status`` that finished ``age`` ago, with one attempt."""
    moment = timezone.now() - age
    job = JobFactory(
        status=status, attempts=1, started_at=moment, finished_at=moment, created_at=moment, **extra
    )
    AttemptFactory(job=job, started_at=moment, finished_at=moment)
    return job


def remaining() -> set[int]:
    return set(Job.objects.values_list("id", flat=True))


# -- ages ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("90s", 90),
        ("15m", 900),
        ("12h", 43200),
        ("7d", 604800),
        ("2w", 1209600),
        ("1d12h", 129600),
        (" 1D 12H ", 129600),
        (3600, 3600),
        (0.5, 0.5),
        (dt.timedelta(hours=2), 7200),
    ],
)
def test_parse_age_accepts_seconds_timedeltas_and_short_text(value, seconds):
    assert parse_age(value) == dt.timedelta(seconds=seconds)


def test_parse_age_none_means_forever():
    assert parse_age(None) is None


@pytest.mark.parametrize("value", ["", "7", "7 days", "1y", "-1d", "0s", 0, -5, True, [], "d"])
def test_parse_age_refuses_what_is_not_a_positive_age(value):
    with pytest.raises(ValueError):
        parse_age(value)


def test_format_age_writes_the_setting_notation():
    assert format_age(dt.timedelta(days=14)) == "14d"
    assert format_age(dt.timedelta(hours=36)) == "1d12h"
    assert format_age(dt.timedelta(seconds=90)) == "1m30s"
    assert format_age(dt.timedelta(seconds=89.6)) == "1m30s"
    assert format_age(dt.timedelta(seconds=0.2)) == "0.2s"


def test_ages_are_read_in_the_same_grammar_as_the_command_line():
    assert parse_age("2w") == dt.timedelta(weeks=2)
    assert parse_age("1d12h") == dt.timedelta(hours=36)
    assert parse_age(90) == dt.timedelta(seconds=90)
    with pytest.raises(ValueError, match="'15' is not an age"):
        parse_age("15")  # text needs its units
    with pytest.raises(ValueError, match="give seconds"):
        parse_age(True)


def test_retention_defaults_and_partial_settings_merge_per_status():
    assert retention_ages() == {"succeeded": DAY, "failed": 14 * DAY, "cancelled": 7 * DAY}
    with override_settings(TASKENGINE={"RETENTION": {"failed": None, "succeeded": 3600}}):
        assert retention_ages() == {
            "succeeded": dt.timedelta(hours=1),
            "failed": None,
            "cancelled": 7 * DAY,
        }
    with override_settings(TASKENGINE={"RETENTION": None}):
        assert retention_ages() == {"succeeded": None, "failed": None, "cancelled": None}


# -- system checks --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [None, {}, {"succeeded": "2d", "failed": None}, {"cancelled": dt.timedelta(days=3)}],
)
def test_valid_retention_settings_pass_the_checks(value):
    with override_settings(TASKENGINE={"RETENTION": value}):
        assert check_settings() == []


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ("7d", "must be a dict"),
        ({"succeeded": "forever"}, "'succeeded'"),
        ({"failed": 0}, "'failed'"),
        ({"queued": "1d"}, "'queued'"),
        ({"succeeded": "1 day"}, "not an age"),
    ],
)
def test_e020_reports_a_bad_retention_setting(value, fragment):
    with override_settings(TASKENGINE={"RETENTION": value}):
        messages = check_settings()
    assert [m.id for m in messages] == ["taskengine.E020"]
    assert fragment in messages[0].msg


# -- pruning --------------------------------------------------------------------------------


def test_prune_deletes_finished_jobs_older_than_their_status_retention_with_their_attempts():
    old_ok = finished(JobStatus.SUCCEEDED, 2 * DAY)
    new_ok = finished(JobStatus.SUCCEEDED, dt.timedelta(hours=20))
    old_failed = finished(JobStatus.FAILED, 15 * DAY)
    young_failed = finished(JobStatus.FAILED, 10 * DAY)
    old_cancelled = finished(JobStatus.CANCELLED, 8 * DAY)
    young_cancelled = finished(JobStatus.CANCELLED, 6 * DAY)

    result = prune()

    assert result.jobs == {"succeeded": 1, "failed": 1, "cancelled": 1}
    assert result.complete and not result.skipped
    assert remaining() == {new_ok.id, young_failed.id, young_cancelled.id}
    assert set(Attempt.objects.values_list("job_id", flat=True)) == remaining()
    assert not {old_ok.id, old_failed.id, old_cancelled.id} & remaining()


def test_active_jobs_are_never_pruned_however_old():
    ancient = timezone.now() - 400 * DAY
    active = [
        JobFactory(
            status=status,
            created_at=ancient,
            run_after=ancient,
            started_at=ancient,
            finished_at=ancient,
        )  # a stale finished_at, as after an operator's retry
        for status in (JobStatus.QUEUED, JobStatus.RUNNING, JobStatus.PAUSED)
    ]
    for job in active:
        AttemptFactory(job=job, started_at=ancient, finished_at=ancient)

    result = prune(
        {
            "succeeded": dt.timedelta(seconds=1),
            "failed": dt.timedelta(seconds=1),
            "cancelled": dt.timedelta(seconds=1),
        }
    )

    assert result.total_jobs == 0
    assert remaining() == {job.id for job in active}
    assert Attempt.objects.count() == 3


def test_a_status_kept_forever_is_not_pruned():
    old_failed = finished(JobStatus.FAILED, 1000 * DAY)
    finished(JobStatus.SUCCEEDED, 2 * DAY)
    with override_settings(TASKENGINE={"RETENTION": {"failed": None}}):
        result = prune()
    assert result.jobs == {"succeeded": 1, "cancelled": 0}
    assert remaining() == {old_failed.id}


def test_batches_are_bounded_one_short_transaction_and_two_deletes_each():
    jobs = [finished(JobStatus.SUCCEEDED, 2 * DAY) for _ in range(25)]
    for job in jobs[:5]:
        AttemptFactory(job=job, number=2)  # a second attempt for some
    keep = finished(JobStatus.SUCCEEDED, dt.timedelta(minutes=5))

    with CaptureQueriesContext(connection) as queries:
        result = prune({"succeeded": DAY}, batch_size=10, workers=False)

    assert result.jobs == {"succeeded": 25}
    assert result.batches == 3
    statements = [_without_comments(q["sql"]) for q in queries]
    job_deletes = [sql for sql in statements if sql.startswith("DELETE FROM taskengine_job")]
    attempt_deletes = [
        sql for sql in statements if sql.startswith("DELETE FROM taskengine_attempt")
    ]
    assert len(job_deletes) == 3 and len(attempt_deletes) == 3
    # The batch's ids are one parameter: an array on PostgreSQL, a JSON array on SQLite.
    for sql in job_deletes:
        ids = re.search(r"[\[{]([\d, ]+)[\]}]", sql).group(1).split(",")
        assert 1 <= len(ids) <= 10
    assert remaining() == {keep.id}
    assert list(Attempt.objects.values_list("job_id", flat=True)) == [keep.id]
    # No statement loads rows to cascade in Python (the ORM's way): only ids are selected.
    assert not [
        sql for sql in statements if sql.startswith("SELECT") and "taskengine_attempt" in sql
    ]


def _without_comments(sql: str) -> str:
    """A statement as sent, without the ``--`` lines its ``.sql`` file explains it with."""
    return " ".join(line for line in sql.splitlines() if not line.lstrip().startswith("--"))


def test_the_batch_select_walks_the_finished_at_index_on_a_realistic_table():
    # 5,000 jobs finished over 15 days, 1 in 20 failed; the planner's statistics up to date.
    now = timezone.now()
    Job.objects.bulk_create(
        [
            Job(
                task_name="t",
                status=JobStatus.FAILED if i % 20 == 0 else JobStatus.SUCCEEDED,
                started_at=now - 15 * DAY * i / 5000,
                finished_at=now - 15 * DAY * i / 5000,
            )
            for i in range(5000)
        ],
        batch_size=1000,
    )
    cutoff = connection.ops.adapt_datetimefield_value(now - DAY)
    start = connection.ops.adapt_datetimefield_value(now - 10 * DAY)
    explain = "EXPLAIN " if connection.vendor == "postgresql" else "EXPLAIN QUERY PLAN "
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")
        sql = query("select_prunable_job_ids")
        cursor.execute(explain + sql, ["succeeded", cutoff, start, 1000])
        plan = " ".join(str(row) for row in cursor.fetchall())
    assert "taskengine_job_finished_idx" in plan, plan
    assert "Sort" not in plan and "TEMP B-TREE" not in plan, plan


@pytest.mark.django_db(transaction=True)
@pytest.mark.skipif(connection.vendor != "postgresql", reason="PostgreSQL's MVCC")
def test_each_batch_starts_where_the_last_ended_so_a_held_horizon_costs_no_rereading():
    # The finished_at index keeps the entries of deleted jobs until vacuum may remove them;
    # while a transaction holds the xmin horizon it may not. A batch read from the oldest end
    # would step over every earlier batch's: 3,000 jobs in batches of 100 would read about
    # 46,000 entries instead of 3,000.
    moment = timezone.now() - 2 * DAY
    Job.objects.bulk_create(
        [
            Job(task_name="t", status=JobStatus.SUCCEEDED, finished_at=moment + i * MS)
            for i in range(3_000)
        ]
    )
    with direct_connection() as vacuum:
        # Rows earlier tests inserted and rolled back leave dead entries among these in the
        # index, which vacuum removes when it comes: remove them now, so that the reads counted
        # are this prune's alone.
        vacuum.execute("VACUUM (ANALYZE) taskengine_job")
    count = (
        "SELECT idx_tup_read FROM pg_stat_user_indexes "
        "WHERE indexrelname = 'taskengine_job_finished_idx'"
    )
    with direct_connection() as holder, direct_connection() as reader:

        def entries_read() -> int:
            # Statistics reach other sessions once the backend that counted them is idle.
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_stat_force_next_flush()")
            reader.execute("SELECT pg_stat_clear_snapshot()")
            return int(reader.execute(count).fetchone()[0])

        holder.execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
        holder.execute("SELECT count(*) FROM taskengine_queue").fetchone()
        before = entries_read()
        assert prune({"succeeded": DAY}, batch_size=100, workers=False).jobs["succeeded"] == 3_000
        read = wait_for(lambda: entries_read() - before, message="the index statistics")
        holder.execute("COMMIT")
    assert read < 2 * 3_000, read


def test_dry_run_counts_and_deletes_nothing():
    finished(JobStatus.SUCCEEDED, 2 * DAY)
    finished(JobStatus.CANCELLED, 8 * DAY)
    WorkerFactory(stopped_at=timezone.now() - 30 * DAY)
    result = prune(dry_run=True)
    assert result.jobs == {"succeeded": 1, "failed": 0, "cancelled": 1}
    assert result.workers == 1
    assert Job.objects.count() == 2 and Attempt.objects.count() == 2 and Worker.objects.count() == 1


def test_old_worker_rows_go_after_the_longest_retention():
    now = timezone.now()
    stopped_long_ago = WorkerFactory(stopped_at=now - 15 * DAY, last_heartbeat_at=now - 15 * DAY)
    killed_long_ago = WorkerFactory(stopped_at=None, last_heartbeat_at=now - 15 * DAY)
    stopped_recently = WorkerFactory(stopped_at=now - 13 * DAY, last_heartbeat_at=now - 13 * DAY)
    alive = WorkerFactory()

    assert prune().workers == 2

    assert set(Worker.objects.values_list("id", flat=True)) == {stopped_recently.id, alive.id}
    assert not Worker.objects.filter(id__in=[stopped_long_ago.id, killed_long_ago.id]).exists()


def test_worker_rows_are_kept_while_some_status_is_kept_forever():
    WorkerFactory(stopped_at=timezone.now() - 900 * DAY)
    with override_settings(TASKENGINE={"RETENTION": {"failed": None}}):
        assert prune().workers == 0
    assert Worker.objects.count() == 1


def test_a_spent_time_budget_stops_between_batches():
    for _ in range(3):
        finished(JobStatus.SUCCEEDED, 2 * DAY)
    result = prune(time_budget=0)
    assert not result.complete
    assert result.total_jobs == 0 and Job.objects.count() == 3


@pytest.mark.parametrize("size", [0, -1, 10_001, 2.5, True])
def test_prune_refuses_a_bad_batch_size(size):
    with pytest.raises(ValueError, match="batch_size"):
        prune(batch_size=size)


def test_prune_refuses_to_prune_active_statuses():
    with pytest.raises(ValueError, match="only finished jobs"):
        prune({"queued": DAY})


def test_pruning_is_a_worker_duty():
    duty = next(d for d in DUTIES if d.run is prune_duty)
    assert 60 <= duty.interval <= 900
    finished(JobStatus.SUCCEEDED, 2 * DAY)
    result = prune_duty(connection.alias)
    assert result.jobs["succeeded"] == 1


@pytest.mark.skipif(connection.vendor != "postgresql", reason="advisory locks are PostgreSQL's")
def test_on_postgresql_one_worker_at_a_time_prunes():
    from django_taskengine.conf import taskengine_settings

    finished(JobStatus.SUCCEEDED, 2 * DAY)
    key = (taskengine_settings.ADVISORY_LOCK_NAMESPACE << 32) | PRUNE_LOCK_ID
    with direct_connection() as other:
        other.execute("SELECT pg_advisory_lock(%s)", [key])
        result = prune_duty(connection.alias)
        assert result.skipped and result.total_jobs == 0
        assert Job.objects.count() == 1
        # The operator's command does not wait for the lock: it prunes alongside.
        assert prune().jobs["succeeded"] == 1


# -- the command --------------------------------------------------------------------------------


def run(*args: str) -> str:
    out = StringIO()
    call_command("taskengine", "prune", *args, stdout=out)
    return out.getvalue()


def test_command_prunes_by_the_setting_and_says_how_many():
    finished(JobStatus.SUCCEEDED, 2 * DAY)
    finished(JobStatus.SUCCEEDED, 3 * DAY)
    finished(JobStatus.FAILED, 2 * DAY)
    WorkerFactory(stopped_at=timezone.now() - 20 * DAY)
    AuditEntry.objects.create(action="pause_queue", object_kind="queue", source="cli")
    Event.objects.create(name="paid", sent_at=timezone.now() - 8 * DAY)
    recent = Event.objects.create(name="paid", sent_at=timezone.now() - 6 * DAY)
    output = run()
    assert output.splitlines() == [
        "Deleted 2 jobs: succeeded 2 (finished over 1d ago); failed 0 (finished over 14d ago); "
        "cancelled 0 (finished over 7d ago).",
        "Deleted 1 worker rows (stopped over 14d ago).",
        "Deleted 0 audit entries (older than 90d).",
        "Deleted 1 events (sent over 7d ago).",
    ]
    assert Job.objects.count() == 1
    assert list(Event.objects.values_list("id", flat=True)) == [recent.id]


def test_command_older_than_and_status_choose_what_goes():
    failed = finished(JobStatus.FAILED, 3 * DAY)
    succeeded = finished(JobStatus.SUCCEEDED, 3 * DAY)
    WorkerFactory(stopped_at=timezone.now() - 20 * DAY)
    output = run("--older-than", "2d", "--status", "failed")
    assert output.strip() == "Deleted 1 jobs: failed 1 (finished over 2d ago)."
    assert remaining() == {succeeded.id}
    assert not Job.objects.filter(id=failed.id).exists()
    assert Worker.objects.count() == 1  # only a full prune touches worker rows


def test_command_dry_run_deletes_nothing():
    finished(JobStatus.SUCCEEDED, 2 * DAY)
    output = run("--dry-run", "--status", "succeeded")
    assert output.strip() == "Would delete 1 jobs: succeeded 1 (finished over 1d ago)."
    assert Job.objects.count() == 1


def test_command_batch_size_bounds_each_delete():
    for _ in range(5):
        finished(JobStatus.SUCCEEDED, 2 * DAY)
    with CaptureQueriesContext(connection) as queries:
        run("--batch-size", "2")
    statements = [_without_comments(q["sql"]) for q in queries]
    assert len([sql for sql in statements if sql.startswith("DELETE FROM taskengine_job")]) == 3
    assert Job.objects.count() == 0


def test_command_says_when_a_status_is_kept_forever():
    finished(JobStatus.FAILED, 100 * DAY)
    with override_settings(TASKENGINE={"RETENTION": {"failed": None}}):
        output = run("--status", "failed")
    assert "failed: kept forever by TASKENGINE['RETENTION'] (give --older-than)" in output
    assert Job.objects.count() == 1


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--older-than", "soon"], "--older-than: 'soon' is not an age"),
        (["--older-than", "0d"], "no time at all"),
        (["--batch-size", "0"], "--batch-size must be from 1 to 10000"),
    ],
)
def test_command_refuses_bad_values_and_deletes_nothing(args, message):
    finished(JobStatus.SUCCEEDED, 2 * DAY)
    with pytest.raises(CommandError, match=re.escape(message)):
        run(*args)
    assert Job.objects.count() == 1


def test_command_refuses_an_active_status():
    with pytest.raises(CommandError, match="invalid choice: 'queued'"):
        run("--status", "queued")


# -- a real worker ---------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_a_running_worker_prunes_old_finished_jobs_by_itself(start_workers):
    old = [finished(JobStatus.SUCCEEDED, 2 * DAY) for _ in range(3)]
    young = finished(JobStatus.SUCCEEDED, dt.timedelta(hours=1))
    workers = start_workers("--queues", "nothing-here")
    try:
        wait_for(lambda: remaining() == {young.id}, timeout=30, message="the pruning duty")
    finally:
        workers.kill()
    assert not Attempt.objects.filter(job_id__in=[job.id for job in old]).exists()


# -- the audit trail ----------------------------------------------------------------------------


def audit_entry(age: dt.timedelta) -> AuditEntry:
    return AuditEntry.objects.create(
        at=timezone.now() - age, action="retry_job", object_kind="job", object_id="1", source="cli"
    )


def test_audit_entries_older_than_their_retention_are_pruned_in_batches():
    old = [audit_entry(91 * DAY) for _ in range(5)]
    young = audit_entry(89 * DAY)
    assert prune(dry_run=True).audit_entries == 5
    result = prune(batch_size=2)
    assert result.audit_entries == 5 and result.complete
    assert list(AuditEntry.objects.values_list("id", flat=True)) == [young.id]
    assert not AuditEntry.objects.filter(id__in=[entry.id for entry in old]).exists()


def test_audit_retention_is_a_setting_of_its_own():
    entry = audit_entry(3 * DAY)
    with override_settings(TASKENGINE={"RETENTION": {"audit": "2d"}}):
        assert prune(ages={"succeeded": dt.timedelta(days=365)}).audit_entries == 1
    assert not AuditEntry.objects.filter(id=entry.id).exists()
    kept = audit_entry(400 * DAY)
    with override_settings(TASKENGINE={"RETENTION": {"audit": None}}):
        assert prune().audit_entries == 0
    # A one-off prune of some statuses (or with --older-than) leaves the audit trail alone.
    assert prune(audit=False).audit_entries == 0
    run("--older-than", "1s", "--status", "succeeded")
    assert AuditEntry.objects.filter(id=kept.id).exists()


def test_audit_retention_setting_is_checked():
    with override_settings(TASKENGINE={"RETENTION": {"audit": "soon"}}):
        assert [error.id for error in check_settings()] == ["taskengine.E020"]
    with override_settings(TASKENGINE={"RETENTION": {"audit": "30d"}}):
        assert check_settings() == []
