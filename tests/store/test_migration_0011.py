"""Migration 0011 gives the job and attempt tables their own autovacuum settings, and reverses."""

from __future__ import annotations

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

pytestmark = pytest.mark.django_db(transaction=True)

APP = "django_taskengine"
BEFORE, AFTER = (APP, "0010_reserved_jobs"), (APP, "0011_queue_table_autovacuum")
TABLES = ("taskengine_job", "taskengine_attempt")
SETTINGS = {
    "autovacuum_vacuum_scale_factor": "0.01",
    "autovacuum_vacuum_threshold": "1000",
    "autovacuum_vacuum_insert_scale_factor": "0.01",
    "autovacuum_vacuum_cost_limit": "2000",
}


def migrate(target: tuple[str, str] | None) -> None:
    """Migrate the app to ``target`` (None: its latest migration)."""
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate([target] if target is not None else executor.loader.graph.leaf_nodes(APP))


def storage_parameters(table: str) -> dict[str, str]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT reloptions FROM pg_class WHERE relname = %s", [table])
        options = cursor.fetchone()[0] or []
    return dict(option.split("=", 1) for option in options)


def test_the_queue_tables_get_their_autovacuum_settings_and_lose_them_when_reversed():
    if connection.vendor != "postgresql":
        pytest.skip("storage parameters exist on PostgreSQL only")
    try:
        migrate(AFTER)
        assert {table: storage_parameters(table) for table in TABLES} == {
            table: SETTINGS for table in TABLES
        }
        migrate(BEFORE)
        assert {table: storage_parameters(table) for table in TABLES} == {
            table: {} for table in TABLES
        }
    finally:
        migrate(None)  # the later tests need every migration, not only this one
    assert storage_parameters("taskengine_job") == SETTINGS


def test_the_migration_does_nothing_on_other_databases_and_reverses():
    """SQLite has no autovacuum settings: both directions run and leave the tables usable."""
    try:
        migrate(BEFORE)
        migrate(AFTER)
    finally:
        migrate(None)
    from django_taskengine.models import Attempt, Job

    job = Job.objects.create(task_name="t")
    Attempt.objects.create(job=job, number=1, outcome="succeeded")
    assert Attempt.objects.filter(job=job).count() == 1
