"""The runner threads: each takes a claimed job from the inbox, runs one attempt on its own
Django connection, and hands the result to the completer. The main thread never runs task
code, so heartbeats and locks stay alive while tasks are busy."""

from __future__ import annotations

import logging
import queue as queue_module
import threading
import time
import uuid
from collections import deque

from ..context import ContextChannel
from ..core import lifecycle
from ..store import Store
from .claimer import Running
from .runner import RunResult, TaskLoop, run_attempt
from .wakeup import WakeUp

logger = logging.getLogger("django_taskengine.worker")


class RunnerPool:
    """``count`` daemon threads between the claimer's inbox and the completer's ``done``."""

    def __init__(
        self,
        count: int,
        *,
        inbox: queue_module.SimpleQueue[Running | None],
        done: deque[tuple[Running, RunResult]],
        store: Store,
        worker_id: uuid.UUID,
        channel: ContextChannel,
        wakeup: WakeUp,
    ) -> None:
        self.count = count
        self.inbox = inbox
        self.done = done
        self.store = store
        self.worker_id = worker_id
        self.channel = channel
        self.wakeup = wakeup
        self.threads: list[threading.Thread] = []

    def start(self) -> None:
        for index in range(self.count):
            thread = threading.Thread(
                target=self._thread_main, name=f"taskengine-runner-{index}", daemon=True
            )
            thread.start()
            self.threads.append(thread)

    def stop(self) -> None:
        """Tell each thread to exit once it is idle (a thread still running a task finishes it)."""
        for _ in self.threads:
            self.inbox.put(None)

    def _thread_main(self) -> None:
        # The thread's event loop for its async def tasks, closed when the thread exits.
        task_loop = TaskLoop()
        try:
            self._run_jobs(task_loop)
        finally:
            task_loop.close()

    def _run_jobs(self, task_loop: TaskLoop) -> None:
        inbox, done, wakeup = self.inbox, self.done, self.wakeup
        # True while the thread's connections are as its last attempt left them: idle, fresh.
        settled = False
        while True:
            try:
                entry = inbox.get_nowait()
            except queue_module.Empty:
                # Waited for: a connection may have grown stale meanwhile (CONN_MAX_AGE).
                entry = inbox.get()
                settled = False
            if entry is None:
                return
            entry.started = time.monotonic()
            try:
                result = run_attempt(
                    entry.job,
                    self.store,
                    self.worker_id,
                    self.channel,
                    task_loop=task_loop,
                    settled=settled,
                )
                settled = True
            except BaseException as exc:  # noqa: BLE001 - report, never lose the job
                # run_attempt fails a job for anything its task raises: this is the engine's own.
                logger.exception("internal error running job %s", entry.job.id)
                result = RunResult(lifecycle.raised(entry.job, exc))
                settled = False
            entry.ended = time.monotonic()
            done.append((entry, result))
            # One wake-up per batch of finished jobs: the main thread clears the flag before it
            # last looks at `done` and sleeps, so a job appended after that look always wakes it.
            if not wakeup.pending:
                wakeup.pending = True
                wakeup.wake()
