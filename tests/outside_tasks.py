"""A task in a package that is not an installed app: a worker imports it only when
``TASKENGINE["TASK_MODULES"]`` names it (tests/unit/test_task_modules.py)."""

from __future__ import annotations

from django_taskengine import task


@task
def outside_add(a, b):
    return a + b
