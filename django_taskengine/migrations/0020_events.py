"""Events: the table of events ``send_event`` sent (kept for jobs that wait for them later),
and the jobs' ``waiting_for``, the event a parked job waits for (``ctx.wait_for_event``), with
a partial index for ``send_event``'s lookup (empty for jobs that wait for nothing)."""

import django.utils.timezone
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("django_taskengine", "0019_job_notify_finish"),
    ]

    operations = [
        migrations.CreateModel(
            name="Event",
            fields=[
                ("id", models.BigAutoField(primary_key=True, serialize=False)),
                ("name", models.CharField(max_length=200)),
                ("payload", models.JSONField(blank=True, null=True)),
                ("sent_at", models.DateTimeField(default=django.utils.timezone.now)),
            ],
            options={
                "db_table": "taskengine_event",
                "ordering": ["-id"],
            },
        ),
        migrations.AddField(
            model_name="job",
            name="waiting_for",
            field=models.CharField(blank=True, max_length=200, null=True),
        ),
        migrations.AddIndex(
            model_name="job",
            index=models.Index(
                condition=models.Q(("waiting_for__isnull", False)),
                fields=["waiting_for"],
                name="taskengine_job_waiting_idx",
            ),
        ),
        migrations.AddIndex(
            model_name="event",
            index=models.Index(fields=["name", "sent_at", "id"], name="taskengine_event_name_idx"),
        ),
        migrations.AddIndex(
            model_name="event",
            index=models.Index(fields=["sent_at"], name="taskengine_event_sent_idx"),
        ),
    ]
