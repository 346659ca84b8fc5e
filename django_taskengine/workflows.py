"""Workflows: jobs that depend on one another, enqueued together.

::

    wf = Workflow("nightly import")
    fetch = wf.add(download, url, name="download")
    parts = [wf.add(parse, part, after=[fetch]) for part in range(10)]
    wf.add(report, after=parts, name="report")
    wf.enqueue()  # every step in one transaction

A step is a job with a name unique in its workflow (by default its task's name, with ``-2``,
``-3``… added for the second and later ones). It waits for the steps (or names of steps, or
jobs already enqueued) in its ``after``, by the rules of ``.using(after=…)``
(django_taskengine/core/dependencies.py); a step with ``takes_context=True`` reads their
results in ``ctx.dependency_results``, by step name. A cycle is refused before anything is
written. Operators cancel, pause, resume and retry a workflow as a whole
(:mod:`django_taskengine.operations.workflows`) or step by step.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from .conf import taskengine_settings
from .core.dependencies import BATCH, BATCH_CALLBACKS
from .core.limits import STEP_NAME_MAX, WORKFLOW_NAME_MAX, check_name
from .enqueue_options import job_ids
from .signals import job_enqueued, listened
from .task import BoundTask, Task

if TYPE_CHECKING:
    from .models import Job

__all__ = ["Batch", "Step", "Workflow", "WorkflowCycle"]


class WorkflowCycle(ValueError):
    """A workflow's steps wait for one another in a circle: it cannot run, and is refused."""


class Step:
    """One step of a :class:`Workflow`: a call of a task, its name, what it waits for; once
    the workflow is enqueued, its job (``step.job``, ``step.id``)."""

    def __init__(
        self,
        task: BoundTask,
        args: Sequence[Any],
        kwargs: dict[str, Any],
        name: str,
        after: list[Step | str | int],
        policy: str | None = None,
    ) -> None:
        self.task = task
        self.args = args
        self.kwargs = kwargs
        self.name = name
        self.after = after
        #: What a dependency that did not succeed means (core/dependencies.py); None: the
        #: task's ``on_dependency_failure``, or "cancel".
        self.policy = policy
        self.job: Job | None = None

    @property
    def id(self) -> int | None:
        """The step's job id, once the workflow is enqueued."""
        return None if self.job is None else self.job.pk

    def __repr__(self) -> str:
        return f"<Step {self.name!r}>"


class Workflow:
    """Steps to enqueue together: :meth:`add` them, then :meth:`enqueue`."""

    #: What the workflow's row says it is ("batch" for a :class:`Batch`).
    kind = "workflow"

    def __init__(self, name: str, *, database: str | None = None) -> None:
        self.name = check_name(name, f"{type(self).__name__}(name)", max_length=WORKFLOW_NAME_MAX)
        self.database = database
        self.steps: dict[str, Step] = {}
        self._suffixes: dict[str, int] = {}
        #: The workflow's id, once enqueued.
        self.id: int | None = None

    def add(
        self,
        task: Task | BoundTask,
        *args: Any,
        after: Iterable[Step | str | Job | int] = (),
        name: str | None = None,
        **kwargs: Any,
    ) -> Step:
        """Add a step that calls ``task(*args, **kwargs)`` once the steps (or step names, or
        jobs) in ``after`` are done; per-call options come with ``task.using(…)``."""
        return self._add(task, args, kwargs, after=after, name=name)

    def _add(
        self,
        task: Task | BoundTask,
        args: Sequence[Any],
        kwargs: dict[str, Any],
        *,
        after: Iterable[Step | str | Job | int] = (),
        name: str | None = None,
        policy: str | None = None,
    ) -> Step:
        if self.id is not None:
            raise RuntimeError(f"workflow {self.name!r} is enqueued already: add steps before")
        bound = _bound(task, self.name)
        what = f"{self.name}: step of {bound.task.name}"
        if bound.options.after or bound.options.dedup_key is not None:
            raise ValueError(
                f"{what}: give a step's dependencies with wf.add(…, after=[…]); steps take no "
                "dedup_key"
            )
        bound._check(tuple(args), kwargs)
        if name is None:
            name = base = bound.task.name
            # The next suffix to try for this task's name: adding n steps stays linear.
            suffix = self._suffixes.get(base, 2)
            while name in self.steps:
                name, suffix = f"{base}-{suffix}", suffix + 1
            self._suffixes[base] = suffix
        check_name(name, f"{what}: name", max_length=STEP_NAME_MAX)
        if name in self.steps:
            raise ValueError(f"{what}: workflow {self.name!r} has a step named {name!r} already")
        if isinstance(after, (str, bytes)) or isinstance(after, Step):
            raise TypeError(f"{what}: after must be a list of steps, step names, jobs or ids")
        waits: list[Step | str | int] = []
        for item in after:
            if isinstance(item, Step):
                if self.steps.get(item.name) is not item:
                    raise ValueError(f"{what}: {item!r} is not a step of workflow {self.name!r}")
                waits.append(item)
            elif isinstance(item, str):
                waits.append(item)
            else:
                waits.extend(job_ids([item], what))
        step = Step(bound, args, kwargs, name, waits, policy)
        self.steps[name] = step
        return step

    def enqueue(self) -> Workflow:
        """Insert every step in one transaction (the caller's, if one is open); return the
        workflow, its ``id`` and each step's ``job`` set. A step that waits for a name no step
        has, or steps that wait for one another in a circle, are refused before anything is
        written."""
        if self.id is not None:
            raise RuntimeError(f"workflow {self.name!r} is enqueued already")
        if not self.steps:
            raise ValueError(f"workflow {self.name!r} has no steps")
        order = self._in_order()
        from .store import get_store
        from .store.orm_workflows import insert_workflow
        from .worker.inprocess import run_enqueued_eagerly

        store = get_store(self.database)
        self.id = insert_workflow(store, self.name, order, kind=self.kind)
        jobs = [step.job for step in order if step.job is not None]
        if listened(job_enqueued):
            for step in order:
                job_enqueued.send(sender=step.task.task, job=step.job, created=True)
        if taskengine_settings.EAGER:
            for step, job in zip(order, run_enqueued_eagerly(jobs, store.alias), strict=True):
                step.job = job
        return self

    def _in_order(self) -> list[Step]:
        """The steps, each after every step it waits for (``WorkflowCycle`` if none can be)."""
        for step in self.steps.values():
            for item in step.after:
                if isinstance(item, str) and item not in self.steps:
                    raise ValueError(
                        f"{self.name}: step {step.name!r} waits for {item!r}, which is no step "
                        "of the workflow"
                    )
        waits_for = {
            name: {
                item if isinstance(item, str) else item.name
                for item in step.after
                if isinstance(item, (Step, str))
            }
            for name, step in self.steps.items()
        }
        # Kahn's order, in the order the steps were added where it is free.
        waited_by: dict[str, list[str]] = {name: [] for name in self.steps}
        for name, needed in waits_for.items():
            for other in needed:
                waited_by[other].append(name)
        left = {name: len(needed) for name, needed in waits_for.items()}
        ready = deque(name for name in self.steps if not left[name])
        order: list[str] = []
        while ready:
            name = ready.popleft()
            order.append(name)
            for other in waited_by[name]:
                left[other] -= 1
                if not left[other]:
                    ready.append(other)
        if len(order) < len(self.steps):
            raise WorkflowCycle(
                f"workflow {self.name!r} cannot run: its steps wait for one another in a "
                f"circle ({' -> '.join(self._circle(waits_for, left))}); nothing was enqueued"
            )
        return [self.steps[name] for name in order]

    @staticmethod
    def _circle(waits_for: dict[str, set[str]], left: dict[str, int]) -> list[str]:
        """One circle among the steps Kahn's order could not place."""
        stuck = {name for name, count in left.items() if count}
        name = min(stuck)
        seen: list[str] = []
        while name not in seen:
            seen.append(name)
            name = min(other for other in waits_for[name] if other in stuck)
        return [*seen[seen.index(name) :], name]


class Batch(Workflow):
    """Jobs enqueued together, and a callback run once, when every one of them is finished.

    ::

        with Batch(on_complete=report) as batch:
            for row in rows:
                batch.add(import_row, row)

    ``on_complete`` runs however they ended; ``on_success`` only if all succeeded; ``on_failure``
    only if one failed or was cancelled. A callback is called with the keyword argument
    ``batch={"id": …, "succeeded": n, "failed": n, "cancelled": n}``, counted when the last
    job finished. The jobs and the callbacks are steps of a workflow of kind "batch" whose id
    is the batch's.
    """

    kind = BATCH

    def __init__(
        self,
        name: str = "batch",
        *,
        on_complete: Task | BoundTask | None = None,
        on_success: Task | BoundTask | None = None,
        on_failure: Task | BoundTask | None = None,
        database: str | None = None,
    ) -> None:
        super().__init__(name, database=database)
        given = {"on_complete": on_complete, "on_success": on_success, "on_failure": on_failure}
        self.callbacks = {step: task for step, task in given.items() if task is not None}
        if not self.callbacks:
            raise ValueError("Batch needs a callback: on_complete, on_success or on_failure")
        for step, task in self.callbacks.items():
            bound = _bound(task, f"Batch({step}=…)")
            try:
                bound._check((), {"batch": {}})
            except TypeError as exc:
                raise TypeError(f"Batch({step}=…): the callback must take batch=…: {exc}") from None

    def add(self, task: Task | BoundTask, *args: Any, **kwargs: Any) -> Step:
        """Add a job that calls ``task(*args, **kwargs)``."""
        return self._add(task, args, kwargs)

    def enqueue(self) -> Batch:
        """Insert the jobs and the callbacks in one transaction; return the batch (its ``id``,
        each added step's ``job``)."""
        if self.id is None:
            jobs = [step for step in self.steps.values() if step.name not in self.callbacks]
            if not jobs:
                raise ValueError(f"batch {self.name!r} has no jobs")
            for step, task in self.callbacks.items():
                if step not in self.steps:
                    self._add(
                        task,
                        (),
                        {"batch": None},
                        after=jobs,
                        name=step,
                        policy=BATCH_CALLBACKS[step],
                    )
        super().enqueue()
        return self

    def __enter__(self) -> Batch:
        return self

    def __exit__(self, kind: Any, value: Any, traceback: Any) -> None:
        if kind is None:
            self.enqueue()


def _bound(task: Any, what: str) -> BoundTask:
    """``task`` with its per-call options (none given: its own); a clear error for anything
    that is not a task of this package."""
    if isinstance(task, BoundTask):
        return task
    if isinstance(task, Task):
        return task.using()
    raise TypeError(
        f"{what}: a step is a task made with django_taskengine's @task (or its .using(...)), "
        f"not {task!r}"
    )
