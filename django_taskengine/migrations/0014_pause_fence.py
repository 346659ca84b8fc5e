from django.db import migrations

from django_taskengine.store.sql import run_on_postgresql


class Migration(migrations.Migration):
    """PostgreSQL: the pauses in force, read by every statement that starts jobs after it holds
    the start fence that a pause waits on (see the block's comment in
    django_taskengine/store/sql/migrations.sql): nothing starts after a pause returns."""

    dependencies = [
        ("django_taskengine", "0013_attempt_job_index"),
    ]

    operations = [
        run_on_postgresql("create_pauses_function_v1", "drop_pauses_function_v1"),
    ]
