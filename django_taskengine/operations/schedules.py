"""Operator actions on periodic schedules: pause, resume, run now.

Workers create and update the :class:`~django_taskengine.models.Schedule` rows from the
definitions (:mod:`django_taskengine.periodic`); operators only pause and resume them, each a
conditional ``UPDATE`` that every worker sees, or enqueue one job of a schedule at once. Each
records its change in the audit trail (:mod:`.audit`), in the change's transaction.
"""

from __future__ import annotations

from django.db import transaction
from django.utils import timezone

from ..audit_trail import AuditObject, AuditSource
from ..models import Job, Schedule
from ..periodic.cron import parsed_cron
from ..registry import TaskNotRegistered
from ..registry import tasks as registry
from .audit import Actor
from .common import ActionRefused, NotFound, database


def get_schedule(name: str, *, using: str | None = None) -> Schedule:
    """The schedule called ``name``, or :class:`~.common.NotFound`."""
    db = database(using)
    try:
        return Schedule.objects.using(db).get(name=name)
    except Schedule.DoesNotExist:
        known = list(Schedule.objects.using(db).values_list("name", flat=True)[:20])
        raise NotFound(
            f"No periodic schedule named {name!r}. Known schedules: "
            f"{', '.join(known) or 'none yet (a worker creates them when it starts)'}."
        ) from None


def pause_schedule(
    name: str,
    *,
    by: str = "",
    reason: str = "",
    source: str = AuditSource.PYTHON,
    using: str | None = None,
) -> Schedule:
    """Stop enqueueing the schedule's ticks, on every worker, from its next tick on.

    Raises :class:`~.common.ActionRefused` if it is paused already.
    """
    actor = Actor(by, source, reason)
    db = database(using)
    schedule = get_schedule(name, using=db)
    with transaction.atomic(using=db):
        updated = (
            Schedule.objects.using(db)
            .filter(pk=schedule.pk, paused=False)
            .update(paused=True, paused_at=timezone.now(), paused_by=by)
        )
        if updated:
            actor.record("pause_schedule", AuditObject.SCHEDULE, name, using=db)
    if not updated:
        raise ActionRefused(f"Schedule {name!r} is paused already; nothing changed.")
    return get_schedule(name, using=db)


def resume_schedule(
    name: str,
    *,
    by: str = "",
    reason: str = "",
    source: str = AuditSource.PYTHON,
    using: str | None = None,
) -> Schedule:
    """Resume a paused schedule. Ticks that fell while it was paused are skipped: the next job
    is for its first tick after now.

    Raises :class:`~.common.ActionRefused` if it is not paused.
    """
    actor = Actor(by, source, reason)
    db = database(using)
    schedule = get_schedule(name, using=db)
    following = parsed_cron(schedule.cron, schedule.timezone).next_after(timezone.now())
    with transaction.atomic(using=db):
        updated = (
            Schedule.objects.using(db)
            .filter(pk=schedule.pk, paused=True, cron=schedule.cron, timezone=schedule.timezone)
            .update(paused=False, paused_at=None, paused_by="", next_tick_at=following)
        )
        if updated:
            actor.record("resume_schedule", AuditObject.SCHEDULE, name, using=db)
    if not updated:
        raise ActionRefused(
            f"Schedule {name!r} is not paused (or changed meanwhile); nothing changed."
        )
    return get_schedule(name, using=db)


def run_schedule_now(
    name: str,
    *,
    by: str = "",
    reason: str = "",
    source: str = AuditSource.PYTHON,
    using: str | None = None,
) -> Job:
    """Enqueue one job of the schedule now, with its task, arguments, queue and priority as
    stored on its row. It is not a tick: the schedule's ticks go on as before."""
    actor = Actor(by, source, reason)
    db = database(using)
    schedule = get_schedule(name, using=db)
    try:
        task = registry.get(schedule.task_name)
        with transaction.atomic(using=db):
            job: Job = task.using(
                queue=schedule.queue or None, priority=schedule.priority, database=db
            ).enqueue(*schedule.args, **schedule.kwargs)
            detail = {"job": job.pk}
            actor.record("run_schedule_now", AuditObject.SCHEDULE, name, detail=detail, using=db)
    except (TaskNotRegistered, TypeError, ValueError) as exc:
        raise ActionRefused(f"Schedule {name!r} could not run: {exc}") from None
    return job
