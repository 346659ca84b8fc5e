"""Requests to a worker process: drain, resume, stop, hard stop.

Each writes the request on the worker's row; the process reads it with its next heartbeat and
carries it out (django_taskengine/worker/operator_requests.py says how). So a request reaches
the process within one heartbeat interval, wherever it runs, and needs no signal, no shell on
its host, nor the supervisor's help.

- :func:`drain_worker`: claim no more jobs, give back those claimed but not started, finish
  the running ones, then stay up, idle ("drained"); :func:`resume_worker` undoes it.
- :func:`stop_worker`: what SIGTERM to that process does (running jobs finish or stop at a
  checkpoint within the shutdown timeout), then exit; ``run_workers`` does not replace it.
- :func:`hard_stop_worker`: exit now; its running attempts end with it and the rescue requeues
  their jobs, as for a worker that died. Not replaced either.

A request to a process that has stopped, or that has not sent a heartbeat for a while (presumed
dead: its jobs are rescued without anyone's help), is refused: nobody would carry it out. Each
write is conditional on the state it was asked in, so two operators clicking at once cannot
turn a hard stop back into a graceful one.
"""

from __future__ import annotations

import uuid
from typing import Any

from django.db import transaction
from django.db.models.functions import Now
from django.utils import timezone

from ..audit_trail import AuditObject, AuditSource
from ..inspection import stale_after
from ..models import Worker
from .audit import Actor
from .common import ActionRefused, NotFound, database

DRAIN = "drain"
STOP = "stop"
KILL = "kill"

#: What a request may replace: a drain only a process doing nothing special, a resume only a
#: drain, a stop a drain, a hard stop anything (it is the last resort).
_ALLOWED_FROM: dict[str, tuple[str, ...]] = {
    DRAIN: ("",),
    "": (DRAIN,),
    STOP: ("", DRAIN),
    KILL: ("", DRAIN, STOP),
}
_WORDS = {DRAIN: "drain", "": "resume", STOP: "stop", KILL: "hard-stop"}
_PENDING = {DRAIN: "draining", STOP: "stopping", KILL: "being hard-stopped"}


def get_worker(worker_id: uuid.UUID | str, *, using: str | None = None) -> Worker:
    """The worker process ``worker_id``; :class:`NotFound` if there is none."""
    try:
        key = worker_id if isinstance(worker_id, uuid.UUID) else uuid.UUID(str(worker_id))
    except ValueError:
        raise NotFound(
            f"{worker_id!r} is not a worker id (a UUID, as the worker list shows)"
        ) from None
    worker = Worker.objects.using(database(using)).filter(id=key).first()
    if worker is None:
        raise NotFound(f"There is no worker process {key}; the worker list shows those known.")
    return worker


def drain_worker(worker_id: uuid.UUID | str, **acting: Any) -> Worker:
    """Ask a worker process to take no new jobs and finish those it runs, then stay idle."""
    return _request(worker_id, DRAIN, "drain_worker", **acting)


def resume_worker(worker_id: uuid.UUID | str, **acting: Any) -> Worker:
    """Let a draining worker process claim jobs again."""
    return _request(worker_id, "", "resume_worker", **acting)


def stop_worker(worker_id: uuid.UUID | str, **acting: Any) -> Worker:
    """Ask a worker process to stop as on SIGTERM: finish its jobs, exit, not be replaced."""
    return _request(worker_id, STOP, "stop_worker", **acting)


def hard_stop_worker(worker_id: uuid.UUID | str, **acting: Any) -> Worker:
    """Ask a worker process to exit now; its running jobs are rescued and run again."""
    return _request(worker_id, KILL, "hard_stop_worker", **acting)


def _request(
    worker_id: uuid.UUID | str,
    request: str,
    action: str,
    *,
    by: str = "",
    reason: str = "",
    source: str = AuditSource.PYTHON,
    using: str | None = None,
) -> Worker:
    actor = Actor(by, source, reason)
    db = database(using)
    worker = get_worker(worker_id, using=db)
    allowed = _ALLOWED_FROM[request]
    with transaction.atomic(using=db):
        fresh_since = timezone.now() - stale_after()
        changed = (
            Worker.objects.using(db)
            .filter(
                id=worker.id,
                stopped_at__isnull=True,
                last_heartbeat_at__gte=fresh_since,
                control_requested__in=allowed,
            )
            .update(
                control_requested=request,
                control_requested_at=Now(),
                control_requested_by=by,
            )
        )
        if changed:
            actor.record(
                action,
                AuditObject.WORKER,
                worker.id,
                detail={"requested": request or "resume", "was": worker.control_requested},
                using=db,
            )
    worker.refresh_from_db(using=db)
    if not changed:
        raise ActionRefused(_refusal(worker, request))
    return worker


def _refusal(worker: Worker, request: str) -> str:
    """Why ``request`` was not written, in words, with what to do instead."""
    name = f"Worker {worker.hostname}:{worker.pid}"
    word = _WORDS[request]
    if worker.stopped_at is not None:
        return f"{name} has already stopped; there is nothing to {word}."
    if worker.last_heartbeat_at < timezone.now() - stale_after():
        return (
            f"{name} has sent no heartbeat since {worker.last_heartbeat_at:%Y-%m-%d %H:%M:%S} "
            "and is presumed dead, so it cannot carry out a request; its jobs are rescued "
            "without one. Stop its process on its host if it is still there."
        )
    current = worker.control_requested
    if request == "":
        if not current:
            return f"{name} is not draining: it takes jobs already; there is nothing to resume."
        return f"{name} is not draining but {_PENDING[current]}; it cannot be resumed."
    if current == request:
        return f"{name} is already {_PENDING[request]}."
    return f"{name} is {_PENDING[current]}; it cannot be asked to {word} now."
