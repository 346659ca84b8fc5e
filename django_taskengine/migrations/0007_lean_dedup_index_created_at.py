from __future__ import annotations

from typing import TYPE_CHECKING

from django.db import migrations, models

if TYPE_CHECKING:
    from django.db.backends.base.schema import BaseDatabaseSchemaEditor
    from django.db.migrations.state import StateApps


def create_created_at_brin(apps: StateApps, schema_editor: BaseDatabaseSchemaEditor) -> None:
    # The admin filters jobs by creation time. created_at grows with insertion order, so a BRIN
    # index serves that filter in a few pages of storage at almost no cost per enqueue.
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(
            "CREATE INDEX IF NOT EXISTS taskengine_job_created_brin "
            "ON taskengine_job USING brin (created_at)"
        )


def drop_created_at_brin(apps: StateApps, schema_editor: BaseDatabaseSchemaEditor) -> None:
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute("DROP INDEX IF EXISTS taskengine_job_created_brin")


class Migration(migrations.Migration):
    """Keep jobs without a dedup key out of the dedup index; index jobs by creation time."""

    dependencies = [
        ("django_taskengine", "0006_periodic_tasks"),
    ]

    operations = [
        migrations.RemoveConstraint(
            model_name="job",
            name="taskengine_job_active_dedup_key",
        ),
        migrations.AddConstraint(
            model_name="job",
            constraint=models.UniqueConstraint(
                condition=models.Q(
                    ("dedup_key__isnull", False), ("status__in", ["queued", "running", "paused"])
                ),
                fields=("dedup_key",),
                name="taskengine_job_active_dedup_key",
            ),
        ),
        migrations.RunPython(create_created_at_brin, drop_created_at_brin),
    ]
