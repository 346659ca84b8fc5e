"""Requests an operator makes of a worker process (drain, stop, hard stop), and an index for a
worker's history.

``taskengine_attempt_worker_idx`` (worker_id, id) serves "the latest attempts this worker ran"
on the worker's admin page. Without it that page walks the attempt table backwards by primary
key until it has found enough of the worker's attempts: instant for a live worker, but 107 ms
for a worker that stopped a million attempts ago (and ten times that at 10M). Measured on
PostgreSQL 16, 100,000 attempt rows inserted in batches of 100 by 8 workers: 0.30-0.38 s
without the index, 0.52-0.55 s with it (about 2 µs more per attempt written, a small part of
what finishing a job costs); 68 MB per million attempts.
"""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("django_taskengine", "0029_console_stats"),
    ]

    operations = [
        migrations.AlterModelOptions(
            name="worker",
            options={
                "ordering": ["-started_at"],
                "permissions": [("control_worker", "Can drain and stop worker processes")],
            },
        ),
        migrations.AddField(
            model_name="worker",
            name="control_requested",
            field=models.CharField(blank=True, default="", max_length=8),
        ),
        migrations.AddField(
            model_name="worker",
            name="control_requested_at",
            field=models.DateTimeField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name="worker",
            name="control_requested_by",
            field=models.CharField(blank=True, default="", max_length=150),
        ),
        migrations.AlterField(
            model_name="auditentry",
            name="object_kind",
            field=models.CharField(
                choices=[
                    ("queue", "queue"),
                    ("task", "task type"),
                    ("engine", "engine"),
                    ("job", "job"),
                    ("schedule", "schedule"),
                    ("worker", "worker process"),
                ],
                max_length=16,
            ),
        ),
        migrations.AddIndex(
            model_name="attempt",
            index=models.Index(fields=["worker_id", "id"], name="taskengine_attempt_worker_idx"),
        ),
    ]
