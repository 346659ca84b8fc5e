"""What the flow claim in one statement reads under its lock, as a function of its own
(``taskengine_flow_read``): the claim itself is now a statement (``flow_claim``), not
``taskengine_flow_claim``.

That function of migration 0033 stays: workers of the previous release call it, and both take
the same lock and count the same rows, so both releases can claim side by side.
"""

from django.db import migrations

from django_taskengine.store.sql import run_on_postgresql


class Migration(migrations.Migration):
    dependencies = [
        ("django_taskengine", "0034_flow_running_plpgsql"),
    ]

    operations = [
        run_on_postgresql("create_flow_read_function", "drop_flow_read_function"),
    ]
