from django.db import migrations

from django_taskengine.store.sql import run_on_postgresql

# Autovacuum thresholds and budget for the job and attempt tables, whose rows are all updated
# or deleted within seconds to minutes of their insert: the values and their reasons are in the
# blocks' comments in django_taskengine/store/sql/migrations.sql.


class Migration(migrations.Migration):
    """PostgreSQL: vacuum the queue's tables after 1% of dead rows, not PostgreSQL's 20%."""

    dependencies = [
        ("django_taskengine", "0010_reserved_jobs"),
    ]

    operations = [
        run_on_postgresql("set_job_autovacuum_v1", "reset_job_autovacuum_v1"),
        run_on_postgresql("set_attempt_autovacuum_v1", "reset_attempt_autovacuum_v1"),
    ]
