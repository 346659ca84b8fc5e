"""Run one attempt of a claimed job and describe how it ended as an :class:`Outcome`."""

from __future__ import annotations

import asyncio
import inspect
import logging
import traceback
import uuid
from dataclasses import dataclass
from typing import Any

from django.db import close_old_connections, connections, transaction

from ..context import ContextChannel, SleepRequest, StopJob
from ..core import lifecycle
from ..core.lifecycle import ClaimedJob, Outcome
from ..registry import TaskNotRegistered, get_task
from ..serialization import NotJSONError, dump_result
from ..signals import job_started, listened
from ..snooze import Snooze
from ..store import Store
from ..store.decoding import Unreadable
from . import transactions

logger = logging.getLogger("django_taskengine.worker")


class Superseded(Exception):
    """The attempt no longer owns its job (rescued or changed by an operator)."""


class TransactionLeftOpen(Exception):
    """An atomic task returned with an inner ``transaction.atomic()`` block still open."""


class PermanentFailure(Exception):
    """A failure that retrying cannot fix (unknown task, corrupted arguments)."""


@dataclass
class RunResult:
    outcome: Outcome
    #: True when the outcome was already committed (atomic tasks); False: the worker writes it.
    committed: bool = False


def run_attempt(
    job: ClaimedJob,
    store: Store,
    worker_id: uuid.UUID,
    channel: ContextChannel | None = None,
    *,
    close_connections: bool = True,
    task_loop: TaskLoop | None = None,
    settled: bool = False,
) -> RunResult:
    """Run ``job``'s task once and return its outcome; never raises for a task's own error.

    A worker thread closes stale connections before and after each attempt, as Django does
    around a request. An in-process runner (:mod:`django_taskengine.testing`) runs on the
    caller's connection, often inside a test's transaction, and passes
    ``close_connections=False``: closing there would break that transaction.

    ``settled``: the thread's connections were settled by the attempt it ran just before (a
    runner thread that took this job without waiting): each of them is idle in autocommit
    (what a task left open was discarded) and not yet stale, so the checks before the attempt
    are skipped. After it, one pass over the thread's connections finds what the task left
    open and closes what is stale.

    An ``async def`` task runs on ``task_loop``, the event loop a worker thread keeps; without
    one (the in-process runner, in the caller's thread) on a loop of its own, closed after it.
    """
    if settled:
        before: dict[str, transactions.TransactionState] = {}
    else:
        if close_connections:
            close_old_connections()
        before = transactions.snapshot()
    opened = None
    try:
        result = _run(job, store, worker_id, channel, task_loop)
        opened = connections.all(initialized_only=True)
        left_open = transactions.left_open(before, opened)
        if left_open:
            transactions.discard(list(left_open), before, close=close_connections)
            if result.committed:
                # Not reached through _run_atomic, which checks before it commits; kept so that
                # a committed outcome is never overwritten by a second one.
                logger.error("job %s: %s", job.id, _left_open(job, left_open, close=True).error)
            else:
                result = RunResult(_left_open(job, left_open, close=close_connections))
        return result
    finally:
        if close_connections:
            # A connection discarded above is closed already: this leaves it alone.
            for conn in connections.all(initialized_only=True) if opened is None else opened:
                conn.close_if_unusable_or_obsolete()


def _run(
    job: ClaimedJob,
    store: Store,
    worker_id: uuid.UUID,
    channel: ContextChannel | None,
    task_loop: TaskLoop | None,
) -> RunResult:
    """The attempt itself: check the job, send ``job_started``, call the task."""
    try:
        _check_readable(job)
        task = get_task(job.task_name)
        if not isinstance(job.args, list) or not isinstance(job.kwargs, dict):
            raise PermanentFailure(
                f"corrupted arguments: args must be a JSON array and kwargs a JSON object, "
                f"got {type(job.args).__name__} and {type(job.kwargs).__name__}; fix the row "
                "or enqueue the job again"
            )
        try:
            task.check_call(job.args, job.kwargs)
        except TypeError as exc:
            raise PermanentFailure(
                f"arguments do not match {task.name}{task.signature}: {exc}"
            ) from None
    except (TaskNotRegistered, PermanentFailure) as exc:
        return RunResult(lifecycle.raised(job, exc, retryable=False, with_traceback=False))
    if listened(job_started):
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
    watched = _StopWatch(channel) if channel is not None else None
    try:
        if task.atomic:
            return _run_atomic(task, job, store, worker_id, watched, task_loop)
        value = _call(task, job, watched, task_loop)
        result_json = dump_result(value)
    except StopJob as stop:
        return _stopped(job, stop.reason)
    except Superseded as exc:
        return RunResult(lifecycle.superseded(job, str(exc)))
    except NotJSONError as exc:
        return RunResult(lifecycle.raised(job, exc, retryable=False))
    except Snooze as snooze:
        # Asked for, not a failure: an atomic task's transaction is rolled back all the same.
        return RunResult(lifecycle.snoozed(job, snooze.seconds))
    except SleepRequest as wait:
        if wait.waiting_for is not None:
            return RunResult(lifecycle.parked(job, wait.seconds, wait.waits_json, wait.waiting_for))
        return RunResult(lifecycle.slept(job, wait.seconds, wait.waits_json))
    except Exception as exc:  # noqa: BLE001 - any error of the task is an attempt's failure
        return RunResult(lifecycle.raised(job, exc, retryable=True))
    except BaseException as exc:  # noqa: BLE001 - SystemExit, KeyboardInterrupt… from a task
        # Raised by the task's code, they end its attempt, not the worker (nor the caller of
        # testing.run_jobs): a failure like any other, named and with its traceback.
        return RunResult(_raised_base(job, exc))
    seen = watched.seen if watched is not None else ""
    return RunResult(lifecycle.returned_on_request(job, seen, result_json))


class _StopWatch:
    """The task's channel, noting the stop request ``ctx.should_stop`` told the task of.

    A task that returns after learning of a pause or cancel stopped early on request: the
    request is carried out (:func:`~..core.lifecycle.returned_on_request`). One that returns
    without having asked finished its work, and succeeds.
    """

    def __init__(self, channel: ContextChannel) -> None:
        self._channel = channel
        #: The last pause or cancel request the task was told of ("" for none).
        self.seen = ""

    def save_checkpoint(self, job: ClaimedJob, state_json: str) -> str | None:
        return self._channel.save_checkpoint(job, state_json)

    def report_progress(self, job: ClaimedJob, current: int, total: int | None) -> None:
        self._channel.report_progress(job, current, total)

    def stop_reason(self, job: ClaimedJob) -> str | None:
        reason = self._channel.stop_reason(job)
        if reason and lifecycle.stop_kind(reason) in ("pause", "cancel"):
            self.seen = reason
        return reason


def _raised_base(job: ClaimedJob, exc: BaseException) -> Outcome:
    name = type(exc).__name__
    error = f"{name}: {exc}" if str(exc) else name
    return lifecycle.failed(job, error, "".join(traceback.format_exception(exc)))


def _left_open(job: ClaimedJob, left_open: dict[str, str], *, close: bool) -> Outcome:
    """The task returned with a transaction open: nothing would ever commit its writes.

    Not retried: the same code leaves the same transaction open on every attempt, so a retry
    would only roll its writes back again; the job waits, failed, for a fixed task.
    """
    what = "; ".join(
        f"{problem} on database {alias!r}" for alias, problem in sorted(left_open.items())
    )
    done = "rolled back and its connection closed" if close else "rolled back"
    error = (
        f"the task left a transaction open: {what}; its writes were {done}. Not retried: the "
        "same code would leave it open again. Leave every transaction.atomic() block (use it "
        "as a with-statement), commit what you begin, restore autocommit; then retry the job"
    )
    return lifecycle.failed(job, error, retryable=False)


def _check_readable(job: ClaimedJob) -> None:
    """Fail a job whose stored JSON the claim could not load (see :mod:`..store.decoding`)."""
    for column in ("args", "kwargs", "checkpoint"):
        value = getattr(job, column)
        if isinstance(value, Unreadable):
            what = "checkpoint" if column == "checkpoint" else "arguments"
            fix = (
                "clear or fix the job's checkpoint and retry it"
                if column == "checkpoint"
                else "fix the row or enqueue the job again"
            )
            raise PermanentFailure(
                f"corrupted {what}: job {job.id}'s {column} cannot be loaded as JSON: "
                f"{value.problem}; {fix}"
            )


def _call(
    task: Any, job: ClaimedJob, channel: ContextChannel | None, task_loop: TaskLoop | None
) -> object:
    value = task.invoke(job, channel)
    if inspect.isawaitable(value):
        # An ``async def`` task (or any awaitable a task returns) runs to completion here.
        if task_loop is None:
            value = asyncio.run(_awaited(value))
        else:
            value = task_loop.run(value)
    return value


async def _awaited(awaitable: Any) -> Any:
    return await awaitable


class TaskLoop:
    """The event loop of one runner thread, kept for the thread's life: it runs every
    ``async def`` task of that thread, one job at a time.

    A loop per job (``asyncio.run``) costs several times what running a coroutine on a kept
    loop does. Each job still starts clean, as under ``asyncio.run``: its coroutine runs in a fresh
    copy of the thread's context, and what it leaves behind (tasks still pending) is cancelled
    and waited for before the job's outcome is reported. Between jobs the loop is neither
    running nor the thread's current loop, so the thread's sync tasks see no event loop, and
    Django's async-safety checks let them use the ORM.
    """

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None

    def run(self, awaitable: Any) -> Any:
        """Await ``awaitable`` on this thread's loop and return its result (or raise)."""
        loop = self._loop
        if loop is None or loop.is_closed():
            loop = self._loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        try:
            # A coroutine, not a task: the loop wraps it in a task with a copy of this thread's
            # context, so context variables a job sets do not reach the next one.
            return loop.run_until_complete(_awaited(awaitable))
        finally:
            try:
                _cancel_left_running(loop)
            finally:
                asyncio.set_event_loop(None)

    def close(self) -> None:
        """Shut down what jobs left (tasks, async generators, the default executor) and close
        the loop; when the thread exits."""
        loop, self._loop = self._loop, None
        if loop is None or loop.is_closed():
            return
        try:
            _cancel_left_running(loop)
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.run_until_complete(loop.shutdown_default_executor())
        finally:
            loop.close()


def _cancel_left_running(loop: asyncio.AbstractEventLoop) -> None:
    """Cancel the tasks a job left pending and wait until they end, so none runs on into the
    next job; an error one raises meanwhile goes to the loop's exception handler (logged)."""
    left = asyncio.all_tasks(loop)
    if not left:
        return
    for pending in left:
        pending.cancel()
    loop.run_until_complete(asyncio.gather(*left, return_exceptions=True))
    for ended in left:
        if not ended.cancelled() and ended.exception() is not None:
            loop.call_exception_handler(
                {
                    "message": "a task an async job left running raised while it was cancelled",
                    "exception": ended.exception(),
                    "task": ended,
                }
            )


def _stopped(job: ClaimedJob, reason: str) -> RunResult:
    """The task stopped at a checkpoint because a pause, cancel or shutdown was asked for, or
    because its checkpoint was fenced out (the attempt lost its job)."""
    if reason == "superseded":
        return RunResult(
            lifecycle.superseded(
                job,
                f"job {job.id} attempt {job.attempt} lost its job (it was rescued or changed "
                "meanwhile); its checkpoint was not saved",
            )
        )
    return RunResult(lifecycle.stopped(job, reason))


def _run_atomic(
    task: Any,
    job: ClaimedJob,
    store: Store,
    worker_id: uuid.UUID,
    watched: _StopWatch | None,
    task_loop: TaskLoop | None,
) -> RunResult:
    with transaction.atomic(using=store.alias):
        before = transactions.snapshot()
        value = _call(task, job, watched, task_loop)
        if transactions.left_open(before):
            # Finishing now would commit into the block the task left open, never to the
            # database; run_attempt reports (and discards) what was left.
            raise TransactionLeftOpen(f"job {job.id}: the task left a transaction open")
        # A cancel the task returned early for is carried out, its result committed with its
        # writes. A pause is not: an atomic task has no checkpoint to resume from, and running
        # it again would redo the writes it commits here, so it succeeds.
        seen = watched.seen if watched is not None else ""
        if lifecycle.stop_kind(seen) != "cancel":
            seen = ""
        outcome = lifecycle.returned_on_request(job, seen, dump_result(value))
        if not store.finish_atomic(outcome, worker_id):
            # Rolling back discards the task's database writes along with the completion.
            raise Superseded(
                f"job {job.id} attempt {job.attempt} no longer owns the job (it was rescued or "
                "changed meanwhile); its database writes were rolled back"
            )
    return RunResult(outcome, committed=True)
