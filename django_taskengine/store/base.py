"""The storage interface: every way the engine reads or writes job rows goes through here.

Two implementations: :mod:`.postgres` (``SKIP LOCKED`` claims, advisory-lock liveness,
``LISTEN/NOTIFY``) and :mod:`.generic` (the ORM; SQLite and others: serialized claims, leases,
polling). A :class:`Store` serves web processes (enqueue, on the caller's connection and
transaction); a :class:`WorkerSession` is one worker process's own long-lived connection.
"""

from __future__ import annotations

import copy
import datetime as dt
import uuid
from abc import ABC, abstractmethod
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from ..core.dedup import CREATED, SKIP
from ..core.dedup import outcomes as dedup_outcomes
from ..core.lifecycle import ClaimedJob, Outcome
from ..job_indexes import DEDUP_HOLDER
from ..models import Job

__all__ = [
    "ClaimFailedAfterWrite",
    "ClaimedJob",
    "NewJobs",
    "Outcome",
    "RescuedJob",
    "StateWrite",
    "Store",
    "WorkerInfo",
    "WorkerSession",
]


@dataclass(slots=True)
class NewJobs:
    """What an enqueue writes: one job per ``(args, kwargs)`` call, all with these options."""

    task_name: str
    queue: str
    priority: int
    #: None: due at once (the database's clock).
    run_after: dt.datetime | None
    dedup_key: str | None
    max_attempts: int
    retry_backoff: float
    timeout: float | None
    calls: list[tuple[Sequence[Any], dict[str, Any]]]
    #: Flow control (django_taskengine/core/flow.py): the jobs' group, sequence and lane
    #: (None: the store gives them their queue's if it has a limit).
    group_key: str | None = None
    sequence_key: str | None = None
    flow_key: str | None = None
    #: What a dedup key does when another job holds it, and the window of the modes that have
    #: one, in seconds (django_taskengine/core/dedup.py).
    dedup_mode: str = SKIP
    dedup_window: float | None = None

    def options(self) -> dict[str, Any]:
        """Every option but the calls and the window (the job's fields), by field name."""
        return {name: getattr(self, name) for name in _OPTIONS}


_OPTIONS = [name for name in NewJobs.__dataclass_fields__ if name not in ("calls", "dedup_window")]


def key_holder(alias: str, dedup_key: str | None) -> Job | None:
    """The job that holds ``dedup_key`` now (at most one: job_indexes.DEDUP_HOLDER), or None
    (it finished meanwhile, or the key is free)."""
    return Job.objects.using(alias).filter(DEDUP_HOLDER, dedup_key=dedup_key).first()


def per_call(job: Job, first: str, mode: str, count: int) -> list[Job]:
    """The job an enqueue of ``count`` calls with one dedup key got, once per call, each with
    what that call did (``job.dedup_outcome``; ``job.created`` for the one that added it)."""
    jobs = []
    for outcome in dedup_outcomes(first, mode, count):
        each = copy.copy(job)
        each.created = outcome == CREATED
        each.dedup_outcome = outcome
        jobs.append(each)
    return jobs


@dataclass
class StateWrite:
    """A running attempt's checkpoint and/or progress, written fenced by its token."""

    job_id: int
    token: uuid.UUID
    #: JSON text of the new checkpoint, or None to leave the checkpoint as it is.
    checkpoint_json: str | None = None
    progress_current: int | None = None
    progress_total: int | None = None


@dataclass
class WorkerInfo:
    id: uuid.UUID
    hostname: str
    pid: int
    queues: list[str]
    concurrency: int


@dataclass
class RescuedJob:
    id: int
    task_name: str
    attempt: int
    status: str
    #: The dead worker had only reserved the job: it went back to the queue untouched.
    reserved: bool = False


class ClaimFailedAfterWrite(Exception):
    """:meth:`WorkerSession.finish_then_claim` committed the outcomes (``applied``: the ids
    applied), then a claim statement of the same call failed (the exception's cause). The
    outcomes are written: the caller must not write them again, and handles the cause as the
    error it is."""

    def __init__(self, applied: set[int]) -> None:
        super().__init__("outcomes written, then a claim failed")
        self.applied = applied


class Store(ABC):
    """Storage operations that run on the caller's connection (web processes, admin, CLI)."""

    vendor: str

    def __init__(self, alias: str) -> None:
        self.alias = alias

    @abstractmethod
    def enqueue(self, new: NewJobs) -> list[Job]:
        """Insert one job per ``(args, kwargs)`` call of ``new`` in one statement; return them.

        The arguments passed :func:`~django_taskengine.serialization.check_arguments`; the
        returned jobs hold them as read back from JSON (lists for tuples), like a stored row.

        Runs in the caller's transaction. With a ``dedup_key``, an active job with that key is
        returned instead (``job.created`` False) and no row is added.
        """

    @abstractmethod
    def send_event(self, name: str, payload_json: str) -> int:
        """Send an event (django_taskengine/events.py) in the caller's transaction: keep it, and
        make every job parked waiting for it, enqueued before it, due now. Its id."""

    def wake_workers(self, queues: Sequence[str]) -> None:
        """Wake idle workers for jobs of ``queues`` that became due (a resume): on the
        caller's connection, so inside a transaction it takes effect at commit. Stores without
        notifications do nothing: their workers poll."""
        return None

    def wait_for_starts(self) -> None:
        """Once a pause has committed, wait until no worker's statement that started jobs
        without seeing it is still in flight: after this, nothing starts under the pause.
        Stores whose database serializes writers (SQLite) have nothing to wait for."""
        return None

    @abstractmethod
    def finish_atomic(self, outcome: Outcome, worker_id: uuid.UUID) -> bool:
        """Write a successful outcome inside the caller's open transaction; False if fenced out.

        Used by ``atomic`` tasks so the task body and the job's success commit together.
        """

    @abstractmethod
    def open_session(self, worker: WorkerInfo) -> WorkerSession:
        """Open a worker's own connection; raises a database error if it cannot connect."""


class Deliveries(Protocol):
    """Job ids a dispatch backend delivers to this worker (django_taskengine/dispatch)."""

    def take(self, limit: int) -> list[Any]:
        """Up to ``limit`` deliveries (each with a ``job_id``), best first."""

    def done(self, deliveries: list[Any]) -> None:
        """Their jobs were claimed, or are not claimable."""

    def keep(self, deliveries: list[Any]) -> None:
        """The claim of their jobs failed: take them again next time."""

    def held(self, deliveries: list[Any]) -> None:
        """Acknowledged, their jobs not taken though claimable: another transaction held
        their rows for a moment (SKIP LOCKED). Take them again at the next claim (not
        before: they make no claim of their own)."""

    def should_scan(self) -> bool:
        """Whether the claim should also scan the job table now (the backend fails, or has
        delivered nothing for a poll interval)."""


class WorkerSession(ABC):
    """One worker process's long-lived connection: claims, completions, heartbeats, rescue."""

    #: Rescue needs a lease on each running job (no advisory locks on this database).
    uses_leases = False
    #: Job ids to claim, when a dispatch backend delivers them; None: claims scan the table.
    deliveries: Deliveries | None = None
    #: An operator's request to this process ("drain", "stop", "kill" or ""), as the last
    #: heartbeat read it from the worker's row (django_taskengine/operations/workers.py).
    control_requested: str = ""

    @abstractmethod
    def register(self) -> None:
        """Insert or refresh this process's worker row."""

    @abstractmethod
    def claim(
        self,
        limit: int,
        *,
        free: int | None = None,
        start: int | None = None,
        park: Collection[str] = (),
        poll: bool = False,
    ) -> list[ClaimedJob]:
        """Take up to ``limit`` due jobs of unpaused queues for this worker, in claim order.

        The first ``free`` (one per idle thread) start at once: running, attempt counted. So
        do the next up to ``start`` in all, unless their task is in ``park`` (a job parked on
        its worker's death must not be started before a thread can run it). The others are
        reserved (:attr:`ClaimedJob.reserved`): still queued, owned by this worker, started
        later by :meth:`start` or given back by :meth:`release`. None: every job starts.

        Jobs under flow control (django_taskengine/core/flow.py) are only ever started, as
        their limits allow; see :meth:`flow_look_at`.

        ``poll``: the worker claims because its loop turned (a heartbeat, a rescue round),
        not because something woke it. A session told of every job made due now (PostgreSQL:
        NOTIFY) then scans the job table only if it was told of one since its last scan that
        found fewer jobs than asked, or POLL_INTERVAL has passed since; jobs delivered by a
        dispatch backend are claimed either way.
        """

    def flow_look_at(self) -> float | None:
        """While jobs under flow control may wait for this worker: when (``time.monotonic()``)
        the next claim should look at them again, if no notification or finished job brings it
        sooner (they were held back by their limits, or there may be more). None otherwise."""
        return None

    @abstractmethod
    def start(self, jobs: list[ClaimedJob]) -> list[ClaimedJob]:
        """Start reserved jobs, fenced by their tokens, unless their queue, task type or the
        engine is paused now; return those started, their attempt and ``started_at`` set.
        Every other one goes back to the queue untouched (its lock released). Starting a job
        that already started is a no-op that returns it (a retry after a lost reply)."""

    @abstractmethod
    def release(self, jobs: list[ClaimedJob]) -> None:
        """Give reserved jobs back to the queue untouched (no attempt counted, their place
        kept), releasing their locks; wake idle workers for them."""

    @abstractmethod
    def finish(self, outcomes: list[Outcome], unlock: list[int]) -> set[int]:
        """Write outcomes in one round trip, each fenced by its token; return applied job ids.

        ``unlock`` lists job ids whose advisory locks to release.
        """

    def finish_then_claim(
        self,
        outcomes: list[Outcome],
        unlock: list[int],
        limit: int,
        *,
        free: int,
        start: int,
        park: Collection[str] = (),
    ) -> tuple[set[int], list[ClaimedJob] | None]:
        """:meth:`finish`, then the next :meth:`claim`, as one transaction where the store can
        (one round trip and one commit for a worker's turn): the ids applied, and the jobs
        claimed, or None if the store did not claim (the caller claims as usual then).

        A store that claims here writes the outcomes in the transaction of its first claim
        statement. If a later claim statement of the same call fails, it raises
        :class:`ClaimFailedAfterWrite`. If anything else raises, nothing was written (unless
        the reply was lost, as with :meth:`finish`).
        """
        return self.finish(outcomes, unlock), None

    @abstractmethod
    def heartbeat(self, running: list[ClaimedJob], succeeded: int, failed: int) -> dict[int, str]:
        """Report liveness (and renew leases of ``running`` jobs where leases are used).

        Returns the stop requests (job id -> "pause" or "cancel") operators made for jobs this
        worker runs; sets :attr:`control_requested`.
        """

    @abstractmethod
    def save_state(self, writes: list[StateWrite]) -> dict[int, str]:
        """Write checkpoints and progress in one round trip, each fenced by its token.

        Returns job id -> the job's pending stop request ("" if none) for every write that
        applied; a job missing from the result no longer belongs to its attempt.
        """

    @abstractmethod
    def rescue(self, park: list[str]) -> list[RescuedJob]:
        """Return orphaned running jobs (their worker died) to the queue, or fail them, and
        give back untouched the jobs a dead worker had only reserved.

        ``park`` names the tasks declared ``on_orphan="park"``: their orphans fail.
        """

    @abstractmethod
    def relock(self, owned: list[ClaimedJob]) -> None:
        """After a reconnect: take again the locks of the jobs this worker still owns — every
        one, running or not yet started, and finished with its outcome not yet written — and
        give back to the queue the jobs running under this worker that are not among them (a
        claim whose reply was lost with the connection)."""

    @abstractmethod
    def wait_fileno(self) -> int | None:
        """A file descriptor readable when a wake-up notification arrives, or None."""

    @abstractmethod
    def drain_notifications(self) -> bool:
        """Consume pending notifications; True if any arrived."""

    @abstractmethod
    def unregister(self) -> None:
        """Mark this worker stopped."""

    @abstractmethod
    def close(self) -> None:
        """Close the connection (its advisory locks go with it)."""

    @abstractmethod
    def is_usable(self) -> bool:
        """Whether the connection still works."""


def parked_jobs(outcomes: list[Outcome], applied: set[int]) -> list[tuple[int, str]]:
    """The jobs the written ``outcomes`` parked waiting for an event: (id, event name). After
    writing them, a session makes due those whose event was sent meanwhile."""
    return [(o.job_id, o.waiting_for) for o in outcomes if o.waiting_for and o.job_id in applied]
