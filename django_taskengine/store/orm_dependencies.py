"""Jobs that wait for other jobs (``.using(after=[…])``), through the ORM on every database.

Enqueued blocked (:data:`~django_taskengine.models.Job.blocked`, due never) with one
:class:`~django_taskengine.models.Dependency` row per job it follows. :func:`resolve` decides
(core/dependencies.py) for blocked jobs whose dependencies may all be finished: it runs after
every write that finishes jobs that others wait for (a worker's outcomes, an atomic task's
success, an operator's cancel), and after the enqueue of the blocked job commits (its
dependency may have finished meanwhile). What a crash leaves undecided between a write and its
:func:`resolve`, the workers' sweep (:func:`sweep`) decides within ``SWEEP_INTERVAL`` seconds.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass, replace
from typing import Any

from django.db import transaction
from django.db.models import Exists, OuterRef, Q, Subquery
from django.utils import timezone

from ..core.dependencies import (
    BATCH,
    BATCH_CALLBACKS,
    CANCEL,
    CANCELLED_PREFIX,
    Decisions,
    Required,
    Waiting,
    decide_all,
)
from ..core.ownership import RELEASED
from ..core.statuses import ACTIVE_STATUSES, JobStatus
from ..models import Dependency, Job, Workflow
from .base import NewJobs, Store
from .generic_flow import unpaused

#: How long a blocked job is "due" in: never, as far as a claim can tell.
BLOCKED_FOR = dt.timedelta(days=100 * 365)
#: Seconds between the workers' sweeps of undecided blocked jobs.
SWEEP_INTERVAL = 5.0
#: Blocked jobs one sweep decides at most.
SWEEP_BATCH = 500

#: Wakes the workers of these queues (the store's wake_workers), at the transaction's commit.
Wake = Callable[[list[str]], None]


def enqueue_after(
    store: Store, new: NewJobs, after: Collection[int], policy: str | None
) -> list[Job]:
    """Enqueue ``new`` blocked until the jobs ``after`` are finished, in one transaction; a
    job id that names no job is refused (``ValueError``) and nothing is written."""
    alias = store.alias
    with transaction.atomic(using=alias):
        check_known(alias, after, new.task_name)
        # Never due until decided: no worker is woken for it, none can claim it.
        jobs = store.enqueue(replace(new, run_after=timezone.now() + BLOCKED_FOR))
        add_dependencies(alias, jobs, after, policy or CANCEL, new.run_after, store.wake_workers)
    return jobs


def check_known(alias: str, after: Collection[int], what: str) -> None:
    """Refuse (``ValueError``) job ids in ``after`` that name no job."""
    known = set(Job.objects.using(alias).filter(id__in=list(after)).values_list("id", flat=True))
    missing = [job_id for job_id in after if job_id not in known]
    if missing:
        raise ValueError(
            f"{what}: after names no job with id {', '.join(map(str, missing))}; "
            "nothing was enqueued"
        )


def add_dependencies(
    alias: str,
    jobs: list[Job],
    after: Collection[int],
    policy: str,
    run_after: dt.datetime | None,
    wake: Wake,
) -> None:
    """Block the just-enqueued ``jobs`` (those created) until ``after`` are finished; in the
    caller's transaction. Decided at once for dependencies already finished, and again at
    commit for those that finish meanwhile."""
    created = [job for job in jobs if job.created]
    if not created:
        return
    ids = [job.id for job in created]
    # Already due never (enqueue_after): now waiting too.
    Job.objects.using(alias).filter(id__in=ids).update(blocked=True)
    Dependency.objects.using(alias).bulk_create(
        [
            Dependency(job_id=job_id, after_id=required, policy=policy, run_after=run_after)
            for job_id in ids
            for required in after
        ]
    )
    for job in created:
        job.blocked = True
    if resolve(alias, wake, dependents=ids):
        # Decided at once (a dependency had finished): as the rows are now.
        fields = ("blocked", "run_after", "status", "error", "finished_at")
        fresh = {
            row[0]: row[1:]
            for row in Job.objects.using(alias).filter(id__in=ids).values_list("id", *fields)
        }
        for job in created:
            job.__dict__.update(zip(fields, fresh[job.id], strict=True))
    transaction.on_commit(lambda: resolve(alias, wake, dependents=ids), using=alias)


def resolve(
    alias: str, wake: Wake, *, finished: Iterable[int] = (), dependents: Iterable[int] = ()
) -> int:
    """Decide for the blocked jobs that wait for ``finished`` (jobs that just finished) and
    for those among ``dependents`` (jobs that may have nothing left to wait for); and for the
    jobs that wait for those it cancels, in turn. How many were decided.

    A dependency is finished when its job's status says so: nothing marks it. The decision
    reads the statuses once per job, when none is left, not every time one of thousands
    finishes: it looks for an unfinished one newest first, and finds one at the first row
    while any is left. Here that is checked under the waiting job's row lock, so that of two
    calls the later sees the other's write. A PostgreSQL worker checks without the lock, after
    its commit (store/postgres_dependencies.py); should one of those and a call here each
    check before the other commits, neither decides, and the workers' sweep does, within
    SWEEP_INTERVAL.
    """
    jobs = Job.objects.using(alias).alias(newest_open=_open_first(alias))
    edges = Dependency.objects.using(alias)
    finished = list(finished)
    recheck = set(dependents)
    decided = 0
    while finished or recheck:
        with transaction.atomic(using=alias):
            waiting = Q(id__in=list(recheck))
            if finished:
                waiting |= Q(id__in=edges.filter(after_id__in=finished).values("job_id"))
            locked = list(
                jobs.select_for_update()
                .filter(waiting, blocked=True)
                .order_by("id")
                .values_list("id", flat=True)
            )
            rows = list(
                jobs.filter(id__in=locked, newest_open=None)
                .order_by("id")
                .values_list("id", "status", "queue")
            )
            found = _edges(alias, [row[0] for row in rows])
            statuses = dict(
                jobs.filter(id__in={e.after_id for es in found.values() for e in es}).values_list(
                    "id", "status"
                )
            )
            batches = dict(
                jobs.filter(
                    id__in=[row[0] for row in rows],
                    step__in=list(BATCH_CALLBACKS),
                    workflow_id__in=Workflow.objects.using(alias).filter(kind=BATCH).values("id"),
                ).values_list("id", "workflow_id")
            )
            decisions = decide_all(
                [
                    Waiting(
                        job_id,
                        status,
                        queue,
                        [Required(e.after_id, statuses.get(e.after_id), e.policy) for e in mine],
                        run_after=max((e.run_after for e in mine if e.run_after), default=None),
                        batch_id=batches.get(job_id),
                    )
                    for job_id, status, queue in rows
                    for mine in [found.get(job_id, [])]
                ],
                timezone.now(),
            )
            _apply(alias, decisions)
            if decisions.woken:
                wake(sorted(decisions.woken))
            cancelled = list(decisions.cancel)
            decided += len(decisions.run) + len(cancelled)
        finished, recheck = cancelled, set()
    return decided


def _open_first(alias: str) -> Any:
    """The newest dependency of a job that is not finished, or None: looked for newest first
    (a backward scan of the unique index), as waiting_jobs does on PostgreSQL, since a fan-in's
    dependencies finish about in the order they were added."""
    newest = _unfinished(alias).filter(job_id=OuterRef("id"))
    return Subquery(newest.order_by("-after_id").values("after_id")[:1])


def _unfinished(alias: str) -> Any:
    """The dependencies whose job is not finished (one that is gone is finished)."""
    active = Job.objects.using(alias).filter(
        id=OuterRef("after_id"), status__in=list(ACTIVE_STATUSES)
    )
    return Dependency.objects.using(alias).filter(Exists(active))


def sweep(alias: str, wake: Wake) -> int:
    """Decide for blocked jobs none of whose dependencies is active (missed by a crash between
    a write and its :func:`resolve`); how many were decided."""
    open_edges = _unfinished(alias).filter(job_id=OuterRef("id"))
    ready = list(
        Job.objects.using(alias)
        .filter(blocked=True)
        .exclude(Exists(open_edges))
        .order_by("id")
        .values_list("id", flat=True)[:SWEEP_BATCH]
    )
    return resolve(alias, wake, dependents=ready) if ready else 0


#: What :func:`waiting_outlook` says of the blocked jobs of a draining worker's queues.
SOON, UNDECIDED, NONE = "soon", "undecided", "none"


def waiting_outlook(alias: str, queues: Collection[str]) -> str:
    """What a draining worker (``run_workers --burst``) may expect of the blocked jobs of
    ``queues`` (every queue if empty): SOON if one waits for a job running now, or due and
    queued in those queues (work as soon as that job ends); else UNDECIDED if one has none left
    unfinished (its decision is being written, or was lost with a crashed worker); else NONE
    (what they wait for is not running, and is paused or not in those queues: nobody may run
    it)."""
    jobs = Job.objects.using(alias)
    now = timezone.now()
    mine = Q(queue__in=list(queues)) if queues else Q()
    # What each edge waits for is probed by primary key, running or (below) startable: the
    # sets of running or startable jobs are never built and matched against every edge. Built
    # as a set (`id IN (…)`), with statistics that put the blocked jobs at one row, the
    # planner scanned the job table once per blocked job: 39 s for a fan-out of 10,000.
    after = jobs.filter(id=OuterRef("after_id"))
    soon = Q(Exists(after.filter(status=JobStatus.RUNNING)))
    # Queued and due in those queues, and not paused (nothing runs a paused job).
    startable = unpaused(
        alias, after.filter(mine, status=JobStatus.QUEUED, blocked=False, run_after__lte=now), now
    )
    if startable is not None:
        soon |= Q(Exists(startable))
    runs_soon = Dependency.objects.using(alias).filter(soon, job_id=OuterRef("id"))
    waiting = jobs.filter(mine, blocked=True, status=JobStatus.QUEUED)
    if waiting.filter(Exists(runs_soon)).exists():
        return SOON
    open_edges = _unfinished(alias).filter(job_id=OuterRef("id"))
    if waiting.exclude(Exists(open_edges)).exists():
        return UNDECIDED
    return NONE


def dependency_results(alias: str, job_id: int) -> dict[str, Any]:
    """The results of the jobs job ``job_id`` follows: by step name for the steps of its own
    workflow, by job id as a string for the others."""
    jobs = Job.objects.using(alias)
    workflow = jobs.filter(pk=job_id).values_list("workflow_id", flat=True).first()
    after = Dependency.objects.using(alias).filter(job_id=job_id).values_list("after_id", flat=True)
    return {
        step if step and workflow is not None and in_workflow == workflow else str(required): result
        for required, result, in_workflow, step in jobs.filter(id__in=list(after)).values_list(
            "id", "result", "workflow_id", "step"
        )
    }


def unmet_dependency(alias: str, job_id: int) -> tuple[int, str] | None:
    """A job that job ``job_id`` waits for and that ended without success (or is gone), with
    its status: a retry of the waiting job would be cancelled again at once."""
    after = list(
        Dependency.objects.using(alias).filter(job_id=job_id).values_list("after_id", flat=True)
    )
    statuses = dict(Job.objects.using(alias).filter(id__in=after).values_list("id", "status"))
    for required in after:
        status = statuses.get(required, "gone")
        if status in (JobStatus.FAILED, JobStatus.CANCELLED, "gone"):
            return required, status
    return None


def retried(alias: str, job_id: int, wake: Wake) -> int:
    """Job ``job_id`` was retried (an operator's retry, in the caller's transaction). If it
    waits for jobs itself, it waits again, and is decided from their statuses. The jobs cancelled
    because a job they waited for did not succeed, from it down, wait again too (decided when
    their dependencies finish). How many jobs wait again."""
    jobs = Job.objects.using(alias)
    edges = Dependency.objects.using(alias)
    blocked = {"blocked": True, "run_after": timezone.now() + BLOCKED_FOR}
    again = jobs.filter(id=job_id, id__in=edges.filter(job_id=job_id).values("job_id"))
    reblocked = again.update(**blocked)
    frontier, reopened = {job_id}, 0
    while frontier:
        cancelled = list(
            jobs.filter(
                id__in=_waiting_for(alias, frontier),
                status=JobStatus.CANCELLED,
                error__startswith=CANCELLED_PREFIX,
            ).values_list("id", flat=True)
        )
        reopened += jobs.filter(id__in=cancelled, status=JobStatus.CANCELLED).update(
            status=JobStatus.QUEUED, finished_at=None, error="", **blocked
        )
        frontier = set(cancelled)
    if reblocked:
        resolve(alias, wake, dependents=[job_id])
    return reblocked + reopened


def _apply(alias: str, decisions: Decisions) -> None:
    """Write ``decisions``: one statement per due time, per reason and per batch callback (a
    fan-out of thousands is one)."""
    jobs = Job.objects.using(alias)
    now = timezone.now()
    if decisions.ended:
        jobs.filter(id__in=decisions.ended).update(blocked=False)
    due: dict[dt.datetime, list[int]] = defaultdict(list)
    for job_id, (at, counts) in decisions.run.items():
        if counts is None:
            due[at or now].append(job_id)
        else:  # a batch's callback: batch= counted by the decision
            kwargs = jobs.filter(id=job_id).values_list("kwargs", flat=True).get()
            jobs.filter(id=job_id).update(
                blocked=False, run_after=at or now, kwargs={**kwargs, "batch": counts}
            )
    for at, ids in due.items():
        jobs.filter(id__in=ids).update(blocked=False, run_after=at)
    errors: dict[str, list[int]] = defaultdict(list)
    for job_id, error in decisions.cancel.items():
        errors[error].append(job_id)
    for error, ids in errors.items():
        jobs.filter(id__in=ids).update(
            blocked=False,
            status=JobStatus.CANCELLED,
            finished_at=now,
            error=error,
            stop_requested="",
            **RELEASED,
        )


def _waiting_for(alias: str, finished: Iterable[int]) -> set[int]:
    return set(
        Dependency.objects.using(alias)
        .filter(after_id__in=list(finished))
        .values_list("job_id", flat=True)
    )


@dataclass(frozen=True, slots=True)
class _Edge:
    after_id: int
    policy: str
    run_after: dt.datetime | None


def _edges(alias: str, job_ids: list[int]) -> dict[int, list[_Edge]]:
    """The dependencies of ``job_ids``, by job (rows, not model instances: a fan-out decides
    for thousands at once)."""
    found: dict[int, list[_Edge]] = defaultdict(list)
    rows = Dependency.objects.using(alias).filter(job_id__in=job_ids)
    for job_id, after_id, policy, run_after in rows.values_list(
        "job_id", "after_id", "policy", "run_after"
    ):
        found[job_id].append(_Edge(after_id, policy, run_after))
    return found
