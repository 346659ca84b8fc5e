"""How workers run ``django.tasks`` tasks: each one is registered in the engine's registry as a
:class:`DjangoTaskAdapter`, whose ``invoke`` calls the Django task's function and sends Django's
``task_started``; ``task_finished`` follows the engine's ``job_finished``."""

from __future__ import annotations

import inspect
from typing import TYPE_CHECKING, Any

from ..context import TaskContext as EngineContext
from ..models import TERMINAL_STATUSES, AttemptOutcome
from ..registry import origin
from ..registry import tasks as registry
from ..signals import job_finished
from ..task import Task
from .compat import (
    InvalidTask,
    TaskResult,
    TaskResultDoesNotExist,
    TaskResultStatus,
    normalize_json,
    task_backends,
    task_finished,
    task_started,
)
from .compat import Task as DjangoTask
from .results import load_result
from .task_class import TaskEngineContext

if TYPE_CHECKING:
    from ..context import ContextChannel
    from ..store import ClaimedJob


class DjangoTaskAdapter(Task):
    """The engine's registry entry for a ``django.tasks`` task, under its ``module_path``.

    Workers find it by the job's task name like any ``@django_taskengine.task``; the engine's
    options come from the Django task's ``TaskEngineTask`` fields where it has them.
    """

    def __init__(self, django_task: DjangoTask, backend_alias: str) -> None:
        super().__init__(
            django_task.func,
            name=django_task.module_path,
            queue=django_task.queue_name,
            priority=int(django_task.priority),
            max_attempts=getattr(django_task, "max_attempts", None),
            retry_backoff=getattr(django_task, "retry_backoff", None),
            timeout=getattr(django_task, "timeout", None),
            takes_context=django_task.takes_context,
            atomic=getattr(django_task, "atomic", False),
            on_orphan=getattr(django_task, "on_orphan", "retry"),
        )
        self.django_task = django_task
        #: The ``TASKS`` alias of the engine backend that registered it (the sender of signals).
        self.backend_alias = backend_alias

    def __repr__(self) -> str:
        return f"<Task {self.name} (django.tasks)>"

    def invoke(self, job: ClaimedJob, channel: ContextChannel | None) -> Any:
        """Send ``task_started``, then call the function (with a ``TaskEngineContext`` first if
        the task takes a context); the return value is normalized to JSON as Django does."""
        backend = task_backends[self.backend_alias]
        result = self._started_result(job, backend.alias)
        task_started.send_robust(sender=type(backend), task_result=result)
        if self.django_task.takes_context:
            context = TaskEngineContext(
                task_result=result, engine=EngineContext(job, channel, atomic=self.atomic)
            )
            value = self.func(context, *job.args, **job.kwargs)
        else:
            value = self.func(*job.args, **job.kwargs)
        if inspect.isawaitable(value):
            return self._normalized_when_done(value)
        return self._normalized(value)

    def _started_result(self, job: ClaimedJob, backend_alias: str) -> TaskResult:
        try:
            return load_result(job.id, backend_alias, self.django_task)
        except TaskResultDoesNotExist:
            # Enqueued on another database than TASKENGINE["DATABASE"] (with the engine's own
            # API): what the claimed job says is all there is to know.
            return TaskResult(
                task=self.django_task,
                id=str(job.id),
                status=TaskResultStatus.RUNNING,
                enqueued_at=None,
                started_at=job.started_at,
                last_attempted_at=job.started_at,
                finished_at=None,
                args=job.args,
                kwargs=job.kwargs,
                backend=backend_alias,
                errors=[],
                worker_ids=[""] * job.attempt,
            )

    async def _normalized_when_done(self, awaitable: Any) -> Any:
        return self._normalized(await awaitable)

    def _normalized(self, value: Any) -> Any:
        try:
            return normalize_json(value)
        except (TypeError, ValueError) as exc:
            # TypeError, as Django's own backends record (not the engine's NotJSONError).
            raise TypeError(
                f"{self.name} returned {value!r:.80}, which is not JSON ({exc}): a task's return "
                "value is stored as JSON; return only dicts, lists, strings, numbers, booleans "
                "and None (e.g. an id instead of a model instance)."
            ) from exc


def register(django_task: DjangoTask, backend_alias: str) -> DjangoTaskAdapter:
    """Register ``django_task`` so workers can run its jobs; return its registry entry.

    Called by the backend ``backend_alias``'s ``validate_task``, that is, wherever the task is
    defined (and again for every ``using()`` copy, which keeps the entry of the first
    definition; ``engine_options`` makes a new definition).
    """
    name = django_task.module_path
    existing = registry.find(name)
    if (
        isinstance(existing, DjangoTaskAdapter)
        and existing.func is django_task.func
        and _definition(existing.django_task) == _definition(django_task)
    ):
        return existing
    if existing is not None and (
        not isinstance(existing, DjangoTaskAdapter) or origin(existing.func) != name
    ):
        raise InvalidTask(
            f"Two tasks are named {name!r}: {origin(existing.func)} (registered with "
            f"@django_taskengine.task) and the django.tasks task {name}. Rename one of them, or "
            "give the engine's one @task(name=...)."
        )
    adapter = DjangoTaskAdapter(django_task, backend_alias)
    registry.register(adapter, replace=True)
    return adapter


def _definition(django_task: DjangoTask) -> tuple[Any, ...]:
    """The task's options that ``using()`` never changes (and ``engine_options`` may)."""
    return tuple(
        getattr(django_task, option, None)
        for option in ("retry_backoff", "timeout", "atomic", "on_orphan")
    )


def _send_task_finished(
    sender: object, job_id: int, outcome: str, status: str, **kwargs: Any
) -> None:
    """Django's ``task_finished``, once a job of a Django task ends succeeded or failed.

    Sent by the worker after the outcome is committed, so that ``result.refresh()`` in a receiver
    sees it. An attempt that will be retried does not finish the task (it is READY again).
    """
    if not isinstance(sender, DjangoTaskAdapter):
        return
    if outcome == AttemptOutcome.SUPERSEDED or status not in TERMINAL_STATUSES:
        return
    # An error here (the job is finished; only the signal is lost) is logged by the worker,
    # which also closes a connection a database restart broke.
    backend = task_backends[sender.backend_alias]
    result = load_result(job_id, backend.alias, sender.django_task)
    task_finished.send_robust(sender=type(backend), task_result=result)


job_finished.connect(_send_task_finished, dispatch_uid="django_taskengine.backends.task_finished")
