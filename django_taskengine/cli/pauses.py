"""``taskengine pause`` and ``taskengine resume``: queues, task types and the whole engine.

Each target is reported as ``before → after``; a target that is refused (an unknown queue, a
task name that is probably a typo) is reported on stderr while the others are still applied.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from .. import inspection, operations
from ..audit_trail import AuditSource
from ..models import PauseScope, Queue
from ..registry import tasks as registry
from .report import finish, pause_state, pause_text
from .values import actor, call_operation, pause_end, targets, unique

CLI = AuditSource.CLI


def pause(command: BaseCommand, database: str, options: dict[str, Any]) -> None:
    """``taskengine pause``: queues, every queue (``--all``) or task types (``--task``)."""
    queues, everything, tasks = targets(options, "pause")
    by = actor(options)
    reason = options["reason"]
    until = pause_end(options["duration"], options["until"])
    stop_running = bool(options.get("stop_running"))
    # What --stop-running adds to each line of the report.
    stopping = "; running jobs asked to pause at their next checkpoint" if stop_running else ""
    refused: list[str] = []
    total = 0
    if everything:
        total = 1
        was = operations.engine_pause(using=database)
        paused = call_operation(
            operations.pause_all,
            by=by,
            reason=reason,
            until=until,
            stop_running=stop_running,
            source=CLI,
            using=database,
        )
        command.stdout.write(
            f"all queues: {pause_state(was)} → paused {pause_text(paused)}{stopping}"
        )
    for task_name in tasks:
        total += 1
        was = operations.task_pause(task_name, using=database)
        unchecked = was is None and not options["create"]
        if unchecked and not inspection.task_is_known(task_name, using=database):
            refused.append(_unknown_task(task_name, database))
            continue
        paused = call_operation(
            operations.pause_task,
            task_name,
            by=by,
            reason=reason,
            until=until,
            stop_running=stop_running,
            source=CLI,
            using=database,
        )
        command.stdout.write(
            f"task {task_name}: {pause_state(was)} → paused {pause_text(paused)}{stopping}"
        )
    for name in unique(queues):
        total += 1
        try:
            old: Queue | None = operations.get_queue(name, using=database)
        except operations.NotFound as exc:
            if not options["create"]:
                refused.append(
                    f"{exc} Check the spelling, or pass --create to pause a queue that has "
                    "no jobs yet."
                )
                continue
            old = None
        queue = call_operation(
            operations.pause_queue,
            name,
            by=by,
            reason=reason,
            until=until,
            stop_running=stop_running,
            source=CLI,
            using=database,
        )
        before = "new queue" if old is None else pause_state(old if old.is_paused else None)
        command.stdout.write(f"queue {name}: {before} → paused {pause_text(queue)}{stopping}")
    finish(command, refused, total, "name", "paused")


def resume(command: BaseCommand, database: str, options: dict[str, Any]) -> None:
    """``taskengine resume``: queues, the engine (``--all``) or task types (``--task``)."""
    queues, everything, tasks = targets(options, "resume")
    acting = {"by": actor(options), "reason": options["reason"], "source": CLI}
    refused: list[str] = []
    total = 0
    if everything:
        total = 1
        if operations.resume_all(**acting, using=database):
            command.stdout.write("all queues: engine-wide pause ended")
        else:
            command.stdout.write("all queues: there was no engine-wide pause; nothing to do")
        still = [q.name for q in operations.paused_queues(using=database)]
        if still:
            command.stdout.write(
                f"Queues paused on their own stay paused: {', '.join(still)} (resume them by name)."
            )
    for task_name in tasks:
        total += 1
        was = operations.task_pause(task_name, using=database)
        if was is None and not inspection.task_is_known(task_name, using=database):
            refused.append(_unknown_task(task_name, database, resuming=True))
            continue
        operations.resume_task(task_name, **acting, using=database)
        if was is None:
            command.stdout.write(f"task {task_name}: was not paused; nothing to do")
        else:
            command.stdout.write(f"task {task_name}: {pause_state(was)} → running")
    for name in unique(queues):
        total += 1
        try:
            old = operations.get_queue(name, using=database)
            operations.resume_queue(name, **acting, using=database)
        except operations.NotFound as exc:
            refused.append(str(exc))
            continue
        if old.is_paused:
            command.stdout.write(f"queue {name}: {pause_state(old)} → running")
        else:
            command.stdout.write(f"queue {name}: was not paused; nothing to do")
    if (queues or tasks) and not everything:
        engine = operations.engine_pause(using=database)
        if engine is not None:
            command.stderr.write(
                command.style.WARNING(
                    f"Every queue is still paused engine-wide ({pause_text(engine)}); "
                    "`taskengine resume --all` ends that."
                )
            )
    finish(command, refused, total, "name", "resumed")


# -- jobs -----------------------------------------------------------------------------


def _unknown_task(task_name: str, database: str, *, resuming: bool = False) -> str:
    if resuming:
        paused = [
            p.target for p in operations.active_pauses(using=database) if p.scope == PauseScope.TASK
        ]
        return (
            f"Task type {task_name!r} is not paused and no task of that name is registered or "
            f"has jobs. Paused task types: {', '.join(paused) or 'none'}."
        )
    known = sorted(registry)
    shown = ", ".join(known[:20]) + (", …" if len(known) > 20 else "")
    return (
        f"No task named {task_name!r} is registered or has jobs. Registered tasks: "
        f"{shown or 'none'}. Check the spelling, or pass --create to pause it anyway."
    )
