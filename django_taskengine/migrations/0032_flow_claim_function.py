"""A flow claim in one statement when no limit binds.

``taskengine_flow_claim`` reads the counts under the flow lock and starts the claim's first
jobs if every scope has room for all of them, in the statement that read the candidates: one
round trip, and no wait for the worker between the lock and the commit. When a limit binds it
starts nothing and the worker claims the general way, which decides job by job. Both ways start
jobs through ``taskengine_flow_start``; ``taskengine_flow_scopes`` says which limited scopes a
job belongs to. Workers of the previous release take the same lock and count the same rows:
both releases can claim side by side.
"""

from django.db import migrations

from django_taskengine.store.sql import run_on_postgresql


class Migration(migrations.Migration):
    dependencies = [
        ("django_taskengine", "0031_failed_jobs_index"),
    ]

    operations = [
        run_on_postgresql("create_flow_start_function", "drop_flow_start_function"),
        run_on_postgresql("create_flow_scopes_function", "drop_flow_scopes_function"),
        run_on_postgresql("create_flow_claim_function", "drop_flow_claim_function"),
    ]
