"""How a worker stops: attempts past their timeout, graceful shutdown, the shutdown deadline.

A thread cannot be stopped from outside. An attempt past its timeout is given up (recorded as
timed out) and the process is recycled: it claims no more, finishes its other jobs, and exits for
the supervisor to start a fresh one. A shutdown asks checkpointing tasks to stop at their next
checkpoint, gives back the jobs no thread started, and at the deadline gives back the rest.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable

from ..core import lifecycle
from .claimer import Claimer
from .completer import Completer

logger = logging.getLogger("django_taskengine.worker")


class StopControl:
    """The worker's stop state: a requested shutdown, its deadline, a pending recycle."""

    def __init__(
        self,
        *,
        shutdown_timeout: float,
        claimer: Claimer,
        completer: Completer,
        wake: Callable[[], None],
        worker_id: uuid.UUID,
    ) -> None:
        self.shutdown_timeout = shutdown_timeout
        self.claimer = claimer
        self.completer = completer
        self._wake = wake
        self.worker_id = worker_id
        #: A shutdown was asked for (a signal, or the supervisor went away).
        self.requested = False
        #: time.monotonic() by which running attempts are given up.
        self.deadline: float | None = None
        #: An attempt overran its timeout: this process must be replaced.
        self.recycle = False
        #: "Stop now" was asked for (SIGQUIT): no grace for running jobs.
        self.now_requested = False

    def request(self) -> None:
        """Stop claiming; running jobs get ``shutdown_timeout`` seconds.

        Asking again changes nothing: under a supervisor, a signal sent to the whole process
        group reaches a worker twice (directly, then passed on), and must not cut the grace
        short. :meth:`stop_now` is the way to stop at once.
        """
        if not self.requested:
            self.requested = True
            self.deadline = time.monotonic() + self.shutdown_timeout
        self._wake()

    def stop_now(self) -> None:
        """Stop claiming and give back the running jobs at once (SIGQUIT)."""
        self.requested = True
        self.now_requested = True
        self.deadline = time.monotonic()
        self._wake()

    def overdue(self, now: float) -> bool:
        """A shutdown was requested and its deadline has passed."""
        return self.requested and self.deadline is not None and now >= self.deadline

    def wait_limit(self, now: float, timeout: float) -> float:
        """``timeout`` shortened so the main thread wakes at the deadline and at the next
        attempt's timeout."""
        if self.deadline is not None:
            timeout = min(timeout, max(0.0, self.deadline - now))
        for entry in self.claimer.running.values():
            if entry.job.timeout and entry.started is not None and not entry.abandoned:
                timeout = min(timeout, max(0.0, entry.started + entry.job.timeout - now))
        return timeout

    def enforce_timeouts(self, now: float) -> None:
        """Give up the attempts that ran past their timeout; schedule the process's recycle."""
        for entry in list(self.claimer.running.values()):
            job = entry.job
            if not job.timeout or entry.started is None or entry.abandoned:
                continue
            if now - entry.started < job.timeout:
                continue
            # A thread cannot be stopped from outside: give up on the attempt, record it as
            # timed out, and replace this process once the other jobs are done.
            self.completer.give_up(entry, lifecycle.timed_out(job))
            if not self.recycle:
                if self.deadline is None:
                    self.deadline = now + self.shutdown_timeout
                logger.warning(
                    "worker %s: job %s overran its timeout; this process will be replaced once "
                    "its other jobs finish",
                    self.worker_id,
                    job.id,
                )
            self.recycle = True

    def return_unstarted(self) -> None:
        """Give back claimed jobs no thread has started yet (a stop or recycle is pending)."""
        for entry in self.claimer.take_unstarted():
            self.completer.give_up(
                entry, lifecycle.interrupted(entry.job, lifecycle.NOT_STARTED_ERROR)
            )

    def ask_running_to_stop(self) -> None:
        """Checkpointing tasks stop at their next checkpoint and are requeued with it, so a
        deploy does not throw long work away."""
        for entry in self.claimer.running.values():
            entry.stop_reason = entry.stop_reason or "shutdown"

    def interrupt_running(self) -> int:
        """Return the jobs still running at the shutdown deadline to the queue; how many."""
        entries = list(self.claimer.running.values())
        for entry in entries:
            self.completer.give_up(
                entry, lifecycle.interrupted(entry.job, lifecycle.SHUTDOWN_ERROR)
            )
        return len(entries)

    def log_interrupted(self, count: int) -> None:
        """Say why running jobs went back to the queue (written by now)."""
        if self.now_requested:
            logger.warning(
                "worker %s: stopping now: %s running job(s) requeued", self.worker_id, count
            )
        elif count:
            logger.warning(
                "worker %s: the shutdown timeout (%g s) passed: %s running job(s) requeued",
                self.worker_id,
                self.shutdown_timeout,
                count,
            )
