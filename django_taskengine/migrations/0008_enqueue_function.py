from __future__ import annotations

from typing import TYPE_CHECKING

from django.db import migrations

if TYPE_CHECKING:
    from django.db.backends.base.schema import BaseDatabaseSchemaEditor
    from django.db.migrations.state import StateApps

# One job, no dedup key: the most common enqueue. As a PL/pgSQL function, the INSERT is parsed
# and planned once per database session and reused, which saves about a quarter of the
# statement's server time; unlike a client-side prepared statement, nothing is kept on the
# client, so it works the same through a transaction-mode pooler.
CREATE_ENQUEUE_FUNCTION = """
CREATE OR REPLACE FUNCTION taskengine_enqueue_job(
    p_task_name varchar, p_queue varchar, p_args jsonb, p_kwargs jsonb, p_priority integer,
    p_run_after timestamptz, p_max_attempts integer, p_retry_backoff double precision,
    p_timeout double precision, p_channel text)
RETURNS bigint[]
LANGUAGE plpgsql AS $$
-- Returns {job id, created_at as microseconds since the Unix epoch}: one scalar is cheaper to
-- return and to read than a row (no function scan, no timestamp text to parse). run_after is
-- p_run_after, or created_at when that is NULL.
DECLARE
    v_id bigint;
    v_run_after timestamptz;
BEGIN
    INSERT INTO taskengine_job AS j (
        task_name, queue, args, kwargs, status, priority, run_after, dedup_key, attempts,
        max_attempts, retry_backoff, timeout, error, traceback, created_at, stop_requested)
    VALUES (p_task_name, p_queue, p_args, p_kwargs, 'queued', p_priority,
        COALESCE(p_run_after, now()), NULL, 0, p_max_attempts, p_retry_backoff, p_timeout,
        '', '', now(), '')
    RETURNING j.id, j.run_after INTO v_id, v_run_after;
    IF v_run_after <= now() THEN
        -- Wake an idle worker at commit; a job due later is found by a later poll.
        PERFORM pg_notify(p_channel, p_queue);
    END IF;
    RETURN ARRAY[v_id, (extract(epoch FROM now()) * 1000000)::bigint];
END
$$
"""

DROP_ENQUEUE_FUNCTION = (
    "DROP FUNCTION IF EXISTS taskengine_enqueue_job("
    "varchar, varchar, jsonb, jsonb, integer, timestamptz, integer, double precision, "
    "double precision, text)"
)


def create_enqueue_function(apps: StateApps, schema_editor: BaseDatabaseSchemaEditor) -> None:
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(CREATE_ENQUEUE_FUNCTION)


def drop_enqueue_function(apps: StateApps, schema_editor: BaseDatabaseSchemaEditor) -> None:
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(DROP_ENQUEUE_FUNCTION)


class Migration(migrations.Migration):
    """PostgreSQL: a function that enqueues one job, so its INSERT is planned once per session."""

    dependencies = [
        ("django_taskengine", "0007_lean_dedup_index_created_at"),
    ]

    operations = [
        migrations.RunPython(create_enqueue_function, drop_enqueue_function),
    ]
