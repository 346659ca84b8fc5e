"""Staying alive and useful: the worker's database session (connect, reconnect with back-off),
heartbeats (which bring back operators' stop requests), the rescue of jobs whose worker died,
and the housekeeping duties of long-running workers."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from django.db import DatabaseError, connections

from ..core.lifecycle import ClaimedJob
from ..core.statuses import JobStatus
from ..registry import tasks as registry
from ..store import Store, WorkerInfo, WorkerSession
from .claimer import Running
from .maintenance import DUTIES

logger = logging.getLogger("django_taskengine.worker")

try:
    import psycopg

    #: Errors that mean the worker's connection is gone (or the database is away).
    DB_ERRORS: tuple[type[BaseException], ...] = (DatabaseError, psycopg.Error)
except ImportError:  # pragma: no cover - psycopg is a dependency
    DB_ERRORS = (DatabaseError,)


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
    ) -> None:
        self.store = store
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
        self._duty_due: dict[str, float] = {}

    def connect(self) -> WorkerSession:
        """Open a session, retrying with back-off until the database answers; take back the
        jobs this worker still owns. Gives up (SystemExit) past a shutdown's deadline."""
        delay = 0.2
        while True:
            try:
                session = self.store.open_session(self.info)
                session.register()
                session.relock(self.owned())
                self.session = session
                return session
            except DB_ERRORS as exc:
                if self._overdue(time.monotonic()):
                    raise SystemExit(1) from exc
                logger.error(
                    "worker %s: cannot reach the database (%s); retrying in %.1f s",
                    self.info.id,
                    str(exc).strip() or type(exc).__name__,
                    delay,
                )
                self._sleep(delay)
                delay = min(delay * 2, 10.0)

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
            "worker %s: database error (%s); reconnecting",
            self.info.id,
            str(exc).strip() or type(exc).__name__,
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
            if entry is not None and not entry.stop_reason:
                entry.stop_reason = reason

    def rescue(self) -> bool:
        """Requeue orphans; True if any went back to the queue (worth claiming at once)."""
        assert self.session is not None
        requeued = False
        for job in self.session.rescue(registry.parked_on_orphan()):
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

    def close(self) -> None:
        """Mark the worker stopped (if the database answers) and close the session."""
        if self.session is not None:
            try:
                self.session.unregister()
            except DB_ERRORS:
                pass
            self.session.close()
