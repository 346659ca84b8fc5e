"""How the ``taskengine`` command writes what it found and did: durations and moments for a
terminal, pause descriptions, job states, the status table and its JSON, and the closing line
when some targets were refused."""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from .. import inspection
from ..core.lifecycle import is_hard_stop, stop_kind
from ..models import Job, JobStatus, Pause, PauseScope, Queue


def short_age(delta: dt.timedelta) -> str:
    """A short duration: 45s, 12m, 3h 5m, 2d 4h."""
    seconds = max(0, int(delta.total_seconds()))
    if seconds < 60:
        return f"{seconds}s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m" + (f" {seconds}s" if minutes < 10 and seconds else "")
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours}h" + (f" {minutes}m" if minutes else "")
    days, hours = divmod(hours, 24)
    return f"{days}d" + (f" {hours}h" if hours else "")


def when(moment: dt.datetime) -> str:
    """A moment in the current time zone, the date left out when it is today."""
    local = timezone.localtime(moment)
    if local.date() == timezone.localtime().date():
        return f"{local:%H:%M:%S %Z}"
    return f"{local:%Y-%m-%d %H:%M %Z}"


def pause_text(pause: Queue | Pause) -> str:
    """``by alice since 14:02:10 UTC (12m ago) "smtp outage", until 15:00:00 UTC (in 47m)``."""
    now = timezone.now()
    parts = []
    if pause.paused_by:
        parts.append(f"by {pause.paused_by}")
    if pause.paused_at:
        parts.append(f"since {when(pause.paused_at)} ({short_age(now - pause.paused_at)} ago)")
    text = " ".join(parts)
    if pause.pause_reason:
        text += f' "{pause.pause_reason}"'
    if pause.paused_until:
        text += f", until {when(pause.paused_until)} (in {short_age(pause.paused_until - now)})"
    return text.strip()


def pause_target(pause: Pause) -> str:
    """What a pause applies to: ``all queues`` or ``task NAME``."""
    return "all queues" if pause.scope == PauseScope.ENGINE else f"task {pause.target}"


def pause_state(pause: Queue | Pause | None) -> str:
    """``running``, or ``paused`` and how (the state before or after an action)."""
    return "running" if pause is None else f"paused {pause_text(pause)}"


def queue_state(item: inspection.QueueStats, engine_pause: Pause | None) -> str:
    """The STATE column: the queue's own pause first, then the engine's."""
    if item.paused and item.queue is not None:
        return f"paused {pause_text(item.queue)}"
    if engine_pause is not None:
        return "paused (all queues)"
    return "running"


def job_state(job: Job, action: str = "") -> str:
    """A job's state in words, as a job action reports it before and after."""
    if job.status == JobStatus.QUEUED:
        if action == "run_now" or job.run_after <= timezone.now():
            return "queued, due now"
        return f"queued, due in {short_age(job.run_after - timezone.now())}"
    if job.status == JobStatus.RUNNING and is_hard_stop(job.stop_requested):
        return (
            f"running, hard {stop_kind(job.stop_requested)} asked (its worker ends the attempt "
            "with its process, replaced once its other jobs finish)"
        )
    if job.status == JobStatus.RUNNING and job.stop_requested:
        return (
            f"running, asked to {job.stop_requested} at its next checkpoint (a task without "
            "checkpoints finishes this attempt)"
        )
    if job.status == JobStatus.FAILED:
        return f"failed after {job.attempts} attempt{'s' if job.attempts != 1 else ''}"
    return str(job.status)


def table(header: list[str], rows: list[list[str]], right_aligned: set[int]) -> list[str]:
    """Lines of a plain-text table, columns padded to their widest cell."""
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    last = len(header) - 1

    def line(cells: list[str]) -> str:
        out = []
        for i, cell in enumerate(cells):
            if i == last:
                out.append(cell)
            elif i in right_aligned:
                out.append(cell.rjust(widths[i]))
            else:
                out.append(cell.ljust(widths[i]))
        return "  ".join(out).rstrip()

    return [line(header), *(line(row) for row in rows)]


def _iso(moment: dt.datetime | None) -> str | None:
    return moment.isoformat() if moment else None


def _pause_json(pause: Queue | Pause) -> dict[str, Any]:
    return {
        "paused_by": pause.paused_by,
        "paused_at": _iso(pause.paused_at),
        "reason": pause.pause_reason,
        "paused_until": _iso(pause.paused_until),
    }


def status_json(
    stats: dict[str, inspection.QueueStats],
    engine_pause: Pause | None,
    pauses: list[Pause],
    workers: list[Any],
) -> dict[str, Any]:
    """``taskengine status --json``."""
    queues = []
    for item in stats.values():
        entry: dict[str, Any] = {
            "name": item.name,
            "state": queue_state(item, engine_pause),
            "paused": item.paused,
            "pause": _pause_json(item.queue) if item.paused and item.queue else None,
            "queued": item.queued,
            "due": item.due,
            "running": item.running,
            "paused_jobs": item.paused_jobs,
            "failed": item.failed,
            "oldest_due_age_seconds": (
                round(item.oldest_due_age.total_seconds(), 3)
                if item.oldest_due_age is not None
                else None
            ),
            "finished_per_minute": round(item.throughput_per_minute, 3),
            "finished_recently": item.finished_recently,
            "failed_recently": item.failed_recently,
        }
        queues.append(entry)
    return {
        "at": timezone.now().isoformat(),
        "throughput_window_seconds": inspection.THROUGHPUT_WINDOW.total_seconds(),
        "engine_paused": engine_pause is not None,
        "queues": queues,
        "pauses": [{"scope": p.scope, "target": p.target, **_pause_json(p)} for p in pauses],
        "live_workers": len(workers),
        "workers": [
            {
                "id": str(w.id),
                "hostname": w.hostname,
                "pid": w.pid,
                "queues": w.queues,
                "started_at": _iso(w.started_at),
                "last_heartbeat_at": _iso(w.last_heartbeat_at),
            }
            for w in workers
        ],
    }


def finish(command: BaseCommand, refused: list[str], total: int, noun: str, done: str) -> None:
    """Exit 1 if anything was refused, after saying what was and was not applied."""
    if not refused:
        return
    if total == 1:
        raise CommandError(refused[0])
    for message in refused:
        command.stderr.write(message)
    applied = total - len(refused)
    if not applied:
        raise CommandError(f"All {total} {noun}s refused (above); nothing was {done}.")
    raise CommandError(
        f"{len(refused)} of {total} {noun}s refused (above); the other {applied} "
        f"{'was' if applied == 1 else 'were'} {done}."
    )
