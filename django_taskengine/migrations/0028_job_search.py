"""The job list's search by argument values and error text, and the failures page's entry on
the admin index.

On PostgreSQL this builds ``taskengine_job_search_idx``, a GIN index over the words of the
arguments and error of each job at rest (paused or finished: a job gets its entry once, when it
finishes; enqueues and claims write none) (django_taskengine/store/sql/search.sql), with ``CREATE INDEX
CONCURRENTLY``: enqueues, claims and finishes go on while it is built, so the migration is not
atomic (CONCURRENTLY cannot run inside a transaction). What a large table costs at migrate time:
two scans of the job table plus the tokenizing of every row — measured at about 20 s per
million jobs with short arguments on a small server; count minutes for 10M rows, during which
the migrate command waits (the site keeps working). If it is interrupted, the invalid index it
leaves is dropped and built again by the next migrate. To build it ahead of a deploy, run the
block ``create_job_search_index_v1`` by hand (psql); the migration then finds it and skips it.

What it costs afterwards: every row version of a job (enqueue, claim, finish) gets an entry,
the costliest of the table's; measured on a loaded 2-core server, enqueue took 5 to 20 % longer
(10,000 jobs one by one through the Python API) and status changes more. A deployment that
cannot afford it may drop the index (``DROP INDEX CONCURRENTLY taskengine_job_search_idx``):
the search still works, by a scan of the table.

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
