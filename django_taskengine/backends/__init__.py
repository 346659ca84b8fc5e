"""A backend for Django's Tasks framework (``django.tasks``; on Django 5.2 the ``django-tasks``
backport)::

    TASKS = {"default": {"BACKEND": "django_taskengine.backends.TaskEngineBackend",
                         "QUEUES": ["default", "emails"]}}

Modules: :mod:`.backend` (the backend), :mod:`.task_class` (``TaskEngineTask``, the task class
with the engine's options, ``engine_options`` to give them on every Django, and
``TaskEngineContext``), :mod:`.adapter` (how workers run these
tasks, and the ``task_started``/``task_finished`` signals), :mod:`.results` (job rows as
``TaskResult``), :mod:`.compat` (where the framework is imported from).
"""

from __future__ import annotations

from .backend import TaskEngineBackend
from .results import JobCancelled, WorkerDied
from .task_class import TaskEngineContext, TaskEngineTask, engine_options

__all__ = [
    "JobCancelled",
    "TaskEngineBackend",
    "TaskEngineContext",
    "TaskEngineTask",
    "WorkerDied",
    "engine_options",
]
