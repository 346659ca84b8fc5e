"""The registry of tasks this process knows: only a registered task ever runs.

``@task`` (and the ``django.tasks`` backend) register tasks here under their stable names;
workers look a job's task up by the name stored on the row, and nothing else: no name read from
the database is ever imported. This module imports nothing of the package but the settings, so
every other module (the runner, the stores' callers, periodic schedules, the admin) can use it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, Protocol

from django.core.exceptions import ImproperlyConfigured

from .conf import taskengine_settings


class TaskNotRegistered(LookupError):
    """A job names a task that no ``@task`` in this process registered."""


class RegisteredTask(Protocol):
    """What the registry needs of a task (:class:`~django_taskengine.task.Task` and the
    ``django.tasks`` adapter). Read-only, as the registry never sets them: a task may declare
    narrower types (``on_orphan`` is ``Literal["retry", "park"]``)."""

    @property
    def name(self) -> str: ...

    @property
    def func(self) -> Callable[..., Any]: ...

    @property
    def on_orphan(self) -> str: ...


def origin(func: Callable[..., Any]) -> str:
    """Where a function is defined, as ``module.qualname``: two registrations of one name from
    the same origin are the same task (a module imported twice); from two origins, a clash."""
    return f"{func.__module__}.{getattr(func, '__qualname__', func)}"


class TaskRegistry:
    """Task name → registered task."""

    def __init__(self) -> None:
        self._tasks: dict[str, Any] = {}

    def register(self, task: RegisteredTask, *, replace: bool = False) -> None:
        """Add ``task`` under ``task.name``.

        Registering a task of the same origin again replaces it (a re-imported module). A task
        of another origin under the same name is refused, unless ``replace`` (an integration
        that re-registers its own wrapper) says otherwise.
        """
        existing = self._tasks.get(task.name)
        if existing is not None and not replace and origin(existing.func) != origin(task.func):
            raise ImproperlyConfigured(
                f"Two tasks are named {task.name!r}: {origin(existing.func)} and "
                f"{origin(task.func)}. Give one of them @task(name=...)."
            )
        self._tasks[task.name] = task

    def unregister(self, name: str) -> None:
        """Forget the task called ``name`` (tests that register throwaway tasks)."""
        self._tasks.pop(name, None)

    def get(self, name: str) -> Any:
        """The task called ``name``, or :class:`TaskNotRegistered` saying how to fix it."""
        try:
            return self._tasks[name]
        except KeyError:
            raise TaskNotRegistered(
                f"No task named {name!r} is registered in this process. Tasks are registered "
                f"by @task in modules Django imports: an app's "
                f"'{taskengine_settings.AUTODISCOVER_MODULE}.py' is imported automatically. Is "
                "the app in INSTALLED_APPS, or was the task renamed after the job was enqueued?"
            ) from None

    def find(self, name: str) -> Any | None:
        """The task called ``name``, or None."""
        return self._tasks.get(name)

    def parked_on_orphan(self) -> list[str]:
        """Names of tasks declared ``on_orphan="park"``: the rescuer fails their jobs."""
        return [name for name, task in self._tasks.items() if task.on_orphan == "park"]

    def snapshot(self) -> dict[str, Any]:
        """A copy: task name → task."""
        return dict(self._tasks)

    def restore(self, snapshot: dict[str, Any]) -> None:
        """Make the registry hold exactly ``snapshot`` again (tests that register tasks)."""
        self._tasks = dict(snapshot)

    def __contains__(self, name: object) -> bool:
        return name in self._tasks

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._tasks))

    def __len__(self) -> int:
        return len(self._tasks)


#: The process's registry.
tasks = TaskRegistry()


def get_task(name: str) -> Any:
    """Return the registered task called ``name`` or raise :class:`TaskNotRegistered`."""
    return tasks.get(name)


def find_task(name: str) -> Any | None:
    """The registered task called ``name``, or None."""
    return tasks.find(name)


def registered_tasks() -> dict[str, Any]:
    """A copy of the registry: task name → task."""
    return tasks.snapshot()
