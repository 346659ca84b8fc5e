"""``taskengine limit``: a queue's fleet-wide limits, shown or set at runtime; and the limits
section of ``taskengine status``.

Setting goes through :func:`django_taskengine.operations.set_queue_limits` (recorded in the
audit trail); what the limits count now comes from :mod:`django_taskengine.flow_status`.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from .. import operations
from ..audit_trail import AuditSource
from ..conf import taskengine_settings
from ..flow_report import group_name, in_force, knobs_text, task_text, usage_text
from ..flow_status import FlowState, ScopeUsage, flow_state
from ..models import Queue
from .report import short_age, when
from .values import actor, call_operation, check_target_name, parse_concurrency, parse_rate_limit


def limit(command: BaseCommand, database: str, options: dict[str, Any]) -> None:
    """``taskengine limit QUEUE``: set ``--concurrency`` and ``--rate``, or show the limits."""
    name = check_target_name("queue", options["queue"])
    changes: dict[str, Any] = {}
    if options["concurrency"] is not None:
        changes["concurrency"] = parse_concurrency(options["concurrency"])
    if options["rate"] is not None:
        changes["rate_limit"] = parse_rate_limit(options["rate"])
    by = actor(options) if changes else ""
    before = Queue.objects.using(database).filter(name=name).first()
    if before is None and name not in taskengine_settings.QUEUES:
        if not changes:
            raise CommandError(_unknown(name, database))
        if not options["create"]:
            raise CommandError(
                f"{_unknown(name, database)} Check the spelling, or pass --create to limit a "
                "queue that has no jobs yet. Nothing was changed."
            )
    if not changes:
        _show(command, before or Queue(name=name), database)
        return
    queue = call_operation(
        operations.set_queue_limits,
        name,
        **changes,
        by=by,
        reason=options["reason"],
        source=AuditSource.CLI,
        using=database,
    )
    was = "new queue" if before is None else in_force(before).describe()
    command.stdout.write(f"queue {name}: {was} → {in_force(queue).describe()}")
    _show(command, queue, database)


def _unknown(name: str, database: str) -> str:
    known = sorted(
        {*Queue.objects.using(database).values_list("name", flat=True)[:20]}
        | set(taskengine_settings.QUEUES)
    )
    return f"No queue named {name!r}. Known queues: {', '.join(known) or 'none yet'}."


def _show(command: BaseCommand, queue: Queue, database: str) -> None:
    """The queue's limits: in force, from the settings, set at runtime, and their usage."""
    write = command.stdout.write
    limits = in_force(queue)
    write(f"Queue {queue.name!r}, limits for every worker on every host:")
    write(f"  in force:       {limits.describe()}")
    setting = knobs_text(queue.settings_limits)
    here = taskengine_settings.QUEUES.get(queue.name) or {}
    if dict(here) != queue.settings_limits:
        setting += (
            f" (this process's TASKENGINE['QUEUES'] says {knobs_text(here)}: workers write "
            "it as they start)"
        )
    write(f"  from settings:  {setting}")
    runtime = queue.runtime_limits
    if runtime:
        write(
            f"  set at runtime: {knobs_text(runtime)} (overrides the setting until cleared "
            "with 'setting')"
        )
    else:
        write("  set at runtime: none (the settings apply)")
    if queue.limits_changed_at is not None:
        ago = short_age(timezone.now() - queue.limits_changed_at)
        by = f"by {queue.limits_changed_by} " if queue.limits_changed_by else ""
        write(f"  last changed:   {by}at {when(queue.limits_changed_at)} ({ago} ago)")
    scope = flow_state(using=database).queue(queue.name) if limits.any else None
    write(f"  now:            {usage_text(scope) if scope else 'nothing to count'}")


# -- taskengine status ----------------------------------------------------------------------


def limits_lines(state: FlowState, queues: dict[str, Queue | None]) -> list[str]:
    """The limits section of ``taskengine status``: each limited queue, then each task type
    with limits, with what they count now."""
    lines = []
    queue_names = state.policy.limited_queues()
    if queue_names:
        lines.append("Queue limits (fleet-wide):")
    for name in queue_names:
        scope = state.queue(name)
        if scope is None:
            continue
        line = f"  {name}: {usage_text(scope)}"
        row = queues.get(name)
        if row is not None and row.runtime_limits:
            by = f" by {row.limits_changed_by}" if row.limits_changed_by else ""
            line += f" (set at runtime{by})"
        lines.append(line)
    task_names = state.policy.limited_tasks()
    if task_names:
        lines.append("Task limits (fleet-wide):")
    lines.extend(f"  {name}: {task_text(state, name)}" for name in task_names)
    return lines or ["Queue and task limits: none"]


def scope_json(scope: ScopeUsage | None) -> dict[str, Any] | None:
    """One limited scope for ``taskengine status --json``."""
    if scope is None:
        return None
    return {
        "concurrency": scope.concurrency,
        "running": scope.running,
        "rate_limit": str(scope.rate) if scope.rate is not None else None,
        "recent_starts": scope.recent_starts,
        "next_start_in_seconds": (
            round(scope.next_start_in, 3) if scope.next_start_in is not None else None
        ),
    }


def limits_json(state: FlowState, data: dict[str, Any]) -> None:
    """Add each queue's limits and the task types' to ``taskengine status --json``'s data."""
    for entry in data["queues"]:
        entry["limits"] = scope_json(state.queue(entry["name"]))
    tasks = {}
    for name in state.policy.limited_tasks():
        limits = state.policy.tasks[name]
        tasks[name] = {
            "limits": scope_json(state.task(name)),
            "group_concurrency": limits.group_concurrency,
            "groups_running": {
                group_name(name, group): group.running for group in state.groups(name)
            },
        }
    data["task_limits"] = tasks
