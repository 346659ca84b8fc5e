"""The context a ``@task(takes_context=True)`` receives as its first argument: who the attempt
is, its last checkpoint, how it saves progress and learns that it should stop, and how it waits
durably (``ctx.sleep``)."""

from __future__ import annotations

import datetime as dt
import time
import uuid
from collections.abc import Callable
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Protocol

from .conf import taskengine_settings
from .core.limits import EVENT_NAME_MAX, check_name
from .serialization import dump_checkpoint, to_json
from .snooze import SNOOZE_MAX_SECONDS, check_snooze_seconds

if TYPE_CHECKING:
    from .store import ClaimedJob


class StopJob(BaseException):
    """Raised by :meth:`TaskContext.checkpoint` to stop the task there.

    ``reason`` is "pause", "cancel" or "shutdown" (the job goes back to the queue), or
    "superseded" (the attempt lost its job). It derives from BaseException, like
    KeyboardInterrupt, so that a task's ``except Exception`` does not swallow it.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class SleepRequest(BaseException):
    """Raised by :meth:`TaskContext.sleep` and :meth:`TaskContext.wait_for_event` to end the
    attempt: the job is due again after ``seconds`` (or when the event ``waiting_for`` is sent),
    its durable waits then ``waits_json``. A BaseException, like :class:`StopJob`, so that a
    task's ``except Exception`` does not swallow it."""

    def __init__(self, seconds: float, waits_json: str, waiting_for: str | None = None) -> None:
        super().__init__(seconds, waits_json, waiting_for)
        self.seconds = seconds
        self.waits_json = waits_json
        self.waiting_for = waiting_for


class ContextChannel(Protocol):
    """How a context talks to whoever runs it (a worker process, or an in-process runner)."""

    def save_checkpoint(self, job: ClaimedJob, state_json: str) -> str | None:
        """Durably save; return a stop reason ("" or None for none)."""

    def report_progress(self, job: ClaimedJob, current: int, total: int | None) -> None: ...

    def stop_reason(self, job: ClaimedJob) -> str | None: ...


class TaskContext:
    """What a running attempt knows about itself, and its checkpoints.

    ``job_id``; ``attempt`` (1 on the first run); ``idempotency_key`` (below), for external
    APIs that deduplicate requests; ``checkpoint_state``, the state the last :meth:`checkpoint`
    saved (``None`` on a first run); ``should_stop``, True once a pause, cancel or shutdown has
    been asked for.
    """

    def __init__(
        self, job: ClaimedJob, channel: ContextChannel | None = None, atomic: bool = False
    ) -> None:
        self._job = job
        self._channel = channel
        self._atomic = atomic
        self.job_id: int = job.id
        self.attempt: int = job.attempt
        self.queue: str = job.queue
        self.task_name: str = job.task_name
        self.checkpoint_state: Any = job.checkpoint
        self._uid: uuid.UUID | None = job.uid
        #: The durable waits the job's run has done, and how many of them this call has met.
        self._waits: Any = job.waits or []
        self._waits_met = 0
        #: The attempt's clock: the database's at its start, and this process's since.
        self._started = job.started_at.timestamp() if job.started_at else time.time()
        self._began = time.monotonic()
        self._dependency_results: dict[str, Any] | None = None

    @property
    def idempotency_key(self) -> str:
        """``taskengine-<job uid>``: the same for every attempt of one run of the job (automatic
        retries, rescues after a worker died, pauses and resumes), a new one when an operator
        retries the job, and never the same for two jobs, even across databases. The claim
        carries the uid.
        """
        if self._uid is None:
            raise RuntimeError(
                f"job {self.job_id} was handed to its task without its uid: a ClaimedJob made "
                "by hand needs uid= (the job row's) for ctx.idempotency_key"
            )
        return f"taskengine-{self._uid}"

    @property
    def dependency_results(self) -> dict[str, Any]:
        """The results of the jobs this one waited for (``.using(after=…)``), by job id as a
        string; ``{}`` if it waited for none. Read from the database on first use."""
        if self._dependency_results is None:
            from .store.orm_dependencies import dependency_results

            self._dependency_results = dependency_results(taskengine_settings.DATABASE, self.job_id)
        return self._dependency_results

    @property
    def should_stop(self) -> bool:
        return bool(self._channel and self._channel.stop_reason(self._job))

    def checkpoint(self, state: Any) -> None:
        """Save ``state`` (JSON) durably, in its own transaction, before returning.

        A retry after a crash or an error, and a resume after a pause, start with
        ``ctx.checkpoint_state`` set to it. If a pause, cancel or shutdown was asked for, the
        task stops here (this raises :class:`StopJob`; let it propagate).
        """
        if self._atomic:
            raise TypeError(
                f"{self.task_name}: ctx.checkpoint() is not available in an atomic task: its "
                "database writes roll back on a crash, so a checkpoint saved apart from them "
                "would claim work that was undone. Drop atomic=True, or commit in smaller jobs."
            )
        state_json = dump_checkpoint(state)
        self.checkpoint_state = state
        if self._channel is None:
            return
        reason = self._channel.save_checkpoint(self._job, state_json)
        if reason:
            raise StopJob(reason)

    def sleep(self, seconds: float | Decimal | dt.timedelta) -> None:
        """Sleep durably: end this attempt and have the job due again ``seconds`` from now (a
        number ≥ 0 or a ``timedelta``), without holding a worker thread meanwhile and without
        using up an attempt (its record says ``snoozed``).

        The task is then called again from its first line, with its checkpoint, and this same
        call (the first ``sleep``, the second…, in the order the task makes them) returns at
        once. Work done before it runs again unless the checkpoint says it was done: save
        state with :meth:`checkpoint` before sleeping. Like the checkpoint, the sleeps done are
        kept across retries. Not available in an ``atomic`` task (its writes would roll back).
        """
        self._refuse_in_atomic("sleep")
        delay = check_snooze_seconds(seconds, "ctx.sleep")
        if self._done_before("a sleep", lambda done: "sleep" in done) is not None:
            return
        raise SleepRequest(delay, to_json([*self._waits, {"sleep": delay}]))

    def wait_for_event(
        self, name: str, timeout: float | Decimal | dt.timedelta | None = None
    ) -> Any:
        """Wait durably for ``send_event(name, payload)``; return the payload, or ``None`` if
        ``timeout`` seconds (a number ≥ 0 or a ``timedelta``; ``None``: no end) pass first.

        The event counts if it was sent after the job was enqueued and before the wait timed
        out, even before the task got here: then this returns at once. Otherwise the attempt
        ends and the job is parked, holding no thread and using up no attempt, until the
        event is sent or the timeout passes; the task is then called again from its first line,
        as after :meth:`sleep`, and this same call returns the payload (or ``None``).
        """
        self._refuse_in_atomic("wait_for_event")
        check_name(name, "ctx.wait_for_event(name)", max_length=EVENT_NAME_MAX)
        seconds = (
            SNOOZE_MAX_SECONDS
            if timeout is None
            else check_snooze_seconds(timeout, "ctx.wait_for_event", "timeout")
        )
        done = self._done_before(f"a wait for event {name!r}", lambda d: d.get("event") == name)
        now = self._started + time.monotonic() - self._began
        until = float(done["until"]) if done is not None else now + seconds
        if done is None:
            self._waits = [*self._waits, {"event": name, "until": until}]
        from .events import first_event

        found, payload = first_event(name, self.job_id, until)
        if found:
            return payload
        if now >= until:
            return None
        raise SleepRequest(until - now, to_json(self._waits), waiting_for=name)

    def _refuse_in_atomic(self, what: str) -> None:
        if self._atomic:
            raise TypeError(
                f"{self.task_name}: ctx.{what}() is not available in an atomic task: the "
                "attempt ends at the wait and its transaction rolls back. Drop atomic=True, or "
                "raise Snooze to try the whole task again later."
            )

    def _done_before(self, kind: str, matches: Callable[[dict[str, Any]], bool]) -> Any:
        """The record of this durable wait (the next in call order) if an earlier run of the
        job made it, else None; ``matches`` tells whether that record is of the same wait."""
        if not isinstance(self._waits, list):
            raise RuntimeError(
                f"{self.task_name}: the durable waits of job {self.job_id} cannot be read "
                f"({self._waits!r:.120}); the waits done cannot be told apart from those to do"
            )
        index = self._waits_met
        self._waits_met += 1
        if index >= len(self._waits):
            return None
        done = self._waits[index]
        if not (isinstance(done, dict) and matches(done)):
            raise RuntimeError(
                f"{self.task_name}: durable wait #{index + 1} of job {self.job_id} was "
                f"{done!r:.80} on an earlier run, not {kind}: a task must make its durable "
                "waits in the same order every time it runs"
            )
        return done

    def progress(self, current: int, total: int | None = None) -> None:
        """Report progress (shown in the admin); cheap: written with the next batch."""
        if isinstance(current, bool) or not isinstance(current, int):
            raise TypeError(f"progress(current) takes an int, not {current!r}")
        if total is not None and (isinstance(total, bool) or not isinstance(total, int)):
            raise TypeError(f"progress(total) takes an int or None, not {total!r}")
        if self._channel is not None:
            self._channel.report_progress(self._job, current, total)

    def __repr__(self) -> str:
        return f"<TaskContext job={self.job_id} attempt={self.attempt}>"
