"""The indexes by status and by task cover only jobs at rest (paused or finished).

Each row version of a job that changes status was indexed anew in both: four entries each for
a job's insert, reservation, start and end, most of them dead within milliseconds. Queued and
running jobs have partial indexes of their own (claimable, reserved, running), which queries
reach through django_taskengine/job_indexes.py. The new indexes are built before the old ones
are dropped, so no query runs without one.
"""

from django.db import migrations, models

AT_REST = ("paused", "succeeded", "failed", "cancelled")


class Migration(migrations.Migration):
    dependencies = [
        ("django_taskengine", "0011_queue_table_autovacuum"),
    ]

    operations = [
        migrations.AddIndex(
            model_name="job",
            index=models.Index(
                condition=models.Q(("status__in", AT_REST)),
                fields=["status", "queue"],
                name="taskengine_job_rest_status_idx",
            ),
        ),
        migrations.AddIndex(
            model_name="job",
            index=models.Index(
                condition=models.Q(("status__in", AT_REST)),
                fields=["task_name", "status"],
                name="taskengine_job_rest_task_idx",
            ),
        ),
        migrations.RemoveIndex(model_name="job", name="taskengine_job_status_idx"),
        migrations.RemoveIndex(model_name="job", name="taskengine_job_task_idx"),
    ]
