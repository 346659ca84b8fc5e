"""Run one attempt of a claimed job and describe how it ended as an :class:`Outcome`."""

from __future__ import annotations

import asyncio
import inspect
import logging
import random
import traceback
import uuid
from dataclasses import dataclass
from typing import Any

from django.db import close_old_connections, transaction
from django.utils import timezone

from ..conf import taskengine_settings
from ..context import ContextChannel, StopJob
from ..models import AttemptOutcome, JobStatus
from ..serialization import NotJSONError, dump_result
from ..signals import job_started
from ..store import ClaimedJob, Outcome, Store
from ..task import Task, TaskNotRegistered, get_task

logger = logging.getLogger("django_taskengine.worker")


class Superseded(Exception):
    """The attempt no longer owns its job (rescued or changed by an operator)."""


class PermanentFailure(Exception):
    """A failure that retrying cannot fix (unknown task, corrupted arguments)."""


@dataclass
class RunResult:
    outcome: Outcome
    #: True when the outcome was already committed (atomic tasks); False: the worker writes it.
    committed: bool = False


def retry_delay(attempt: int, backoff: float) -> float:
    """Seconds before retrying after failed attempt number ``attempt`` (1-based).

    Exponential (``backoff * 2**(attempt-1)``), capped by ``RETRY_BACKOFF_MAX``, with "equal
    jitter": a random point in the upper half, so retries of many jobs that failed together
    spread out, and no retry comes sooner than half its nominal delay.
    """
    # The exponent is capped so that a job with thousands of attempts cannot overflow.
    exponent = min(max(0, attempt - 1), 62)
    nominal = min(taskengine_settings.RETRY_BACKOFF_MAX, backoff * (2.0**exponent))
    return nominal / 2 + random.uniform(0, nominal / 2)


def run_attempt(
    job: ClaimedJob,
    store: Store,
    worker_id: uuid.UUID,
    channel: ContextChannel | None = None,
    *,
    close_connections: bool = True,
) -> RunResult:
    """Run ``job``'s task once and return its outcome; never raises for a task's own error.

    A worker thread closes stale connections before and after each attempt, as Django does
    around a request. An in-process runner (:mod:`django_taskengine.testing`) runs on the
    caller's connection, often inside a test's transaction, and passes
    ``close_connections=False``: closing there would break that transaction.
    """
    if close_connections:
        close_old_connections()
    try:
        try:
            task = get_task(job.task_name)
            if not isinstance(job.args, list) or not isinstance(job.kwargs, dict):
                raise PermanentFailure(
                    f"corrupted arguments: args must be a JSON array and kwargs a JSON object, "
                    f"got {type(job.args).__name__} and {type(job.kwargs).__name__}; fix the row "
                    "or enqueue the job again"
                )
            try:
                task.signature.bind(*job.args, **job.kwargs)
            except TypeError as exc:
                raise PermanentFailure(
                    f"arguments do not match {task.name}{task.signature}: {exc}"
                ) from None
        except (TaskNotRegistered, PermanentFailure) as exc:
            return RunResult(_failure(job, exc, retryable=False, with_traceback=False))
        if job_started.has_listeners():
            try:
                job_started.send(
                    sender=task,
                    job_id=job.id,
                    task_name=job.task_name,
                    queue=job.queue,
                    attempt=job.attempt,
                )
            except Exception:  # noqa: BLE001 - a user's receiver must not affect the job
                logger.exception("a job_started receiver failed for job %s", job.id)
        try:
            if task.atomic:
                return _run_atomic(task, job, store, worker_id, channel)
            value = _call(task, job, channel)
            result_json = dump_result(value)
        except StopJob as stop:
            return _stopped(job, stop.reason)
        except Superseded as exc:
            return RunResult(_failure(job, exc, retryable=False), committed=True)
        except NotJSONError as exc:
            return RunResult(_failure(job, exc, retryable=False))
        except Exception as exc:  # noqa: BLE001 - any error of the task is an attempt's failure
            return RunResult(_failure(job, exc, retryable=True))
        return RunResult(
            Outcome(
                job_id=job.id,
                token=job.token,
                attempt=job.attempt,
                status=JobStatus.SUCCEEDED,
                outcome=AttemptOutcome.SUCCEEDED,
                started_at=job.started_at,
                finished_at=timezone.now(),
                result_json=result_json,
            )
        )
    finally:
        if close_connections:
            close_old_connections()


def _call(task: Task, job: ClaimedJob, channel: ContextChannel | None) -> object:
    value = task.invoke(job, channel)
    if inspect.isawaitable(value):
        # An ``async def`` task runs to completion on an event loop of this runner thread.
        value = asyncio.run(_awaited(value))
    return value


async def _awaited(awaitable: Any) -> Any:
    return await awaitable


def _stopped(job: ClaimedJob, reason: str) -> RunResult:
    """The task stopped at a checkpoint because a pause, cancel or shutdown was asked for."""
    if reason == "superseded":
        return RunResult(
            _failure(job, Superseded("the attempt lost its job"), retryable=False), committed=True
        )
    status, outcome, error = {
        "pause": (JobStatus.PAUSED, AttemptOutcome.PAUSED, "paused by an operator at a checkpoint"),
        "cancel": (
            JobStatus.CANCELLED,
            AttemptOutcome.CANCELLED,
            "cancelled by an operator at a checkpoint",
        ),
    }.get(
        reason,
        (
            JobStatus.QUEUED,
            AttemptOutcome.INTERRUPTED,
            "stopped at a checkpoint for a worker shutdown",
        ),
    )
    return RunResult(
        Outcome(
            job_id=job.id,
            token=job.token,
            attempt=job.attempt,
            status=status,
            outcome=outcome,
            started_at=job.started_at,
            finished_at=timezone.now(),
            error=error,
            # Stopping on request is not a failure: the attempt does not count.
            refund_attempt=status != JobStatus.CANCELLED,
        )
    )


def _run_atomic(
    task: Task, job: ClaimedJob, store: Store, worker_id: uuid.UUID, channel: ContextChannel | None
) -> RunResult:
    with transaction.atomic(using=store.alias):
        value = _call(task, job, channel)
        outcome = Outcome(
            job_id=job.id,
            token=job.token,
            attempt=job.attempt,
            status=JobStatus.SUCCEEDED,
            outcome=AttemptOutcome.SUCCEEDED,
            started_at=job.started_at,
            finished_at=timezone.now(),
            result_json=dump_result(value),
        )
        if not store.finish_atomic(outcome, worker_id):
            # Rolling back discards the task's database writes along with the completion.
            raise Superseded(
                f"job {job.id} attempt {job.attempt} no longer owns the job (it was rescued or "
                "changed meanwhile); its database writes were rolled back"
            )
    return RunResult(outcome, committed=True)


def _failure(
    job: ClaimedJob, exc: BaseException, *, retryable: bool, with_traceback: bool = True
) -> Outcome:
    error = f"{type(exc).__name__}: {exc}"
    tb = "".join(traceback.format_exception(exc)) if with_traceback else ""
    will_retry = retryable and job.attempt < job.max_attempts
    return Outcome(
        job_id=job.id,
        token=job.token,
        attempt=job.attempt,
        status=JobStatus.QUEUED if will_retry else JobStatus.FAILED,
        outcome=AttemptOutcome.FAILED,
        started_at=job.started_at,
        finished_at=timezone.now(),
        error=error,
        traceback=tb,
        retry_delay=retry_delay(job.attempt, job.retry_backoff) if will_retry else 0.0,
    )
