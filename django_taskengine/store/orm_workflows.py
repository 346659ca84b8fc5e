"""A workflow's steps written in one transaction, through the ORM on every database
(django_taskengine/workflows.py): the workflow row, every step's job in one bulk insert, and
one :class:`~django_taskengine.models.Dependency` row per step it waits for."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, Protocol

from django.db import transaction
from django.utils import timezone

from ..core.dependencies import CANCEL
from ..core.flow import QUEUE
from ..models import Dependency, Job, Queue, Workflow
from ..serialization import to_json
from .base import Store
from .generic_flow import queue_limited
from .orm_dependencies import BLOCKED_FOR, check_known, resolve


class Step(Protocol):
    """What is written of a workflow's step (django_taskengine/workflows.py's Step)."""

    task: Any  # a BoundTask
    args: Sequence[Any]
    kwargs: dict[str, Any]
    name: str
    #: Steps of the same workflow (or their names), and ids of jobs enqueued before.
    after: list[Any]
    policy: str | None
    job: Job | None


def insert_workflow(store: Store, name: str, steps: Sequence[Step], *, kind: str) -> int:
    """Write the workflow ``name`` and its ``steps`` (each after those it waits for), in the
    caller's transaction if one is open; set each step's ``job``; return the workflow's id."""
    alias = store.alias
    with transaction.atomic(using=alias):
        external = [item for step in steps for item in step.after if isinstance(item, int)]
        check_known(alias, external, f"workflow {name!r}")
        workflow = Workflow.objects.using(alias).create(name=name, kind=kind)
        now = timezone.now()
        limited: dict[str, bool] = {}
        jobs, wanted = [], []
        for step in steps:
            new = step.task.new_jobs([(step.args, step.kwargs)])
            if new.queue not in limited:
                Queue.objects.using(alias).get_or_create(name=new.queue)
                limited[new.queue] = queue_limited(alias, new.queue)
            options = new.options()
            if options["flow_key"] is None and limited[new.queue]:
                options["flow_key"] = QUEUE + new.queue
            waits = bool(step.after)
            wanted.append(new.run_after)
            options["run_after"] = now + BLOCKED_FOR if waits else new.run_after or now
            jobs.append(
                Job(
                    # As read back from JSON: lists for tuples, copies of the caller's objects.
                    args=json.loads(to_json(step.args)),
                    kwargs=json.loads(to_json(step.kwargs)),
                    created_at=now,
                    workflow_id=workflow.id,
                    step=step.name,
                    blocked=waits,
                    **options,
                )
            )
        Job.objects.using(alias).bulk_create(jobs)
        by_name = {}
        for step, job in zip(steps, jobs, strict=True):
            step.job = job
            by_name[step.name] = job.pk
        edges = [
            Dependency(
                job_id=job.pk,
                after_id=item if isinstance(item, int) else by_name[getattr(item, "name", item)],
                policy=step.policy or step.task.options.on_dependency_failure or CANCEL,
                run_after=run_after,
            )
            for step, job, run_after in zip(steps, jobs, wanted, strict=True)
            for item in step.after
        ]
        Dependency.objects.using(alias).bulk_create(edges)
        due = sorted({job.queue for job in jobs if not job.blocked and job.run_after <= now})
        if due:
            store.wake_workers(due)
        # Steps that wait for jobs of before: those may have finished already, or finish
        # before this transaction commits.
        outside = [s.job.pk for s in steps if s.job and any(isinstance(i, int) for i in s.after)]
        if outside:
            resolve(alias, store.wake_workers, dependents=outside)
            transaction.on_commit(
                lambda: resolve(alias, store.wake_workers, dependents=outside), using=alias
            )
    return workflow.id
