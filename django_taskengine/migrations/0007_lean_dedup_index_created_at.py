from django.db import migrations, models

from django_taskengine.store.sql import run_on_postgresql


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
        # The admin filters jobs by creation time: a BRIN index on created_at (see the block).
        run_on_postgresql("create_created_at_brin_v1", "drop_created_at_brin_v1"),
    ]
