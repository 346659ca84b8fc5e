"""The flow claim as both stores run it: under the flow lock, read what the limits count, read
the candidates lane by lane, let :func:`django_taskengine.core.flow.pick` choose, start them.

A store supplies a :class:`FlowSource` (its statements); :class:`FlowClaimer` is the part of
a worker session that decides when to run a flow claim and remembers where the last one
stopped (the lane cursor that makes lanes take turns).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Collection, Iterable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any, Protocol

from ..conf import taskengine_settings
from ..core.attempts import ClaimedJob
from ..core.flow import (
    FlowJob,
    Limits,
    Policy,
    Usage,
    Window,
    group_scope,
    lane_room,
    parse_rate,
    pick,
    record_starts,
)
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
    """What :meth:`FlowSource.usage` reads."""

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


class FlowClaimer:
    """When a worker session runs a flow claim, and the lane it goes on from."""

    def __init__(self) -> None:
        #: The last lane a claim took a job from: the next one starts after it.
        self.after = ""
        self.hints = Ask()
        #: Jobs under flow control may be waiting (a notification says a new one is), and when
        #: to look again if they are held back by their limits.
        self.waiting = True
        self.look_at = 0.0
        #: Which of the plain claim and the flow claim goes first this round (they alternate,
        #: so that neither kind of job waits for the other's backlog).
        self._flow_first = False
        #: Jobs this session started through the flow claim and has not finished.
        self._mine: set[int] = set()
        #: While jobs under flow control wait, the plain claim is skipped until then after it
        #: found fewer jobs than asked (a notification, or the poll interval, ends the wait):
        #: a backlog of jobs under flow control does not cost an empty plain claim per round.
        self._plain_idle_until = 0.0

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
            now = time.monotonic()
            short = True
            if not self.waiting or now >= self._plain_idle_until:
                plain_jobs = plain(asked, max(0, free - taken), max(0, start - taken))
                jobs += plain_jobs
                short = len(plain_jobs) < asked
                if short:
                    self._plain_idle_until = now + taskengine_settings.POLL_INTERVAL
            started = sum(1 for job in jobs if not job.reserved)
            room = min(limit - len(jobs), start - started)
            if not flow_first and room > 0 and self.due(short=short):
                jobs += self._claim(source, free=max(0, free - started), start=room, park=park)
        return jobs

    def woken(self) -> None:
        """A notification arrived: jobs may be due for the plain claim too."""
        self._plain_idle_until = 0.0

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
        ask = self.hints
        ask.after, ask.per_lane, ask.cap = self.after, start, 4 * start + 16
        ask.prefixes = group_prefixes()
        result = run_flow_claim(source, ask, free=free, start=start, park=park)
        self.hints = result.hints
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
    source: FlowSource, ask: Ask, *, free: int, start: int, park: Collection[str]
) -> FlowResult:
    """One flow claim of the candidates ``ask`` asks for: up to ``start`` jobs started (only
    ``free`` of them of a task in ``park``)."""
    peeked = source.peek(ask)
    if peeked is not None:
        rules, usage, offered, chosen = _choose(
            source, ask, *peeked, free=free, start=start, park=park
        )
        if not chosen:
            # Nothing may start (a claim under the lock might see a slot freed meanwhile:
            # the next look, at most BLOCKED_RECHECK later, will).
            return _result(rules, usage, offered, [], [], start=start)
    with source.locked():
        read, offered = source.read(ask)
        rules, usage, offered, chosen = _choose(
            source, ask, read, offered, free=free, start=start, park=park
        )
        windows = record_starts(rules, usage, chosen)
        fetch = source.start(chosen, read.now, windows)
    usage.starts.update(windows)
    return _result(rules, usage, offered, chosen, fetch(), start=start)


def _choose(
    source: FlowSource,
    ask: Ask,
    read: FlowRead,
    offered: list[tuple[FlowJob, str]],
    *,
    free: int,
    start: int,
    park: Collection[str],
) -> tuple[Policy, Usage, list[tuple[FlowJob, str]], list[FlowJob]]:
    """The limits, the counts, the candidates and which of them may start."""
    rules = policy(read.queues)
    usage = Usage(read.now, starts=read.windows)
    usage.add_running(rules, read.running)
    chosen = pick([job for job, _ in offered], rules, usage, free=free, start=start, park=park)
    if len(chosen) < start and _cut_short(offered, ask):
        # A lane read only as far as the previous claim's counts allowed, with room now
        # (a slot freed, a rate window moved on): read it as far as this claim's allow.
        rooms, _ = usage.lane_rooms(rules)
        again = Ask(ask.after, ask.per_lane, _at_least_one(rooms), ask.prefixes, ask.cap)
        if again.rooms != ask.rooms:
            offered = source.candidates(again)
            chosen = pick(
                [job for job, _ in offered], rules, usage, free=free, start=start, park=park
            )
    return rules, usage, offered, chosen


def _result(
    rules: Policy,
    usage: Usage,
    offered: list[tuple[FlowJob, str]],
    chosen: list[FlowJob],
    started: list[ClaimedJob],
    *,
    start: int,
) -> FlowResult:
    """A claim's result, with the counts after it (``usage`` with ``chosen`` not yet running,
    its windows with their starts): the next claim's hints."""
    usage.add_running(rules, [(job, 1) for job in chosen])
    blocked = usage.blocked(rules)
    rooms, _ = usage.lane_rooms(rules)
    next_start = usage.next_start(rules)
    lanes = {job.id: lane for job, lane in offered}
    return FlowResult(
        started=started,
        complete=len(chosen) >= start,
        blocked=bool(blocked) or len(chosen) < len(offered),
        next_start=None if next_start is None else time.monotonic() + next_start - usage.now,
        last_lane=lanes[chosen[-1].id] if chosen else None,
        hints=Ask(rooms=_at_least_one(rooms)),
    )


def _at_least_one(rooms: dict[str, int]) -> dict[str, int]:
    """Rooms as hints: a lane full now may have room at the next claim."""
    return {lane: max(1, room) for lane, room in rooms.items()}


def _cut_short(offered: list[tuple[FlowJob, str]], ask: Ask) -> bool:
    """Whether a lane gave as many candidates as ``ask`` let it (it may hold more)."""
    read: Counter[str] = Counter(lane for _, lane in offered)
    return any(
        count >= lane_room(lane, ask.rooms, ask.prefixes, ask.per_lane)
        for lane, count in read.items()
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


class FlowClaims:
    """The claim of a worker session that has both claims (a mixin before
    :class:`~.base.WorkerSession`): the session's ``_claim_plain`` and its flow source, taking
    turns through its :class:`FlowClaimer`."""

    flow: FlowClaimer
    _flow_source: FlowSource
    _flow_tasks: list[str] | None = None

    def claim(
        self,
        limit: int,
        *,
        free: int | None = None,
        start: int | None = None,
        park: Collection[str] = (),
    ) -> list[ClaimedJob]:
        return self.flow.combine(
            lambda n, f, s: self._claim_plain(n, free=f, start=s, park=park),
            self._flow_source,
            limit=limit,
            free=limit if free is None else free,
            start=limit if start is None else start,
            park=park,
        )

    def _claim_plain(
        self, limit: int, *, free: int, start: int, park: Collection[str]
    ) -> list[ClaimedJob]:
        """Jobs not under flow control, nor of a queue or task type with a limit."""
        raise NotImplementedError

    def flow_tasks(self) -> list[str]:
        """The task types with limits, whose jobs the plain claim leaves to the flow claim
        (read from the registry once per session: it does not change while a worker runs)."""
        if self._flow_tasks is None:
            self._flow_tasks = sorted(task_limits())
        return self._flow_tasks

    def flow_look_at(self) -> float | None:
        flow = self.flow
        return flow.look_at if flow.waiting else None
