"""django-taskengine: a durable task queue whose job table lives in your own database.

Public API::

    from django_taskengine import task, periodic, TaskContext, Snooze
"""

from __future__ import annotations

from .context import TaskContext
from .periodic import periodic
from .registry import TaskNotRegistered, get_task
from .serialization import NotJSONError
from .snooze import Snooze
from .task import Task, task

__version__ = "0.1.0"
__all__ = [
    "NotJSONError",
    "Snooze",
    "Task",
    "TaskContext",
    "TaskNotRegistered",
    "get_task",
    "periodic",
    "task",
]
