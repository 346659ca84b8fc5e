"""Staying alive and useful: the worker's database session (connect, reconnect with back-off),
heartbeats (which bring back operators' stop requests), the rescue of jobs whose worker died,
and the housekeeping duties of long-running workers.

After an outage every live worker must get its jobs back before anyone rescues them: when the
database returns, all their heartbeats are stale and all their advisory locks are gone, so to a
rescuer they look dead. Two rules together see to it:

- a worker rescues only once its own session has been up for :func:`rescue_settle_time`
  (``RESCUE_GRACE`` plus one heartbeat) — after a new start or a reconnect, it first waits as
  long as a live worker is given to show itself;
- a worker reconnects with a back-off capped at a quarter of that time (each sleep jittered
  down to half its step, so workers cut off together do not knock together), so every live
  worker is back — locks re-taken, heartbeat fresh — well before the first rescuer looks.

A rescuer cannot tell a dead worker from one still backing off; it can wait until a live one
would certainly have reconnected. The price: a worker that has just started (or reconnected)
rescues nothing for a few seconds; workers connected longer rescue meanwhile.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable

from django.db import DatabaseError, connections

from ..conf import taskengine_settings
from ..core.lifecycle import ClaimedJob
from ..core.statuses import JobStatus
from ..registry import tasks as registry
from ..store import Store, WorkerInfo, WorkerSession
from ..store.base import Deliveries
from .claimer import Running
from .maintenance import DUTIES

logger = logging.getLogger("django_taskengine.worker")

try:
    import psycopg

    #: Errors that mean the worker's connection is gone (or the database is away).
    DB_ERRORS: tuple[type[BaseException], ...] = (DatabaseError, psycopg.Error)
except ImportError:  # pragma: no cover - psycopg is a dependency
    DB_ERRORS = (DatabaseError,)


#: The first reconnect back-off step, in seconds; each failure doubles it up to the cap.
FIRST_RETRY_DELAY = 0.2


def rescue_settle_time() -> float:
    """Seconds a worker's session must have been up before the worker rescues: as long as a
    live worker cut off by the same outage is given to reconnect and heartbeat."""
    return taskengine_settings.RESCUE_GRACE + taskengine_settings.HEARTBEAT_INTERVAL


def reconnect_delay_cap() -> float:
    """The longest step of the reconnect back-off: a quarter of the settle time (at most 10 s),
    so a live worker's next attempt comes soon after the database is back."""
    return max(FIRST_RETRY_DELAY, min(10.0, rescue_settle_time() / 4))


#: Errors of a session whose statements a transaction-mode pooler sends to different server
#: connections: a prepared statement missing, or already there.
POOLER_SQLSTATES = ("26000", "42P05")
POOLER_HINT = (
    ". Is the database reached through a transaction-mode pooler (PgBouncer)? A worker's own "
    "connection needs a session of its own: set TASKENGINE['DIRECT_DATABASE_URL'] to a URL "
    "that reaches the database directly"
)


class Liveness:
    """Owns the worker's session; heartbeats, rescues and duties run through it."""

    def __init__(
        self,
        store: Store,
        info: WorkerInfo,
        running: dict[int, Running],
        *,
        sleep: Callable[[float], None],
        overdue: Callable[[float], bool],
        finishing: Callable[[], list[ClaimedJob]] = list,
        deliveries: Deliveries | None = None,
    ) -> None:
        self.store = store
        #: What the dispatch backend delivers, given to every session (see WorkerSession).
        self.deliveries = deliveries
        self.info = info
        #: The worker's claimed jobs (shared with the claimer).
        self.running = running
        #: The jobs whose attempt ended but whose outcome (or lock release) is not yet written.
        self._finishing = finishing
        self._sleep = sleep
        #: Whether a shutdown's deadline has passed (then stop trying to reconnect).
        self._overdue = overdue
        self.session: WorkerSession | None = None
        #: time.monotonic() when the next heartbeat and the next rescue are due.
        self.next_heartbeat = 0.0
        self.next_rescue = 0.0
        #: time.monotonic() before which this worker does not rescue (see the module's notes).
        self.rescue_from = 0.0
        self._duty_due: dict[str, float] = {}

    def connect(self) -> WorkerSession:
        """Open a session, retrying with back-off until the database answers; take back the
        jobs this worker still owns. Gives up (SystemExit) past a shutdown's deadline."""
        delay = FIRST_RETRY_DELAY
        while True:
            try:
                session = self.store.open_session(self.info)
                session.deliveries = self.deliveries
                session.register()
                session.relock(self.owned())
                self.session = session
                self.rescue_from = time.monotonic() + rescue_settle_time()
                return session
            except DB_ERRORS as exc:
                if self._overdue(time.monotonic()):
                    raise SystemExit(1) from exc
                pause = random.uniform(delay / 2, delay)
                logger.error(
                    "worker %s: cannot reach the database (%s); retrying in %.1f s",
                    self.info.id,
                    str(exc).strip() or type(exc).__name__,
                    pause,
                )
                self._sleep(pause)
                delay = min(delay * 2, reconnect_delay_cap())

    def owned(self) -> list[ClaimedJob]:
        """Every job this worker owns: claimed (started or not), and finished but not yet
        written. A reconnect must keep them all: a finished attempt given back to the queue
        would run again, and its outcome, written late, be superseded."""
        jobs = {entry.job.id: entry.job for entry in self.running.values()}
        for job in self._finishing():
            jobs.setdefault(job.id, job)
        return list(jobs.values())

    def lost_connection(self, exc: BaseException) -> None:
        """Drop the broken session; the main loop reconnects."""
        logger.error(
            "worker %s: database error (%s); reconnecting%s",
            self.info.id,
            str(exc).strip() or type(exc).__name__,
            POOLER_HINT if getattr(exc, "sqlstate", None) in POOLER_SQLSTATES else "",
        )
        if self.session is not None:
            self.session.close()
            self.session = None
        self._sleep(0.1)

    def heartbeat(self, succeeded: int, failed: int) -> None:
        """Report liveness; pass operators' pause and cancel requests to the running jobs."""
        assert self.session is not None
        requests = self.session.heartbeat([e.job for e in self.running.values()], succeeded, failed)
        for job_id, reason in requests.items():
            entry = self.running.get(job_id)
            if entry is None:
                continue
            entry.job.stop_requested = reason
            if not entry.stop_reason:
                entry.stop_reason = reason

    def rescue(self) -> bool:
        """Requeue orphans; True if any went back to the queue (worth claiming at once).

        Not before the session has been up for the settle time: until then a worker cut off
        by the same outage may still be on its way back."""
        assert self.session is not None
        if time.monotonic() < self.rescue_from:
            return False
        requeued = False
        for job in self.session.rescue(registry.parked_on_orphan()):
            if job.reserved:
                logger.info(
                    "job %s (%s), reserved by a worker that died before starting it, is "
                    "back in the queue",
                    job.id,
                    job.task_name,
                )
                requeued = True
                continue
            logger.warning(
                "rescued job %s (%s) after its worker died during attempt %s: now %s",
                job.id,
                job.task_name,
                job.attempt,
                job.status,
            )
            requeued = requeued or job.status == JobStatus.QUEUED
        return requeued

    def perform_duties(self, now: float) -> None:
        """Run the housekeeping duties that are due; one failing never stops the worker."""
        for duty in DUTIES:
            if now < self._duty_due.get(duty.name, 0.0):
                continue
            self._duty_due[duty.name] = now + duty.interval
            try:
                duty.run(self.store.alias)
            except Exception:  # noqa: BLE001 - housekeeping must never stop the worker
                logger.exception("worker %s: %s failed", self.info.id, duty.name)
                connections[self.store.alias].close_if_unusable_or_obsolete()

    def close(self, *, end_session: bool = True) -> None:
        """Mark the worker stopped (if the database answers) and close the session.

        ``end_session=False`` leaves the session open for the process's exit to end, with the
        job locks it holds: attempts past their timeout still execute in this process.
        """
        if self.session is not None:
            try:
                self.session.unregister()
            except DB_ERRORS:
                pass
            if end_session:
                self.session.close()
