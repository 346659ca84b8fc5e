"""The flow claim as both stores run it: under the flow lock, read what the limits count, read
the candidates lane by lane, let :func:`django_taskengine.core.flow.pick` choose, start them.

A store supplies a :class:`FlowSource` (its statements); :class:`FlowClaimer` is the part of
a worker session that decides when to run a flow claim and remembers where the last one
stopped (the lane cursor that makes lanes take turns).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Iterable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, Protocol

from ..conf import taskengine_settings
from ..core.attempts import ClaimedJob
from ..core.flow import (
    FlowJob,
    Limits,
    Policy,
    Usage,
    Window,
    parse_rate,
    pick,
    record_starts,
)
from ..registry import registered_tasks

#: Low 32 bits of the flow claim's advisory lock key (see flow_lock in sql/postgres.sql).
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
    """What :meth:`FlowSource.usage` reads."""

    now: float
    running: list[tuple[FlowJob, int]]
    queues: list[tuple[str, int | None, str]]
    windows: dict[str, Window]


class FlowSource(Protocol):
    """One store's flow statements, run inside :meth:`locked`."""

    def locked(self) -> AbstractContextManager[None]:
        """A transaction holding the flow lock (flow claims take turns, fleet-wide)."""

    def usage(self) -> FlowRead:
        """Read after the lock: the clock, jobs under flow control started or claimed ahead,
        the queues' limits in force, the rate windows."""

    def candidates(
        self, *, after: str, blocked: list[str], per_lane: int, cap: int
    ) -> list[tuple[FlowJob, str]]:
        """Due, waiting jobs under flow control, with their lanes, lane by lane from the one
        after ``after``; none of a scope in ``blocked``."""

    def start(self, jobs: list[FlowJob], now: float, windows: dict[str, Window]) -> Any:
        """Start ``jobs`` at ``now`` (unless an operator took one meanwhile) and write the rate
        windows; return what the store's claim returns for started jobs."""


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


@dataclass
class FlowResult:
    started: Any
    #: Every job the claim wanted to start: fewer started only if limits or the lack of due
    #: jobs stopped it.
    complete: bool
    #: Some scope had no room (the claim should be tried again soon).
    blocked: bool
    #: When a full rate window lets a job start again (time.monotonic()), if one does.
    next_start: float | None
    #: The lane of the last job started (the next claim goes on after it), or None.
    last_lane: str | None


class FlowClaimer:
    """When a worker session runs a flow claim, and the lane it goes on from."""

    def __init__(self) -> None:
        #: The last lane a claim took a job from: the next one starts after it.
        self.after = ""
        #: Jobs under flow control may be waiting (a notification says a new one is), and when
        #: to look again if they are held back by their limits.
        self.waiting = True
        self.look_at = 0.0
        #: Which of the plain claim and the flow claim goes first this round (they alternate,
        #: so that neither kind of job waits for the other's backlog).
        self._flow_first = False
        #: Jobs this session started through the flow claim and has not finished.
        self._mine: set[int] = set()

    def combine(
        self,
        plain: Callable[[int, int, int], list[ClaimedJob]],
        source: FlowSource,
        *,
        limit: int,
        free: int,
        start: int,
        park: Collection[str],
    ) -> list[ClaimedJob]:
        """A worker's claim (see WorkerSession.claim): ``plain(limit, free, start)`` claims jobs
        not under flow control, the flow claim those under it (started only, never claimed
        ahead: a job waiting in a worker would hold a slot another worker could use, and its
        start would not be when the rate window counted it)."""
        self._flow_first = flow_first = not self._flow_first
        jobs: list[ClaimedJob] = []
        if flow_first and self.due(short=False):
            jobs = self._claim(source, free=min(free, limit), start=min(start, limit), park=park)
        taken = len(jobs)
        if limit > taken:
            asked = limit - taken
            plain_jobs = plain(asked, max(0, free - taken), max(0, start - taken))
            jobs += plain_jobs
            started = sum(1 for job in jobs if not job.reserved)
            room = min(limit - len(jobs), start - started)
            if not flow_first and room > 0 and self.due(short=len(plain_jobs) < asked):
                jobs += self._claim(source, free=max(0, free - started), start=room, park=park)
        return jobs

    def finished(self, ids: Iterable[int]) -> None:
        """Jobs of this session's ended: if one was under flow control, its slot is free and
        the next round looks for a job to take it."""
        mine = self._mine
        if mine and not mine.isdisjoint(ids):
            mine.difference_update(ids)
            self.notified()

    def _claim(
        self, source: FlowSource, *, free: int, start: int, park: Collection[str]
    ) -> list[ClaimedJob]:
        if start <= 0:
            return []
        started: list[ClaimedJob] = self.claim(source, free=free, start=start, park=park).started
        self._mine.update(job.id for job in started)
        return started

    def due(self, *, short: bool) -> bool:
        """Whether to run a flow claim now: jobs may be waiting and the last claim did not
        find every lane held back, or it is time to look again; or (``short``) the plain
        claim found fewer jobs than asked and it is time to look."""
        return time.monotonic() >= self.look_at and (self.waiting or short)

    def notified(self) -> None:
        """A job under flow control was enqueued (or freed a slot): look at the next round."""
        self.waiting = True
        self.look_at = 0.0

    def claim(
        self, source: FlowSource, *, free: int, start: int, park: Collection[str]
    ) -> FlowResult:
        result = run_flow_claim(source, self.after, free=free, start=start, park=park)
        if result.last_lane is not None:
            self.after = result.last_lane
        now = time.monotonic()
        if result.complete:
            self.waiting, self.look_at = True, 0.0
        elif result.blocked:
            self.waiting = True
            self.look_at = now + BLOCKED_RECHECK
            if result.next_start is not None:
                self.look_at = min(self.look_at, result.next_start)
        else:
            # Nothing due waits: a notification, or the poll interval, brings the next look.
            self.waiting = False
            self.look_at = now + taskengine_settings.POLL_INTERVAL
        return result


def run_flow_claim(
    source: FlowSource, after: str, *, free: int, start: int, park: Collection[str]
) -> FlowResult:
    """One flow claim from the lane after ``after``: up to ``start`` jobs started (only
    ``free`` of them of a task in ``park``)."""
    with source.locked():
        read = source.usage()
        rules = policy(read.queues)
        usage = Usage(read.now, starts=read.windows)
        usage.add_running(rules, read.running)
        blocked = usage.blocked(rules)
        offered = source.candidates(
            after=after, blocked=blocked, per_lane=start, cap=4 * start + 16
        )
        lanes = {job.id: lane for job, lane in offered}
        chosen = pick([job for job, _ in offered], rules, usage, free=free, start=start, park=park)
        started = source.start(chosen, read.now, record_starts(rules, usage, chosen))
    next_start = usage.next_start(rules)
    return FlowResult(
        started=started,
        complete=len(chosen) >= start,
        blocked=bool(blocked) or len(chosen) < len(offered),
        next_start=None if next_start is None else time.monotonic() + next_start - read.now,
        last_lane=lanes[chosen[-1].id] if chosen else None,
    )


def lanes_of(rows: Iterator[Any]) -> list[tuple[FlowJob, str]]:
    """Candidates as both stores read them: (id, queue, task, group, sequence, lane) rows."""
    return [(FlowJob(r[0], r[1], r[2], r[3], r[4]), r[5]) for r in rows]
