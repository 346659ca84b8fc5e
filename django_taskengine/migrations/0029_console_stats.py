"""Per-minute statistics the console's charts read: one row per queue and minute, written by the
worker processes (django_taskengine/worker/stats.py)."""

from django.db import migrations, models

#: The wait histogram's buckets, frozen here as they were when the table was made.
WAIT_BUCKETS = 28


class Migration(migrations.Migration):
    dependencies = [
        ("django_taskengine", "0028_job_search"),
    ]

    operations = [
        migrations.CreateModel(
            name="MinuteStats",
            fields=[
                ("id", models.BigAutoField(primary_key=True, serialize=False)),
                ("queue", models.CharField(max_length=100)),
                ("minute", models.IntegerField()),
                ("succeeded", models.IntegerField(default=0)),
                ("failed", models.IntegerField(default=0)),
                ("retried", models.IntegerField(default=0)),
                ("running_seconds", models.FloatField(default=0.0)),
                *[
                    (f"wait_{bucket}", models.IntegerField(default=0))
                    for bucket in range(WAIT_BUCKETS)
                ],
            ],
            options={
                "db_table": "taskengine_minute_stats",
                "indexes": [models.Index(fields=["minute"], name="taskengine_minute_idx")],
                "constraints": [
                    models.UniqueConstraint(
                        fields=("queue", "minute"), name="taskengine_minute_uniq"
                    )
                ],
            },
        ),
    ]
