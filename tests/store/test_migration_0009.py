"""Migration 0009 gives every job that existed before it a uid of its own, and reverses."""

from __future__ import annotations

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from django_taskengine.models import Job

pytestmark = pytest.mark.django_db(transaction=True)

APP = "django_taskengine"
BEFORE, AFTER = (APP, "0008_enqueue_function"), (APP, "0009_job_uid_audit_entry")


def migrate(target: tuple[str, str] | None):
    """Migrate the app to ``target`` (None: its latest migration); the apps at that state."""
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    targets = [target] if target is not None else executor.loader.graph.leaf_nodes(APP)
    executor.migrate(targets)
    return executor.loader.project_state(targets).apps


def test_jobs_enqueued_before_the_migration_each_get_their_own_uid():
    try:
        old_apps = migrate(BEFORE)
        OldJob = old_apps.get_model(APP, "Job")
        OldJob.objects.bulk_create([OldJob(task_name="t", args=[n]) for n in range(2500)])
        migrate(AFTER)
        uids = list(Job.objects.values_list("uid", flat=True))
        assert len(uids) == 2500 and None not in uids and len(set(uids)) == 2500
    finally:
        migrate(None)  # the later tests need every migration, not only this one


def test_the_enqueue_function_of_the_previous_release_still_gives_jobs_a_uid():
    """Processes still running the previous release during a deploy call enqueue function v1,
    which does not know the column: the column's default fills it."""
    if connection.vendor != "postgresql":
        pytest.skip("the enqueue functions exist on PostgreSQL only")
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT taskengine_enqueue_job(%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
            ["t", "default", "[]", "{}", 0, None, 3, 1.0, None, "taskengine"],
        )
        job_id = cursor.fetchone()[0][0]
    assert Job.objects.get(pk=job_id).uid is not None
