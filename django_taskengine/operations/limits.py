"""Queue limits, fleet-wide (see :mod:`django_taskengine.core.flow`): set at runtime, taken
from ``TASKENGINE["QUEUES"]``, and the lanes of waiting jobs kept in step with them.

A queue's limits in force live on its row (``concurrency``, ``rate_limit``): every worker's
flow claim reads them there, so a change takes effect with the next claim of any worker. Each
knob's runtime value (:func:`set_queue_limits`) overrides its setting until cleared with
:data:`SETTING`. A queue that gets a limit sends its waiting jobs to the flow claim (their
lane: the queue); one that loses its last limit gives them back to the plain claim.

Workers write the settings to the rows when they start, and then every
:data:`LIMITS_INTERVAL` seconds give their lane to jobs enqueued without one by a process that
did not know of a limit yet (a limit set while the enqueue's transaction was open, a deploy in
progress): neither claim takes such a job until then.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from ..audit_trail import AuditObject, AuditSource
from ..conf import taskengine_settings
from ..core.flow import QUEUE, Limits, check_concurrency, lane, parse_rate, queue_limits
from ..core.limits import check_queue_name
from ..flow_report import in_force
from ..job_indexes import status_in
from ..models import Job, JobStatus, Queue
from ..store.flow_source import task_limits
from ..store.generic_flow import limited_queues
from ..worker.maintenance import register
from .audit import Actor
from .common import database
from .jobs import wake_workers

#: For a knob of :func:`set_queue_limits`: clear its runtime value (the setting applies again).
SETTING: Any = type("Setting", (), {"__repr__": lambda self: "SETTING"})()
_UNCHANGED: Any = type("Unchanged", (), {"__repr__": lambda self: "UNCHANGED"})()
#: Seconds between a worker's looks for jobs waiting without the lane a limit gives them.
LIMITS_INTERVAL = 30.0
#: Jobs given their lane per statement.
_BATCH = 1000


def set_queue_limits(
    queue: str,
    *,
    concurrency: Any = _UNCHANGED,
    rate_limit: Any = _UNCHANGED,
    by: str = "",
    reason: str = "",
    source: str = AuditSource.PYTHON,
    using: str | None = None,
) -> Queue:
    """Set a queue's limits at runtime, fleet-wide and durable: ``concurrency`` (jobs of the
    queue running at once) and ``rate_limit`` (``"14/s"``, ``"100/m"``, ``"5000/h"``). For
    each, ``None`` means no limit (whatever the setting says), :data:`SETTING` clears the
    runtime value so that ``TASKENGINE["QUEUES"]`` applies again; a knob not given is left
    as it is. Creates the queue row if the queue has never been used."""
    check_queue_name(queue)
    runtime_changes: dict[str, Any] = {}
    if concurrency is not _UNCHANGED:
        if concurrency is not SETTING:
            check_concurrency(concurrency, f"queue {queue!r}: concurrency")
        runtime_changes["concurrency"] = concurrency
    if rate_limit is not _UNCHANGED:
        if rate_limit is not SETTING:
            rate = parse_rate(rate_limit, f"queue {queue!r}: rate_limit")
            rate_limit = None if rate is None else str(rate)
        runtime_changes["rate_limit"] = rate_limit
    actor = Actor(by, source, reason)
    db = database(using)
    with transaction.atomic(using=db):
        row, _ = Queue.objects.using(db).select_for_update().get_or_create(name=queue)
        runtime = dict(row.runtime_limits)
        for knob, value in runtime_changes.items():
            if value is SETTING:
                runtime.pop(knob, None)
            else:
                runtime[knob] = value
        before = in_force(row)
        row.runtime_limits = runtime
        row.limits_changed_at = timezone.now()
        row.limits_changed_by = by
        after = _apply(row, db)
        detail = {
            "concurrency": after.concurrency,
            "rate_limit": str(after.rate or "") or None,
            "runtime": runtime,
        }
        actor.record("set_queue_limits", AuditObject.QUEUE, queue, detail=detail, using=db)
        if before != after:
            wake_workers([queue], using=db)
    return row


def _apply(row: Queue, db: str) -> Limits:
    """Write ``row``'s limits in force from its setting and runtime values, and move the lanes
    of its active jobs if it gained its first limit or lost its last."""
    limits = queue_limits(row.settings_limits, row.runtime_limits)
    was_limited = row.concurrency is not None or bool(row.rate_limit)
    row.concurrency = limits.concurrency
    row.rate_limit = str(limits.rate or "")
    row.save(using=db)
    jobs = Job.objects.using(db).filter(queue=row.name)
    if limits.any and not was_limited:
        # Running ones too: they count towards the new limit.
        jobs.filter(
            status_in(JobStatus.QUEUED, JobStatus.RUNNING, JobStatus.PAUSED),
            flow_key__isnull=True,
        ).update(flow_key=QUEUE + row.name)
    elif was_limited and not limits.any:
        jobs.filter(_waiting(), flow_key=QUEUE + row.name).update(flow_key=None)
    return limits


def _waiting() -> Q:
    """Jobs no worker holds: queued and not reserved, or paused."""
    return Q(status=JobStatus.QUEUED, token__isnull=True) | Q(status=JobStatus.PAUSED)


def sync_settings(using: str | None = None) -> int:
    """Write ``TASKENGINE["QUEUES"]`` to the queue rows (a worker does as it starts); the
    queues whose setting changed."""
    db = database(using)
    configured = {name: dict(limits or {}) for name, limits in taskengine_settings.QUEUES.items()}
    changed = 0
    with transaction.atomic(using=db):
        rows = Queue.objects.using(db).select_for_update()
        stale = rows.exclude(settings_limits={}).exclude(name__in=list(configured))
        for row in stale:
            row.settings_limits = {}
            _apply(row, db)
            changed += 1
        for name, limits in configured.items():
            row, _ = rows.get_or_create(name=name)
            if row.settings_limits != limits:
                row.settings_limits = limits
                _apply(row, db)
                changed += 1
    return changed


def adopt_strays(using: str | None = None) -> int:
    """Give their lane to waiting jobs enqueued without one in a queue, or of a task type, that
    has a limit; how many."""
    db = database(using)
    queues = list(limited_queues(db).values_list("name", flat=True))
    tasks = task_limits()
    if not queues and not tasks:
        return 0
    strays = (
        Job.objects.using(db)
        .filter(_waiting(), flow_key__isnull=True)
        .filter(Q(queue__in=queues) | Q(task_name__in=list(tasks)))
        .values_list("id", "task_name", "queue", "group_key", "sequence_key")[:_BATCH]
    )
    by_lane: dict[str | None, list[int]] = defaultdict(list)
    for job_id, task_name, queue, group, sequence in strays:
        found = lane(
            tasks.get(task_name),
            task_name,
            group=group,
            sequence=sequence,
            queue=queue,
            queue_limited=queue in queues,
        )
        by_lane[found].append(job_id)
    adopted = 0
    for found, ids in by_lane.items():
        if found is not None:
            adopted += (
                Job.objects.using(db)
                .filter(_waiting(), id__in=ids, flow_key__isnull=True)
                .update(flow_key=found)
            )
    return adopted


_synced: set[str] = set()


@register("flow_limits", LIMITS_INTERVAL)
def keep_limits(using: str) -> None:
    """A worker's duty: the settings written once, then strays given their lanes."""
    if using not in _synced:
        sync_settings(using)
        _synced.add(using)
    adopt_strays(using)
