"""Job rows seen as ``django.tasks`` results: status, times, attempts, errors, return value."""

from __future__ import annotations

import builtins
import re
from collections.abc import Iterable
from typing import Any

from ..conf import taskengine_settings
from ..core.limits import JOB_ID_MAX
from ..models import Attempt, AttemptOutcome, Job, JobStatus
from ..registry import find_task
from .compat import (
    InvalidTask,
    Task,
    TaskError,
    TaskResult,
    TaskResultDoesNotExist,
    TaskResultStatus,
)


class WorkerDied(Exception):
    """The error of an attempt whose worker process died (killed, crashed, lost its
    connection) before the attempt finished; the job was rescued."""


class JobCancelled(Exception):
    """The error of a job an operator cancelled (before it ran, or at a checkpoint)."""


RESULT_STATUS = {
    JobStatus.QUEUED: TaskResultStatus.READY,
    # Paused jobs wait, like queued ones, for an operator to resume them.
    JobStatus.PAUSED: TaskResultStatus.READY,
    JobStatus.RUNNING: TaskResultStatus.RUNNING,
    JobStatus.SUCCEEDED: TaskResultStatus.SUCCESSFUL,
    JobStatus.FAILED: TaskResultStatus.FAILED,
    JobStatus.CANCELLED: TaskResultStatus.FAILED,
}

#: Attempt outcomes that are errors of the task (an interrupted, paused or superseded attempt
#: is not: it gives its attempt back, or its result was discarded).
_ERROR_OUTCOMES = (AttemptOutcome.FAILED, AttemptOutcome.TIMED_OUT, AttemptOutcome.ORPHANED)

#: Errors the engine records without a traceback, by class name.
_ENGINE_ERRORS = {
    "TaskNotRegistered": "django_taskengine.task.TaskNotRegistered",
    "PermanentFailure": "django_taskengine.worker.runner.PermanentFailure",
    "Superseded": "django_taskengine.worker.runner.Superseded",
    "NotJSONError": "django_taskengine.serialization.NotJSONError",
}


def parse_result_id(result_id: Any) -> int:
    """The job id in a result id (the job's primary key as a string)."""
    text = str(result_id)
    if not re.fullmatch(r"[0-9]{1,19}", text) or int(text) > JOB_ID_MAX:
        raise TaskResultDoesNotExist(f"{result_id!r} is not a task result id (a job id)")
    return int(text)


def load_result(job_id: int, backend_alias: str, task: Task | None = None) -> TaskResult:
    """Read job ``job_id`` and its attempts and return them as a ``TaskResult``.

    ``task`` is the Django task the result belongs to; by default the one registered under the
    job's task name. Raises ``TaskResultDoesNotExist`` if there is no such job, or if its task is
    not a ``django.tasks`` task defined in this process.
    """
    database = taskengine_settings.DATABASE
    job = Job.objects.using(database).filter(pk=job_id).first()
    if job is None:
        raise TaskResultDoesNotExist(
            f"No task result (job) with id {job_id} in database {database!r}"
        )
    if task is None:
        task = getattr(find_task(job.task_name), "django_task", None)
        if task is None:
            raise TaskResultDoesNotExist(
                f"Job {job_id} runs {job.task_name!r}, which is not a django.tasks task defined "
                "in this process (is its module imported? an app's tasks.py is imported at "
                "start-up)."
            )
    attempts = Attempt.objects.using(database).filter(job_id=job_id).order_by("id")
    return build_result(job, list(attempts), as_enqueued(task, job), backend_alias)


def as_enqueued(task: Task, job: Job) -> Task:
    """``task`` with the priority and queue its job was enqueued with (``task.using(...)``)."""
    if job.priority == task.priority and job.queue == task.queue_name:
        return task
    try:
        return task.using(priority=job.priority, queue_name=job.queue)
    except (InvalidTask, TypeError, ValueError):
        # Changed outside django.tasks (a priority beyond ±100) or QUEUES changed since.
        return task


def build_result(job: Job, attempts: list[Attempt], task: Task, backend_alias: str) -> TaskResult:
    """A ``TaskResult`` for ``job``, given its attempt records in the order they were written.

    ``worker_ids`` has one entry per attempt the job has counted, so ``attempts`` (its length) is
    ``job.attempts`` and a ``TaskContext.attempt`` is the engine's attempt number, from 1.
    """
    status = RESULT_STATUS[JobStatus(job.status)]
    starts = [a.started_at for a in attempts if a.started_at]
    if job.started_at:
        starts.append(job.started_at)
    result: TaskResult[Any, Any] = TaskResult(
        task=task,
        id=str(job.pk),
        status=status,
        enqueued_at=job.created_at,
        started_at=min(starts) if starts else None,
        last_attempted_at=max(starts) if starts else None,
        finished_at=job.finished_at if status in _FINISHED else None,
        args=job.args,
        kwargs=job.kwargs,
        backend=backend_alias,
        errors=list(_errors(job, attempts)),
        worker_ids=_worker_ids(job, attempts),
    )
    if status == TaskResultStatus.SUCCESSFUL:
        object.__setattr__(result, "_return_value", job.result)
    return result


_FINISHED = (TaskResultStatus.SUCCESSFUL, TaskResultStatus.FAILED)


def _worker_ids(job: Job, attempts: list[Attempt]) -> list[str]:
    # An attempt number may have several records (a paused or interrupted attempt gives its
    # number back, and the next run reuses it): the latest one ran last.
    by_number = {a.number: str(a.worker_id or "") for a in attempts}
    if job.status == JobStatus.RUNNING and job.worker_id:
        by_number[job.attempts] = str(job.worker_id)
    return [by_number.get(number, "") for number in range(1, job.attempts + 1)]


def _errors(job: Job, attempts: Iterable[Attempt]) -> Iterable[TaskError]:
    for attempt in attempts:
        if attempt.outcome in _ERROR_OUTCOMES:
            yield TaskError(
                exception_class_path=exception_class_path(
                    attempt.error, attempt.traceback, attempt.outcome
                ),
                traceback=attempt.traceback or attempt.error,
            )
    if job.status == JobStatus.CANCELLED:
        # A job cancelled at a checkpoint says so in its error; one cancelled while it waited
        # may still carry the error of an earlier failed attempt.
        cancelled_at_checkpoint = job.error.startswith("cancelled")
        yield TaskError(
            exception_class_path=f"{__name__}.JobCancelled",
            traceback=job.error if cancelled_at_checkpoint else "cancelled by an operator",
        )


def exception_class_path(error: str, traceback: str, outcome: str = AttemptOutcome.FAILED) -> str:
    """The dotted path of the exception class behind an attempt's error.

    The engine stores ``"ClassName: message"`` and the formatted traceback, whose last exception
    line names the class with its module (``myapp.errors.PaymentDeclined: ...``; built-in
    exceptions without one). Errors without a traceback are the engine's own.
    """
    if outcome == AttemptOutcome.ORPHANED:
        return f"{__name__}.WorkerDied"
    if outcome == AttemptOutcome.TIMED_OUT:
        return "builtins.TimeoutError"
    name = error.split(":", 1)[0].strip()
    if not name.isidentifier():
        return "builtins.Exception"
    if traceback:
        line = re.compile(rf"^((?:[A-Za-z_]\w*\.)*{re.escape(name)})(?::|$)", re.MULTILINE)
        found = line.findall(traceback)
        if found:
            return found[-1] if "." in found[-1] else f"builtins.{found[-1]}"
    if name in _ENGINE_ERRORS:
        return _ENGINE_ERRORS[name]
    candidate = getattr(builtins, name, None)
    if isinstance(candidate, type) and issubclass(candidate, BaseException):
        return f"builtins.{name}"
    return "builtins.Exception"
