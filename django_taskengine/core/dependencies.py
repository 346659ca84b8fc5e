"""Dependencies between jobs: when a job enqueued with ``.using(after=[…])`` may run.

A job with dependencies is *blocked* (``Job.blocked``; status queued or paused, due never) until
every job it depends on is finished. Then :func:`decide` says what becomes of it, from each
dependency's policy (``on_dependency_failure``) and status:

* ``"cancel"`` (the default): it runs if every dependency succeeded; otherwise it ends
  ``cancelled``, its error naming the dependency that did not succeed (and the jobs that
  depend on it follow, the same way).
* ``"run"``: it runs once every dependency is finished, however it ended.
* ``"failure"`` (a batch's ``on_failure`` callback): it runs only if one did not succeed.

A dependency that is gone (deleted by retention before the decision) did not succeed.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field

from .statuses import JobStatus, is_terminal

CANCEL = "cancel"
RUN = "run"
FAILURE = "failure"
#: The values ``.using(on_dependency_failure=…)`` takes.
PUBLIC_POLICIES = (CANCEL, RUN)
POLICIES = (CANCEL, RUN, FAILURE)
#: The longest policy name (the column's size).
POLICY_MAX = 8

#: The start of the error of a job cancelled because of a dependency: a retry of that
#: dependency reopens it (see django_taskengine/operations/jobs.py).
CANCELLED_PREFIX = "cancelled: dependency "

#: A batch (django_taskengine/workflows.py) is a workflow of this kind; its callbacks are the
#: steps with these names, each with what a job of the batch that did not succeed means.
BATCH = "batch"
BATCH_CALLBACKS = {"on_complete": RUN, "on_success": CANCEL, "on_failure": FAILURE}

WAIT = "wait"
#: Most dependencies one job may have (bounds the statements that read them).
MOST_DEPENDENCIES = 10_000


@dataclass(frozen=True)
class Required:
    """One dependency as the decision sees it."""

    job_id: int
    #: Its status, or None if the job is gone.
    status: str | None
    policy: str


@dataclass(frozen=True)
class Decision:
    """What becomes of a blocked job: WAIT, RUN or CANCEL (with the error to record)."""

    action: str
    error: str = ""


def decide(required: Sequence[Required]) -> Decision:
    """What becomes of a blocked job whose dependencies are ``required``."""
    if any(r.status is not None and not is_terminal(r.status) for r in required):
        return Decision(WAIT)
    unmet = [r for r in required if r.status != JobStatus.SUCCEEDED]
    for r in required:
        if r.policy == CANCEL and r in unmet:
            return Decision(CANCEL, _why(r))
    if required and all(r.policy == FAILURE for r in required) and not unmet:
        return Decision(CANCEL, f"{CANCELLED_PREFIX}jobs all succeeded (an on_failure callback)")
    return Decision(RUN)


def _why(r: Required) -> str:
    how = "is gone" if r.status is None else f"ended {r.status}"
    return f"{CANCELLED_PREFIX}job {r.job_id} {how}"


def batch_counts(batch_id: int, statuses: Sequence[str | None]) -> dict[str, int]:
    """The ``batch`` keyword argument of a batch's callback: how its jobs ended."""
    counts = {"id": batch_id, "succeeded": 0, "failed": 0, "cancelled": 0}
    for status in statuses:
        if status in ("succeeded", "failed", "cancelled"):
            counts[status] += 1
        else:  # gone (deleted) before the count: it did not succeed
            counts["cancelled"] += 1
    return counts


@dataclass
class Waiting:
    """A blocked job with nothing left to wait for, as the decision sees it."""

    job_id: int
    status: str
    queue: str
    required: list[Required]
    #: The run_after it was enqueued with (the same on each of its rows), or None.
    run_after: dt.datetime | None = None
    #: The batch whose callback it is (it gets ``batch=``), or None.
    batch_id: int | None = None


@dataclass
class Decisions:
    """What :func:`decide_all` decided, ready to write."""

    #: Jobs that run: job id -> (due at, at the earliest: None for now; ``batch=`` or None).
    run: dict[int, tuple[dt.datetime | None, dict[str, int] | None]] = field(default_factory=dict)
    #: Jobs cancelled, with the error to record: what waits for them is decided next.
    cancel: dict[int, str] = field(default_factory=dict)
    #: Jobs no longer waiting that an operator ended meanwhile (only unblocked).
    ended: list[int] = field(default_factory=list)
    #: Queues of the jobs due at once, whose idle workers are woken.
    woken: set[str] = field(default_factory=set)


def decide_all(waiting: Sequence[Waiting], now: dt.datetime) -> Decisions:
    """Decide for each of ``waiting`` (:func:`decide`), by the clock ``now``."""
    decisions = Decisions()
    for job in waiting:
        if job.status not in (JobStatus.QUEUED, JobStatus.PAUSED):
            decisions.ended.append(job.job_id)
            continue
        decision = decide(job.required)
        if decision.action == RUN:
            counts = None
            if job.batch_id is not None:
                counts = batch_counts(job.batch_id, [r.status for r in job.required])
            due = job.run_after if job.run_after is not None and job.run_after > now else None
            decisions.run[job.job_id] = (due, counts)
            if due is None and job.status == JobStatus.QUEUED:
                decisions.woken.add(job.queue)
        elif decision.action == CANCEL:
            decisions.cancel[job.job_id] = decision.error
    return decisions
