"""Helpers for testing code that enqueues jobs: run them in-process, eager mode, assertions.

- :func:`run_jobs` runs every due job now, synchronously, in this process.
- ``TASKENGINE["EAGER"] = True`` (or the :func:`eager` context manager) makes ``enqueue()`` run
  the job at once.
- :func:`assert_enqueued` / :func:`assert_not_enqueued` check what was enqueued.

Jobs run through the worker's own path: a claim that marks the job running with a fencing
token, :func:`~django_taskengine.worker.runner.run_attempt`, then the fenced write of its
outcome with an ``Attempt`` row, the ``job_started``/``job_finished`` signals and the worker's
log line. So results, errors, tracebacks, retries, checkpoints and attempts are recorded as a
worker would record them.

Everything runs on the **caller's database connection, inside its transaction**: a test marked
``@pytest.mark.django_db`` (or a ``django.test.TestCase``) sees the jobs it enqueued and what
they did, and everything is rolled back after the test. A worker process could not do that: it
has a connection of its own, which cannot see a test's uncommitted rows. The claim is the
generic (ORM) one on every database, so the PostgreSQL claim protocol (``SKIP LOCKED``,
advisory locks) is not what these helpers test; the worker tests of this package do that. Do
not point them at a database that real workers are serving: in-process attempts hold no
advisory lock and no heartbeat, and a worker's rescuer would take their jobs.
"""

from __future__ import annotations

import copy
import json
import os
import socket
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.db.models import QuerySet
from django.test import override_settings
from django.utils import timezone

from .conf import taskengine_settings
from .models import AttemptOutcome, Job, JobStatus
from .serialization import dump_arguments
from .store import ClaimedJob, StateWrite, WorkerInfo, get_store
from .store.generic import GenericStore, GenericWorkerSession

if TYPE_CHECKING:
    from .task import Task

__all__ = [
    "JobFailed",
    "assert_enqueued",
    "assert_not_enqueued",
    "eager",
    "enqueued_jobs",
    "run_jobs",
]


class JobFailed(Exception):
    """Raised by ``enqueue()`` in eager mode with ``EAGER_PROPAGATE`` when the job ended failed.

    ``job`` is the failed job; the message carries its error and the last traceback.
    """

    def __init__(self, job: Job) -> None:
        self.job = job
        attempts = f"{job.attempts} attempt{'s' if job.attempts != 1 else ''}"
        message = f"Job {job.pk} ({job.task_name}) failed after {attempts}: {job.error}"
        if job.traceback:
            message += f"\n\nTraceback of the last attempt:\n{job.traceback.rstrip()}"
        super().__init__(message)


def run_jobs(
    queue: str | None = None,
    max_jobs: int | None = None,
    *,
    retries: bool = False,
    using: str | None = None,
) -> list[Job]:
    """Run due jobs now, one after the other, in this process; return them, refreshed.

    Runs jobs of every queue (or of ``queue``) that a worker would claim now: queued, due
    (``run_after`` passed), their queue, task type and the engine not paused; in a worker's
    order (priority, then ``run_after``, then id). Jobs that tasks enqueue while running are run
    too, if due. Stops when nothing is due, or after ``max_jobs`` attempts.

    Each job gets one attempt per call: a failed attempt with attempts left is scheduled for a
    retry after its real backoff and stays ``queued`` (call ``run_jobs`` again, perhaps after
    moving the clock). With ``retries=True``, retries run at once instead, back to back, until
    every job has succeeded or used up its attempts.

    Exceptions of the tasks are recorded on the jobs and attempts, never raised here. Jobs are
    returned in the order they first ran, each once, in their state after the call.
    """
    if max_jobs is not None and (
        isinstance(max_jobs, bool) or not isinstance(max_jobs, int) or max_jobs < 1
    ):
        raise ValueError(
            f"run_jobs(max_jobs=...) must be a positive integer or None, not {max_jobs!r}"
        )
    alias = using or taskengine_settings.DATABASE
    runner = _InProcessRunner(alias, queues=[queue] if queue else [], retries=retries)
    ids = runner.run(max_jobs)
    return _refreshed(ids, alias)


def run_enqueued_eagerly(jobs: list[Job], alias: str) -> list[Job]:
    """Eager mode's hook in ``bulk_enqueue``: run the jobs just created, to the end.

    Every attempt runs back to back (the retry backoff is not waited for) until the job is
    finished. A job not due yet (``run_after`` in the future), or in a paused queue, is not run
    and stays queued, as it would with a worker; so is one that a dedup key matched to an older
    job. Returns the jobs refreshed, in the order given.
    """
    created = list(dict.fromkeys(job.pk for job in jobs if job.created))
    if not created:
        return jobs
    _InProcessRunner(alias, queues=[], retries=True, only_ids=created).run(None)
    fresh = Job.objects.using(alias).in_bulk(created)
    refreshed = []
    for job in jobs:
        if job.pk in fresh:
            current = copy.copy(fresh[job.pk])
            current.created = job.created
            refreshed.append(current)
        else:
            refreshed.append(job)
    if taskengine_settings.EAGER_PROPAGATE:
        for job in refreshed:
            if job.created and job.status == JobStatus.FAILED:
                raise JobFailed(job)
    return refreshed


@contextmanager
def eager(*, propagate: bool = False) -> Iterator[None]:
    """Eager mode for the duration of a ``with`` block (or a decorated test).

    The same as ``override_settings`` of ``TASKENGINE["EAGER"]`` (and ``EAGER_PROPAGATE``),
    keeping the rest of ``TASKENGINE``.
    """
    current = dict(getattr(settings, "TASKENGINE", None) or {})
    with override_settings(TASKENGINE={**current, "EAGER": True, "EAGER_PROPAGATE": propagate}):
        yield


def enqueued_jobs(
    task: Task | str | None = None, *, queue: str | None = None, using: str | None = None
) -> QuerySet[Job]:
    """Jobs of ``task`` (a task or its name; all tasks if None) in any status, oldest first."""
    jobs = Job.objects.using(using or taskengine_settings.DATABASE).order_by("id")
    if task is not None:
        jobs = jobs.filter(task_name=_task_name(task))
    if queue is not None:
        jobs = jobs.filter(queue=queue)
    return jobs


def assert_enqueued(
    task: Task | str, *args: Any, count: int | None = None, **kwargs: Any
) -> list[Job]:
    """Assert that jobs of ``task`` were enqueued (in any status since); return them.

    With arguments, only jobs whose arguments equal them (after the JSON round trip: a tuple
    equals a list) count; without, every job of the task does. ``count``: exactly that many
    (default: at least one).
    """
    name = _task_name(task)
    matching = _matching(name, args, kwargs)
    if (count is None and matching) or (count is not None and len(matching) == count):
        return matching
    wanted = "at least once" if count is None else _times(count)
    raise AssertionError(
        f"Expected {_call_text(name, args, kwargs)} to be enqueued {wanted}; found "
        f"{_times(len(matching))}. {_jobs_of(name)}"
    )


def assert_not_enqueued(task: Task | str, *args: Any, **kwargs: Any) -> None:
    """Assert that no job of ``task`` (with these arguments, if given) was enqueued."""
    name = _task_name(task)
    matching = _matching(name, args, kwargs)
    if matching:
        raise AssertionError(
            f"Expected {_call_text(name, args, kwargs)} not to be enqueued; found "
            f"{_times(len(matching))}. {_jobs_of(name)}"
        )


# -- the in-process runner -------------------------------------------------------------------


class _InProcessSession(GenericWorkerSession):
    """The generic (ORM) worker session, on the caller's connection, narrowed to some jobs.

    Every query of the generic session starts from ``_jobs()``; narrowing it makes the claim
    take only the jobs eager mode just created, and skip the jobs this call already tried.
    """

    def __init__(self, alias: str, worker: WorkerInfo, only_ids: list[int] | None) -> None:
        super().__init__(GenericStore(alias), worker)
        self.only_ids = only_ids
        self.held_back: set[int] = set()

    def _jobs(self) -> Any:
        jobs = super()._jobs()
        if self.only_ids is not None:
            jobs = jobs.filter(id__in=self.only_ids)
        if self.held_back:
            jobs = jobs.exclude(id__in=self.held_back)
        return jobs


class _InProcessRunner:
    """Claims and runs jobs one at a time; the channel of their task contexts."""

    def __init__(
        self, alias: str, *, queues: list[str], retries: bool, only_ids: list[int] | None = None
    ) -> None:
        self.alias = alias
        self.retries = retries
        self.store = get_store(alias)
        self.info = WorkerInfo(
            id=uuid.uuid4(),
            hostname=socket.gethostname(),
            pid=os.getpid(),
            queues=queues,
            concurrency=1,
        )
        self.session = _InProcessSession(alias, self.info, only_ids)
        self.stops: dict[int, str] = {}

    def run(self, max_jobs: int | None) -> list[int]:
        """Run until nothing can be claimed (or ``max_jobs`` attempts); the ids run, in order."""
        from .worker.runner import run_attempt
        from .worker.worker import report_outcome

        ran: dict[int, None] = {}
        attempts = 0
        while max_jobs is None or attempts < max_jobs:
            claimed = self.session.claim(1)
            if not claimed:
                break
            job = claimed[0]
            attempts += 1
            ran[job.id] = None
            result = run_attempt(job, self.store, self.info.id, self, close_connections=False)
            outcome = result.outcome
            if not result.committed and job.id not in self.session.finish([outcome], []):
                outcome.outcome = AttemptOutcome.SUPERSEDED
            report_outcome(outcome, job)
            if outcome.status == JobStatus.QUEUED and outcome.outcome != AttemptOutcome.SUPERSEDED:
                if self.retries:
                    Job.objects.using(self.alias).filter(id=job.id, status=JobStatus.QUEUED).update(
                        run_after=timezone.now()
                    )
                else:
                    self.session.held_back.add(job.id)
        return list(ran)

    # ContextChannel: checkpoints and progress are written at once, fenced by the token.

    def save_checkpoint(self, job: ClaimedJob, state_json: str) -> str:
        applied = self.session.save_state([StateWrite(job.id, job.token, state_json)])
        if job.id not in applied:
            return "superseded"
        self.stops[job.id] = applied[job.id]
        return applied[job.id]

    def report_progress(self, job: ClaimedJob, current: int, total: int | None) -> None:
        applied = self.session.save_state([StateWrite(job.id, job.token, None, current, total)])
        if job.id in applied:
            self.stops[job.id] = applied[job.id]

    def stop_reason(self, job: ClaimedJob) -> str:
        return self.stops.get(job.id, "")


def _refreshed(ids: list[int], alias: str) -> list[Job]:
    fresh = Job.objects.using(alias).in_bulk(ids)
    return [fresh[job_id] for job_id in ids if job_id in fresh]


# -- assertions ------------------------------------------------------------------------------


def _task_name(task: Any) -> str:
    if isinstance(task, str):
        return task
    # A django.tasks Task is registered under its module path (its .name is the bare name).
    name = getattr(task, "module_path", None) or getattr(task, "name", None)
    if not isinstance(name, str):
        inner = getattr(task, "task", None)  # a BoundTask, from task.using(...)
        name = getattr(inner, "name", None)
    if not isinstance(name, str):
        raise TypeError(f"expected a @task or a task name, not {task!r}")
    return name


def _matching(name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> list[Job]:
    jobs = list(enqueued_jobs(name))
    if not args and not kwargs:
        return jobs
    args_json, kwargs_json = dump_arguments(name, args, kwargs)
    wanted_args, wanted_kwargs = json.loads(args_json), json.loads(kwargs_json)
    return [job for job in jobs if job.args == wanted_args and job.kwargs == wanted_kwargs]


def _call_text(name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
    if not args and not kwargs:
        return f"a job of {name}"
    shown = [repr(a) for a in args] + [f"{k}={v!r}" for k, v in kwargs.items()]
    return f"{name}({', '.join(shown)})"


def _times(n: int) -> str:
    return {0: "none", 1: "once", 2: "twice"}.get(n, f"{n} times")


def _jobs_of(name: str) -> str:
    jobs = list(enqueued_jobs(name)[:11])
    if not jobs:
        return f"No job of {name} exists."
    lines = [
        f"  job {job.pk} [{job.status}]: args={job.args!r} kwargs={job.kwargs!r} "
        f"queue={job.queue!r}"
        for job in jobs[:10]
    ]
    if len(jobs) > 10:
        lines.append("  …")
    return f"Jobs of {name}:\n" + "\n".join(lines)
