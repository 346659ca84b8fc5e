"""``run_workers``' parent process: starts worker processes, restarts any that die, and turns
signals into shutdowns.

SIGTERM or SIGINT: a graceful shutdown (the supervisor sends SIGTERM to each worker process:
no new claims, running jobs get the shutdown timeout). Deployments often signal the whole
process group (systemd's ``KillMode=control-group``, honcho, ``kill -TERM -<pgid>``), so a worker
process gets SIGTERM twice, directly and from the supervisor: a worker never takes a repeated
SIGTERM as more urgent. "Stop now" is its own signal, SIGQUIT (to the supervisor or the group),
or a second SIGTERM/SIGINT to the supervisor itself (a second Ctrl-C): the supervisor sends
SIGQUIT to each worker process, which requeues its running jobs at once and exits.

A worker process that an operator stopped from the admin (or ``taskengine worker stop``) exits
with EXIT_STOPPED and is not replaced: the others keep running, and once none is left the
supervisor exits too (code 0).
"""

from __future__ import annotations

import gc
import logging
import os
import select
import signal
import time
from typing import Any

from django.db import connections

from .operator_requests import EXIT_STOPPED
from .process import EXIT_RECYCLE, STOP_SIGNALS, WorkerProcess

logger = logging.getLogger("django_taskengine.supervisor")

#: A worker exiting with this code found a problem no restart can fix; stop everything.
EXIT_FATAL = 78


class Supervisor:
    """Keeps ``processes`` worker processes running until told to stop (or, in burst and
    max-jobs modes, until every worker has finished its work)."""

    def __init__(self, *, processes: int, worker_options: dict[str, Any]) -> None:
        self.processes = max(1, processes)
        self.worker_options = worker_options
        self.shutdown_timeout = float(worker_options["shutdown_timeout"])
        self.children: dict[int, int] = {}  # pid -> slot
        self.stopping = False
        self.stop_signal = signal.SIGTERM
        self.kill_deadline: float | None = None
        self.fatal = False
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self._crash_times: dict[int, list[float]] = {}
        #: Slots to restart later (slot -> time.monotonic() when due), after repeated deaths.
        self._delayed: dict[int, float] = {}

    @property
    def finite(self) -> bool:
        return bool(self.worker_options.get("burst") or self.worker_options.get("max_jobs"))

    def run(self) -> int:
        signal.set_wakeup_fd(self._wake_w)
        signal.signal(signal.SIGTERM, self._on_stop_signal)
        signal.signal(signal.SIGINT, self._on_stop_signal)
        signal.signal(signal.SIGQUIT, self._on_stop_now_signal)
        signal.signal(signal.SIGCHLD, lambda *_: None)
        logger.info("supervisor %s starting %s worker process(es)", os.getpid(), self.processes)
        for slot in range(self.processes):
            self._spawn(slot)
        while self.children or (self._delayed and not self.stopping):
            self._reap()
            self._spawn_delayed()
            if not self.children and not (self._delayed and not self.stopping):
                break
            timeout = 1.0
            if self._delayed:
                timeout = min(timeout, max(0.0, min(self._delayed.values()) - time.monotonic()))
            if self.kill_deadline is not None:
                remaining = self.kill_deadline - time.monotonic()
                if remaining <= 0:
                    for pid in list(self.children):
                        logger.error("worker process %s did not stop in time; killing it", pid)
                        _kill(pid, signal.SIGKILL)
                    self.kill_deadline = None
                else:
                    timeout = min(timeout, remaining)
            try:
                select.select([self._wake_r], [], [], timeout)
            except InterruptedError:
                pass
            try:
                while os.read(self._wake_r, 512):
                    pass
            except BlockingIOError:
                pass
        signal.set_wakeup_fd(-1)
        logger.info("supervisor %s stopped", os.getpid())
        return 1 if self.fatal else 0

    def _on_stop_signal(self, signum: int, _frame: Any) -> None:
        """SIGTERM or SIGINT: a graceful shutdown; a second one: stop now."""
        if self.stopping:
            self._on_stop_now_signal(signum, _frame)
            return
        self.stopping = True
        for pid in list(self.children):
            _kill(pid, signal.SIGTERM)
        logger.info(
            "supervisor got %s: stopping workers (running jobs get %g s; SIGQUIT or a second "
            "%s stops them now)",
            signal.Signals(signum).name,
            self.shutdown_timeout,
            signal.Signals(signum).name,
        )
        self.kill_deadline = time.monotonic() + self.shutdown_timeout + 10.0

    def _on_stop_now_signal(self, signum: int, _frame: Any) -> None:
        """SIGQUIT (or a second SIGTERM/SIGINT): workers requeue their running jobs and exit."""
        self.stopping = True
        for pid in list(self.children):
            _kill(pid, signal.SIGQUIT)
        logger.warning(
            "supervisor %s got %s: stopping now; %s worker process(es) requeue their running jobs",
            os.getpid(),
            signal.Signals(signum).name,
            len(self.children),
        )
        soon = time.monotonic() + 10.0
        self.kill_deadline = soon if self.kill_deadline is None else min(self.kill_deadline, soon)

    def _reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            slot = self.children.pop(pid, None)
            if slot is None:
                continue
            code = os.waitstatus_to_exitcode(status)
            self._after_exit(pid, slot, code)

    def _after_exit(self, pid: int, slot: int, code: int) -> None:
        if self.stopping:
            return
        if code == 0 and self.finite:
            return
        if code == EXIT_STOPPED:
            logger.warning(
                "worker process %s was stopped by an operator; not starting a new one (%s left)",
                pid,
                len(self.children),
            )
            return
        if code == EXIT_FATAL:
            logger.error("worker process %s hit an unrecoverable error; stopping", pid)
            self.fatal = True
            self._on_stop_signal(signal.SIGTERM, None)
            return
        if code == EXIT_RECYCLE:
            logger.warning("worker process %s asked to be replaced; starting a new one", pid)
            self._spawn(slot, replacing=True)
            return
        how = f"signal {signal.Signals(-code).name}" if code < 0 else f"exit code {code}"
        logger.error("worker process %s died (%s); starting a new one", pid, how)
        # Back off if this slot keeps dying right after starting (e.g. a broken import).
        now = time.monotonic()
        recent = [t for t in self._crash_times.get(slot, []) if now - t < 30] + [now]
        self._crash_times[slot] = recent
        if len(recent) > 3:
            delay = min(30.0, 2.0 ** (len(recent) - 3))
            logger.error("worker slot %s keeps dying; restarting it in %.0f s", slot, delay)
            # Later, from the main loop: the other slots are still watched meanwhile.
            self._delayed[slot] = now + delay
            return
        self._spawn(slot)

    def _spawn_delayed(self) -> None:
        now = time.monotonic()
        for slot, due in list(self._delayed.items()):
            if self.stopping:
                del self._delayed[slot]
            elif due <= now:
                del self._delayed[slot]
                self._spawn(slot)

    def _spawn(self, slot: int, *, replacing: bool = False) -> None:
        # Children must not share the parent's database connections.
        connections.close_all()
        # What the supervisor has loaded (Django, the project, the engine: tens of thousands of
        # objects that live as long as the process) is out of the new worker's collector's
        # reach: its full collections no longer walk them, nor write to the pages it shares
        # with the supervisor. The supervisor takes them back at once (unfreeze below): any
        # garbage among them stays collectable there.
        gc.freeze()
        # Until the new worker process installs its own handlers (it unblocks them then), the
        # supervisor's would run in it: hold stop signals back, pending, across the fork.
        previous_mask = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
        pid = os.fork()
        if pid != 0:
            gc.unfreeze()
            signal.pthread_sigmask(signal.SIG_SETMASK, previous_mask)
        if pid == 0:  # pragma: no cover - runs in the child
            code = 1
            try:
                signal.set_wakeup_fd(-1)
                signal.signal(signal.SIGCHLD, signal.SIG_DFL)
                os.close(self._wake_r)
                os.close(self._wake_w)
                code = WorkerProcess(
                    **self.worker_options, supervised=True, replacing=replacing
                ).run()
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else 1
            except BaseException:
                logger.exception("worker process %s crashed", os.getpid())
                code = 1
            finally:
                logging.shutdown()
                os._exit(code)
        self.children[pid] = slot
        logger.info("started worker process %s", pid)


def _kill(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass
