"""Flow control as operators see it: the limits in force with what they count now, and the
limits that hold a waiting job back (``taskengine status``, ``taskengine why``, the admin).

Read without the flow claim's lock: a snapshot, exact at the moment it is read.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from .conf import taskengine_settings
from .core.flow import GROUP, QUEUE, SEQUENCE, TASK, Policy, Rate, Usage, group_scope
from .store.flow_source import policy
from .store.generic_flow import GenericFlowSource


@dataclass(frozen=True)
class ScopeUsage:
    """One limited scope: its limits and what they count now."""

    key: str
    concurrency: int | None
    running: int
    rate: Rate | None
    #: Starts inside the rate window (0 without a rate limit).
    recent_starts: int
    #: Seconds until a full rate window lets a job start again; None if it is not full.
    next_start_in: float | None

    @property
    def label(self) -> str:
        kind, name = self.key[:2], self.key[2:]
        if kind == GROUP:
            task, _, group = name.partition("|")
            return f"group {group!r} of task {task}"
        return {QUEUE: "queue", TASK: "task", SEQUENCE: "sequence"}[kind] + f" {name!r}"

    @property
    def full(self) -> bool:
        return self.concurrency is not None and self.running >= self.concurrency

    @property
    def rate_full(self) -> bool:
        return self.rate is not None and self.recent_starts >= self.rate.count


@dataclass
class FlowState:
    policy: Policy
    usage: Usage

    def scope(self, key: str, concurrency: int | None, rate: Rate | None) -> ScopeUsage:
        started = next_in = None
        if rate is not None:
            started = self.usage.started(key, rate)
            free_at = self.usage.free_at(key, rate)
            next_in = None if free_at is None else max(0.0, free_at - self.usage.now)
        return ScopeUsage(key, concurrency, self.usage.running[key], rate, started or 0, next_in)

    def queue(self, name: str) -> ScopeUsage | None:
        limits = self.policy.queues.get(name)
        if limits is None or not limits.any:
            return None
        return self.scope(QUEUE + name, limits.concurrency, limits.rate)

    def task(self, name: str) -> ScopeUsage | None:
        limits = self.policy.tasks.get(name)
        if limits is None or not limits.any:
            return None
        return self.scope(TASK + name, limits.concurrency, limits.rate)

    def groups(self, task: str) -> list[ScopeUsage]:
        """The groups of ``task`` with jobs running now, if it has a group limit."""
        limits = self.policy.tasks.get(task)
        if limits is None or limits.group_concurrency is None:
            return []
        prefix = group_scope(task, "")
        return [
            self.scope(key, limits.group_concurrency, None)
            for key in sorted(self.usage.running)
            if key.startswith(prefix) and self.usage.running[key]
        ]


def flow_state(*, using: str | None = None) -> FlowState:
    """The limits in force and what they count, now."""
    source = GenericFlowSource(
        using or taskengine_settings.DATABASE, worker=uuid.UUID(int=0), queues=[]
    )
    read = source.usage()
    rules = policy(read.queues)
    usage = Usage(read.now, starts=read.windows)
    usage.add_running(rules, read.running)
    return FlowState(rules, usage)
