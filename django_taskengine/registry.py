"""The registry of tasks this process knows: only a registered task ever runs.

``@task`` (and the ``django.tasks`` backend) register tasks here under their stable names;
workers look a job's task up by the name stored on the row. A task is registered when its
module is imported: an app's ``tasks.py`` at start-up, any other module when a job names a task
of it that is not registered yet (:meth:`TaskRegistry.get`) — but only a module inside the
package of an installed app, or of one ``TASKENGINE["TASK_MODULES"]`` lists, and what runs is
still only what that module registered: a name read from the database never reaches any other
import, nor a callable that is not a registered task. This module imports nothing of the
package but the settings, so every other module (the runner, the stores' callers, periodic
schedules, the admin) can use it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from importlib import import_module
from typing import Any, Protocol

from django.apps import apps
from django.core.exceptions import ImproperlyConfigured

from .conf import taskengine_settings

logger = logging.getLogger(__name__)


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
        #: Modules imported (or tried) to find a task, with why an import failed ("" if not).
        self._imported: dict[str, str] = {}
        self._importing = threading.RLock()  # a module may look a task up as it is imported

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
        """The task called ``name``, or :class:`TaskNotRegistered` saying how to fix it.

        A name not registered yet whose module may be imported (see the module's docstring)
        is looked up again after importing it: a task defined outside ``tasks.py`` runs.
        """
        task = self.find(name)
        if task is not None:
            return task
        failure = next((why for module, why in self._tried(name) if why), "")
        raise TaskNotRegistered(
            f"No task named {name!r} is registered in this process. Tasks are registered by "
            f"@task in modules Django imports: an app's "
            f"'{taskengine_settings.AUTODISCOVER_MODULE}.py' at start-up, another module of an "
            "installed app (or of TASKENGINE['TASK_MODULES']) when a job names one of its tasks. "
            "Is the app in INSTALLED_APPS, or was the task renamed after the job was enqueued?"
            + (f" {failure}" if failure else "")
        )

    def find(self, name: str) -> Any | None:
        """The task called ``name`` (importing its module first if it may), or None."""
        task = self._tasks.get(name)
        if task is None and self._import_for(name):
            task = self._tasks.get(name)
        return task

    def _tried(self, name: str) -> list[tuple[str, str]]:
        """The modules tried for ``name``, with why an import failed."""
        return [
            (module, why) for module, why in self._imported.items() if name.startswith(module + ".")
        ]

    def _import_for(self, name: str) -> bool:
        """Import the module that would define ``name`` (the longest prefix of it that is a
        module that may be imported), once; whether one was imported now."""
        parts = name.split(".")
        if len(parts) < 2 or not all(part.isidentifier() for part in parts):
            return False
        with self._importing:
            for cut in range(len(parts) - 1, 0, -1):
                module = ".".join(parts[:cut])
                if module in self._imported:
                    return False
                if not importable(module):
                    continue
                try:
                    import_module(module)
                except ModuleNotFoundError as exc:
                    if exc.name is not None and (module + ".").startswith(exc.name + "."):
                        self._imported[module] = ""  # no such module: a shorter prefix may be
                        continue
                    self._imported[module] = f"Importing {module} failed: {exc}."
                    logger.exception("importing %s to find task %s", module, name)
                    return False
                except Exception as exc:  # noqa: BLE001 - reported with the task's error
                    self._imported[module] = f"Importing {module} failed: {exc!r}."
                    logger.exception("importing %s to find task %s", module, name)
                    return False
                self._imported[module] = ""
                return True
        return False

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


def importable(module: str) -> bool:
    """Whether ``module`` may be imported to find a task: it is inside the package of an
    installed app, or of one ``TASKENGINE["TASK_MODULES"]`` lists."""
    roots = [config.name for config in apps.get_app_configs()]
    roots += taskengine_settings.TASK_MODULES
    return any(module == root or module.startswith(root + ".") for root in roots)


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
