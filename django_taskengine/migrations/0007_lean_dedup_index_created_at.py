from django.db import migrations, models

from django_taskengine.store.sql import query


def create_created_at_brin(apps, schema_editor):
    # The admin filters jobs by creation time. created_at grows with insertion order, so a BRIN
    # index serves that filter in a few pages of storage at almost no cost per enqueue.
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(query("create_created_at_brin_v1"))


def drop_created_at_brin(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(query("drop_created_at_brin_v1"))


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
