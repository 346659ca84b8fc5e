"""Writing decided outcomes through the Django ORM: the generic store's one write of a job's
next state (finish, atomic finish, rescue), each fenced by the attempt's token."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from typing import Any

from django.db import transaction
from django.db.models import F, QuerySet
from django.utils import timezone

from ..core.lifecycle import Outcome
from ..core.ownership import RELEASED
from ..core.statuses import AttemptOutcome, JobStatus
from ..models import Attempt, Job


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
    return applied
