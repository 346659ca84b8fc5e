"""Writing decided outcomes through the Django ORM: the generic store's one write of a job's
next state (finish, atomic finish, rescue), each fenced by the attempt's token; and events."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from typing import Any

from django.db import transaction
from django.db.models import Exists, F, OuterRef, QuerySet
from django.utils import timezone

from ..core.lifecycle import Outcome
from ..core.ownership import RELEASED
from ..core.statuses import AttemptOutcome, JobStatus
from ..models import Attempt, Event, Job
from .orm_dependencies import resolve


def write_outcomes(
    jobs: QuerySet[Job],
    alias: str,
    outcomes: list[Outcome],
    worker_id: uuid.UUID,
    *,
    record_fenced: bool = True,
    fence_stop: bool = True,
    **fence: Any,
) -> set[int]:
    """Write outcomes as they were decided, each fenced by its token and the stop request it
    was decided with (and ``fence``, more conditions on the row); return the ids applied.

    Every applied outcome gets its attempt record; so does a fenced-out one, as "superseded"
    (unless ``record_fenced`` is False, or its job is gone). One fenced out only because the
    job's stop request changed gets no record: its ``stop_request_now`` is set to the current
    request, for the caller to decide again and write again. ``fence_stop=False`` writes
    regardless of the stop request (an atomic task's return, which stands whatever was asked).
    """
    applied: set[int] = set()
    if not outcomes:
        return applied
    now = timezone.now()
    with transaction.atomic(using=alias):
        existing = set(
            jobs.filter(id__in=[o.job_id for o in outcomes]).values_list("id", flat=True)
        )
        attempts = []
        for o in outcomes:
            if o.job_id not in existing:
                continue
            changes: dict[str, Any] = {
                "status": o.status,
                "result": json.loads(o.result_json) if o.result_json is not None else None,
                "error": o.error,
                "traceback": o.traceback,
                "finished_at": o.job_finished_at,
                **RELEASED,
                "stop_requested": o.stop_requested_after,
            }
            if o.due_in is not None:
                changes["run_after"] = now + dt.timedelta(seconds=o.due_in)
            if o.refund_attempt:
                changes["attempts"] = F("attempts") - 1
            if o.waits_json is not None:
                changes["waits"] = json.loads(o.waits_json)
            changes["waiting_for"] = o.waiting_for
            owned = jobs.filter(id=o.job_id, token=o.token, status=JobStatus.RUNNING, **fence)
            fenced = owned.filter(stop_requested=o.stop_request) if fence_stop else owned
            updated = fenced.update(**changes)
            if updated:
                applied.add(o.job_id)
            else:
                now_requested = owned.values_list("stop_requested", flat=True).first()
                if now_requested is not None:
                    o.stop_request_now = now_requested
                    continue
                if not record_fenced:
                    continue
            attempts.append(
                Attempt(
                    job_id=o.job_id,
                    number=o.attempt,
                    worker_id=o.worker_id or worker_id,
                    started_at=o.started_at,
                    finished_at=o.finished_at,
                    outcome=o.outcome if updated else AttemptOutcome.SUPERSEDED,
                    error=o.error,
                    traceback=o.traceback,
                )
            )
        Attempt.objects.using(alias).bulk_create(attempts)
        finished = [o.job_id for o in outcomes if o.job_id in applied and o.job_finished_at]
        if finished:
            # Writers take turns here (SQLite), or polling workers find what it makes due.
            resolve(alias, _no_wake, finished=finished)
    return applied


def _no_wake(queues: list[str]) -> None:
    """Workers of the ORM store poll: nothing to wake."""


def send_event(alias: str, name: str, payload_json: str) -> int:
    """:meth:`Store.send_event <.base.Store.send_event>` through the ORM (in the caller's
    transaction: on SQLite, writers take turns, so a job parking meanwhile is either seen here
    or sees the event in :func:`wake_if_sent`)."""
    with transaction.atomic(using=alias):
        now = timezone.now()
        event = Event.objects.using(alias).create(
            name=name, payload=json.loads(payload_json), sent_at=now
        )
        Job.objects.using(alias).filter(
            waiting_for=name, status=JobStatus.QUEUED, run_after__gt=now, created_at__lte=now
        ).update(run_after=now)
    return event.id


def wake_if_sent(alias: str, parked: list[tuple[int, str]]) -> None:
    """Jobs just parked waiting for events (see :func:`.base.parked_jobs`): those whose event
    was sent meanwhile (after the job was enqueued, before its wait ends) are made due now."""
    if not parked:
        return
    with transaction.atomic(using=alias):
        now = timezone.now()
        sent = Event.objects.using(alias).filter(
            name=OuterRef("waiting_for"),
            sent_at__gte=OuterRef("created_at"),
            sent_at__lte=OuterRef("run_after"),
        )
        Job.objects.using(alias).filter(
            id__in=[job_id for job_id, _ in parked],
            status=JobStatus.QUEUED,
            waiting_for__isnull=False,
            run_after__gt=now,
        ).filter(Exists(sent)).update(run_after=now)
