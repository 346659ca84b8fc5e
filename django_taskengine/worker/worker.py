"""A worker process: claims jobs, runs them on a pool of threads, writes their outcomes.

One main thread owns the worker's database session (claims, completions in batches, heartbeats,
rescue of orphans, wake-ups); ``concurrency`` threads run task bodies on their own Django
connections. The main thread never runs task code, so heartbeats and locks stay alive while
tasks are busy.
"""

from __future__ import annotations

import logging
import os
import queue as queue_module
import select
import signal
import socket
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from django.db import DatabaseError, connections

from ..conf import taskengine_settings
from ..core import lifecycle
from ..core.statuses import AttemptOutcome, JobStatus
from ..registry import find_task
from ..registry import tasks as registry
from ..signals import job_finished
from ..store import ClaimedJob, Outcome, StateWrite, WorkerInfo, WorkerSession, get_store
from .maintenance import DUTIES
from .runner import RunResult, run_attempt

logger = logging.getLogger("django_taskengine.worker")

#: Exit code of a worker that must be replaced (a task overran its timeout and still holds a
#: thread); the supervisor starts a fresh process.
EXIT_RECYCLE = 3

#: A worker claims ahead about this many seconds of work per thread (for jobs of a few
#: milliseconds, batches of up to MAX_PREFETCH jobs per round trip).
PREFETCH_WINDOW = 0.05
MAX_PREFETCH = 100

#: In burst mode a worker waits for retries it scheduled itself if they fall due within this
#: many seconds, so a script's quick retries finish in the same run.
BURST_RETRY_WAIT = 10.0

try:
    import psycopg

    _DB_ERRORS: tuple[type[BaseException], ...] = (DatabaseError, psycopg.Error)
except ImportError:  # pragma: no cover - psycopg is a dependency
    _DB_ERRORS = (DatabaseError,)


@dataclass
class _Running:
    job: ClaimedJob
    #: time.monotonic() when a thread started the task; None while waiting for a thread.
    started: float | None = None
    #: The worker gave up on it (timeout); its thread's result is ignored.
    abandoned: bool = False
    #: Why the task should stop at its next checkpoint: "pause", "cancel" or "shutdown".
    stop_reason: str = ""


@dataclass
class _CheckpointRequest:
    """A runner thread waiting for its checkpoint to be saved by the main thread."""

    job: ClaimedJob
    state_json: str
    done: threading.Event = field(default_factory=threading.Event)
    #: After ``done``: the stop reason ("" to go on), or "superseded".
    result: str = ""


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
    ) -> None:
        self.queues = queues
        self.concurrency = max(1, concurrency)
        # Jobs claimed beyond the running threads, so that short jobs come in batches. Adapted
        # to how long jobs take (see _adapt_prefetch); starts at one batch of `concurrency`.
        self.prefetch = self.concurrency
        self._mean_run_time: float | None = None
        self.burst = burst
        self.max_jobs = max_jobs
        self.shutdown_timeout = (
            taskengine_settings.SHUTDOWN_TIMEOUT if shutdown_timeout is None else shutdown_timeout
        )
        self.store = get_store(database)
        self.info = WorkerInfo(
            id=uuid.uuid4(),
            hostname=socket.gethostname(),
            pid=os.getpid(),
            queues=list(queues),
            concurrency=self.concurrency,
        )
        self.install_signal_handlers = install_signal_handlers
        # Under run_workers' supervisor: SIGINT from a terminal reaches the whole process group,
        # and the supervisor turns it into SIGTERM for us; a worker whose supervisor vanished
        # shuts down.
        self.supervised = supervised
        self.parent_pid = os.getppid()
        self.session: WorkerSession | None = None
        self.running: dict[int, _Running] = {}
        self.inbox: queue_module.Queue[_Running | None] = queue_module.Queue()
        self.done: deque[tuple[_Running, RunResult]] = deque()
        self.outcomes: list[tuple[Outcome, ClaimedJob]] = []
        self.unlock: list[int] = []
        self.claimed_total = 0
        self.succeeded = 0
        self.failed = 0
        self.stopping = False
        self.stop_deadline: float | None = None
        self.recycle = False
        #: Burst mode also waits for retries it scheduled that fall due within BURST_RETRY_WAIT.
        self.burst_retry_until = 0.0
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self._threads: list[threading.Thread] = []
        # Checkpoints and progress reported by runner threads, written by the main thread.
        self._state_lock = threading.Lock()
        self._checkpoints: list[_CheckpointRequest] = []
        self._progress: dict[int, tuple[ClaimedJob, int, int | None]] = {}
        self._duty_due: dict[str, float] = {}
        self._wake_pending = False

    # -- the channel runner threads' task contexts use ---------------------------------------

    def save_checkpoint(self, job: ClaimedJob, state_json: str) -> str:
        request = _CheckpointRequest(job, state_json)
        with self._state_lock:
            self._checkpoints.append(request)
        self._wake()
        request.done.wait()
        return request.result

    def report_progress(self, job: ClaimedJob, current: int, total: int | None) -> None:
        with self._state_lock:
            self._progress[job.id] = (job, current, total)
        self._wake()

    def stop_reason(self, job: ClaimedJob) -> str:
        entry = self.running.get(job.id)
        if entry is None or entry.abandoned:
            return "superseded"
        return entry.stop_reason

    # -- signals and wake-ups -------------------------------------------------------------

    def request_stop(self, *_: Any) -> None:
        """Stop claiming; running jobs get ``shutdown_timeout`` seconds (a second call: none)."""
        now = time.monotonic()
        if self.stopping:
            self.stop_deadline = now
        else:
            self.stopping = True
            self.stop_deadline = now + self.shutdown_timeout
        self._wake()

    def _wake(self) -> None:
        try:
            os.write(self._wake_w, b"x")
        except (BlockingIOError, OSError):
            pass

    # -- main loop ----------------------------------------------------------------------------

    def run(self) -> int:
        if self.install_signal_handlers:
            signal.signal(signal.SIGTERM, self.request_stop)
            signal.signal(signal.SIGINT, signal.SIG_IGN if self.supervised else self.request_stop)
        for index in range(self.concurrency):
            thread = threading.Thread(
                target=self._thread_main, name=f"taskengine-runner-{index}", daemon=True
            )
            thread.start()
            self._threads.append(thread)
        logger.info(
            "worker %s started (pid %s, queues %s, concurrency %s)",
            self.info.id,
            self.info.pid,
            ",".join(self.queues) or "all",
            self.concurrency,
        )
        self._connect()
        next_heartbeat = next_rescue = 0.0
        exhausted = False  # the last claim found fewer due jobs than it asked for
        while True:
            try:
                if self.session is None:
                    self._connect()
                self._collect_done()
                self._flush()
                self._sync_state()
                now = time.monotonic()
                if self.supervised and not self.stopping and os.getppid() != self.parent_pid:
                    logger.error("worker %s: supervisor exited; shutting down", self.info.id)
                    self.request_stop()
                self._enforce_timeouts(now)
                if self.stopping or self.recycle:
                    self._return_unstarted()
                    if self.stopping:
                        # Checkpointing tasks stop at their next checkpoint and are requeued
                        # with it, so a deploy does not throw long work away.
                        for entry in self.running.values():
                            entry.stop_reason = entry.stop_reason or "shutdown"
                    if not self.running and not self.outcomes:
                        break
                    if self.stop_deadline is not None and now >= self.stop_deadline:
                        self._interrupt_running()
                        self._flush()
                        break
                else:
                    exhausted = self._claim() or exhausted
                if now >= next_heartbeat:
                    self._heartbeat()
                    next_heartbeat = now + taskengine_settings.HEARTBEAT_INTERVAL
                if now >= next_rescue:
                    if self._rescue() and not (self.stopping or self.recycle):
                        self._claim()
                    next_rescue = now + taskengine_settings.RESCUE_INTERVAL
                if not self.burst and not self.stopping:
                    self._perform_duties(now)
                if self._finished_work(exhausted):
                    break
                exhausted = False
                self._wait(min(next_heartbeat, next_rescue))
            except _DB_ERRORS as exc:
                self._lost_connection(exc)
        self._shutdown()
        return EXIT_RECYCLE if self.recycle and not self.stopping else 0

    def _finished_work(self, exhausted: bool) -> bool:
        idle = not self.running and not self.outcomes and not self.done
        if self.max_jobs is not None and self.claimed_total >= self.max_jobs and idle:
            return True
        return self.burst and exhausted and idle and time.monotonic() >= self.burst_retry_until

    def _room(self) -> int:
        """How many jobs to claim now: refill once half the prefetched buffer is used."""
        in_flight = len(self.running)
        if in_flight > self.concurrency + self.prefetch // 2:
            return 0
        room = self.concurrency + self.prefetch - in_flight
        if self.max_jobs is not None:
            room = min(room, self.max_jobs - self.claimed_total)
        return max(0, room)

    def _adapt_prefetch(self, run_time: float) -> None:
        """Prefetch about PREFETCH_WINDOW seconds of work: many very short jobs per claim, none
        beyond the threads for long ones (a prefetched job waits; others could have run it)."""
        mean = self._mean_run_time
        mean = run_time if mean is None else 0.8 * mean + 0.2 * run_time
        self._mean_run_time = mean
        window = PREFETCH_WINDOW * self.concurrency
        self.prefetch = max(0, min(MAX_PREFETCH, int(window / max(mean, 1e-5))))

    def _claim(self) -> bool:
        """Claim up to the free capacity; return True if fewer due jobs were found than asked."""
        room = self._room()
        if room <= 0:
            return False
        assert self.session is not None
        jobs = self.session.claim(room)
        for job in jobs:
            entry = _Running(job)
            self.running[job.id] = entry
            self.inbox.put(entry)
        self.claimed_total += len(jobs)
        return len(jobs) < room

    def _wait(self, next_timer: float) -> None:
        now = time.monotonic()
        timeout = max(0.0, next_timer - now)
        can_claim = not self.stopping and not self.recycle and (self._room() > 0)
        if can_claim:
            timeout = min(timeout, taskengine_settings.POLL_INTERVAL)
        if self.stop_deadline is not None:
            timeout = min(timeout, max(0.0, self.stop_deadline - now))
        for entry in self.running.values():
            if entry.job.timeout and entry.started is not None and not entry.abandoned:
                timeout = min(timeout, max(0.0, entry.started + entry.job.timeout - now))
        self._wake_pending = False
        if self.done:
            return
        if can_claim and self.session is not None and self.session.drain_notifications():
            # A notification that arrived during another query waits inside the driver, where
            # select() cannot see it: claim now instead of sleeping until the next poll.
            return
        fds = [self._wake_r]
        session_fd = self.session.wait_fileno() if self.session is not None else None
        if can_claim and session_fd is not None:
            fds.append(session_fd)
        try:
            readable, _, _ = select.select(fds, [], [], timeout)
        except InterruptedError:
            readable = []
        if self._wake_r in readable:
            try:
                while os.read(self._wake_r, 4096):
                    pass
            except BlockingIOError:
                pass
        if session_fd is not None and session_fd in readable and self.session is not None:
            self.session.drain_notifications()

    # -- running jobs --------------------------------------------------------------------

    def _sync_state(self) -> None:
        """Write pending checkpoints and progress in one round trip; answer waiting threads."""
        with self._state_lock:
            requests, self._checkpoints = self._checkpoints, []
            progress, self._progress = self._progress, {}
        if not requests and not progress:
            return
        writes: list[StateWrite] = []
        live_requests = []
        for request in requests:
            entry = self.running.get(request.job.id)
            if entry is None or entry.abandoned:
                request.result = "superseded"
                request.done.set()
                continue
            live_requests.append(request)
            update = progress.pop(request.job.id, None)
            writes.append(
                StateWrite(
                    job_id=request.job.id,
                    token=request.job.token,
                    checkpoint_json=request.state_json,
                    progress_current=update[1] if update else None,
                    progress_total=update[2] if update else None,
                )
            )
        for job, current, total in progress.values():
            if job.id in self.running:
                writes.append(StateWrite(job.id, job.token, None, current, total))
        assert self.session is not None
        try:
            applied = self.session.save_state(writes)
        except BaseException:
            # Keep them for after the reconnect: a checkpoint call returns only once saved.
            with self._state_lock:
                self._checkpoints[:0] = live_requests
            raise
        for request in live_requests:
            entry = self.running.get(request.job.id)
            if request.job.id not in applied or entry is None:
                request.result = "superseded"
            else:
                if applied[request.job.id] and not entry.stop_reason:
                    entry.stop_reason = applied[request.job.id]
                request.result = entry.stop_reason
            request.done.set()

    def _release_waiting_threads(self) -> None:
        with self._state_lock:
            requests, self._checkpoints = self._checkpoints, []
        for request in requests:
            request.result = "superseded"
            request.done.set()

    def _thread_main(self) -> None:
        while True:
            entry = self.inbox.get()
            if entry is None:
                return
            entry.started = time.monotonic()
            try:
                result = run_attempt(entry.job, self.store, self.info.id, self)
            except BaseException as exc:  # noqa: BLE001 - report, never lose the job
                logger.exception("internal error running job %s", entry.job.id)
                result = RunResult(_crash_outcome(entry.job, exc))
            self.done.append((entry, result))
            # One wake-up per batch of finished jobs: the main thread clears the flag before it
            # last looks at `done` and sleeps, so a job appended after that look always wakes it.
            if not self._wake_pending:
                self._wake_pending = True
                self._wake()

    def _collect_done(self) -> None:
        while self.done:
            entry, result = self.done.popleft()
            job = entry.job
            if entry.abandoned:
                continue  # its timeout outcome was written already
            self.running.pop(job.id, None)
            if entry.started is not None:
                self._adapt_prefetch(time.monotonic() - entry.started)
            if job.locked:
                self.unlock.append(job.id)
            if not result.committed:
                self.outcomes.append((result.outcome, job))
            else:
                self._report(result.outcome, job)
                self._count(result.outcome)

    def _flush(self) -> None:
        if not self.outcomes and not self.unlock:
            return
        assert self.session is not None
        outcomes = [o for o, _ in self.outcomes]
        applied = self.session.finish(outcomes, self.unlock)
        for outcome, job in self.outcomes:
            if outcome.job_id not in applied:
                outcome.outcome = AttemptOutcome.SUPERSEDED
            elif (
                self.burst
                and outcome.status == JobStatus.QUEUED
                and outcome.outcome != AttemptOutcome.INTERRUPTED
                and outcome.retry_delay <= BURST_RETRY_WAIT
            ):
                self.burst_retry_until = max(
                    self.burst_retry_until, time.monotonic() + outcome.retry_delay + 0.05
                )
            self._report(outcome, job)
            self._count(outcome)
        self.outcomes = []
        self.unlock = []

    def _count(self, outcome: Outcome) -> None:
        if outcome.outcome == AttemptOutcome.SUCCEEDED:
            self.succeeded += 1
        elif outcome.outcome in (AttemptOutcome.FAILED, AttemptOutcome.TIMED_OUT):
            self.failed += 1

    def _report(self, outcome: Outcome, job: ClaimedJob) -> None:
        report_outcome(outcome, job)

    def _enforce_timeouts(self, now: float) -> None:
        for entry in list(self.running.values()):
            job = entry.job
            if not job.timeout or entry.started is None or entry.abandoned:
                continue
            if now - entry.started < job.timeout:
                continue
            # A thread cannot be stopped from outside: give up on the attempt, record it as
            # timed out, and replace this process once the other jobs are done.
            entry.abandoned = True
            self.running.pop(job.id, None)
            if job.locked:
                self.unlock.append(job.id)
            outcome = lifecycle.timed_out(job)
            self.outcomes.append((outcome, job))
            if not self.recycle:
                if self.stop_deadline is None:
                    self.stop_deadline = now + self.shutdown_timeout
                logger.warning(
                    "worker %s: job %s overran its timeout; this process will be replaced once "
                    "its other jobs finish",
                    self.info.id,
                    job.id,
                )
            self.recycle = True

    def _return_unstarted(self) -> None:
        """Give back claimed jobs no thread has started yet (a stop or recycle is pending)."""
        unstarted = []
        while True:
            try:
                entry = self.inbox.get_nowait()
            except queue_module.Empty:
                break
            if entry is not None:
                unstarted.append(entry)
        if unstarted:
            self._interrupt(unstarted, "the worker stopped before the attempt started")

    def _interrupt_running(self) -> None:
        """Return the jobs still running at the shutdown deadline to the queue."""
        self._interrupt(
            list(self.running.values()),
            lifecycle.SHUTDOWN_ERROR,
        )

    def _interrupt(self, entries: list[_Running], error: str) -> None:
        for entry in entries:
            job = entry.job
            self.running.pop(job.id, None)
            entry.abandoned = True
            if job.locked:
                self.unlock.append(job.id)
            self.outcomes.append((lifecycle.interrupted(job, error), job))

    # -- liveness ----------------------------------------------------------------------

    def _perform_duties(self, now: float) -> None:
        for duty in DUTIES:
            if now < self._duty_due.get(duty.name, 0.0):
                continue
            self._duty_due[duty.name] = now + duty.interval
            try:
                duty.run(self.store.alias)
            except Exception:  # noqa: BLE001 - housekeeping must never stop the worker
                logger.exception("worker %s: %s failed", self.info.id, duty.name)
                connections[self.store.alias].close_if_unusable_or_obsolete()

    def _heartbeat(self) -> None:
        assert self.session is not None
        requests = self.session.heartbeat(
            [e.job for e in self.running.values()], self.succeeded, self.failed
        )
        for job_id, reason in requests.items():
            entry = self.running.get(job_id)
            if entry is not None and not entry.stop_reason:
                entry.stop_reason = reason

    def _rescue(self) -> bool:
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

    def _connect(self) -> None:
        delay = 0.2
        while True:
            try:
                session = self.store.open_session(self.info)
                session.register()
                session.relock([e.job for e in self.running.values()])
                self.session = session
                return
            except _DB_ERRORS as exc:
                if (
                    self.stopping
                    and self.stop_deadline is not None
                    and time.monotonic() >= self.stop_deadline
                ):
                    raise SystemExit(1) from exc
                logger.error(
                    "worker %s: cannot reach the database (%s); retrying in %.1f s",
                    self.info.id,
                    str(exc).strip() or type(exc).__name__,
                    delay,
                )
                self._sleep(delay)
                delay = min(delay * 2, 10.0)

    def _lost_connection(self, exc: BaseException) -> None:
        logger.error(
            "worker %s: database error (%s); reconnecting",
            self.info.id,
            str(exc).strip() or type(exc).__name__,
        )
        if self.session is not None:
            self.session.close()
            self.session = None
        self._sleep(0.1)

    def _sleep(self, seconds: float) -> None:
        try:
            select.select([self._wake_r], [], [], seconds)
        except InterruptedError:
            pass

    def _shutdown(self) -> None:
        self._release_waiting_threads()
        for _ in self._threads:
            self.inbox.put(None)
        if self.session is not None:
            try:
                self.session.unregister()
            except _DB_ERRORS:
                pass
            self.session.close()
        logger.info(
            "worker %s stopped: %s succeeded, %s failed attempts",
            self.info.id,
            self.succeeded,
            self.failed,
        )


def report_outcome(outcome: Outcome, job: ClaimedJob) -> None:
    """One log line and a ``job_finished`` signal per finished attempt (a worker process, or
    the in-process runner of :mod:`django_taskengine.testing`)."""
    _log_outcome(outcome, job)
    if job_finished.has_listeners():
        # Robust: one receiver's error neither stops the others nor the worker.
        responses = job_finished.send_robust(
            sender=_registered(job.task_name),
            job_id=job.id,
            task_name=job.task_name,
            queue=job.queue,
            attempt=job.attempt,
            outcome=str(outcome.outcome),
            status=str(outcome.status),
            duration=(outcome.finished_at - outcome.started_at).total_seconds(),
            error=outcome.error,
        )
        errors = [error for _, error in responses if isinstance(error, Exception)]
        for error in errors:
            logger.error("a job_finished receiver failed for job %s", job.id, exc_info=error)
        if errors:
            # A receiver that queried through a connection a database restart broke: close it,
            # or every later receiver would fail on it too (Django reconnects on next use).
            connection = connections[taskengine_settings.DATABASE]
            if connection.connection is not None and not connection.is_usable():
                connection.close()


def _log_outcome(outcome: Outcome, job: ClaimedJob) -> None:
    duration_ms = (outcome.finished_at - outcome.started_at).total_seconds() * 1000
    if outcome.outcome == AttemptOutcome.SUCCEEDED:
        what, level = "succeeded", logging.INFO
    elif outcome.outcome in (AttemptOutcome.PAUSED, AttemptOutcome.CANCELLED):
        what, level = f"{outcome.status} at a checkpoint", logging.INFO
    elif outcome.outcome == AttemptOutcome.SUPERSEDED:
        what, level = "superseded (result discarded)", logging.WARNING
    elif outcome.status == JobStatus.QUEUED and outcome.outcome == AttemptOutcome.INTERRUPTED:
        what, level = f"requeued ({outcome.error})", logging.WARNING
    elif outcome.status == JobStatus.QUEUED:
        what = f"failed, retry in {outcome.retry_delay:.2f} s: {outcome.error}"
        level = logging.WARNING
    else:
        what, level = f"failed: {outcome.error}", logging.ERROR
    logger.log(
        level,
        "%s job %s attempt %s/%s %s (%.1f ms)",
        job.task_name,
        job.id,
        job.attempt,
        job.max_attempts,
        what,
        duration_ms,
        extra={
            "task_name": job.task_name,
            "job_id": job.id,
            "attempt": job.attempt,
            "queue": job.queue,
            "outcome": outcome.outcome,
            "job_status": outcome.status,
            "duration_ms": duration_ms,
        },
    )


def _registered(task_name: str) -> object:
    return find_task(task_name)


def _crash_outcome(job: ClaimedJob, exc: BaseException) -> Outcome:
    return lifecycle.raised(job, exc, with_traceback=False)
