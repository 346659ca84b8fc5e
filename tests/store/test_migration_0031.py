"""Migration 0031 builds the failed jobs' index CONCURRENTLY on PostgreSQL (AddIndexConcurrently,
django_taskengine/store/sql/__init__.py), rebuilds one that an interrupted build left invalid,
and reverses, on SQLite too."""

from __future__ import annotations

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from django_taskengine.models import Job, JobStatus

pytestmark = pytest.mark.django_db(transaction=True)

APP = "django_taskengine"
BEFORE, AFTER = (APP, "0030_worker_control"), (APP, "0031_failed_jobs_index")
INDEX = "taskengine_job_failed_idx"


def migrate(target: tuple[str, str] | None) -> None:
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate([target] if target is not None else executor.loader.graph.leaf_nodes(APP))


def index_state() -> str:
    """'valid', 'invalid' or 'absent'."""
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(
                "SELECT i.indisvalid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
                "WHERE c.relname = %s",
                [INDEX],
            )
        else:
            cursor.execute(
                "SELECT 1 FROM sqlite_master WHERE type = 'index' AND name = %s", [INDEX]
            )
        row = cursor.fetchone()
    if row is None:
        return "absent"
    return "valid" if row[0] else "invalid"


def test_the_index_is_built_and_dropped_both_ways():
    try:
        migrate(BEFORE)
        assert index_state() == "absent"
        migrate(AFTER)
        assert index_state() == "valid"
    finally:
        migrate(None)


def test_an_index_left_invalid_by_an_interrupted_build_is_built_again():
    if connection.vendor != "postgresql":
        pytest.skip("CREATE INDEX CONCURRENTLY is PostgreSQL's")
    Job.objects.bulk_create(
        [Job(task_name="t", queue="q", status=JobStatus.FAILED) for _ in range(2)]
    )
    try:
        migrate(BEFORE)
        # A concurrent build that fails (two rows break its uniqueness) leaves its index
        # behind, invalid: as a build interrupted by a deploy's timeout would.
        with connection.cursor() as cursor, pytest.raises(Exception, match="could not create"):
            cursor.execute(f"CREATE UNIQUE INDEX CONCURRENTLY {INDEX} ON taskengine_job (queue)")
        assert index_state() == "invalid"
        migrate(AFTER)
        assert index_state() == "valid"
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_get_indexdef(%s::regclass)", [INDEX])
            definition = cursor.fetchone()[0]
        assert "UNIQUE" not in definition and "finished_at, id" in definition, definition
    finally:
        migrate(None)
        Job.objects.all().delete()
