"""django-taskengine: a durable task queue whose job table lives in your own database.

Public API::

    from django_taskengine import task, periodic, TaskContext, Snooze, send_event, Workflow, Batch
"""

from __future__ import annotations

from .context import TaskContext
from .events import send_event
from .periodic import periodic
from .registry import TaskNotRegistered, get_task
from .serialization import NotJSONError
from .snooze import Snooze
from .task import Task, task
from .workflows import Batch, Workflow, WorkflowCycle

__version__ = "0.1.0"
__all__ = [
    "Batch",
    "NotJSONError",
    "Snooze",
    "Task",
    "TaskContext",
    "TaskNotRegistered",
    "Workflow",
    "WorkflowCycle",
    "get_task",
    "periodic",
    "send_event",
    "task",
]
