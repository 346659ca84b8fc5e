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

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.db.models import QuerySet
from django.test import override_settings

from .conf import taskengine_settings
from .models import Job
from .serialization import dump_arguments
from .worker.inprocess import InProcessRunner, JobFailed

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
    every job has succeeded or used up its attempts. A job whose task raised ``Snooze`` stays
    ``queued`` until its time either way: a task may snooze as often as it likes, so running
    it again at once might never end.

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
    runner = InProcessRunner(alias, queues=[queue] if queue else [], retries=retries)
    ids = runner.run(max_jobs)
    return _refreshed(ids, alias)


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


def _refreshed(ids: list[int], alias: str) -> list[Job]:
    jobs = Job.objects.using(alias)
    try:
        fresh = jobs.in_bulk(ids)
    except (ValueError, RecursionError):
        # A job whose stored JSON Python cannot load ran (and failed for it): return the jobs
        # with their JSON columns deferred; reading them loads them, and raises, as the ORM does.
        fresh = jobs.defer("args", "kwargs", "checkpoint", "result").in_bulk(ids)
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
