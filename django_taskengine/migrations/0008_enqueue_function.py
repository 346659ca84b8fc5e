from django.db import migrations

from django_taskengine.store.sql import run_on_postgresql

# One job, no dedup key, through a PL/pgSQL function (see the block's comment in
# django_taskengine/store/sql/migrations.sql).


class Migration(migrations.Migration):
    """PostgreSQL: a function that enqueues one job, so its INSERT is planned once per session."""

    dependencies = [
        ("django_taskengine", "0007_lean_dedup_index_created_at"),
    ]

    operations = [
        run_on_postgresql("create_enqueue_function_v1", "drop_enqueue_function_v1"),
    ]
