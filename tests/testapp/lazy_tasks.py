"""Tasks outside ``tasks.py`` that nothing imports: a worker imports this module when a job
names one of them (tests/unit/test_task_modules.py, tests/worker/test_task_modules.py)."""

from __future__ import annotations

from django_taskengine import task

try:
    from django.tasks import task as django_task
except ImportError:
    from django_tasks import task as django_task


@task
def lazy_add(a, b):
    return a + b


@django_task
def lazy_django_add(a, b):
    return a + b
