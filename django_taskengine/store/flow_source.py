"""What a store supplies to the flow claim (:mod:`.flow_claim`): its statements, as a
:class:`FlowSource`, and what they read; the limits in force as the claim sees them; and what a
claim returns (:class:`FlowResult`).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any, Protocol

from ..core.attempts import ClaimedJob
from ..core.flow import FlowJob, Limits, Policy, Window, group_scope, parse_rate
from ..registry import registered_tasks

#: Low 32 bits of the flow claim's advisory lock key (taskengine_flow_usage, sql/migrations.sql).
FLOW_LOCK_ID = 3
#: The start of the payload of the notification of a job under flow control (the rest is its
#: queue): it tells workers to run a flow claim.
FLOW_NOTICE = "flow:"
#: Lanes a flow claim reads at most; the next claim goes on from the last one it took from.
MAX_LANES = 100
#: While jobs under flow control wait and none may start (their limits are reached), a worker
#: looks again after this many seconds, or as soon as a rate window lets one start.
BLOCKED_RECHECK = 0.05


@dataclass
class FlowRead:
    """What :meth:`FlowSource.read` reads (and :meth:`FlowSource.fast`) under the flow lock."""

    now: float
    running: list[tuple[FlowJob, int]]
    queues: list[tuple[str, int | None, str]]
    windows: dict[str, Window]


@dataclass
class Ask:
    """Which candidates a flow claim reads: lane by lane from the lane after ``after``, at most
    ``cap`` in all, from each lane at most what :func:`~django_taskengine.core.flow.lane_room`
    says (``per_lane`` at most). ``rooms`` are hints from the previous claim's counts (the
    candidates are read before this claim's counts, and a lane full then may have room now:
    at least one is read); :func:`~django_taskengine.core.flow.pick` decides on the counts read
    under the lock."""

    after: str = ""
    per_lane: int = 1
    rooms: dict[str, int] = field(default_factory=dict)
    prefixes: dict[str, int] = field(default_factory=dict)
    cap: int = 1


#: A kind of job under flow control, as its scopes depend on it: (queue, task, group, sequence).
Kind = tuple[str, str, str | None, str | None]


@dataclass
class Fast:
    """What :meth:`FlowSource.fast` did: the counts it read under the lock (its rate windows
    with its starts), how many candidates it read, and the jobs it started, in claim order,
    with how many of each kind and the lane of the last one; ``started`` is False if it
    started none because a limit would bind. (Counted as the rows come, with no
    :class:`~django_taskengine.core.flow.FlowJob` and lane kept per job: what the claim's
    result needs of them is these counts.)"""

    read: FlowRead
    offered: int
    started: bool
    jobs: list[ClaimedJob]
    kinds: Counter[Kind]
    last_lane: str | None
    #: The quota the claim granted the worker, if it asked for one and the limits allowed it.
    quota: Quota | None = None


@dataclass(frozen=True)
class Quota:
    """Starts a worker may make in a queue's lane without the flow lock (:meth:`FlowSource.
    quota_claim`) until ``until`` (seconds since the epoch, by the database's clock)."""

    lane: str
    starts: int
    until: float


@dataclass
class FlowResult:
    started: list[ClaimedJob]
    #: Every job the claim wanted to start: fewer started only if limits or the lack of due
    #: jobs stopped it.
    complete: bool
    #: Some scope had no room (the claim should be tried again soon).
    blocked: bool
    #: When a full rate window lets a job start again (time.monotonic()), if one does.
    next_start: float | None
    #: The lane of the last job started (the next claim goes on after it), or None.
    last_lane: str | None
    #: What the next claim asks for, from this claim's counts.
    hints: Ask
    #: The queues' limits in force, as read (see FlowClaimer.seen).
    seen: list[tuple[str, int | None, str]]
    #: A limit held back a candidate this claim wanted, or has no room left after it (see
    #: FlowClaimer.binding).
    binding: bool


class FlowSource(Protocol):
    """One store's flow statements, run inside :meth:`locked`."""

    def locked(self) -> AbstractContextManager[None]:
        """The flow claim's transaction."""

    def peek(self, ask: Ask) -> tuple[FlowRead, list[tuple[FlowJob, str]]] | None:
        """What :meth:`read` reads, read without the flow lock and outside :meth:`locked`; or
        None if this store does not look before it locks. A store whose flow lock stops every
        writer (SQLite's write lock) looks first: a claim that could start nothing then does
        not take it, and workers held back by their limits, looking again every
        ``BLOCKED_RECHECK``, do not keep heartbeats and outcomes waiting for the lock."""

    def read(self, ask: Ask) -> tuple[FlowRead, list[tuple[FlowJob, str]]]:
        """Take the flow lock (flow claims take turns, fleet-wide) and read, after it, the
        clock, the jobs under flow control a worker owns, the queues' limits in force and the
        rate windows; and the candidates ``ask`` asks for (due, waiting jobs under flow
        control, each with its lane), which no other claim can take until this one ends."""

    def candidates(self, ask: Ask) -> list[tuple[FlowJob, str]]:
        """The candidates ``ask`` asks for, read again after :meth:`read` (with the rooms of
        this claim's counts): those already read come first again."""

    def start(
        self, jobs: list[FlowJob], now: float, windows: dict[str, Window]
    ) -> Callable[[], list[ClaimedJob]]:
        """Start ``jobs`` at ``now`` (unless an operator took one meanwhile) and write the rate
        windows; return how to read the jobs started, once the transaction has ended."""

    def fast(
        self, ask: Ask, *, start: int, park: list[str], policy: str, quota: int = 0
    ) -> Fast | None:
        """The claim in one statement, or None if this store has none: the candidates
        ``ask`` asks for, then under the flow lock the counts, and the first ``start``
        candidates started if each of them may start (``policy``: :func:`policy_json` of the
        limits in force as the worker last read them). Nothing starts otherwise. With
        ``quota``, it grants the worker a quota of that many starts if the limits allow it."""

    def quota_claim(self, quota: Quota, *, limit: int, tasks: list[str]) -> list[ClaimedJob]:
        """Up to ``limit`` jobs of ``quota``'s lane started through it, if it has not ended:
        none of a task type in ``tasks``, nor of a sequence. Only a store whose :meth:`fast`
        grants quotas is asked."""


def task_limits() -> dict[str, Limits]:
    """The limits of the registered task types that have any."""
    found = {}
    for name, task in registered_tasks().items():
        limits: Limits | None = getattr(task, "limits", None)
        if limits is not None and (limits.any or limits.group_concurrency is not None):
            found[name] = limits
    return found


def policy(queues: list[tuple[str, int | None, str]]) -> Policy:
    """The limits in force: the queues' as the queue table holds them, the task types' as
    this process's code declares them."""
    return Policy(
        queues={name: Limits(concurrency, parse_rate(rate)) for name, concurrency, rate in queues},
        tasks=task_limits(),
    )


def group_prefixes() -> dict[str, int]:
    """The lane prefix of each task type with a group limit, and that limit."""
    return {
        group_scope(name, ""): limits.group_concurrency
        for name, limits in task_limits().items()
        if limits.group_concurrency is not None
    }


def lanes_of(rows: Iterator[Any]) -> list[tuple[FlowJob, str]]:
    """Candidates as both stores read them: (id, queue, task, group, sequence, lane) rows."""
    return [(FlowJob(r[0], r[1], r[2], r[3], r[4]), r[5]) for r in rows]


def policy_json(queues: list[tuple[str, int | None, str]]) -> str:
    """The limits in force as ``taskengine_flow_scopes`` (sql/migrations.sql) reads them: the
    queues' (``queues`` as the flow claim last read them, also given as read: "seen") and the
    task types' (this process's code)."""
    rules = policy(queues)
    return json.dumps(
        {
            "seen": [list(row) for row in queues],
            "queues": {
                name: [limits.concurrency, *_rate(limits)]
                for name, limits in rules.queues.items()
                if limits.any
            },
            "tasks": {
                name: [limits.concurrency, *_rate(limits), limits.group_concurrency]
                for name, limits in rules.tasks.items()
            },
        }
    )


def _rate(limits: Limits) -> list[float | None]:
    rate = limits.rate
    return [None, None] if rate is None else [rate.count, rate.seconds]
