"""The flow claim, cheaper: the count of jobs under flow control read by an index scan, and the
claim in one statement taking its candidates as an array, counting only when a concurrency
limit needs it.

``taskengine_flow_running`` is the count, now read by ``taskengine_flow_usage`` too (the same
rows, the same answer). The new ``taskengine_flow_claim`` stands beside migration 0032's (same
name, other arguments): workers of the previous release call that one, and both take the same
lock and count the same rows, so both releases can claim side by side.
"""

from django.db import migrations

from django_taskengine.store.sql import run_on_postgresql


class Migration(migrations.Migration):
    dependencies = [
        ("django_taskengine", "0032_flow_claim_function"),
    ]

    operations = [
        run_on_postgresql("create_flow_running_function", "drop_flow_running_function"),
        # Backwards, the function of migration 0017 again (this one calls the count above).
        run_on_postgresql("create_flow_usage_function_v2", "create_flow_usage_function"),
        run_on_postgresql("create_flow_candidate_type", "drop_flow_candidate_type"),
        run_on_postgresql("create_flow_claim_function_v2", "drop_flow_claim_function_v2"),
    ]
