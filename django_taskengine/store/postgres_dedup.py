"""Enqueues whose dedup key has a mode other than ``skip``, on PostgreSQL (core/dedup.py).

``replace`` and ``debounce`` are one ``INSERT … ON CONFLICT … DO UPDATE`` on the key's unique
index (enqueue_replacing): concurrent enqueues of one key wait for one another there, and each
either adds the job or writes over the waiting holder, so a burst leaves one job. ``throttle``
reads the key's last job under the key's lock (event_lock), held to the end of the caller's
transaction, so that two enqueues in one window cannot both miss each other's job.
"""

from __future__ import annotations

from typing import Any

from django.db import transaction

from ..conf import taskengine_settings
from ..core.dedup import CREATED, DEBOUNCE, FOUND, SKIPPED, THROTTLE, THROTTLED
from ..models import Job
from ..serialization import to_json
from .base import NewJobs, key_holder, per_call
from .sql import query

#: Prefixed to a throttled key to name its lock (event_lock's key space).
LOCK_PREFIX = "dedup:"
#: Tries before giving up when the key's holder keeps finishing between two statements.
TRIES = 10


def enqueue_by_mode(cursor: Any, alias: str, new: NewJobs) -> list[Job]:
    """Enqueue ``new`` (a dedup key, a mode other than skip): the job each call got."""
    params = new.options()
    params["channel"] = taskengine_settings.NOTIFY_CHANNEL
    with transaction.atomic(using=alias):
        if new.dedup_mode == THROTTLE:
            return _throttle(cursor, alias, new, params)
        return _replace(cursor, alias, new, params)


def _replace(cursor: Any, alias: str, new: NewJobs, params: dict[str, Any]) -> list[Job]:
    # Each later call of a bulk enqueue would replace the one before: the last one's stand.
    args, kwargs = new.calls[-1]
    params.update(args=to_json(args), kwargs=to_json(kwargs), delay=0.0)
    if new.dedup_mode == DEBOUNCE:
        params["delay"] = new.dedup_window
    for _ in range(TRIES):
        cursor.execute(query("enqueue_replacing"), params)
        row = cursor.fetchone()
        if row is not None:
            first = CREATED if row[1] else FOUND[new.dedup_mode]
            return _got(alias, row[0], first, new)
        # A job that holds the key in a mode that is not replaced (skip, throttle) holds it.
        holder = key_holder(alias, new.dedup_key)
        if holder is not None:
            return per_call(holder, SKIPPED, new.dedup_mode, len(new.calls))
    raise RuntimeError(f"could not enqueue {new.task_name} with dedup_key {new.dedup_key!r}")


def _throttle(cursor: Any, alias: str, new: NewJobs, params: dict[str, Any]) -> list[Job]:
    assert new.dedup_key is not None
    cursor.execute(
        query("event_lock"),
        {
            "ns": taskengine_settings.ADVISORY_LOCK_NAMESPACE,
            "names": [LOCK_PREFIX + new.dedup_key],
        },
    )
    params["calls"] = to_json(new.calls[:1])
    for _ in range(TRIES):
        cursor.execute(
            query("throttle_holder"), {"dedup_key": new.dedup_key, "window": new.dedup_window}
        )
        row = cursor.fetchone()
        if row is not None:
            return _got(alias, row[0], THROTTLED, new)
        cursor.execute(query("enqueue_many"), params)
        ids = cursor.fetchone()[0]
        if ids:
            return _got(alias, ids[0], CREATED, new)
        # An active job enqueued before the window still holds the key.
        holder = key_holder(alias, new.dedup_key)
        if holder is not None:
            return per_call(holder, THROTTLED, new.dedup_mode, len(new.calls))
    raise RuntimeError(f"could not enqueue {new.task_name} with dedup_key {new.dedup_key!r}")


def _got(alias: str, job_id: int, first: str, new: NewJobs) -> list[Job]:
    job = Job.objects.using(alias).get(pk=job_id)
    return per_call(job, first, new.dedup_mode, len(new.calls))
