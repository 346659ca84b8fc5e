"""The count of jobs under flow control (``taskengine_flow_running``) in plpgsql, which keeps
its plan for the session: in sql it was planned again at every flow claim."""

from django.db import migrations

from django_taskengine.store.sql import run_on_postgresql


class Migration(migrations.Migration):
    dependencies = [
        ("django_taskengine", "0033_flow_claim_arrays"),
    ]

    operations = [
        # Backwards, the function in sql of migration 0033 again.
        run_on_postgresql("create_flow_running_function_v2", "create_flow_running_function"),
    ]
