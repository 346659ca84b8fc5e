"""Tasks the benchmarks run (autodiscovered like any app's tasks.py)."""

from __future__ import annotations

import time

from django_taskengine import task


@task
def noop():
    return None


@task
def echo(x):
    return x


@task(max_attempts=5)
def sleeper(seconds):
    """A job to SIGKILL a worker under (kill_recovery)."""
    time.sleep(seconds)
