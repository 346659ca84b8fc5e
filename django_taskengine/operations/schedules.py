"""Operator actions on periodic schedules: pause, resume, run now.

Workers create and update the :class:`~django_taskengine.models.Schedule` rows from the
definitions (:mod:`django_taskengine.periodic`); operators only pause and resume them, each a
conditional ``UPDATE`` that every worker sees, or enqueue one job of a schedule at once.
"""

from __future__ import annotations

from django.utils import timezone

from ..models import Job, Schedule
from ..periodic.cron import parsed_cron
from ..registry import TaskNotRegistered
from ..registry import tasks as registry
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


def pause_schedule(name: str, *, by: str = "", using: str | None = None) -> Schedule:
    """Stop enqueueing the schedule's ticks, on every worker, from its next tick on.

    Raises :class:`~.common.ActionRefused` if it is paused already.
    """
    db = database(using)
    schedule = get_schedule(name, using=db)
    updated = (
        Schedule.objects.using(db)
        .filter(pk=schedule.pk, paused=False)
        .update(paused=True, paused_at=timezone.now(), paused_by=by)
    )
    if not updated:
        raise ActionRefused(f"Schedule {name!r} is paused already; nothing changed.")
    return get_schedule(name, using=db)


def resume_schedule(name: str, *, by: str = "", using: str | None = None) -> Schedule:
    """Resume a paused schedule. Ticks that fell while it was paused are skipped: the next job
    is for its first tick after now.

    Raises :class:`~.common.ActionRefused` if it is not paused.
    """
    db = database(using)
    schedule = get_schedule(name, using=db)
    following = parsed_cron(schedule.cron, schedule.timezone).next_after(timezone.now())
    updated = (
        Schedule.objects.using(db)
        .filter(pk=schedule.pk, paused=True, cron=schedule.cron, timezone=schedule.timezone)
        .update(paused=False, paused_at=None, paused_by="", next_tick_at=following)
    )
    if not updated:
        raise ActionRefused(
            f"Schedule {name!r} is not paused (or changed meanwhile); nothing changed."
        )
    return get_schedule(name, using=db)


def run_schedule_now(name: str, *, using: str | None = None) -> Job:
    """Enqueue one job of the schedule now, with its task, arguments, queue and priority as
    stored on its row. It is not a tick: the schedule's ticks go on as before."""
    db = database(using)
    schedule = get_schedule(name, using=db)
    try:
        task = registry.get(schedule.task_name)
        return task.using(  # type: ignore[no-any-return]
            queue=schedule.queue or None, priority=schedule.priority, database=db
        ).enqueue(*schedule.args, **schedule.kwargs)
    except (TaskNotRegistered, TypeError, ValueError) as exc:
        raise ActionRefused(f"Schedule {name!r} could not run: {exc}") from None
