"""``taskengine health``: a liveness and readiness probe for the worker processes of one host.

Exit 0 while at least ``--min-processes`` worker processes of this host (or ``--host``) serving
``--queue`` (if given) have sent a heartbeat within ``--max-age`` seconds; otherwise exit 1 with
one line that says why. It reads the worker table only, so it answers in one query and works
from any container or unit that reaches the database.
"""

from __future__ import annotations

import datetime as dt
import socket
from typing import Any

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from ..inspection import stale_after
from ..models import Worker


def health(command: BaseCommand, database: str, options: dict[str, Any]) -> None:
    """``taskengine health``: exit 0 while this host's workers heartbeat."""
    host = options["host"] or socket.gethostname()
    minimum = options["min_processes"]
    if minimum < 1:
        raise CommandError(f"--min-processes must be at least 1, not {minimum}.")
    max_age = options["max_age"]
    if max_age is not None and max_age <= 0:
        raise CommandError(f"--max-age must be a positive number of seconds, not {max_age}.")
    limit = dt.timedelta(seconds=max_age) if max_age is not None else stale_after()
    queue = options["queue"]
    now = timezone.now()
    running = [
        worker
        for worker in Worker.objects.using(database)
        .filter(hostname=host, stopped_at__isnull=True)
        .order_by("-last_heartbeat_at")
        if queue is None or not worker.queues or queue in worker.queues
    ]
    live = [worker for worker in running if now - worker.last_heartbeat_at <= limit]
    serving = f" serving queue {queue!r}" if queue else ""
    if len(live) >= minimum:
        ages = [_seconds(now - worker.last_heartbeat_at) for worker in live]
        command.stdout.write(
            f"ok: {len(live)} worker process{'es' if len(live) != 1 else ''} on {host}{serving} "
            f"sent a heartbeat within {_seconds(limit)} (the latest {ages[0]} ago)."
        )
        return
    if live:
        raise CommandError(
            f"unhealthy: {len(live)} worker process{'es' if len(live) != 1 else ''} on "
            f"{host}{serving} sent a heartbeat within {_seconds(limit)}, fewer than "
            f"--min-processes {minimum}."
        )
    if running:
        newest = running[0]
        raise CommandError(
            f"unhealthy: no worker process on {host}{serving} has sent a heartbeat within "
            f"{_seconds(limit)}; the latest, pid {newest.pid}, "
            f"{_seconds(now - newest.last_heartbeat_at)} ago."
        )
    raise CommandError(
        f"unhealthy: no worker process is running on {host}{serving} (none has registered, or "
        "all have stopped). Is `manage.py run_workers` running on this host?"
    )


def _seconds(delta: dt.timedelta) -> str:
    seconds = max(delta.total_seconds(), 0.0)
    if seconds < 100:
        return f"{seconds:.1f} s"
    return f"{seconds:,.0f} s"
