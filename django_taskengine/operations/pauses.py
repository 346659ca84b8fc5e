"""Pause and resume queues, task types and the whole engine.

A pause stops jobs from *starting*; running jobs finish unless asked to stop. A timed pause
(``until``) ends by itself. Queue pauses live on the queue's row; engine and task pauses are
:class:`~django_taskengine.models.Pause` rows.

Each function takes ``by`` (who acts), ``reason`` and ``source`` ("admin", "cli", "python"), and
records a change in the audit trail (:mod:`.audit`) in the change's transaction; a resume of
something that was not paused changes nothing and records nothing.

A pause asked to stop running jobs too parks them ``paused``, each keeping which pause stopped
it (``stop_requested`` "pause:queue", "pause:engine"…). When that pause ends — resumed, or a
timed pause run out — :func:`release_ended_pauses` requeues them (and only them: a job an
operator paused by itself stays paused).
"""

from __future__ import annotations

import datetime as dt

from django.db import transaction
from django.db.models import Exists, Q, Subquery
from django.utils import timezone

from ..audit_trail import AuditObject, AuditSource
from ..core.actions import SCOPE_PAUSE_REQUESTS
from ..core.limits import QUEUE_NAME_MAX, TASK_NAME_MAX, check_name, check_queue_name
from ..job_indexes import status_in
from ..models import Job, JobStatus, Pause, PauseScope, Queue
from ..store import get_store
from ..worker.maintenance import register
from .audit import Actor
from .common import NotFound, database, pause_end
from .jobs import stop_running_jobs, wake_workers

#: Seconds between a worker's checks for timed pauses that ran out with jobs they stopped.
RELEASE_INTERVAL = 1.0

# -- queues -----------------------------------------------------------------------------


def pause_queue(
    name: str,
    *,
    by: str = "",
    reason: str = "",
    until: dt.datetime | dt.timedelta | None = None,
    stop_running: bool = False,
    source: str = AuditSource.PYTHON,
    using: str | None = None,
) -> Queue:
    """Pause a queue: no job of it starts after this returns, in any worker.

    Running jobs finish, unless ``stop_running``: then each is asked to pause at its next
    checkpoint (tasks without checkpoints still finish). ``until`` makes a timed pause that ends
    by itself. Creates the queue row if the queue has never been used.
    """
    _check_queue_name(name)
    actor = Actor(by, source, reason)
    db = database(using)
    end = pause_end(until)
    with transaction.atomic(using=db):
        queue, _ = Queue.objects.using(db).update_or_create(
            name=name,
            defaults={
                "paused": True,
                "paused_at": timezone.now(),
                "paused_by": by,
                "pause_reason": reason,
                "paused_until": end,
            },
        )
        detail = _pause_detail(end)
        if stop_running:
            detail["running_jobs_asked_to_pause"] = stop_running_jobs(name, "pause:queue", using=db)
        actor.record("pause_queue", AuditObject.QUEUE, name, detail=detail, using=db)
        _fence_starts(db)
    return queue


def resume_queue(
    name: str,
    *,
    by: str = "",
    reason: str = "",
    source: str = AuditSource.PYTHON,
    using: str | None = None,
) -> Queue:
    """Resume a paused queue (a queue that is not paused stays as it is). Raises
    :class:`NotFound` for a queue that does not exist."""
    actor = Actor(by, source, reason)
    db = database(using)
    with transaction.atomic(using=db):
        updated = (
            Queue.objects.using(db)
            .filter(name=name, paused=True)
            .update(paused=False, paused_at=None, paused_by="", pause_reason="", paused_until=None)
        )
        if updated:
            actor.record("resume_queue", AuditObject.QUEUE, name, using=db)
        release_ended_pauses(using=db)
        wake_workers([name], using=db)
    return get_queue(name, using=db)


def get_queue(name: str, *, using: str | None = None) -> Queue:
    """The queue called ``name``, or :class:`NotFound` listing the known ones."""
    db = database(using)
    try:
        return Queue.objects.using(db).get(name=name)
    except Queue.DoesNotExist:
        raise NotFound(_unknown_queue(name, db)) from None


def _unknown_queue(name: str, db: str) -> str:
    known = list(Queue.objects.using(db).values_list("name", flat=True)[:20])
    return f"No queue named {name!r}. Known queues: {', '.join(known) or 'none yet'}."


def _check_queue_name(name: str) -> None:
    try:
        check_queue_name(name)
    except ValueError:
        raise ValueError(
            f"A queue name is a non-empty string of at most {QUEUE_NAME_MAX} characters, "
            f"not {name!r}"
        ) from None


# -- the engine and task types ----------------------------------------------------------


def pause_all(
    *,
    by: str = "",
    reason: str = "",
    until: dt.datetime | dt.timedelta | None = None,
    stop_running: bool = False,
    source: str = AuditSource.PYTHON,
    using: str | None = None,
) -> Pause:
    """Pause every queue at once (queues paused on their own stay paused after resume_all).

    ``stop_running`` also asks every running job to pause at its next checkpoint.
    """
    actor = Actor(by, source, reason)
    db = database(using)
    with transaction.atomic(using=db):
        pause = _pause(PauseScope.ENGINE, "", by, reason, until, db)
        detail = _pause_detail(pause.paused_until)
        if stop_running:
            detail["running_jobs_asked_to_pause"] = stop_running_jobs(
                None, "pause:engine", using=db
            )
        actor.record("pause_all", AuditObject.ENGINE, detail=detail, using=db)
        _fence_starts(db)
    return pause


def resume_all(
    *, by: str = "", reason: str = "", source: str = AuditSource.PYTHON, using: str | None = None
) -> bool:
    """End the engine-wide pause; True if there was one."""
    actor = Actor(by, source, reason)
    db = database(using)
    with transaction.atomic(using=db):
        deleted = Pause.objects.using(db).filter(scope=PauseScope.ENGINE).delete()[0]
        if deleted:
            actor.record("resume_all", AuditObject.ENGINE, using=db)
        release_ended_pauses(using=db)
        wake_workers(_queues_with_queued_jobs(Q(), db), using=db)
    return bool(deleted)


def pause_task(
    task_name: str,
    *,
    by: str = "",
    reason: str = "",
    until: dt.datetime | dt.timedelta | None = None,
    stop_running: bool = False,
    source: str = AuditSource.PYTHON,
    using: str | None = None,
) -> Pause:
    """Stop starting jobs of one task type, in every queue (e.g. ``send_invoice`` while billing
    is down). The task need not be registered in this process.

    ``stop_running`` also asks its running jobs to pause at their next checkpoint (tasks without
    checkpoints still finish); the end of this pause requeues the jobs it paused."""
    try:
        check_name(task_name, "task name", max_length=TASK_NAME_MAX)
    except ValueError:
        raise ValueError(
            f"A task name is a non-empty string of at most {TASK_NAME_MAX} characters, "
            f"not {task_name!r}"
        ) from None
    actor = Actor(by, source, reason)
    db = database(using)
    with transaction.atomic(using=db):
        pause = _pause(PauseScope.TASK, task_name, by, reason, until, db)
        detail = _pause_detail(pause.paused_until)
        if stop_running:
            detail["running_jobs_asked_to_pause"] = stop_running_jobs(
                None, "pause:task", task_name=task_name, using=db
            )
        actor.record("pause_task", AuditObject.TASK, task_name, detail=detail, using=db)
        _fence_starts(db)
    return pause


def resume_task(
    task_name: str,
    *,
    by: str = "",
    reason: str = "",
    source: str = AuditSource.PYTHON,
    using: str | None = None,
) -> bool:
    """End a task type's pause; True if it was paused."""
    actor = Actor(by, source, reason)
    db = database(using)
    with transaction.atomic(using=db):
        deleted = (
            Pause.objects.using(db).filter(scope=PauseScope.TASK, target=task_name).delete()[0]
        )
        if deleted:
            actor.record("resume_task", AuditObject.TASK, task_name, using=db)
        release_ended_pauses(using=db)
        wake_workers(_queues_with_queued_jobs(Q(task_name=task_name), db), using=db)
    return bool(deleted)


def _queues_with_queued_jobs(which: Q, db: str) -> set[str]:
    """The queues of the queued jobs that ``which`` selects: those a resume may make due."""
    queued = Job.objects.using(db).filter(which, status_in(JobStatus.QUEUED))
    return set(queued.order_by().values_list("queue", flat=True).distinct())


def release_ended_pauses(*, using: str | None = None) -> int:
    """Requeue the jobs a queue, task or engine pause stopped mid-run whose pause is no longer
    in force (resumed, or a timed pause that ran out), and wake workers for them; return how
    many. A job still held by another pause in force stays paused until that one ends too."""
    db = database(using)
    # Workers run this every RELEASE_INTERVAL: mostly no job is held by a pause, and this
    # simple probe (a partial index of jobs at rest) answers that for a tenth of what building
    # the full statement costs.
    held = Job.objects.using(db).filter(
        status=JobStatus.PAUSED, stop_requested__in=SCOPE_PAUSE_REQUESTS
    )
    if not held.exists():
        return 0
    now = timezone.now()
    in_force = Q(paused_until__isnull=True) | Q(paused_until__gt=now)
    queues = Queue.objects.using(db).filter(in_force, paused=True).values("name")
    pauses = Pause.objects.using(db).filter(in_force)
    ended = (
        (Q(stop_requested="pause:queue") & ~Q(queue__in=Subquery(queues)))
        | (Q(stop_requested="pause:engine") & ~Exists(pauses.filter(scope=PauseScope.ENGINE)))
        | (
            Q(stop_requested="pause:task")
            & ~Q(task_name__in=Subquery(pauses.filter(scope=PauseScope.TASK).values("target")))
        )
    )
    released = Job.objects.using(db).filter(ended, status=JobStatus.PAUSED)
    woken = set(released.order_by().values_list("queue", flat=True).distinct())
    if not woken:
        return 0
    count = released.update(status=JobStatus.QUEUED, stop_requested="")
    wake_workers(woken, using=db)
    return count


@register("requeue jobs of ended pauses", RELEASE_INTERVAL)
def release_ended_pauses_duty(alias: str) -> int:
    """A worker's housekeeping: a timed pause ends by itself, so do the jobs it stopped."""
    return release_ended_pauses(using=alias)


def _pause(
    scope: str,
    target: str,
    by: str,
    reason: str,
    until: dt.datetime | dt.timedelta | None,
    using: str | None,
) -> Pause:
    pause, _ = Pause.objects.using(database(using)).update_or_create(
        scope=scope,
        target=target,
        defaults={
            "paused_at": timezone.now(),
            "paused_by": by,
            "pause_reason": reason,
            "paused_until": pause_end(until),
        },
    )
    return pause


def _pause_detail(end: dt.datetime | None) -> dict[str, object]:
    """A pause's audit detail: when it ends by itself, if it does."""
    return {} if end is None else {"until": end.isoformat()}


def active_pauses(*, using: str | None = None) -> list[Pause]:
    """Engine and task pauses in force now (expired timed pauses are left out)."""
    now = timezone.now()
    return list(
        Pause.objects.using(database(using)).filter(
            Q(paused_until__isnull=True) | Q(paused_until__gt=now)
        )
    )


def engine_pause(*, using: str | None = None) -> Pause | None:
    """The engine-wide pause in force now, if any."""
    return next((p for p in active_pauses(using=using) if p.scope == PauseScope.ENGINE), None)


def task_pause(task_name: str, *, using: str | None = None) -> Pause | None:
    """The pause of task type ``task_name`` in force now, if any."""
    return next(
        (
            p
            for p in active_pauses(using=using)
            if p.scope == PauseScope.TASK and p.target == task_name
        ),
        None,
    )


def paused_queues(*, using: str | None = None) -> list[Queue]:
    """Queues paused on their own now (an engine-wide pause aside)."""
    return [queue for queue in Queue.objects.using(database(using)).all() if queue.is_paused]


def _fence_starts(db: str) -> None:
    """Once the pause commits, wait for the workers' statements that started jobs without
    seeing it (a snapshot taken just before the commit): the pause's promise is that nothing
    starts after it returns."""
    transaction.on_commit(get_store(db).wait_for_starts, using=db)
