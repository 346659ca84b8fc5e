"""How a worker stops: attempts past their timeout, graceful shutdown, the shutdown deadline.

A timeout stops the code. A thread cannot be stopped from outside, so an attempt past its
timeout is not given up while it may still execute: the worker keeps its job (status running,
its advisory lock held, its lease renewed), claims no more, gives back the jobs no thread
started, lets its other running jobs finish (up to the shutdown timeout) and exits for the
supervisor to start a fresh process. If the attempt's thread ends meanwhile, the attempt is
recorded as timed out then; otherwise it ends with the process, and the rescuer (any worker,
the replacement included) finds the job without a live worker and records it as timed out
(:func:`~django_taskengine.core.lifecycle.rescued`). Either way the retry cannot start while
the attempt can still execute.

An operator's hard stop (``cancel_job(…, hard=True)``, ``pause_job(…, hard=True)``: the job's
stop request "cancel:hard" or "pause:hard", learned with the heartbeats and checkpoints like a
cooperative one) is carried out the same way: the attempt is kept like an overrun one, the
process replaced, and the attempt recorded as hard-stopped — the job cancelled or paused — once
its thread ends or its process has exited (:func:`~django_taskengine.core.lifecycle.overran`).

A shutdown asks checkpointing tasks to stop at their next checkpoint, gives back the jobs no
thread started, and at the deadline gives back the rest. Asking again changes nothing;
:meth:`StopControl.stop_now` gives them back at once.

An operator's hard stop of the whole process (:meth:`StopControl.hard_stop`, from the worker's
admin page) keeps every running attempt the same way and exits at once: the attempts end with
the process, and the rescue requeues their jobs as it does a dead worker's. An attempt whose
thread returns before the exit is recorded as it ended.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable

from ..core import lifecycle
from ..core.lifecycle import ClaimedJob
from ..store import WorkerSession
from .claimer import Claimer, Running
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
        #: Jobs whose attempt ran past its timeout: this worker keeps them until the attempt's
        #: thread ends (then it is recorded as timed out) or the process exits.
        self.overran: set[int] = set()
        #: Jobs running when an operator hard-stopped the process: they end with it.
        self.hard_stopped: set[int] = set()

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

    def hard_stop(self) -> None:
        """Stop claiming and exit now, leaving the running attempts to end with the process
        (their jobs stay this worker's until then; the rescue requeues them after)."""
        self.requested = True
        self.deadline = time.monotonic()
        # Jobs waiting in the inbox are given back by return_unstarted; one a thread takes
        # meanwhile is among these, and ends with the process too.
        self.hard_stopped.update(
            job_id for job_id, entry in self.claimer.running.items() if not entry.job.reserved
        )
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
            job = entry.job
            if job.timeout and entry.started is not None and not self._overran(entry):
                timeout = min(timeout, max(0.0, entry.started + job.timeout - now))
        return timeout

    def enforce_timeouts(self, now: float) -> None:
        """Note the attempts that ran past their timeout, or that an operator hard-stopped;
        schedule the process's replacement."""
        for entry in self.claimer.running.values():
            job = entry.job
            if self._overran(entry) or entry.started is None:
                continue  # kept already, or not started (a hard stop waits for its start)
            if lifecycle.is_hard_stop(job.stop_requested) or (
                job.timeout and now - entry.started >= job.timeout
            ):
                self._keep_until_exit(job, now)

    def _keep_until_exit(self, job: ClaimedJob, now: float) -> None:
        # The job stays this worker's: a retry or resume must not start while this thread can
        # still execute, and only the end of the process is sure to end it.
        self.overran.add(job.id)
        if self.deadline is None:
            self.deadline = now + self.shutdown_timeout
        hard = lifecycle.is_hard_stop(job.stop_requested)
        if not self.recycle or hard:
            if hard:
                done = (
                    "cancelled" if lifecycle.stop_kind(job.stop_requested) == "cancel" else "paused"
                )
                why, after = f"was hard-{done} by an operator (hard=True)", done
            else:
                why, after = f"overran its timeout of {job.timeout:g} s", "retried"
            logger.warning(
                "worker %s: job %s %s; this process will be replaced once its other jobs "
                "finish, and the job %s after that",
                self.worker_id,
                job.id,
                why,
                after,
            )
        self.recycle = True

    def _overran(self, entry: Running) -> bool:
        job_id = entry.job.id
        return entry.abandoned or job_id in self.overran or job_id in self.hard_stopped

    def overran_executing(self) -> list[int]:
        """The jobs whose attempt overran its timeout (or was hard-stopped with the process)
        and whose thread has not ended."""
        kept = self.overran | self.hard_stopped
        return [job_id for job_id in kept if job_id in self.claimer.running]

    def others_running(self) -> bool:
        """Attempts are running that did not overrun their timeout (worth waiting for)."""
        return any(not self._overran(e) for e in self.claimer.running.values())

    def return_unstarted(self, session: WorkerSession) -> None:
        """Give back the claimed jobs no thread has taken yet (a stop or recycle is pending):
        reserved ones untouched, started ones as interrupted (their attempt not counted)."""
        self.claimer.release_reserved(session)
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
        """Return the jobs still running at the shutdown deadline to the queue; how many.

        Attempts past their timeout are not among them: they stay this worker's until it exits.
        """
        entries = [e for e in self.claimer.running.values() if not self._overran(e)]
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
