"""Checkpoints and progress of running tasks, saved by the main thread for the runner threads.

A task's context (:class:`~django_taskengine.context.TaskContext`) talks to the worker through
this :class:`~django_taskengine.context.ContextChannel`. A checkpoint blocks its thread until
saved; progress is fire-and-forget. The main thread writes all of them pending in one
``save_state`` round trip, and answers each waiting thread with the job's stop reason ("" to go
on), or "superseded" when the attempt no longer owns its job.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from ..core.lifecycle import ClaimedJob
from ..store import StateWrite, WorkerSession
from .claimer import Running


@dataclass
class CheckpointRequest:
    """A runner thread waiting for its checkpoint to be saved by the main thread."""

    job: ClaimedJob
    state_json: str
    done: threading.Event = field(default_factory=threading.Event)
    #: After ``done``: the stop reason ("" to go on), or "superseded".
    result: str = ""


class StateSync:
    """The worker's side of the runner threads' task contexts."""

    def __init__(self, running: dict[int, Running], wake: Callable[[], None]) -> None:
        #: The worker's claimed jobs (shared with the claimer; changed by the main thread only).
        self.running = running
        self._wake = wake
        self._lock = threading.Lock()
        self._checkpoints: list[CheckpointRequest] = []
        self._progress: dict[int, tuple[ClaimedJob, int, int | None]] = {}

    # -- called from runner threads ------------------------------------------------------------

    def save_checkpoint(self, job: ClaimedJob, state_json: str) -> str:
        """Block until the main thread saved the checkpoint; return the stop reason."""
        request = CheckpointRequest(job, state_json)
        with self._lock:
            self._checkpoints.append(request)
        self._wake()
        request.done.wait()
        return request.result

    def report_progress(self, job: ClaimedJob, current: int, total: int | None) -> None:
        """Keep the latest progress of the job, for the main thread's next write."""
        with self._lock:
            self._progress[job.id] = (job, current, total)
        self._wake()

    def stop_reason(self, job: ClaimedJob) -> str:
        """Why the job's task should stop ("" for no reason), or "superseded"."""
        entry = self.running.get(job.id)
        if entry is None or entry.abandoned:
            return "superseded"
        return entry.stop_reason

    # -- called from the main thread -----------------------------------------------------------

    def sync(self, session: WorkerSession | None) -> None:
        """Write pending checkpoints and progress in one round trip; answer waiting threads."""
        with self._lock:
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
        assert session is not None
        try:
            applied = session.save_state(writes)
        except BaseException:
            # Keep them for after the reconnect: a checkpoint call returns only once saved.
            with self._lock:
                self._checkpoints[:0] = live_requests
            raise
        # Every reply brings the job's pending stop request, as a heartbeat does: a hard stop
        # is learned with the progress of a task that never checkpoints, too.
        for job_id, request_now in applied.items():
            entry = self.running.get(job_id)
            if entry is not None:
                entry.job.stop_requested = request_now
                if request_now and not entry.stop_reason:
                    entry.stop_reason = request_now
        for request in live_requests:
            entry = self.running.get(request.job.id)
            if request.job.id not in applied or entry is None:
                request.result = "superseded"
            else:
                # entry.job.stop_requested, set above, is what the completer decides the
                # attempt's outcome with (see completer.py).
                request.result = entry.stop_reason
            request.done.set()

    def release_waiting_threads(self) -> None:
        """Answer every waiting checkpoint with "superseded" (the worker is exiting)."""
        with self._lock:
            requests, self._checkpoints = self._checkpoints, []
        for request in requests:
            request.result = "superseded"
            request.done.set()
