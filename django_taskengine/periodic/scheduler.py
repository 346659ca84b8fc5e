"""The worker duty: keep the Schedule rows in step with the definitions, and enqueue due ticks.

Every worker process (not ``--burst``) runs :func:`enqueue_due_ticks` about every
:data:`CHECK_INTERVAL` seconds and :func:`prune_ticks` every :data:`PRUNE_INTERVAL`. How a tick
becomes exactly one job is told in :mod:`django_taskengine.periodic`.

The models (and the SQL loader, which the stores' package brings with it) are imported inside
the functions: this module registers its duties when ``django_taskengine`` itself is imported,
before Django's app registry is ready.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import TYPE_CHECKING, Any

from django.db import IntegrityError, connections, transaction
from django.db.models import Count, Q
from django.utils import timezone as django_timezone

from ..conf import taskengine_settings
from ..registry import tasks as registry
from ..worker.maintenance import register
from .cron import due_ticks
from .declarations import definitions, inputs_key
from .validation import ScheduleDefinition

if TYPE_CHECKING:
    from ..models import Job, Schedule

logger = logging.getLogger("django_taskengine.periodic")

#: Tick rows kept per schedule (older ones are deleted); far more than any race can reach back.
TICKS_KEPT = 100
#: Seconds between two looks at the schedules in one worker process.
CHECK_INTERVAL = 1.0
#: Seconds between two prunings of old tick rows in one worker process.
PRUNE_INTERVAL = 60.0


def _db(using: str | None) -> str:
    return using or taskengine_settings.DATABASE


def sync_schedules(using: str | None = None) -> dict[str, Schedule]:
    """Create or update the Schedule rows of this process's definitions; return them by name.

    A new schedule's first tick is the first one after now (nothing is caught up for the time
    before it existed); so is the next tick of a schedule whose expression or time zone changed.
    Pause state and the last tick are kept. Rows of schedules this process does not define are
    left alone.
    """
    from ..models import Schedule

    db = _db(using)
    defined = definitions()
    now = django_timezone.now()
    rows = {row.name: row for row in Schedule.objects.using(db).filter(name__in=defined)}
    missing = [
        Schedule(
            name=definition.name,
            next_tick_at=definition.parsed_cron().next_after(now),
            created_at=now,
            updated_at=now,
            **definition.row_fields(),
        )
        for definition in defined.values()
        if definition.name not in rows
    ]
    if missing:
        # Workers starting together race to create the rows; the unique name settles it.
        Schedule.objects.using(db).bulk_create(missing, ignore_conflicts=True)
    for definition in defined.values():
        row = rows.get(definition.name)
        if row is None:
            continue
        wanted = definition.row_fields()
        if all(getattr(row, column) == value for column, value in wanted.items()):
            continue
        changes = {**wanted, "updated_at": now}
        if (row.cron, row.timezone) != (definition.cron, definition.timezone):
            changes["next_tick_at"] = definition.parsed_cron().next_after(now)
        Schedule.objects.using(db).filter(pk=row.pk, cron=row.cron, timezone=row.timezone).update(
            **changes
        )
        logger.info("periodic schedule %s changed: %s", definition.name, definition.origin)
    return {row.name: row for row in Schedule.objects.using(db).filter(name__in=defined)}


def enqueue_tick(
    schedule_id: int, definition: ScheduleDefinition, tick: dt.datetime, *, using: str | None = None
) -> Job | None:
    """Enqueue the job of one tick, unless a job was enqueued for it already: then None.

    The tick row and the job are written in one transaction (the caller's, if one is open), and
    the job only if the tick row was inserted: at most one job per (schedule, tick), enforced by
    the database's unique constraint.
    """
    from ..models import PeriodicTick

    db = _db(using)
    task = registry.get(definition.task_name)
    connection = connections[db]
    with transaction.atomic(using=db):
        tick_id = _insert_tick(connection, schedule_id, tick)
        if tick_id is None:
            return None
        job: Job = task.using(
            queue=definition.queue or None,
            priority=definition.priority,
            run_after=tick,
            database=db,
        ).enqueue(*definition.args, **definition.kwargs)
        PeriodicTick.objects.using(db).filter(pk=tick_id).update(job_id=job.pk)
    return job


def _insert_tick(connection: Any, schedule_id: int, tick: dt.datetime) -> int | None:
    from ..models import PeriodicTick
    from ..store.sql import query

    now = django_timezone.now()
    if connection.vendor in ("postgresql", "sqlite"):
        adapt = connection.ops.adapt_datetimefield_value
        with connection.cursor() as cursor:
            cursor.execute(query("insert_periodic_tick"), [schedule_id, adapt(tick), adapt(now)])
            row = cursor.fetchone()
        return None if row is None else int(row[0])
    # Databases without INSERT … ON CONFLICT … RETURNING: the constraint raises instead.
    try:
        with transaction.atomic(using=connection.alias):
            created = PeriodicTick.objects.using(connection.alias).create(
                schedule_id=schedule_id, tick=tick, enqueued_at=now
            )
    except IntegrityError:
        return None
    return int(created.pk)


def enqueue_schedule_ticks(
    definition: ScheduleDefinition, row: Schedule, now: dt.datetime, *, using: str | None = None
) -> list[Job]:
    """Enqueue the due ticks of one schedule, as read in ``row``; return the jobs enqueued.

    Nothing is enqueued if the row changed since it was read (another worker advanced it, or
    an operator paused it), or if it holds another expression or time zone than ``definition``
    (during a deploy that changes them, workers still running the old code must not move the
    row to their own next tick: that would skip the new definition's ticks).
    """
    from ..models import Schedule

    db = _db(using)
    ticks, following = due_ticks(
        definition.parsed_cron(), row.next_tick_at, now, catch_up=definition.catch_up
    )
    enqueued: list[tuple[dt.datetime, Job]] = []
    with transaction.atomic(using=db):
        advanced = (
            Schedule.objects.using(db)
            .filter(
                pk=row.pk,
                paused=False,
                next_tick_at=row.next_tick_at,
                cron=definition.cron,
                timezone=definition.timezone,
            )
            .update(next_tick_at=following)
        )
        if not advanced:
            return []
        for tick in ticks:
            job = enqueue_tick(row.pk, definition, tick, using=db)
            if job is not None:
                enqueued.append((tick, job))
        if enqueued:
            tick, job = enqueued[-1]
            Schedule.objects.using(db).filter(
                Q(last_tick_at__isnull=True) | Q(last_tick_at__lt=tick), pk=row.pk
            ).update(last_tick_at=tick, last_job_id=job.pk)
    late = (now - row.next_tick_at).total_seconds() if row.next_tick_at else 0.0
    if late > taskengine_settings.PERIODIC_MISSED_AFTER:
        logger.warning(
            "periodic schedule %s: ticks since %s were missed (no worker ran); with "
            "catch_up=%r, %s job(s) enqueued for them",
            definition.name,
            row.next_tick_at,
            definition.catch_up,
            len(enqueued),
        )
    return [job for _, job in enqueued]


_synced: dict[str, tuple[Any, ...]] = {}


@register("periodic schedules", interval=CHECK_INTERVAL)
def enqueue_due_ticks(database: str) -> int:
    """The worker duty: enqueue every due tick of this process's schedules; return how many.

    Syncs the Schedule rows first when this process has not yet (or its definitions changed,
    or a row is missing).
    """
    from ..models import Schedule

    defined = definitions()
    if not defined:
        return 0
    rows = {
        row.name: row
        for row in Schedule.objects.using(database)
        .filter(name__in=defined)
        .only("id", "name", "paused", "next_tick_at")
    }
    key = inputs_key()
    if _synced.get(database) != key or len(rows) < len(defined):
        rows = sync_schedules(database)
        _synced[database] = key
    now = django_timezone.now()
    count = 0
    for name, definition in defined.items():
        row = rows.get(name)
        if row is None or row.paused or row.next_tick_at is None or row.next_tick_at > now:
            continue
        count += len(enqueue_schedule_ticks(definition, row, now, using=database))
    return count


@register("prune periodic ticks", interval=PRUNE_INTERVAL)
def prune_ticks(database: str) -> int:
    """The worker duty: keep the latest :data:`TICKS_KEPT` tick rows of each schedule."""
    from ..models import PeriodicTick

    ticks = PeriodicTick.objects.using(database)
    crowded = (
        ticks.values("schedule_id")
        .annotate(count=Count("id"))
        .filter(count__gt=TICKS_KEPT)
        .values_list("schedule_id", flat=True)
    )
    deleted = 0
    for schedule_id in list(crowded):
        oldest_kept = (
            ticks.filter(schedule_id=schedule_id)
            .order_by("-tick")
            .values_list("tick", flat=True)[TICKS_KEPT - 1 : TICKS_KEPT]
            .first()
        )
        if oldest_kept is not None:
            deleted += ticks.filter(schedule_id=schedule_id, tick__lt=oldest_kept).delete()[0]
    return deleted
