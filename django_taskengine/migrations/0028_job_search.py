"""The job list's search by argument values and error text, and the failures page's entry on
the admin index.

On PostgreSQL this builds ``taskengine_job_search_idx``
(django_taskengine/store/sql/search.sql), a GIN index over the words of the arguments and error
of each job at rest (paused or finished), with ``CREATE INDEX CONCURRENTLY``: enqueues, claims
and finishes go on while it is built, so the migration is not atomic (CONCURRENTLY cannot run
inside a transaction). What a large table costs at migrate time: two scans of the job table plus
the tokenizing of every finished job — measured at about 20 s per million jobs with short
arguments on a small server; count minutes for 10M rows, during which the migrate command waits
(the site keeps working). If it is interrupted, the invalid index it leaves is dropped and built
again by the next migrate. To build it ahead of a deploy, run the block
``create_job_search_index_v1`` by hand (psql); the migration then finds it and skips it.

What it costs afterwards: a job gets its entry once, when it finishes (or is paused); enqueues
and claims write none (an index of every row version cost bulk enqueue about a fifth of its
rate). A deployment that cannot afford even that may drop the index (``DROP INDEX CONCURRENTLY
taskengine_job_search_idx``): the search still works, by a scan of the table.

On SQLite there is no index: the search scans the table (development sizes).
"""

from django.db import migrations

from django_taskengine.store.sql import run_on_postgresql


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("django_taskengine", "0027_dependencies_finished_by_status"),
    ]

    operations = [
        run_on_postgresql("drop_invalid_job_search_index_v1", "drop_job_search_index_v1"),
        run_on_postgresql("create_job_search_index_v1", "drop_job_search_index_v1"),
        migrations.CreateModel(
            name="Failures",
            fields=[],
            options={
                "verbose_name": "failures",
                "verbose_name_plural": "failures",
                "proxy": True,
                "indexes": [],
                "constraints": [],
            },
            bases=("django_taskengine.queue",),
        ),
    ]
