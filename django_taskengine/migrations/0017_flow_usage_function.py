"""The flow claim's lock and counts in one statement: a function that takes the lock, then
reads what the limits count in a statement of its own (so after the lock), one statement of
the claim's pipeline instead of two. The statements of the previous release (the lock, then
the counts) take the same lock: both releases' workers can claim side by side."""

from django.db import migrations

from django_taskengine.store.sql import run_on_postgresql


class Migration(migrations.Migration):
    dependencies = [
        ("django_taskengine", "0016_flow_control"),
    ]

    operations = [
        run_on_postgresql("create_flow_usage_function", "drop_flow_usage_function"),
    ]
