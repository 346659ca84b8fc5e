"""The flow claim as both stores run it: under the flow lock, read what the limits count, read
the candidates lane by lane, let :func:`django_taskengine.core.flow.pick` choose, start them.

A store supplies a :class:`~.flow_source.FlowSource` (its statements); :class:`FlowClaimer` is
the part of a worker session that decides when to run a flow claim and remembers where the
last one stopped (the lane cursor that makes lanes take turns).

While no limit binds (the last claim could start every candidate it wanted), a store that has
one runs the claim in one statement (:meth:`~.flow_source.FlowSource.fast`): the database
starts the candidates itself if every one of them may start, and starts none otherwise; the
claim is then made the general way, job by job, here.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Collection, Iterable

from ..conf import taskengine_settings
from ..core.attempts import ClaimedJob
from ..core.flow import QUOTA_ROUNDS, FlowJob, Policy, Usage, lane_room, pick, record_starts
from .flow_quota import HeldQuota
from .flow_source import (
    BLOCKED_RECHECK,
    Ask,
    Fast,
    FlowRead,
    FlowResult,
    FlowSource,
    Kind,
    group_prefixes,
    policy,
    policy_json,
    task_limits,
)
from .scan_gate import ScanGate


class FlowClaimer:
    """When a worker session runs a flow claim, and the lane it goes on from."""

    def __init__(self, *, notified: bool = False) -> None:
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
        #: Whether the last claim found a limit that held a candidate back (the next claim is
        #: then made job by job, not in one statement), and the queues' limits it read (with
        #: their policy_json, for the next claim in one statement).
        self.binding = True
        self.seen: list[tuple[str, int | None, str]] = []
        self._policy: tuple[list[tuple[str, int | None, str]], str] | None = None
        #: The quota the last claim in one statement granted, if it granted one.
        self.quota = HeldQuota()
        #: When the plain claim scans the job table.
        self.scans = ScanGate(notified=notified)

    def combine(
        self,
        plain: Callable[[int, int, int, bool], list[ClaimedJob]],
        source: FlowSource,
        *,
        limit: int,
        free: int,
        start: int,
        park: Collection[str],
        poll: bool = False,
    ) -> list[ClaimedJob]:
        """A worker's claim (see WorkerSession.claim): ``plain(limit, free, start, scan)`` claims
        jobs not under flow control (those delivered to it, and, if ``scan``, those it finds in
        the job table), the flow claim those under it (started only, never claimed
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
            scan = self.scans.open(now, poll=poll, flow_waiting=self.waiting)
            plain_jobs = plain(asked, max(0, free - taken), max(0, start - taken), scan)
            jobs += plain_jobs
            short = len(plain_jobs) < asked
            if scan:
                self.scans.scanned(now, short=short)
            started = sum(1 for job in jobs if not job.reserved)
            room = min(limit - len(jobs), start - started)
            if not flow_first and room > 0 and self.due(short=short):
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
        ask = self.hints
        ask.after, ask.per_lane, ask.cap = self.after, start, 4 * start + 16
        ask.prefixes = group_prefixes()
        result = None
        if self.quota.held is not None:
            result = self._through_quota(source, self.quota.held.lane, free, start, park)
        if result is None and not self.binding:
            result = self._fast(source, ask, start=start, park=park)
        if result is None:
            result = run_flow_claim(source, ask, free=free, start=start, park=park)
        self.seen = result.seen
        self.binding = result.binding
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

    def _fast(
        self, source: FlowSource, ask: Ask, *, start: int, park: Collection[str]
    ) -> FlowResult | None:
        """The claim in one statement, if the store has it and no limit binds now."""
        if self._policy is None or self._policy[0] != self.seen:
            self._policy = (self.seen, policy_json(self.seen))
        fast = source.fast(
            ask, start=start, park=sorted(park), policy=self._policy[1], quota=QUOTA_ROUNDS * start
        )
        if fast is None:
            return None
        self.seen = fast.read.queues
        if not fast.started:
            return None
        self.quota.granted(fast)
        return fast_result(fast, start=start)

    def _through_quota(
        self, source: FlowSource, lane: str, free: int, start: int, park: Collection[str]
    ) -> FlowResult | None:
        """A claim through the session's quota of ``lane`` (:meth:`HeldQuota.claim`); None if
        it started none."""
        started = self.quota.claim(source, free=free, start=start, park=park)
        if not started:
            return None
        # Complete: the next claim looks again (through the quota, or at every lane if it was
        # dropped), whether or not it asked for as many as this claim might start.
        return FlowResult(
            started=started,
            complete=True,
            blocked=False,
            next_start=None,
            last_lane=lane,
            hints=self.hints,
            seen=self.seen,
            binding=False,
        )


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
            return _result(rules, usage, peeked[0].queues, offered, [], [], start=start)
    with source.locked():
        read, offered = source.read(ask)
        rules, usage, offered, chosen = _choose(
            source, ask, read, offered, free=free, start=start, park=park
        )
        windows = record_starts(rules, usage, chosen)
        fetch = source.start(chosen, read.now, windows)
    usage.starts.update(windows)
    return _result(rules, usage, read.queues, offered, chosen, fetch(), start=start)


def fast_result(fast: Fast, *, start: int) -> FlowResult:
    """The result of a claim in one statement that started its jobs."""
    read = fast.read
    rules = policy(read.queues)
    usage = Usage(read.now, starts=read.windows)
    usage.add_running(rules, read.running)
    return _finish(
        rules,
        usage,
        read.queues,
        fast.kinds,
        fast.last_lane,
        fast.offered,
        fast.jobs,
        start=start,
        binding=False,
    )


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
    seen: list[tuple[str, int | None, str]],
    offered: list[tuple[FlowJob, str]],
    chosen: list[FlowJob],
    started: list[ClaimedJob],
    *,
    start: int,
) -> FlowResult:
    """A claim's result (see :func:`_finish`): a limit bound if ``chosen`` is not the first
    candidates offered, as many as could start."""
    wanted = [job.id for job, _ in offered[:start]]
    lanes = {job.id: lane for job, lane in offered}
    return _finish(
        rules,
        usage,
        seen,
        # By kind of job (queue, task, group, sequence): a claim's jobs are mostly alike.
        Counter((job.queue, job.task_name, job.group, job.sequence) for job in chosen),
        lanes[chosen[-1].id] if chosen else None,
        len(offered),
        started,
        start=start,
        binding=[job.id for job in chosen] != wanted,
    )


def _finish(
    rules: Policy,
    usage: Usage,
    seen: list[tuple[str, int | None, str]],
    kinds: Counter[Kind],
    last_lane: str | None,
    offered: int,
    started: list[ClaimedJob],
    *,
    start: int,
    binding: bool,
) -> FlowResult:
    """A claim's result, with the counts after it (``usage`` with the jobs it chose, of
    ``kinds``, not yet running; its windows with their starts): the next claim's hints."""
    chosen = kinds.total()
    usage.add_running(rules, [(FlowJob(0, *kind), count) for kind, count in kinds.items()])
    blocked = usage.blocked(rules)
    rooms, _ = usage.lane_rooms(rules)
    next_start = usage.next_start(rules)
    return FlowResult(
        started=started,
        complete=chosen >= start,
        blocked=bool(blocked) or chosen < offered,
        next_start=None if next_start is None else time.monotonic() + next_start - usage.now,
        last_lane=last_lane,
        hints=Ask(rooms=_at_least_one(rooms)),
        seen=seen,
        binding=binding or bool(blocked),
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
        poll: bool = False,
    ) -> list[ClaimedJob]:
        return self.flow.combine(
            lambda n, f, s, scan: self._claim_plain(n, free=f, start=s, park=park, scan=scan),
            self._flow_source,
            limit=limit,
            free=limit if free is None else free,
            start=limit if start is None else start,
            park=park,
            poll=poll,
        )

    def _claim_plain(
        self, limit: int, *, free: int, start: int, park: Collection[str], scan: bool = True
    ) -> list[ClaimedJob]:
        """Jobs not under flow control, nor of a queue or task type with a limit: those
        delivered, and (``scan``) those found in the job table."""
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
