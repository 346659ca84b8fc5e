"""Tasks the benchmarks run (autodiscovered like any app's tasks.py)."""

from __future__ import annotations

import asyncio
import time

from django_taskengine import task


@task
def noop():
    return None


@task(group_concurrency=1)
def grouped_noop():
    """A no-op job of one group at a time (benchmarks/flow.py)."""
    return None


@task(atomic=True)
def atomic_write():
    """A job whose task runs a query in its own transaction, in which its end is written too
    (an atomic task): the work of a task that uses the database (benchmarks/pooler.py)."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")


@task
def echo(x):
    return x


@task(max_attempts=5)
def sleeper(seconds):
    """A job to SIGKILL a worker under (kill_recovery)."""
    time.sleep(seconds)


@task
def io_wait(seconds):
    """An I/O-bound job: blocks its thread for ``seconds`` (benchmarks/io_bound.py)."""
    time.sleep(seconds)


@task
async def io_wait_async(seconds):
    """The same wait as ``io_wait``, awaited on an event loop."""
    await asyncio.sleep(seconds)
