"""Flow control (django_taskengine/core/flow.py): fleet-wide limits per queue, task type, group
and sequence.

Jobs get their group, sequence and lane (``flow_key``); the claim index leaves out jobs with a
lane, which the flow claim reads through an index of its own, lane by lane. Queues get their
limits (in force, from the settings, set at runtime). Rate windows get a table. On
PostgreSQL, the enqueue function takes the new columns (a new signature: the previous one stays
for processes of the previous release).

On a large job table, building the indexes blocks writes to it for as long as that takes.
"""

from django.db import migrations, models

from django_taskengine.store.sql import run_on_postgresql


class Migration(migrations.Migration):
    dependencies = [
        ("django_taskengine", "0015_snooze"),
    ]

    operations = [
        migrations.CreateModel(
            name="RateWindow",
            fields=[
                ("scope", models.CharField(max_length=458, primary_key=True, serialize=False)),
                ("starts", models.JSONField(default=list)),
            ],
            options={
                "db_table": "taskengine_rate_window",
            },
        ),
        migrations.RemoveIndex(
            model_name="job",
            name="taskengine_job_claimable_idx",
        ),
        migrations.AddField(
            model_name="job",
            name="flow_key",
            field=models.CharField(blank=True, max_length=458, null=True),
        ),
        migrations.AddField(
            model_name="job",
            name="group_key",
            field=models.CharField(blank=True, max_length=200, null=True),
        ),
        migrations.AddField(
            model_name="job",
            name="sequence_key",
            field=models.CharField(blank=True, max_length=200, null=True),
        ),
        migrations.AddField(
            model_name="queue",
            name="concurrency",
            field=models.IntegerField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name="queue",
            name="limits_changed_at",
            field=models.DateTimeField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name="queue",
            name="limits_changed_by",
            field=models.CharField(blank=True, db_default="", default="", max_length=150),
        ),
        migrations.AddField(
            model_name="queue",
            name="rate_limit",
            field=models.CharField(blank=True, db_default="", default="", max_length=32),
        ),
        migrations.AddField(
            model_name="queue",
            name="runtime_limits",
            field=models.JSONField(blank=True, db_default={}, default=dict),
        ),
        migrations.AddField(
            model_name="queue",
            name="settings_limits",
            field=models.JSONField(blank=True, db_default={}, default=dict),
        ),
        migrations.AddIndex(
            model_name="job",
            index=models.Index(
                models.OrderBy(models.F("priority"), descending=True),
                models.F("run_after"),
                models.F("id"),
                condition=models.Q(
                    ("flow_key__isnull", True), ("status", "queued"), ("token__isnull", True)
                ),
                name="taskengine_job_claimable_idx",
            ),
        ),
        migrations.AddIndex(
            model_name="job",
            index=models.Index(
                models.F("flow_key"),
                models.OrderBy(models.F("priority"), descending=True),
                models.F("run_after"),
                models.F("id"),
                condition=models.Q(
                    ("flow_key__isnull", False), ("status", "queued"), ("token__isnull", True)
                ),
                name="taskengine_job_flow_idx",
            ),
        ),
        migrations.AddIndex(
            model_name="job",
            index=models.Index(
                condition=models.Q(("flow_key__isnull", False), ("token__isnull", False)),
                fields=["flow_key"],
                name="taskengine_job_flow_active_idx",
            ),
        ),
        run_on_postgresql("create_enqueue_function_v3", "drop_enqueue_function_v3"),
        migrations.AddIndex(
            model_name="job",
            index=models.Index(
                condition=models.Q(
                    ("sequence_key__isnull", False), ("status__in", ["queued", "running", "paused"])
                ),
                fields=["sequence_key", "id"],
                name="taskengine_job_sequence_idx",
            ),
        ),
        migrations.AlterModelOptions(
            name="queue",
            options={
                "ordering": ["name"],
                "permissions": [
                    ("pause_queue", "Can pause and resume queues and task types"),
                    ("limit_queue", "Can set queue limits"),
                ],
            },
        ),
    ]
