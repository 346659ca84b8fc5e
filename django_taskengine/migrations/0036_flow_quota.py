"""Quotas of a queue's limits while they are far from binding (``taskengine_flow_quota``): a
worker holding one starts jobs in the queue's lane without the flow lock, and every flow claim,
of this release or the previous ones, counts the quota's starts as running through
``taskengine_flow_running``.
"""

from django.db import migrations, models

from django_taskengine.store.sql import run_on_postgresql


class Migration(migrations.Migration):
    dependencies = [
        ("django_taskengine", "0035_flow_read_function"),
    ]

    operations = [
        migrations.CreateModel(
            name="FlowQuota",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("worker_id", models.UUIDField()),
                ("scope", models.CharField(max_length=458)),
                ("starts", models.IntegerField()),
                ("until", models.FloatField()),
            ],
            options={
                "db_table": "taskengine_flow_quota",
                "constraints": [
                    models.UniqueConstraint(
                        fields=("worker_id", "scope"), name="taskengine_flow_quota_worker_scope"
                    )
                ],
            },
        ),
        run_on_postgresql("create_flow_running_function_v3", "create_flow_running_function_v2"),
        run_on_postgresql("create_flow_quota_clock_function", "drop_flow_quota_clock_function"),
    ]
