import uuid
from typing import Any

import django.utils.timezone
from django.db import migrations, models

from django_taskengine.store.sql import query, run_on_postgresql


def backfill_uids(apps: Any, schema_editor: Any) -> None:
    """Give every existing job its own uid (a default on AddField would give all the same)."""
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(query("backfill_job_uid_v1"))
        return
    Job = apps.get_model("django_taskengine", "Job")
    jobs = Job.objects.using(schema_editor.connection.alias)
    while True:
        batch = list(jobs.filter(uid__isnull=True).only("id")[:1000])
        if not batch:
            return
        for job in batch:
            job.uid = uuid.uuid4()
        jobs.bulk_update(batch, ["uid"])


class Migration(migrations.Migration):
    """The job's uid (``ctx.idempotency_key``) and the operators' audit trail."""

    dependencies = [
        ("django_taskengine", "0008_enqueue_function"),
    ]

    operations = [
        migrations.AddField(
            model_name="job",
            name="uid",
            field=models.UUIDField(editable=False, null=True),
        ),
        migrations.RunPython(backfill_uids, migrations.RunPython.noop),
        migrations.AlterField(
            model_name="job",
            name="uid",
            field=models.UUIDField(default=uuid.uuid4, editable=False),
        ),
        run_on_postgresql("set_job_uid_default_v1", "drop_job_uid_default_v1"),
        # v1 (migration 0008) stays: processes of the previous release call it until they stop.
        run_on_postgresql("create_enqueue_function_v2", "drop_enqueue_function_v2"),
        migrations.CreateModel(
            name="AuditEntry",
            fields=[
                ("id", models.BigAutoField(primary_key=True, serialize=False)),
                ("at", models.DateTimeField(default=django.utils.timezone.now)),
                ("actor", models.CharField(blank=True, default="", max_length=150)),
                (
                    "source",
                    models.CharField(
                        choices=[("admin", "admin"), ("cli", "command line"), ("python", "Python")],
                        max_length=16,
                    ),
                ),
                ("action", models.CharField(max_length=32)),
                (
                    "object_kind",
                    models.CharField(
                        choices=[
                            ("queue", "queue"),
                            ("task", "task type"),
                            ("engine", "engine"),
                            ("job", "job"),
                            ("schedule", "schedule"),
                        ],
                        max_length=16,
                    ),
                ),
                ("object_id", models.CharField(blank=True, default="", max_length=255)),
                ("reason", models.TextField(blank=True, default="")),
                ("detail", models.JSONField(blank=True, default=dict)),
            ],
            options={
                "verbose_name": "audit entry",
                "verbose_name_plural": "audit trail",
                "db_table": "taskengine_audit",
                "ordering": ["-at", "-id"],
                "default_permissions": ("view",),
                "indexes": [
                    models.Index(fields=["at"], name="taskengine_audit_at_idx"),
                    models.Index(
                        fields=["object_kind", "object_id", "at"], name="taskengine_audit_obj_idx"
                    ),
                ],
            },
        ),
    ]
