"""The ``task_class`` of the backend: Django's ``Task`` with the engine's options, and the
context a ``takes_context`` task receives."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields, replace
from typing import TYPE_CHECKING, Any, cast

from .compat import InvalidTask, Task, TaskContext

if TYPE_CHECKING:
    from ..context import TaskContext as EngineContext


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskEngineTask(Task):
    """A ``django.tasks`` task that also carries django-taskengine's options.

    Django 6.1 (and the django-tasks backport) pass extra ``@task(...)`` keywords to the
    backend's ``task_class``, so they can be given where the task is defined::

        @task(queue_name="emails", max_attempts=5, timeout=30, atomic=True)
        def send_mail_task(to, subject): ...

    ``max_attempts`` and the dedup options may also be set per call with :meth:`using`; the others
    belong to the task (like ``@django_taskengine.task``'s options of the same names).
    """

    #: Attempts before the job fails (default ``TASKENGINE["DEFAULT_MAX_ATTEMPTS"]``).
    max_attempts: int | None = None
    #: Seconds before the first retry, doubling each time with jitter.
    retry_backoff: float | None = None
    #: Seconds one attempt may run.
    timeout: float | None = None
    #: Run the task body and the job's success in one database transaction.
    atomic: bool = False
    #: When the worker dies mid-run: "retry" (run again) or "park" (fail, for an operator).
    on_orphan: str = "retry"
    #: While an active (queued, running, paused) job has this key, enqueue returns that job.
    dedup_key: str | None = None
    #: What the key does: "skip", "replace", "debounce", "throttle" (django_taskengine/core/
    #: dedup.py), and the seconds of the last two's window.
    dedup: str | None = None
    dedup_window: float | None = None

    def using(
        self,
        *,
        priority: int | None = None,
        queue_name: str | None = None,
        run_after: Any = None,
        backend: str | None = None,
        max_attempts: int | None = None,
        dedup_key: str | None = None,
        dedup: str | None = None,
        dedup_window: float | None = None,
    ) -> TaskEngineTask:
        """Django's ``using()``, plus the per-call options ``max_attempts``, ``dedup_key``,
        ``dedup`` and ``dedup_window``."""
        # Explicit base class: zero-argument super() does not work in a slotted dataclass.
        # Django's using() returns dataclasses.replace(self, ...), an instance of this class; its
        # signature promises only a Task.
        new = cast(
            TaskEngineTask,
            Task.using(
                self, priority=priority, queue_name=queue_name, run_after=run_after, backend=backend
            ),
        )
        given: dict[str, Any] = {
            "max_attempts": max_attempts,
            "dedup_key": dedup_key,
            "dedup": dedup,
            "dedup_window": dedup_window,
        }
        changes = {option: value for option, value in given.items() if value is not None}
        return replace(new, **changes) if changes else new


#: The options TaskEngineTask adds to Django's Task.
ENGINE_OPTIONS = (
    "max_attempts",
    "retry_backoff",
    "timeout",
    "atomic",
    "on_orphan",
    "dedup_key",
    "dedup",
    "dedup_window",
)


def engine_options(**options: Any) -> Callable[[Task], TaskEngineTask]:
    """The engine's options for a ``django.tasks`` task where it is defined, on every Django::

        @engine_options(max_attempts=5, timeout=30)
        @task(queue_name="emails")
        def send_mail_task(to, subject): ...

    Django 6.1 and the django-tasks backport also take them as ``@task(max_attempts=5, ...)``;
    Django 6.0's ``@task`` refuses keywords it does not know, and this is the way there. The
    task is checked and registered again with them (``InvalidTask`` for a bad value)."""
    unknown = sorted(set(options) - set(ENGINE_OPTIONS))
    if unknown:
        raise TypeError(
            f"engine_options() got unknown options {', '.join(unknown)}; "
            f"it takes {', '.join(ENGINE_OPTIONS)}"
        )

    def apply(task: Task) -> TaskEngineTask:
        if not isinstance(task, TaskEngineTask):
            raise InvalidTask(
                f"engine_options() needs a task of TaskEngineBackend (@task of django.tasks, "
                f"under it), not {task!r}"
            )
        # A new task, checked and registered as Django checks every task it creates.
        return replace(task, **options)

    return apply


assert set(ENGINE_OPTIONS) <= {f.name for f in fields(TaskEngineTask)}


# django-stubs declares TaskContext a plain dataclass, but Django's and the backport's are frozen
# (a frozen subclass of a non-frozen one would raise at import).
@dataclass(frozen=True, slots=True, kw_only=True)
class TaskEngineContext(TaskContext):  # type: ignore[misc]
    """Django's ``TaskContext`` (``task_result``, ``attempt``) plus ``engine``: the
    :class:`django_taskengine.TaskContext` of the attempt, for checkpoints, progress, pause and
    cancel (``context.engine.checkpoint(...)``, ``context.engine.should_stop``)."""

    engine: EngineContext
