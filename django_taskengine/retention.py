"""Retention: finished jobs are kept for inspection, then deleted with their attempts.

``TASKENGINE["RETENTION"]`` says how long, per status (``succeeded``, ``failed``,
``cancelled``), counted from ``finished_at``; ``None`` keeps that status forever. Active jobs
(queued, running, paused) are never deleted, whatever their age. Its ``audit`` key says how long
the operators' audit trail is kept (default 90 days, counted from each entry's ``at``); a
one-off ``--older-than`` never applies to the audit trail.

Deleting is done in small batches, each its own short transaction: pick up to ``batch_size``
ids through the partial index on ``finished_at`` (``FOR UPDATE SKIP LOCKED`` on PostgreSQL, so a
row an operator is retrying right now is left for next time), delete their attempts with one
``DELETE … WHERE job_id IN (…)``, the rows naming the jobs they waited for
(``.using(after=…)``) with another, then the jobs with one ``DELETE … WHERE id IN (…)``. All
statements repeat the status and age conditions, so a job that changed meanwhile is never
deleted. The ORM's cascade is not used: it would load every attempt row first. No statement
touches more than one batch of rows, so the table is never locked for long. The statements are
in ``store/sql/retention.sql`` (PostgreSQL and SQLite; other databases delete through the ORM).

Every worker process (not ``--burst``) runs :func:`prune_duty` every :data:`PRUNE_INTERVAL`
seconds; on PostgreSQL a transaction-level advisory lock lets one worker at a time do it. One
run stops after :data:`DUTY_TIME_BUDGET` seconds, so the worker's main loop (heartbeats,
claims) is never held up for long; a backlog is worked off over several runs, or at once with
``manage.py taskengine prune``.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from django.db import connections, transaction
from django.db.models import Exists, OuterRef, Q
from django.utils import timezone

from .conf import taskengine_settings
from .core.durations import format_duration, parse_duration
from .models import (
    TERMINAL_STATUSES,
    Attempt,
    AuditEntry,
    Dependency,
    Event,
    Job,
    Worker,
    Workflow,
)
from .store.postgres_session import engine_lock_key
from .store.sql import query
from .worker.maintenance import register

#: The statuses retention applies to: a job in any other status still has work ahead of it.
PRUNABLE_STATUSES: tuple[str, ...] = tuple(status.value for status in TERMINAL_STATUSES)
#: The key of ``TASKENGINE["RETENTION"]`` for the audit trail.
AUDIT_KEY = "audit"
#: The key of ``TASKENGINE["RETENTION"]`` for sent events (``send_event``).
EVENTS_KEY = "events"
DEFAULT_BATCH_SIZE = 1000
#: Larger batches hold row locks longer and make one statement slow; 10,000 is plenty.
MAX_BATCH_SIZE = 10_000
#: Seconds between two runs of the pruning duty in one worker process.
PRUNE_INTERVAL = 300.0
#: Seconds one run of the duty may spend before it leaves the rest for its next run.
DUTY_TIME_BUDGET = 1.0
#: Low 32 bits of the advisory lock key that lets one worker at a time prune (the high 32 bits
#: are ADVISORY_LOCK_NAMESPACE; the rescuer uses 1, the start fence 2).
PRUNE_LOCK_ID = 0x7072


def parse_age(value: Any) -> dt.timedelta | None:
    """An age for retention: ``None`` (forever), seconds, a timedelta, or text such as ``90s``,
    ``15m``, ``12h``, ``7d``, ``2w`` or ``1d12h``. Raises ``ValueError`` for anything else,
    including ages of zero or less."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (dt.timedelta, int, float, str)):
        raise ValueError(
            f"{value!r} is not an age: give seconds, a timedelta, text like '7d', or None"
        )
    try:
        # Text needs its units ("15" alone is refused); a number is seconds.
        age = parse_duration(value, allow_seconds=not isinstance(value, str))
    except ValueError:
        raise ValueError(
            f"{value!r} is not an age: write it like 90s, 15m, 12h, 7d, 2w or 1d12h"
        ) from None
    if age <= dt.timedelta(0):
        raise ValueError(f"{value!r} is no time at all; use None to keep jobs forever")
    return age


def retention_ages() -> dict[str, dt.timedelta | None]:
    """The configured age per prunable status (``None``: kept forever).

    Bad values are reported by the system checks (``taskengine.E020``); here they raise
    ``ValueError``.
    """
    configured = taskengine_settings.RETENTION
    return {status: parse_age(configured.get(status)) for status in PRUNABLE_STATUSES}


def audit_retention() -> dt.timedelta | None:
    """How long audit entries are kept (``None``: forever); ``ValueError`` for a bad value."""
    return parse_age(taskengine_settings.RETENTION.get(AUDIT_KEY))


def events_retention() -> dt.timedelta | None:
    """How long sent events are kept (``None``: forever); ``ValueError`` for a bad value. A job
    waiting for an event that was sent longer ago than this does not get it."""
    return parse_age(taskengine_settings.RETENTION.get(EVENTS_KEY))


@dataclass
class PruneResult:
    """What one :func:`prune` call deleted (or, in a dry run, would delete)."""

    #: Status -> number of jobs.
    jobs: dict[str, int] = field(default_factory=dict)
    #: Worker rows of stopped (or long dead) worker processes.
    workers: int = 0
    #: Audit trail entries older than their retention.
    audit_entries: int = 0
    #: Sent events older than their retention.
    events: int = 0
    #: Workflows and batches whose steps were all deleted.
    workflows: int = 0
    #: DELETE round trips made (one per batch).
    batches: int = 0
    #: False when a time budget or batch limit stopped it before everything old was gone.
    complete: bool = True
    #: True when another worker held the pruning lock, so this call did nothing.
    skipped: bool = False

    @property
    def total_jobs(self) -> int:
        return sum(self.jobs.values())


def prune(
    ages: Mapping[str, dt.timedelta | None] | None = None,
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
    dry_run: bool = False,
    workers: bool = True,
    audit: bool = True,
    time_budget: float | None = None,
    exclusive: bool = False,
    using: str | None = None,
) -> PruneResult:
    """Delete finished jobs older than their status's age, with their attempts, in batches.

    ``ages`` maps status to age (``None`` skips the status); by default the
    ``TASKENGINE["RETENTION"]`` setting. ``workers``: also delete the rows of worker processes
    that stopped (or stopped heartbeating) longer ago than the longest age, unless some status
    is kept forever. ``audit``: also delete audit entries older than ``RETENTION["audit"]`` and
    sent events older than ``RETENTION["events"]`` (whatever ``ages`` says). ``dry_run`` only
    counts. ``time_budget`` (seconds) stops between batches once spent. ``exclusive``
    (PostgreSQL): give up at once if another process holds the pruning lock, so that only one
    worker prunes at a time.
    """
    if (
        isinstance(batch_size, bool)
        or not isinstance(batch_size, int)
        or not (1 <= batch_size <= MAX_BATCH_SIZE)
    ):
        raise ValueError(
            f"batch_size must be an integer from 1 to {MAX_BATCH_SIZE}, not {batch_size!r}"
        )
    alias = using or taskengine_settings.DATABASE
    ages = dict(retention_ages() if ages is None else ages)
    unknown = set(ages) - set(PRUNABLE_STATUSES)
    if unknown:
        raise ValueError(
            f"cannot prune jobs that are {', '.join(sorted(unknown))}: only finished jobs "
            f"({', '.join(PRUNABLE_STATUSES)}) are pruned"
        )
    now = timezone.now()
    cutoffs = {status: now - age for status, age in ages.items() if age is not None}
    audit_age = audit_retention() if audit else None
    events_age = events_retention() if audit else None
    old_entries = (
        AuditEntry.objects.using(alias).filter(at__lt=now - audit_age).order_by("at")
        if audit_age is not None
        else None
    )
    old_events = (
        Event.objects.using(alias).filter(sent_at__lt=now - events_age).order_by("sent_at")
        if events_age is not None
        else None
    )
    # A workflow's steps go with their ages; the workflow once none is left (not before the
    # shortest age: a younger one still has its steps).
    emptied = (
        Workflow.objects.using(alias)
        .filter(created_at__lt=min(cutoffs.values()))
        .exclude(Exists(Job.objects.using(alias).filter(workflow_id=OuterRef("id"))))
        .order_by("id")
        if cutoffs
        else None
    )
    result = PruneResult(jobs=dict.fromkeys(cutoffs, 0))
    if dry_run:
        jobs = Job.objects.using(alias).order_by()
        for status, cutoff in cutoffs.items():
            result.jobs[status] = jobs.filter(status=status, finished_at__lt=cutoff).count()
        if workers:
            result.workers = _old_workers(ages, now, alias).count()
        if old_entries is not None:
            result.audit_entries = old_entries.count()
        if old_events is not None:
            result.events = old_events.count()
        if emptied is not None:
            # The steps this run would delete are still there: count the workflows they empty.
            kept = Job.objects.using(alias).filter(workflow_id=OuterRef("id"))
            for status, cutoff in cutoffs.items():
                kept = kept.exclude(status=status, finished_at__lt=cutoff)
            result.workflows = (
                Workflow.objects.using(alias)
                .filter(created_at__lt=min(cutoffs.values()))
                .exclude(Exists(kept))
                .count()
            )
        return result
    deadline = None if time_budget is None else time.monotonic() + time_budget
    for status, cutoff in cutoffs.items():
        # Each batch starts where the previous one ended (in finished_at order).
        start: Any = None
        while True:
            if deadline is not None and time.monotonic() >= deadline:
                result.complete = False
                return result
            done = _delete_batch(status, cutoff, start, batch_size, alias, exclusive)
            if done is None:
                result.skipped = True
                return result
            deleted, start = done
            if deleted:
                result.batches += 1
                result.jobs[status] += deleted
            if deleted < batch_size:
                break
    for old, counted in (
        (old_entries, "audit_entries"),
        (old_events, "events"),
        (emptied, "workflows"),
    ):
        while old is not None:
            if deadline is not None and time.monotonic() >= deadline:
                result.complete = False
                return result
            # One short transaction per batch, oldest first through the index on the time.
            batch = list(old.values_list("id", flat=True)[:batch_size])
            deleted = old.model.objects.using(alias).filter(id__in=batch).delete()[0]
            setattr(result, counted, getattr(result, counted) + deleted)
            if len(batch) < batch_size:
                break
    if workers:
        result.workers = _old_workers(ages, now, alias).delete()[0]
    return result


def _delete_batch(
    status: str, cutoff: dt.datetime, start: Any, batch_size: int, alias: str, exclusive: bool
) -> tuple[int, Any] | None:
    """Delete one batch in one short transaction, from ``start`` on in finished_at order (a
    finished_at as the database returned it; None: from the oldest); the number deleted and
    where the next batch starts, or None if another process holds the pruning lock
    (``exclusive`` only)."""
    connection = connections[alias]
    postgres = connection.vendor == "postgresql"
    with transaction.atomic(using=alias), connection.cursor() as cursor:
        if exclusive and postgres:
            key = engine_lock_key(PRUNE_LOCK_ID)
            cursor.execute(query("try_prune_lock"), [key])
            if not cursor.fetchone()[0]:
                return None
        cutoff_param = connection.ops.adapt_datetimefield_value(cutoff)
        select = "select_prunable_job_ids_skip_locked" if postgres else "select_prunable_job_ids"
        if start is None:
            start = connection.ops.adapt_datetimefield_value(_OLDEST)
        cursor.execute(query(select), [status, cutoff_param, start, batch_size])
        rows = cursor.fetchall()
        if not rows:
            return 0, start
        ids = [int(row[0]) for row in rows]
        last = rows[-1][1]
        if connection.vendor not in _DELETE_STATEMENTS:
            return _delete_with_orm(ids, status, cutoff, alias), last
        ids_param: Any = ids if postgres else json.dumps(ids)
        for statement in _DELETE_STATEMENTS[connection.vendor]:
            cursor.execute(query(statement), [ids_param, status, cutoff_param])
        deleted: int = cursor.rowcount
        return deleted, last


#: Before every finished_at: where a run's first batch starts.
_OLDEST = dt.datetime.min.replace(tzinfo=dt.UTC)

#: Vendor -> the names of its DELETE statements in ``retention.sql``, in order: the jobs'
#: attempts and dependencies, then the jobs (the count of the last is the batch's).
_DELETE_STATEMENTS = {
    vendor: tuple(f"delete_pruned_{rows}_{vendor}" for rows in ("attempts", "dependencies", "jobs"))
    for vendor in ("postgresql", "sqlite")
}


def _delete_with_orm(ids: list[int], status: str, cutoff: dt.datetime, alias: str) -> int:
    """The same deletes on a database ``retention.sql`` has no statements for."""
    still_prunable = Job.objects.using(alias).filter(
        id__in=ids, status=status, finished_at__lt=cutoff
    )
    Attempt.objects.using(alias).filter(job__in=still_prunable).delete()
    Dependency.objects.using(alias).filter(job_id__in=still_prunable.values("id")).delete()
    return int(still_prunable.delete()[0])


def _old_workers(ages: Mapping[str, dt.timedelta | None], now: dt.datetime, alias: str) -> Any:
    """Worker rows older than the longest age in ``ages`` (none if a status is kept forever):
    stopped that long ago, or silent that long (a killed process never marks itself stopped)."""
    values = list(ages.values())
    if not values or any(age is None for age in values):
        return Worker.objects.using(alias).none()
    cutoff = now - max(age for age in values if age is not None)
    return Worker.objects.using(alias).filter(
        Q(stopped_at__lt=cutoff) | Q(stopped_at__isnull=True, last_heartbeat_at__lt=cutoff)
    )


def format_age(age: dt.timedelta) -> str:
    """An age in the setting's own notation, in days at most: ``14d``, ``1d12h``, ``90s`` →
    ``1m30s``; an age under half a second as it is (``0.2s``)."""
    seconds = round(age.total_seconds())
    if seconds <= 0:
        return f"{age.total_seconds():g}s"
    return format_duration(dt.timedelta(seconds=seconds), largest_unit="d")


@register("prune finished jobs", PRUNE_INTERVAL)
def prune_duty(alias: str) -> PruneResult:
    """A worker's housekeeping: prune by the retention setting, one worker at a time, for at
    most :data:`DUTY_TIME_BUDGET` seconds."""
    return prune(using=alias, exclusive=True, time_budget=DUTY_TIME_BUDGET)
