"""Attempts get the outcome "snoozed": the task raised Snooze, its job is due again later and
the attempt does not count."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("django_taskengine", "0014_pause_fence"),
    ]

    operations = [
        migrations.AlterField(
            model_name="attempt",
            name="outcome",
            field=models.CharField(
                choices=[
                    ("succeeded", "succeeded"),
                    ("failed", "failed"),
                    ("orphaned", "worker died"),
                    ("interrupted", "interrupted"),
                    ("timed_out", "timed out"),
                    ("superseded", "superseded"),
                    ("paused", "paused at a checkpoint"),
                    ("cancelled", "cancelled at a checkpoint"),
                    ("snoozed", "snoozed"),
                ],
                max_length=16,
            ),
        ),
    ]
