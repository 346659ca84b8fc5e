"""``taskengine status`` and ``taskengine why``: the read-only subcommands."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from .. import inspection, operations
from ..dispatch.state import DispatchState, dispatch_state
from ..flow_status import flow_state
from ..models import PauseScope
from .limits import limits_json, limits_lines
from .report import pause_target, pause_text, queue_state, short_age, status_json, table
from .values import parse_job_id


def status(command: BaseCommand, database: str, options: dict[str, Any]) -> None:
    """``taskengine status``: per-queue table, limits, pauses, live workers (or JSON)."""
    stats = inspection.queue_stats(using=database)
    limits = flow_state(using=database)
    pauses = operations.active_pauses(using=database)
    workers = inspection.live_workers(using=database)
    engine_pause = next((p for p in pauses if p.scope == PauseScope.ENGINE), None)
    dispatch = dispatch_state(database)
    if options["json"]:
        data = status_json(stats, engine_pause, pauses, workers)
        limits_json(limits, data)
        data["dispatch"] = dispatch.as_json()
        command.stdout.write(json.dumps(data, indent=2))
        return
    now = timezone.localtime()
    command.stdout.write(f"Task engine on database {database!r}, {now:%Y-%m-%d %H:%M:%S %Z}")
    if engine_pause is not None:
        command.stdout.write(
            command.style.WARNING("EVERY QUEUE IS PAUSED " + pause_text(engine_pause))
        )
    command.stdout.write("")
    if stats:
        rows = [
            [
                item.name,
                str(item.queued),
                str(item.due),
                str(item.running),
                str(item.paused_jobs),
                str(item.failed),
                short_age(item.oldest_due_age) if item.oldest_due_age is not None else "-",
                f"{item.throughput_per_minute:.1f}",
                queue_state(item, engine_pause),
            ]
            for item in stats.values()
        ]
        header = [
            "QUEUE",
            "QUEUED",
            "DUE",
            "RUNNING",
            "PAUSED",
            "FAILED",
            "OLDEST DUE",
            "DONE/MIN",
            "STATE",
        ]
        for line in table(header, rows, right_aligned={1, 2, 3, 4, 5, 6, 7}):
            command.stdout.write(line)
        command.stdout.write(
            f"(DONE/MIN: jobs finished per minute over the last "
            f"{short_age(inspection.THROUGHPUT_WINDOW)}; PAUSED: paused jobs)"
        )
    else:
        command.stdout.write("No queues yet: nothing has been enqueued.")
    command.stdout.write("")
    for line in limits_lines(limits, {name: item.queue for name, item in stats.items()}):
        command.stdout.write(line)
    if pauses:
        command.stdout.write("Engine and task pauses:")
        for pause in pauses:
            command.stdout.write(f"  {pause_target(pause)}: paused {pause_text(pause)}")
    else:
        command.stdout.write("Engine and task pauses: none")
    line = f"Live workers: {len(workers)}"
    if not workers:
        line += " (no job starts until one runs: `manage.py run_workers`)"
    command.stdout.write(line)
    for line in dispatch_lines(dispatch):
        command.stdout.write(line)


def dispatch_lines(state: DispatchState) -> list[str]:
    """The dispatch backend, and under Redis Streams its relay and streams."""
    if state.backend == "postgres":
        return ["Dispatch: postgres (workers claim by scanning the job table)"]
    lines = [f"Dispatch: redis-streams at {state.url}, keys {state.prefix}:*"]
    if state.error:
        return [*lines, f"  Redis unavailable ({state.error}): workers claim from PostgreSQL"]
    if state.relay_round_age is None:
        lines.append("  Relay: has not run yet (it runs in the workers)")
    else:
        lag = "-" if state.relay_lag is None else f"{state.relay_lag:.3f} s"
        lines.append(
            f"  Relay: worker {state.relay_leader}, last round {_age(state.relay_round_age)}"
            f" ago, lag {lag}, {state.published} jobs published"
        )
    rows = [
        [
            item.queue,
            str(item.length),
            str(item.undelivered),
            str(item.pending),
            "-" if item.oldest_pending_age is None else _age(item.oldest_pending_age),
        ]
        for item in state.streams
    ]
    if rows:
        header = ["STREAM", "LENGTH", "UNDELIVERED", "PENDING", "OLDEST PENDING"]
        lines.extend("  " + line for line in table(header, rows, right_aligned={1, 2, 3, 4}))
    return lines


def why(command: BaseCommand, database: str, options: dict[str, Any]) -> None:
    """``taskengine why JOB_ID``: why a job is not running, in words (or JSON)."""
    job_id = parse_job_id(options["job_id"])
    job = inspection.find_job(job_id, using=database)
    if job is None:
        raise CommandError(f"No job with id {job_id}.")
    explanation = inspection.explain_job(job, using=database)
    if options["json"]:
        data = {
            "job": job.pk,
            "task": job.task_name,
            "queue": job.queue,
            "status": job.status,
            "reasons": [
                {"code": r.code, "text": r.text, "blocking": r.blocking}
                for r in explanation.reasons
            ],
        }
        command.stdout.write(json.dumps(data, indent=2))
        return
    command.stdout.write(
        f"Job {job.pk} ({job.task_name}) in queue {job.queue!r}: {job.status}, "
        f"attempt {job.attempts} of {job.max_attempts}."
    )
    for reason in explanation.reasons:
        command.stdout.write(f"- {reason.text}")


def _age(seconds: float) -> str:
    return f"{seconds:.1f}s" if seconds < 10 else short_age(dt.timedelta(seconds=seconds))
