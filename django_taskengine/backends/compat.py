"""Django's Tasks framework, wherever it comes from.

Django ≥ 6.0 ships it as ``django.tasks``; on Django 5.2 the ``django-tasks`` backport package
(module ``django_tasks``, 0.12 or later) offers the same API. Everything the backend needs is
imported from here, so the rest of the package never cares which one it got.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    # The type checker sees one API, django-stubs' ``django.tasks``: the backport offers the same
    # names, and typing both branches below would make each one's classes a redefinition.
    from django.tasks import Task, TaskContext, TaskResult, TaskResultStatus, task, task_backends
    from django.tasks.backends.base import BaseTaskBackend
    from django.tasks.base import TaskError
    from django.tasks.exceptions import InvalidTask, TaskResultDoesNotExist
    from django.tasks.signals import task_enqueued, task_finished, task_started
    from django.utils.json import normalize_json

    #: Which one was imported: "django.tasks" or "django_tasks".
    SOURCE: str
else:
    try:
        from django.tasks import (
            Task,
            TaskContext,
            TaskResult,
            TaskResultStatus,
            task,
            task_backends,
        )
        from django.tasks.backends.base import BaseTaskBackend
        from django.tasks.base import TaskError
        from django.tasks.exceptions import InvalidTask, TaskResultDoesNotExist
        from django.tasks.signals import task_enqueued, task_finished, task_started
        from django.utils.json import normalize_json

        SOURCE = "django.tasks"
    except ImportError as missing_django_tasks:
        try:
            from django_tasks import TaskContext, TaskResult, TaskResultStatus, task, task_backends
            from django_tasks.backends.base import BaseTaskBackend
            from django_tasks.base import Task, TaskError
            from django_tasks.exceptions import InvalidTaskError as InvalidTask
            from django_tasks.exceptions import TaskResultDoesNotExist
            from django_tasks.signals import task_enqueued, task_finished, task_started
            from django_tasks.utils import normalize_json

            SOURCE = "django_tasks"
        except ImportError:
            raise ImportError(
                "django_taskengine.backends needs Django's Tasks framework: Django 6.0 or later, "
                "or on Django 5.2 the backport package (pip install 'django-tasks>=0.12')."
            ) from missing_django_tasks

__all__ = [
    "SOURCE",
    "BaseTaskBackend",
    "InvalidTask",
    "Task",
    "TaskContext",
    "TaskError",
    "TaskResult",
    "TaskResultDoesNotExist",
    "TaskResultStatus",
    "normalize_json",
    "task",
    "task_backends",
    "task_enqueued",
    "task_finished",
    "task_started",
]
