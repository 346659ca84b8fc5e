"""How :meth:`Job.wait <django_taskengine.models.Job.wait>` waits for a job to finish: told by
the database where the store can tell (PostgreSQL: a notification as the worker writes the end
of the job's attempt), by polling otherwise.

A store that can tell registers, per database alias, a *watch*: a context manager that, given a
job id, returns a callable ``wake(seconds)`` that blocks until the job is said to have finished
or the seconds have passed (or None when it cannot watch: then the waiter polls). The watch is
set up before the waiter's first look at the job, so that an end written in between is not
missed. Imports nothing of the engine but its settings: the models use it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext

#: ``wake(seconds)``: block until the watched job is said to have finished, or for ``seconds``.
Wake = Callable[[float], None]
Watch = Callable[[int], AbstractContextManager[Wake | None]]

_watches: dict[str, Watch] = {}

#: Polling starts at this delay and doubles up to the caller's poll interval.
FIRST_POLL = 0.005


def register(alias: str, watch: Watch) -> None:
    """Have waiters on database ``alias`` told of finished jobs by ``watch``."""
    _watches[alias] = watch


def wait_until(
    finished: Callable[[], bool],
    *,
    alias: str,
    job_id: int,
    timeout: float | None,
    poll_interval: float,
) -> bool:
    """Until ``finished()`` (which reads the job again) says so: True; False once ``timeout``
    seconds have passed (``None``: never). Told, where the store can tell, and looking again
    every ``poll_interval`` seconds all the same (an end no worker writes, such as an
    operator's cancel, is not told); else polling, from 5 ms up to ``poll_interval``."""
    deadline = None if timeout is None else time.monotonic() + timeout
    watch = _watches.get(alias)
    with watch(job_id) if watch is not None else nullcontext() as wake:
        delay = poll_interval if wake is not None else min(FIRST_POLL, poll_interval)
        while True:
            if finished():
                return True
            now = time.monotonic()
            if deadline is not None and now >= deadline:
                return False
            pause = delay if deadline is None else min(delay, deadline - now)
            if wake is not None:
                wake(pause)
            else:
                time.sleep(pause)
                delay = min(delay * 2, poll_interval)
