"""A worker process: claims jobs, runs them on a pool of threads, writes their outcomes.

One main thread owns the worker's database session and runs the loop below; ``concurrency``
runner threads run task bodies on their own Django connections. Each room of the loop is its
own part: the :class:`~.claimer.Claimer` (what to claim), the :class:`~.runner_pool.RunnerPool`
(running attempts), the :class:`~.completer.Completer` (writing outcomes in batches),
:class:`~.state_sync.StateSync` (checkpoints and progress), :class:`~.stopping.StopControl`
(timeouts and shutdown) and :class:`~.liveness.Liveness` (the session, heartbeats, rescue,
duties).
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import time
import uuid
from typing import Any

from ..conf import taskengine_settings
from ..core import lifecycle
from ..registry import tasks as registry
from ..store import WorkerInfo, WorkerSession, get_store
from ..store.orm_dependencies import NONE, SOON, UNDECIDED, sweep, waiting_outlook
from .claimer import STALLED_AFTER, Claimer
from .completer import Completer
from .dispatching import Dispatch
from .liveness import DB_ERRORS, Liveness
from .operator_requests import EXIT_STOPPED, OperatorRequests
from .runner_pool import RunnerPool
from .state_sync import StateSync
from .stats import ProcessStats
from .stopping import StopControl
from .wakeup import WakeUp

logger = logging.getLogger("django_taskengine.worker")

#: The signals a worker process acts on. The supervisor blocks them while it forks, so that a
#: new worker process cannot be stopped by the supervisor's handlers before it has its own.
STOP_SIGNALS = {signal.SIGTERM, signal.SIGINT, signal.SIGQUIT}

#: Seconds after its start when a process that replaces one (EXIT_RECYCLE) in a burst or
#: max-jobs run looks for orphans a last time: longer than the leases of a stopped worker's jobs
#: last on SQLite (``STOPPED_WORKER_LEASE``; on PostgreSQL the old process's exit frees them).
RESCUE_AFTER_REPLACING = 3.0

#: Exit code of a worker that must be replaced (an attempt overran its timeout: only the end of
#: its process is sure to stop it); the supervisor starts a fresh process.
EXIT_RECYCLE = 3
#: Burst: how long jobs whose dependencies all ended may wait for their decision from the
#: worker that ended the last one (milliseconds, unless it died) before this process decides.
UNDECIDED_GRACE = 2.0


class WorkerProcess:
    """The claim loop of one worker process. ``run()`` returns the process exit code."""

    def __init__(
        self,
        *,
        queues: list[str],
        concurrency: int = 1,
        burst: bool = False,
        max_jobs: int | None = None,
        shutdown_timeout: float | None = None,
        database: str | None = None,
        install_signal_handlers: bool = True,
        supervised: bool = False,
        replacing: bool = False,
    ) -> None:
        self.queues = queues
        self.concurrency = max(1, concurrency)
        self.burst = burst
        self._undecided_since: float | None = None
        #: The last look at the blocked jobs found some to wait for.
        self._waited = False
        self.max_jobs = max_jobs
        self.store = get_store(database)
        self.info = WorkerInfo(
            id=uuid.uuid4(),
            hostname=socket.gethostname(),
            pid=os.getpid(),
            queues=list(queues),
            concurrency=self.concurrency,
        )
        self.install_signal_handlers = install_signal_handlers
        # A process that replaces one whose attempt overran its timeout: in burst and max-jobs
        # runs, it does not finish before a rescue has had the chance to record that attempt
        # and requeue its job (the job is rescuable only once the old process has exited).
        self._final_rescue_at: float | None = None
        if replacing and (burst or max_jobs):
            self._final_rescue_at = time.monotonic() + RESCUE_AFTER_REPLACING
        # Under run_workers' supervisor: SIGINT from a terminal reaches the whole process group,
        # and the supervisor turns it into SIGTERM for us; a worker whose supervisor vanished
        # shuts down.
        self.supervised = supervised
        self.parent_pid = os.getppid()
        self.wakeup = WakeUp()
        self.claimer = Claimer(
            concurrency=self.concurrency, max_jobs=max_jobs, park=registry.parked_on_orphan()
        )
        self.completer = Completer(self.claimer, burst=burst)
        self.state = StateSync(self.claimer.running, self.wakeup.wake)
        self.stops = StopControl(
            shutdown_timeout=(
                taskengine_settings.SHUTDOWN_TIMEOUT
                if shutdown_timeout is None
                else shutdown_timeout
            ),
            claimer=self.claimer,
            completer=self.completer,
            wake=self.wakeup.wake,
            worker_id=self.info.id,
        )
        #: Drain, stop and hard stop, as an operator asks them of this process.
        self.requests = OperatorRequests(self.stops, self.info.id)
        self.dispatch = Dispatch(self.store, self.info, burst=burst)
        self.liveness = Liveness(
            self.store,
            self.info,
            self.claimer.running,
            sleep=self.wakeup.sleep,
            overdue=self.stops.overdue,
            finishing=self.completer.unwritten,
            deliveries=self.dispatch.reader,
        )
        self.runners = RunnerPool(
            self.concurrency,
            inbox=self.claimer.inbox,
            done=self.completer.done,
            store=self.store,
            worker_id=self.info.id,
            channel=self.state,
            wakeup=self.wakeup,
        )
        #: The console's per-minute statistics, flushed every few seconds.
        self.stats = ProcessStats(self.store.alias, self.claimer.running)

    def request_stop(self, *_: Any) -> None:
        """Stop claiming; running jobs get ``shutdown_timeout`` seconds. Asking again changes
        nothing (see :meth:`stop_now`).

        The SIGTERM (and, unsupervised, SIGINT) handler.
        """
        self.stops.request()

    def stop_now(self, *_: Any) -> None:
        """Stop claiming and requeue the running jobs at once: the SIGQUIT handler."""
        self.stops.stop_now()

    def run(self) -> int:
        if self.install_signal_handlers:
            signal.signal(signal.SIGTERM, self.request_stop)
            # Under the supervisor, Ctrl-C reaches the whole process group, and the supervisor
            # decides what it means (a first one: stop gracefully; a second: stop now).
            signal.signal(signal.SIGINT, signal.SIG_IGN if self.supervised else self.request_stop)
            signal.signal(signal.SIGQUIT, self.stop_now)
            signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
        self.runners.start()
        self.dispatch.start()
        self.stats.start()
        logger.info(
            "worker %s started (pid %s, queues %s, concurrency %s)",
            self.info.id,
            self.info.pid,
            ",".join(self.queues) or "all",
            self.concurrency,
        )
        claimer, completer = self.claimer, self.completer
        stops, liveness = self.stops, self.liveness
        liveness.connect()
        exhausted = False  # the last claim found fewer due jobs than it asked for
        while True:
            try:
                session = liveness.session
                if session is None:
                    session = liveness.connect()
                completer.collect(overran=stops.overran)
                claiming = not (stops.requested or stops.recycle or self.requests.draining)
                if not (stops.requested or stops.recycle):
                    # Threads that finished get their next jobs first, then the outcomes go.
                    claimer.start_reserved(session)
                ask = None
                if claiming:
                    self._give_back_stalled(session, time.monotonic())
                    ask = claimer.ask()
                # The outcomes, and the next claim with them where the store can (one commit).
                found = completer.flush(session, ask)
                if found is not None:
                    exhausted = found or exhausted
                self.state.sync(session)
                now = time.monotonic()
                self.stats.tick(now)
                if self.supervised and not stops.requested and os.getppid() != self.parent_pid:
                    logger.error("worker %s: supervisor exited; shutting down", self.info.id)
                    stops.request()
                stops.enforce_timeouts(now)
                if stops.requested or stops.recycle:
                    stops.return_unstarted(session)
                    if stops.requested:
                        stops.ask_running_to_stop()
                    if not stops.others_running() and not completer.outcomes:
                        break
                    if stops.deadline is not None and now >= stops.deadline:
                        interrupted = stops.interrupt_running()
                        completer.flush(session)
                        stops.log_interrupted(interrupted)
                        break
                elif claiming and found is None:
                    # A turn of the loop polls, unless it drains (burst): notifications, the
                    # rescue below and finished jobs (the flush above) claim without waiting.
                    exhausted = claimer.claim(session, poll=not self.burst) or exhausted
                if now >= liveness.next_heartbeat:
                    liveness.heartbeat(completer.succeeded, completer.failed)
                    liveness.next_heartbeat = now + taskengine_settings.HEARTBEAT_INTERVAL
                    self.requests.apply(session.control_requested, session)
                if self._final_rescue_at is not None and now >= self._final_rescue_at:
                    self._final_rescue_at = None
                    liveness.next_rescue = now
                if now >= liveness.next_rescue:
                    claiming = not (stops.requested or stops.recycle or self.requests.draining)
                    if liveness.rescue() and claiming:
                        claimer.claim(session)
                    liveness.next_rescue = now + taskengine_settings.RESCUE_INTERVAL
                if not self.burst and not stops.requested:
                    liveness.perform_duties(now)
                if self._finished_work(exhausted):
                    break
                exhausted = False
                self._wait(min(liveness.next_heartbeat, liveness.next_rescue))
            except DB_ERRORS as exc:
                liveness.lost_connection(exc)
        self._shutdown()
        if self.requests.stopped:
            return EXIT_STOPPED
        return EXIT_RECYCLE if stops.recycle and not stops.requested else 0

    def _give_back_stalled(self, session: WorkerSession, now: float) -> None:
        """Jobs claimed ahead, stuck behind threads that all run overrunning jobs, go back to
        the queue at once, their attempt not counted, for other workers to run."""
        if not self.claimer.stalled(now):
            return
        released = self.claimer.release_reserved(session)
        error = (
            "given back before it started: every thread of its worker was busy with a job "
            f"running for over {STALLED_AFTER:g} s"
        )
        unstarted = self.claimer.take_unstarted()
        for entry in unstarted:
            self.completer.give_up(entry, lifecycle.interrupted(entry.job, error))
        logger.warning(
            "worker %s: %s job(s) claimed ahead given back: %s",
            self.info.id,
            released + len(unstarted),
            error,
        )

    def _finished_work(self, exhausted: bool) -> bool:
        if self._final_rescue_at is not None:
            return False
        idle = self.completer.idle
        if self.max_jobs is not None and self.claimer.claimed_total >= self.max_jobs and idle:
            return True
        session = self.liveness.session
        return (
            self.burst
            and exhausted
            and idle
            and time.monotonic() >= self.completer.burst_retry_until
            # Jobs under flow control may wait for their limits: not drained yet.
            and (session is None or session.flow_look_at() is None)
            and not self._dependencies_pending()
        )

    def _dependencies_pending(self) -> bool:
        """Burst: whether jobs of this worker's queues wait for a job that runs now or soon (a
        workflow's next steps: due when it ends, and its decision wakes this process). Jobs
        whose dependencies all ended are waited for while the worker that ended the last one
        writes its decision; if none comes within UNDECIDED_GRACE (that worker died), this
        process decides for them."""
        store = self.store
        outlook = waiting_outlook(store.alias, self.queues)
        waited, self._waited = self._waited, outlook != NONE
        now = time.monotonic()
        if outlook != UNDECIDED:
            self._undecided_since = None
            # Nothing waits now, but something did: it may have become due since this
            # process last claimed. One more claim before exiting.
            return outlook == SOON or waited
        if self._undecided_since is None:
            self._undecided_since = now
        if now - self._undecided_since < UNDECIDED_GRACE:
            return True
        self._undecided_since = None
        return bool(sweep(store.alias, store.wake_workers))

    def _wait(self, next_timer: float) -> None:
        """Sleep until the next timer, a finished attempt, a wake-up notification (when there is
        room to claim), the shutdown deadline or the next attempt's timeout."""
        now = time.monotonic()
        timeout = max(0.0, next_timer - now)
        can_claim = (
            not (self.stops.requested or self.stops.recycle or self.requests.draining)
            and self.claimer.room() > 0
        )
        if can_claim:
            timeout = min(timeout, taskengine_settings.POLL_INTERVAL)
            look_at = self.liveness.session.flow_look_at() if self.liveness.session else None
            if look_at is not None and self.claimer.can_start():
                # Jobs held back by their limits: look again when a slot may be free.
                timeout = min(timeout, max(0.0, look_at - now))
        timeout = self.stops.wait_limit(now, timeout)
        self.wakeup.pending = False
        if self.completer.done:
            return
        session = self.liveness.session
        if can_claim and session is not None and session.drain_notifications():
            # A notification that arrived during another query waits inside the driver, where
            # select() cannot see it: claim now instead of sleeping until the next poll.
            return
        reader = self.dispatch.reader
        if can_claim and reader is not None and reader.ready():
            return
        session_fd = session.wait_fileno() if session is not None else None
        fds = [session_fd] if can_claim and session_fd is not None else []
        if can_claim and reader is not None:
            fds.append(reader.fileno())
        readable = self.wakeup.wait(fds, timeout)
        if session_fd is not None and session_fd in readable and session is not None:
            session.drain_notifications()

    def _shutdown(self) -> None:
        self.state.release_waiting_threads()
        self.dispatch.stop()
        self.runners.stop()
        overran = self.stops.overran_executing()
        if overran:
            logger.warning(
                "worker %s: exiting with attempts past their timeout or hard-stopped still "
                "executing (jobs %s); they end with this process, then are rescued",
                self.info.id,
                ", ".join(map(str, sorted(overran))),
            )
        self.stats.stop()
        if self.liveness.session is not None:
            try:  # the final counts, for the worker's row
                self.liveness.heartbeat(self.completer.succeeded, self.completer.failed)
            except DB_ERRORS:
                pass
        # The session's job locks must outlive those attempts: the process's exit ends it.
        self.liveness.close(end_session=not overran)
        logger.info(
            "worker %s stopped: %s job(s) succeeded, %s failed",
            self.info.id,
            self.completer.succeeded,
            self.completer.failed,
        )
