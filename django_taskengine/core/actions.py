"""What an operator may do to a job, in which states, and the state it leads to.

The operations layer (:mod:`django_taskengine.operations`) carries these out as one guarded
``UPDATE`` each; the admin and the CLI offer exactly the actions :func:`actions_for` lists.
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass
from typing import Any

from .ownership import RELEASED
from .statuses import JobStatus


@dataclass(frozen=True)
class JobAction:
    """One operator action on a job."""

    name: str
    #: The statuses it applies to; on any other it is refused.
    applies_to: tuple[str, ...]
    #: The status it sets (None: the status stays).
    to_status: str | None
    #: The job becomes due now.
    due_now: bool = False
    #: The job is finished by it (``finished_at`` set).
    finishes: bool = False
    #: A finished job comes back: its result and end are cleared, it gets a new budget of
    #: attempts (see :func:`retry_budget`) and a new uid, so ``ctx.idempotency_key`` changes:
    #: an external API must not take the new run for a repeat of the one that failed.
    reopens: bool = False
    #: On a running job the action is a stop request, carried out at its next checkpoint.
    stop_request: str = ""

    def changes(self, now: dt.datetime) -> dict[str, Any]:
        """The job's columns this action sets on a job that is not running."""
        changes: dict[str, Any] = {}
        if self.to_status is not None:
            changes["status"] = self.to_status
            # A paused job keeps the stop request that paused it (which pause stopped it);
            # leaving paused, or any other change of status by hand, settles it.
            changes["stop_requested"] = ""
            # A queued job a worker reserved is taken from it: the worker's start is fenced
            # out, and the job goes where the operator sent it.
            changes.update(RELEASED)
        if self.due_now:
            changes["run_after"] = now
        if self.finishes:
            changes["finished_at"] = now
        if self.reopens:
            changes.update(finished_at=None, result=None, uid=uuid.uuid4())
        return changes


JOB_ACTIONS: dict[str, JobAction] = {
    action.name: action
    for action in (
        JobAction(
            "pause",
            (JobStatus.QUEUED, JobStatus.RUNNING),
            JobStatus.PAUSED,
            stop_request="pause",
        ),
        JobAction("resume", (JobStatus.PAUSED,), JobStatus.QUEUED),
        JobAction(
            "retry",
            (JobStatus.FAILED, JobStatus.CANCELLED),
            JobStatus.QUEUED,
            due_now=True,
            reopens=True,
        ),
        JobAction(
            "cancel",
            (JobStatus.QUEUED, JobStatus.PAUSED, JobStatus.RUNNING),
            JobStatus.CANCELLED,
            finishes=True,
            stop_request="cancel",
        ),
        JobAction("run_now", (JobStatus.QUEUED,), None, due_now=True),
        # Hard stops: the running attempt is ended, its worker process replaced (see
        # django_taskengine.worker.stopping). A job that is not running is not executing: the
        # operations carry out the plain cancel or pause on it instead.
        JobAction("hard_pause", (JobStatus.RUNNING,), JobStatus.PAUSED, stop_request="pause:hard"),
        JobAction(
            "hard_cancel",
            (JobStatus.RUNNING,),
            JobStatus.CANCELLED,
            finishes=True,
            stop_request="cancel:hard",
        ),
    )
}

#: The stop requests that end the attempt instead of waiting for its next checkpoint: those of
#: the hard-stop actions.
HARD_STOP_REQUESTS = tuple(
    action.stop_request for name, action in JOB_ACTIONS.items() if name.startswith("hard_")
)

#: The pauses that stop running jobs, by origin: an operator's pause of one job, and the
#: pauses of a queue, a task type or the engine asked to stop running jobs too. A job they
#: pause keeps the value, so that the end of that pause requeues it (and only it).
SCOPE_PAUSE_REQUESTS = ("pause:queue", "pause:task", "pause:engine")
PAUSE_REQUESTS = ("pause", *SCOPE_PAUSE_REQUESTS)

#: The pending stop requests a new one may replace: a cancel overrides a pause, a hard stop
#: a cooperative one of the same or a weaker kind; nothing overrides a hard cancel, a stop does
#: not repeat, and no cooperative request takes the place of a hard one.
STOP_REQUEST_REPLACES: dict[str, tuple[str, ...]] = {
    "cancel": ("", *PAUSE_REQUESTS),
    **{pause: ("",) for pause in PAUSE_REQUESTS},
    "pause:hard": ("", *PAUSE_REQUESTS),
    "cancel:hard": ("", "cancel", *PAUSE_REQUESTS, "pause:hard"),
}


def actions_for(status: str, stop_requested: str) -> list[str]:
    """The actions that fit a job in ``status`` (with a pending stop request), in display
    order."""
    actions = [name for name, action in JOB_ACTIONS.items() if status in action.applies_to]
    if status == JobStatus.RUNNING and stop_requested:
        actions = [
            name
            for name in actions
            if stop_requested in STOP_REQUEST_REPLACES.get(JOB_ACTIONS[name].stop_request, ())
        ]
    return actions


def retry_budget(task_max_attempts: int | None, job_max_attempts: int) -> int:
    """How many more attempts an operator's retry gives: the task's current ``max_attempts``
    (the job's own when its task is not registered here), at least one. Attempts are extended,
    not reset, so attempt numbers go on from where they stopped."""
    if task_max_attempts is not None:
        return int(task_max_attempts)
    return max(1, job_max_attempts)
