from django.db import migrations

from django_taskengine.store.sql import query

# One job, no dedup key, through a PL/pgSQL function (see the block's comment in
# django_taskengine/store/sql/migrations.sql).


def create_enqueue_function(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(query("create_enqueue_function_v1"))


def drop_enqueue_function(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(query("drop_enqueue_function_v1"))


class Migration(migrations.Migration):
    """PostgreSQL: a function that enqueues one job, so its INSERT is planned once per session."""

    dependencies = [
        ("django_taskengine", "0007_lean_dedup_index_created_at"),
    ]

    operations = [
        migrations.RunPython(create_enqueue_function, drop_enqueue_function),
    ]
