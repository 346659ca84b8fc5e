"""Flow limits in words, as the ``taskengine`` command and the admin show them: a scope's
limits with what they count now, a task type's group limit with the groups running, and a
queue's knobs (in force, from the settings, set at runtime).

The numbers come from :mod:`django_taskengine.flow_status`; this module only words them, so
that the command line and the admin say the same thing the same way.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .conf import taskengine_settings
from .core.flow import SEQUENCE, FlowJob, Limits, group_scope, parse_rate
from .flow_status import FlowState, ScopeUsage, flow_state
from .job_indexes import status_in
from .models import Job, JobStatus, Queue

#: A rate limit's period, in words.
PERIODS = {1.0: "second", 60.0: "minute", 3600.0: "hour"}
#: Groups named at most in a task type's line; the others are counted.
GROUPS_SHOWN = 10
#: A queue's knobs as its row keeps them, with their names in words.
KNOBS = (("concurrency", "concurrency"), ("rate_limit", "rate"))


def usage_text(scope: ScopeUsage) -> str:
    """``"concurrency 3/5 running, rate 14/s: 9 starts in the last second"``."""
    parts = []
    if scope.concurrency is not None:
        parts.append(f"concurrency {scope.running}/{scope.concurrency} running")
    if scope.rate is not None:
        starts = "start" if scope.recent_starts == 1 else "starts"
        text = (
            f"rate {scope.rate}: {scope.recent_starts} {starts} in the last "
            f"{PERIODS[scope.rate.seconds]}"
        )
        if scope.next_start_in is not None:
            text += f" (full: the next start in {scope.next_start_in:.1f} s)"
        parts.append(text)
    return ", ".join(parts)


def groups_text(task_name: str, limit: int, groups: list[ScopeUsage]) -> str:
    """``"group concurrency 1: 2 groups running now ('a' 1/1, 'b' 1/1)"``."""
    text = f"group concurrency {limit}"
    if not groups:
        return f"{text}: no group running now"
    shown = ", ".join(
        f"{group_name(task_name, g)!r} {g.running}/{limit}" for g in groups[:GROUPS_SHOWN]
    )
    if len(groups) > GROUPS_SHOWN:
        shown += f", and {len(groups) - GROUPS_SHOWN} more"
    noun = "group" if len(groups) == 1 else "groups"
    return f"{text}: {len(groups)} {noun} running now ({shown})"


def group_name(task_name: str, group: ScopeUsage) -> str:
    """The name a group of ``task_name`` was enqueued with (``.using(group=...)``)."""
    return group.key[len(group_scope(task_name, "")) :]


def task_text(state: FlowState, task_name: str) -> str:
    """A task type's limits with their usage, its group limit with the groups running."""
    parts = []
    scope = state.task(task_name)
    if scope is not None:
        parts.append(usage_text(scope))
    limits = state.policy.tasks.get(task_name)
    if limits is not None and limits.group_concurrency is not None:
        parts.append(groups_text(task_name, limits.group_concurrency, state.groups(task_name)))
    return "; ".join(parts)


def in_force(queue: Queue) -> Limits:
    """The limits in force of ``queue``, as its row holds them for every worker."""
    return Limits(queue.concurrency, parse_rate(queue.rate_limit or None))


def knob_value(value: Any) -> str:
    """One knob's value: ``"5"``, ``"14/s"``, or ``"none (no limit)"``."""
    return "none (no limit)" if value is None or value == "" else str(value)


def knobs_text(knobs: Mapping[str, Any]) -> str:
    """A queue's settings or runtime values: ``"concurrency 5, rate none (no limit)"``;
    ``"none"`` when no knob is given."""
    parts = [f"{label} {knob_value(knobs[knob])}" for knob, label in KNOBS if knob in knobs]
    return ", ".join(parts) or "none"


def holding_back(job: Job, *, using: str | None = None) -> list[str]:
    """Why flow control does not start ``job`` (waiting, due) now: each limit that holds it
    back, with its count; empty if none does."""
    db = using or taskengine_settings.DATABASE
    state = flow_state(using=db)
    reasons = []
    if job.sequence_key is not None:
        first = (
            Job.objects.using(db)
            .filter(
                status_in(JobStatus.QUEUED, JobStatus.RUNNING, JobStatus.PAUSED),
                sequence_key=job.sequence_key,
            )
            .order_by("id")
            .values_list("id", "status")
            .first()
        )
        if first is not None and first[0] != job.id:
            reasons.append(
                f"Sequence {job.sequence_key!r} runs one job at a time in enqueue order: job "
                f"{first[0]} ({first[1]}) goes first."
            )
    flow_job = FlowJob(job.id, job.queue, job.task_name, job.group_key, job.sequence_key)
    for key, concurrency, rate in state.policy.scopes(flow_job):
        if key.startswith(SEQUENCE):
            continue
        scope = state.scope(key, concurrency, rate)
        if scope.full or scope.rate_full:
            reasons.append(f"The limit of {scope.label} is reached: {usage_text(scope)}.")
    return reasons
