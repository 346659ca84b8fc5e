"""Flow control: fleet-wide limits on how many jobs run at once and how often they start.

A *scope* is what a limit counts: a queue (``q:emails``), a task type (``t:app.send``), one
group of a task type (``g:app.send|tenant-42``) or a sequence (``s:order-17``). A job belongs
to the scopes that are limited: its queue's if the queue has a limit, its task's if the task
has one, its group's if its task has a ``group_concurrency``, its sequence's if it has one.
"Running" counts every job started and not finished in the scope (and any claimed ahead).

A job that belongs to a scope is *flow-controlled*: its ``flow_key`` names its *lane*, the
most specific of its scopes (sequence, then group, then task, then queue), and only the flow
claim takes it: one at a time for the whole fleet (a database lock), with the running counts
and the recent starts read after taking the lock, so no limit is ever exceeded. Other jobs
(``flow_key`` NULL) never pay for any of this. Lanes are served round-robin (each claim goes
on from the lane after the last one it took from), jobs within a lane in claim order
(priority, then due time, then FIFO), a sequence's only in enqueue order, one at a time.

The rules are here, once: which scopes a job belongs to, what may start given the counts, and
how a rate window moves. Stores read the counts and the candidates and apply the choice.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

#: Rate limits are written ``N/s``, ``N/m`` or ``N/h``: at most N starts in any interval of a
#: second, a minute or an hour (a sliding window, not a fixed one).
RATE_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0}
_RATE = re.compile(r"^\s*(\d+)\s*/\s*([smh])\s*$")
#: The most starts a rate limit allows per period.
RATE_COUNT_MAX = 100_000
#: A rate window keeps (time, starts) entries, one per claim that started jobs; entries closer
#: than this fraction of the period are merged into the later one (so a window holds about a
#: hundred entries however fast jobs start). Merging stamps starts later than they were: they
#: count a little longer, never shorter, so the limit is never exceeded.
WINDOW_GRAIN = 0.01
#: While a window holds at most this share of its limit (the claim's starts included), far from
#: binding, its entries closer than COARSE_GRAIN of the period are merged instead: the window
#: of a limit that never binds keeps a few entries, not a hundred (each claim reads and
#: rewrites it: with a hundred, a flow claim under a rate limit cost a sixth more in the
#: server). Its starts then count up to a quarter period longer, while the window is half
#: empty; the fine grain takes over before the limit is near.
COARSE_SHARE = 0.5
COARSE_GRAIN = 0.25

#: Quotas (docs/guide/flow-control.md, "Quotas"): while a queue's limits are far from binding
#: (its jobs running, quotas included, and its window's starts, with a new quota's starts, at
#: most QUOTA_SHARE of each), a flow claim that read only that queue's lane grants its worker
#: QUOTA_ROUNDS claims' worth of starts in the lane, which it makes without the flow lock
#: until the quota ends, QUOTA_SECONDS after it was granted (its starts count in the rate
#: window as made at its end).
QUOTA_ROUNDS = 8
QUOTA_SECONDS = 0.5
QUOTA_SHARE = 0.5

QUEUE = "q:"
TASK = "t:"
GROUP = "g:"
SEQUENCE = "s:"


@dataclass(frozen=True)
class Rate:
    """At most ``count`` starts in any interval of ``seconds``."""

    count: int
    seconds: float

    def __str__(self) -> str:
        unit = next(u for u, s in RATE_UNITS.items() if s == self.seconds)
        return f"{self.count}/{unit}"


def parse_rate(value: Any, what: str = "rate_limit") -> Rate | None:
    """``"14/s"``, ``"100/m"``, ``"5000/h"``; ``None`` (or ``"none"``) for no limit."""
    if value is None or value == "" or (isinstance(value, str) and value.lower() == "none"):
        return None
    if isinstance(value, Rate):
        return value
    match = _RATE.match(value) if isinstance(value, str) else None
    if match is None:
        raise ValueError(
            f"{what} must be written N/s, N/m or N/h (at most N starts in any second, minute "
            f"or hour), e.g. '14/s', not {value!r}"
        )
    count = int(match.group(1))
    if not 1 <= count <= RATE_COUNT_MAX:
        raise ValueError(f"{what}: N must be between 1 and {RATE_COUNT_MAX}, not {count}")
    return Rate(count, RATE_UNITS[match.group(2)])


def check_concurrency(value: Any, what: str = "concurrency") -> int | None:
    """A number of jobs running at once, at least 1; ``None`` for no limit."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{what} must be a number of jobs (at least 1) or None, not {value!r}")
    if not 1 <= value <= 2**31 - 1:
        raise ValueError(f"{what} must be at least 1 (None for no limit), not {value!r}")
    return value


@dataclass(frozen=True)
class Limits:
    """One queue's or task type's limits; ``group_concurrency`` is a task type's only."""

    concurrency: int | None = None
    rate: Rate | None = None
    group_concurrency: int | None = None

    @property
    def any(self) -> bool:
        return self.concurrency is not None or self.rate is not None

    def describe(self) -> str:
        parts = []
        if self.concurrency is not None:
            parts.append(f"concurrency {self.concurrency}")
        if self.rate is not None:
            parts.append(f"rate {self.rate}")
        if self.group_concurrency is not None:
            parts.append(f"group concurrency {self.group_concurrency}")
        return ", ".join(parts) or "no limit"


def queue_limits(setting: Mapping[str, Any] | None, runtime: Mapping[str, Any]) -> Limits:
    """A queue's limits in force: each knob's runtime value (``runtime`` holds the knobs set
    at runtime, ``None`` meaning "no limit") overrides its setting until it is cleared."""
    setting = setting or {}
    concurrency = runtime["concurrency"] if "concurrency" in runtime else setting.get("concurrency")
    rate = runtime["rate_limit"] if "rate_limit" in runtime else setting.get("rate_limit")
    return Limits(concurrency=check_concurrency(concurrency), rate=parse_rate(rate))


#: A limited scope a job belongs to: (key, concurrency, rate).
Scope = tuple[str, int | None, Rate | None]


@dataclass(frozen=True)
class FlowJob:
    """A job as flow control sees it: a candidate to start, or one running."""

    id: int
    queue: str
    task_name: str
    group: str | None = None
    sequence: str | None = None


@dataclass
class Policy:
    """The limits in force: queues' (settings and runtime values) and task types' (code)."""

    queues: dict[str, Limits] = field(default_factory=dict)
    tasks: dict[str, Limits] = field(default_factory=dict)
    #: scopes() by (queue, task, group, sequence): a claim asks it of many alike jobs.
    _scopes: dict[tuple[str, str, str | None, str | None], list[Scope]] = field(
        default_factory=dict, repr=False, compare=False
    )

    def limited_queues(self) -> list[str]:
        return sorted(name for name, limits in self.queues.items() if limits.any)

    def limited_tasks(self) -> list[str]:
        return sorted(
            name
            for name, limits in self.tasks.items()
            if limits.any or limits.group_concurrency is not None
        )

    def scopes(self, job: FlowJob) -> list[Scope]:
        """Every limited scope ``job`` belongs to: (key, concurrency, rate)."""
        alike = (job.queue, job.task_name, job.group, job.sequence)
        found = self._scopes.get(alike)
        if found is None:
            found = self._scopes[alike] = self._find_scopes(job)
        return found

    def _find_scopes(self, job: FlowJob) -> list[Scope]:
        found: list[Scope] = []
        if job.sequence is not None:
            found.append((SEQUENCE + job.sequence, 1, None))
        task = self.tasks.get(job.task_name)
        if task is not None:
            if job.group is not None and task.group_concurrency is not None:
                found.append((group_scope(job.task_name, job.group), task.group_concurrency, None))
            if task.any:
                found.append((TASK + job.task_name, task.concurrency, task.rate))
        queue = self.queues.get(job.queue)
        if queue is not None and queue.any:
            found.append((QUEUE + job.queue, queue.concurrency, queue.rate))
        return found


def group_scope(task_name: str, group: str) -> str:
    return f"{GROUP}{task_name}|{group}"


def lane(
    task: Limits | None,
    task_name: str,
    *,
    group: str | None,
    sequence: str | None,
    queue: str,
    queue_limited: bool,
) -> str | None:
    """The ``flow_key`` of a new job: its most specific limited scope; None when it belongs to
    none (the job is claimed like any other)."""
    if sequence is not None:
        return SEQUENCE + sequence
    if task is not None:
        if group is not None and task.group_concurrency is not None:
            return group_scope(task_name, group)
        if task.any:
            return TASK + task_name
    return QUEUE + queue if queue_limited else None


#: A rate window: (time, starts) entries, seconds since the epoch, oldest first.
Window = list[list[float]]


@dataclass
class Usage:
    """What the limits count, read after taking the flow lock: jobs running per scope, and the
    rate windows (starts per time, database clock, seconds since the epoch) of rate-limited
    scopes."""

    now: float
    running: Counter[str] = field(default_factory=Counter)
    starts: dict[str, Window] = field(default_factory=dict)

    def add_running(self, policy: Policy, jobs: Iterable[tuple[FlowJob, int]]) -> None:
        for job, count in jobs:
            for key, concurrency, _ in policy.scopes(job):
                if concurrency is not None:
                    self.running[key] += count

    def recent(self, key: str, rate: Rate) -> Window:
        """The entries of ``key``'s window inside it: at most one period before now (so that no
        interval of one period, ends included, holds more than the limit)."""
        since = self.now - rate.seconds
        return [entry for entry in self.starts.get(key, ()) if entry[0] >= since]

    def started(self, key: str, rate: Rate) -> int:
        """Starts of ``key`` inside its window."""
        return int(sum(n for _, n in self.recent(key, rate)))

    def room(self, key: str, concurrency: int | None, rate: Rate | None) -> float:
        """How many more jobs of scope ``key`` may start now."""
        room = math.inf
        if concurrency is not None:
            room = concurrency - self.running[key]
        if rate is not None:
            room = min(room, rate.count - self.started(key, rate))
        return room

    def blocked(self, policy: Policy) -> list[str]:
        """The scopes in which nothing may start now (their lanes are not even read)."""
        full = {k for k, n in self.running.items() if k.startswith(SEQUENCE) and n >= 1}
        for name, limits in policy.queues.items():
            if limits.any and self.room(QUEUE + name, limits.concurrency, limits.rate) <= 0:
                full.add(QUEUE + name)
        for name, limits in policy.tasks.items():
            if limits.any and self.room(TASK + name, limits.concurrency, limits.rate) <= 0:
                full.add(TASK + name)
            if limits.group_concurrency is not None:
                prefix = f"{GROUP}{name}|"
                for key, count in self.running.items():
                    if key.startswith(prefix) and count >= limits.group_concurrency:
                        full.add(key)
        return sorted(full)

    def free_at(self, key: str, rate: Rate) -> float | None:
        """When ``key``'s window, full now, lets a job start again (None if it is not full):
        once enough of its starts are older than one period."""
        recent = self.recent(key, rate)
        excess = sum(n for _, n in recent) - rate.count + 1
        if excess <= 0:
            return None
        for at, n in recent:
            excess -= n
            if excess <= 0:
                return at + rate.seconds
        return None  # not reached: the entries hold more than the excess

    def lane_rooms(self, policy: Policy) -> tuple[dict[str, int], dict[str, int]]:
        """How many jobs a claim may read from a lane: for the lanes of limited queues and
        task types and of groups with jobs running, their room now; for any other lane of a
        group, its task's group limit (by the lane's prefix). A lane not named is read up to
        what the claim wants."""
        rooms: dict[str, int] = {}
        prefixes: dict[str, int] = {}
        for prefix, table in ((QUEUE, policy.queues), (TASK, policy.tasks)):
            for name, limits in table.items():
                if limits.any:
                    room = self.room(prefix + name, limits.concurrency, limits.rate)
                    if room != math.inf:
                        rooms[prefix + name] = max(0, int(room))
        for name, limits in policy.tasks.items():
            if limits.group_concurrency is not None:
                prefix = group_scope(name, "")
                prefixes[prefix] = limits.group_concurrency
                for key, count in self.running.items():
                    if key.startswith(prefix):
                        rooms[key] = max(0, limits.group_concurrency - count)
        return rooms, prefixes

    def next_start(self, policy: Policy) -> float | None:
        """When a rate window that is full now lets a job start again (epoch seconds)."""
        times = []
        for prefix, table in ((QUEUE, policy.queues), (TASK, policy.tasks)):
            for name, limits in table.items():
                if limits.rate is not None:
                    at = self.free_at(prefix + name, limits.rate)
                    if at is not None:
                        times.append(at)
        return min(times) if times else None


def lane_room(lane: str, rooms: Mapping[str, int], prefixes: Mapping[str, int], want: int) -> int:
    """How many jobs to read from ``lane`` (see :meth:`Usage.lane_rooms`)."""
    if lane in rooms:
        return min(want, rooms[lane])
    for prefix, cap in prefixes.items():
        if lane.startswith(prefix):
            return min(want, cap)
    return want


def pick(
    candidates: Iterable[FlowJob],
    policy: Policy,
    usage: Usage,
    *,
    free: int,
    start: int,
    park: Iterable[str] = (),
) -> list[FlowJob]:
    """The candidates (offered lane by lane, each lane in claim order) that may start now,
    up to ``start`` of them: only the first ``free`` may be of a task in ``park`` (never
    started ahead of a free thread). Counts each start in every scope of its job."""
    parked = set(park)
    taken: list[FlowJob] = []
    extra: Counter[str] = Counter()
    rooms: dict[str, float] = {}  # each scope's room before this claim, computed once
    for job in candidates:
        if len(taken) >= start:
            break
        if len(taken) >= free and job.task_name in parked:
            continue
        scopes = policy.scopes(job)
        for key, c, r in scopes:
            if key not in rooms:
                rooms[key] = usage.room(key, c, r)
        if any(rooms[key] - extra[key] <= 0 for key, _, _ in scopes):
            continue
        taken.append(job)
        for key, _, _ in scopes:
            extra[key] += 1
    return taken


def record_starts(policy: Policy, usage: Usage, started: Iterable[FlowJob]) -> dict[str, Window]:
    """The rate windows after ``started`` started at ``usage.now``: only those that changed,
    each pruned to its period."""
    counts: Counter[str] = Counter()
    rates: dict[str, Rate] = {}
    for job in started:
        for key, _, rate in policy.scopes(job):
            if rate is not None:
                counts[key] += 1
                rates[key] = rate
    windows: dict[str, Window] = {}
    for key, count in counts.items():
        rate = rates[key]
        window = [list(entry) for entry in usage.recent(key, rate)]
        if window and usage.now - window[-1][0] < merge_within(window, count, rate):
            window[-1] = [usage.now, window[-1][1] + count]
        else:
            window.append([usage.now, count])
        windows[key] = window
    return windows


def merge_within(window: Window, count: int, rate: Rate) -> float:
    """How recent ``window``'s last entry must be (seconds) for ``count`` more starts to join
    it: WINDOW_GRAIN of the period, or COARSE_GRAIN while the window, with them, holds at most
    COARSE_SHARE of its limit."""
    far = sum(n for _, n in window) + count <= COARSE_SHARE * rate.count
    return (COARSE_GRAIN if far else WINDOW_GRAIN) * rate.seconds
