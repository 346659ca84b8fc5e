"""``TaskEngineBackend``: Django's Tasks framework on the engine's job table."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django.conf import settings
from django.core.checks import CheckMessage, Error
from django.db import connections

from ..conf import taskengine_settings
from ..core.dedup import SKIP, check_mode
from ..core.limits import DEDUP_KEY_MAX, INT32_MAX, QUEUE_NAME_MAX
from ..models import JobStatus
from ..worker.inprocess import run_enqueued_eagerly
from .adapter import register
from .compat import BaseTaskBackend, InvalidTask, Task, TaskResult, normalize_json, task_enqueued
from .results import build_result, load_result, parse_result_id
from .task_class import TaskEngineTask


class TaskEngineBackend(BaseTaskBackend):
    """Enqueue ``django.tasks`` tasks as ordinary jobs that ``run_workers`` runs.

    ``TASKS = {"default": {"BACKEND": "django_taskengine.backends.TaskEngineBackend",
    "QUEUES": ["default", "emails"]}}``. A result's id is its job's id; the job lives in
    ``TASKENGINE["DATABASE"]``, with the same workers, admin, pauses, retries and crash recovery
    as jobs of ``@django_taskengine.task``.
    """

    task_class = TaskEngineTask
    supports_defer = True
    supports_async_task = True
    supports_get_result = True
    supports_priority = True

    def validate_task(self, task: Task) -> None:
        """Django's checks and the engine's options; then register the task for workers.

        Django calls this wherever a task is defined, so a worker that imports the module (an
        app's ``tasks.py`` is imported at start-up) knows how to run its jobs.
        """
        super().validate_task(task)
        _validate_engine_options(task)
        register(task, self.alias)

    def enqueue(self, task: Task, args: Sequence[Any], kwargs: dict[str, Any]) -> TaskResult:
        """Insert one job (in the caller's transaction) and return it as a READY result.

        With a ``dedup_key`` held by an active job, that job's result is returned instead and
        ``task_enqueued`` is not sent (nothing was enqueued).
        """
        self.validate_task(task)
        # The same normalization as Django's TaskResult: tuples become lists, bytes text.
        json_args = normalize_json(list(args))
        json_kwargs = normalize_json(dict(kwargs))
        assert isinstance(json_args, list) and isinstance(json_kwargs, dict)
        job = (
            register(task, self.alias)
            .using(
                queue=task.queue_name,
                priority=int(task.priority),
                run_after=task.run_after,
                dedup_key=getattr(task, "dedup_key", None),
                dedup=getattr(task, "dedup", None),
                dedup_window=getattr(task, "dedup_window", None),
                max_attempts=getattr(task, "max_attempts", None),
            )
            # In eager mode the job runs below, once task_enqueued has been sent (as Django's
            # immediate backend does: enqueued, then started, then finished).
            .enqueue_call(json_args, json_kwargs, run_eagerly=False)
        )
        if job.created and job.status == JobStatus.QUEUED:
            result = build_result(job, [], task, self.alias)
        else:
            # An active job that holds the dedup key.
            result = load_result(job.pk, self.alias, task)
        if job.created:
            task_enqueued.send(sender=type(self), task_result=result)
            if taskengine_settings.EAGER:
                run_enqueued_eagerly([job], job._state.db or taskengine_settings.DATABASE)
                result = load_result(job.pk, self.alias, task)
        return result

    def get_result(self, result_id: str) -> TaskResult:
        """The result of job ``result_id``, read now; ``TaskResultDoesNotExist`` if there is no
        such job of a ``django.tasks`` task."""
        return load_result(parse_result_id(result_id), self.alias)

    def check(self, **kwargs: Any) -> list[CheckMessage]:
        messages = list(super().check(**kwargs))
        where = f"TASKS[{self.alias!r}]"
        database = taskengine_settings.DATABASE
        if database in settings.DATABASES:
            vendor = connections[database].vendor
            if vendor not in ("postgresql", "sqlite"):
                messages.append(
                    Error(
                        f"{where} uses django-taskengine, whose job table is on database "
                        f"{database!r}, a {vendor} database; django-taskengine supports "
                        "PostgreSQL (and SQLite for development).",
                        hint="Point TASKENGINE['DATABASE'] at a PostgreSQL database alias.",
                        id="taskengine.E101",
                    )
                )
        for queue in sorted(self.queues, key=repr):
            if not isinstance(queue, str) or not queue or len(queue) > QUEUE_NAME_MAX:
                messages.append(
                    Error(
                        f"{where}['QUEUES'] has {queue!r}; a queue name is a non-empty string of "
                        f"at most {QUEUE_NAME_MAX} characters.",
                        id="taskengine.E102",
                    )
                )
        if self.options:
            messages.append(
                Error(
                    f"{where}['OPTIONS'] is {self.options!r}; the django-taskengine backend "
                    "takes no options.",
                    hint="Remove OPTIONS: the engine is configured by the TASKENGINE setting, "
                    "and each task by its @task(...) keywords.",
                    id="taskengine.E103",
                )
            )
        return messages


def _validate_engine_options(task: Task) -> None:
    name = task.module_path

    def refuse(problem: str) -> InvalidTask:
        return InvalidTask(f"{name}: {problem}")

    if not isinstance(task.queue_name, str) or len(task.queue_name) > QUEUE_NAME_MAX:
        raise refuse(
            f"queue_name must be at most {QUEUE_NAME_MAX} characters, not {task.queue_name!r}."
        )
    numbers = (
        ("max_attempts", (int,), 1, "an integer of at least 1"),
        ("retry_backoff", (int, float), 0, "a number of seconds ≥ 0"),
        ("timeout", (int, float), 0, "a number of seconds ≥ 0"),
    )
    for option, kinds, minimum, wanted in numbers:
        value = getattr(task, option, None)
        if value is None:
            continue
        if (
            isinstance(value, bool)
            or not isinstance(value, kinds)
            or not minimum <= value <= INT32_MAX
        ):
            raise refuse(f"{option} must be {wanted}, not {value!r}.")
    if not isinstance(getattr(task, "atomic", False), bool):
        raise refuse(f"atomic must be True or False, not {task.atomic!r}.")  # type: ignore[attr-defined]
    if getattr(task, "on_orphan", "retry") not in ("retry", "park"):
        raise refuse(f"on_orphan must be 'retry' or 'park', not {task.on_orphan!r}.")  # type: ignore[attr-defined]
    dedup_key = getattr(task, "dedup_key", None)
    if dedup_key is not None and (
        not isinstance(dedup_key, str) or not dedup_key or len(dedup_key) > DEDUP_KEY_MAX
    ):
        raise refuse(
            f"dedup_key must be a non-empty string of at most {DEDUP_KEY_MAX} characters, "
            f"not {dedup_key!r}."
        )
    mode, window = getattr(task, "dedup", None), getattr(task, "dedup_window", None)
    if mode is not None or window is not None:
        try:
            # The key may come per call (using()): the enqueue refuses a mode without one.
            check_mode(
                mode or SKIP, window, dedup_key=dedup_key or "", run_after=task.run_after, what=name
            )
        except ValueError as exc:
            raise InvalidTask(str(exc)) from None
