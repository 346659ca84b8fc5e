"""Operator actions: pause and resume queues, task types, the engine and jobs; retry, cancel
and run jobs now.

The admin, the ``taskengine`` command and Python code all call these functions; none of them
writes job or queue rows on its own. Every change is one conditional ``UPDATE``: an action on a
job that changed state meanwhile (another operator retried it, a worker claimed it) is refused
with :class:`ActionRefused`, never applied twice.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass

from django.db import IntegrityError, transaction
from django.db.models import F, Q
from django.utils import timezone

from .conf import taskengine_settings
from .models import Job, JobStatus, Pause, PauseScope, Queue


class ActionRefused(Exception):
    """An operator action that does not apply to the object's current state."""


class NotFound(ActionRefused, LookupError):
    """The queue or job named does not exist."""


@dataclass(frozen=True)
class Expected:
    """The state an operator saw when choosing an action; the action applies only if unchanged."""

    status: str | None = None
    attempts: int | None = None


def _db(using: str | None) -> str:
    return using or taskengine_settings.DATABASE


def _until(until: dt.datetime | dt.timedelta | None) -> dt.datetime | None:
    if until is None or isinstance(until, dt.datetime):
        if until is not None and timezone.is_naive(until):
            raise ValueError(f"pause until {until!r}: pass an aware datetime")
        return until
    if isinstance(until, dt.timedelta):
        if until <= dt.timedelta(0):
            raise ValueError("a timed pause needs a positive duration")
        return timezone.now() + until
    raise TypeError(f"until must be a datetime or a timedelta, not {until!r}")


# -- queues -----------------------------------------------------------------------------


def pause_queue(
    name: str,
    *,
    by: str = "",
    reason: str = "",
    until: dt.datetime | dt.timedelta | None = None,
    stop_running: bool = False,
    using: str | None = None,
) -> Queue:
    """Pause a queue: no job of it starts after this returns, in any worker.

    Running jobs finish, unless ``stop_running``: then each is asked to pause at its next
    checkpoint (tasks without checkpoints still finish). ``until`` makes a timed pause that ends
    by itself. Creates the queue row if the queue has never been used.
    """
    _check_queue_name(name)
    queue, _ = Queue.objects.using(_db(using)).update_or_create(
        name=name,
        defaults={
            "paused": True,
            "paused_at": timezone.now(),
            "paused_by": by,
            "pause_reason": reason,
            "paused_until": _until(until),
        },
    )
    if stop_running:
        stop_running_jobs(name, "pause", using=using)
    return queue


def resume_queue(name: str, *, by: str = "", using: str | None = None) -> Queue:
    """Resume a paused queue. Raises :class:`NotFound` for a queue that does not exist."""
    db = _db(using)
    updated = (
        Queue.objects.using(db)
        .filter(name=name)
        .update(paused=False, paused_at=None, paused_by="", pause_reason="", paused_until=None)
    )
    if not updated:
        raise NotFound(_unknown_queue(name, db))
    return Queue.objects.using(db).get(name=name)


def get_queue(name: str, *, using: str | None = None) -> Queue:
    db = _db(using)
    try:
        return Queue.objects.using(db).get(name=name)
    except Queue.DoesNotExist:
        raise NotFound(_unknown_queue(name, db)) from None


def _unknown_queue(name: str, db: str) -> str:
    known = list(Queue.objects.using(db).values_list("name", flat=True)[:20])
    return f"No queue named {name!r}. Known queues: {', '.join(known) or 'none yet'}."


def _check_queue_name(name: str) -> None:
    if not isinstance(name, str) or not name or len(name) > 100:
        raise ValueError(
            f"A queue name is a non-empty string of at most 100 characters, not {name!r}"
        )


# -- the engine and task types ----------------------------------------------------------


def pause_all(
    *,
    by: str = "",
    reason: str = "",
    until: dt.datetime | dt.timedelta | None = None,
    stop_running: bool = False,
    using: str | None = None,
) -> Pause:
    """Pause every queue at once (queues paused on their own stay paused after resume_all).

    ``stop_running`` also asks every running job to pause at its next checkpoint.
    """
    pause = _pause(PauseScope.ENGINE, "", by, reason, until, using)
    if stop_running:
        stop_running_jobs(None, "pause", using=using)
    return pause


def resume_all(*, by: str = "", using: str | None = None) -> bool:
    """End the engine-wide pause; True if there was one."""
    return bool(Pause.objects.using(_db(using)).filter(scope=PauseScope.ENGINE).delete()[0])


def pause_task(
    task_name: str,
    *,
    by: str = "",
    reason: str = "",
    until: dt.datetime | dt.timedelta | None = None,
    using: str | None = None,
) -> Pause:
    """Stop starting jobs of one task type, in every queue (e.g. ``send_invoice`` while billing
    is down). The task need not be registered in this process."""
    if not task_name or len(task_name) > 255:
        raise ValueError(
            f"A task name is a non-empty string of at most 255 characters, not {task_name!r}"
        )
    return _pause(PauseScope.TASK, task_name, by, reason, until, using)


def resume_task(task_name: str, *, by: str = "", using: str | None = None) -> bool:
    """End a task type's pause; True if it was paused."""
    return bool(
        Pause.objects.using(_db(using)).filter(scope=PauseScope.TASK, target=task_name).delete()[0]
    )


def _pause(
    scope: str,
    target: str,
    by: str,
    reason: str,
    until: dt.datetime | dt.timedelta | None,
    using: str | None,
) -> Pause:
    pause, _ = Pause.objects.using(_db(using)).update_or_create(
        scope=scope,
        target=target,
        defaults={
            "paused_at": timezone.now(),
            "paused_by": by,
            "pause_reason": reason,
            "paused_until": _until(until),
        },
    )
    return pause


def active_pauses(*, using: str | None = None) -> list[Pause]:
    """Engine and task pauses in force now (expired timed pauses are left out)."""
    now = timezone.now()
    return list(
        Pause.objects.using(_db(using)).filter(
            Q(paused_until__isnull=True) | Q(paused_until__gt=now)
        )
    )


# -- jobs -------------------------------------------------------------------------------

#: Action name -> statuses it applies to.
JOB_ACTIONS: dict[str, tuple[str, ...]] = {
    "pause": (JobStatus.QUEUED, JobStatus.RUNNING),
    "resume": (JobStatus.PAUSED,),
    "retry": (JobStatus.FAILED, JobStatus.CANCELLED),
    "cancel": (JobStatus.QUEUED, JobStatus.PAUSED, JobStatus.RUNNING),
    "run_now": (JobStatus.QUEUED,),
}


def actions_for(job: Job) -> list[str]:
    """The actions that fit the job's current state, in display order."""
    actions = [action for action, statuses in JOB_ACTIONS.items() if job.status in statuses]
    if job.status == JobStatus.RUNNING and job.stop_requested:
        # Already asked to stop: only a cancel can still override a pending pause.
        actions = ["cancel"] if job.stop_requested == "pause" else []
    return actions


def pause_job(job_id: int, *, expected: Expected | None = None, using: str | None = None) -> Job:
    """queued → paused: the job is not claimed until resumed.

    A running job is asked to stop: at its next ``ctx.checkpoint()`` it becomes paused, keeping
    its checkpoint, and Resume continues from there. A task that never checkpoints finishes its
    current attempt.
    """
    if _get_job(job_id, _db(using)).status == JobStatus.RUNNING:
        return _request_stop(job_id, "pause", expected, using)
    return _transition(job_id, "pause", {"status": JobStatus.PAUSED}, expected, using)


def resume_job(job_id: int, *, expected: Expected | None = None, using: str | None = None) -> Job:
    """paused → queued."""
    return _transition(job_id, "resume", {"status": JobStatus.QUEUED}, expected, using)


def retry_job(job_id: int, *, expected: Expected | None = None, using: str | None = None) -> Job:
    """failed or cancelled → queued, due now, with a fresh set of attempts.

    Attempts are *extended*, not reset: the job keeps its history (attempt numbers go on from
    where they stopped) and may run ``max_attempts`` more times, the per-run budget it had.
    """
    db = _db(using)
    job = _get_job(job_id, db)
    budget = _attempt_budget(job)
    return _transition(
        job_id,
        "retry",
        {
            "status": JobStatus.QUEUED,
            "run_after": timezone.now(),
            "max_attempts": F("attempts") + budget,
            "finished_at": None,
            "result": None,
        },
        expected,
        db,
    )


def cancel_job(job_id: int, *, expected: Expected | None = None, using: str | None = None) -> Job:
    """queued or paused → cancelled (terminal; Retry brings it back).

    A running job is asked to stop and becomes cancelled at its next ``ctx.checkpoint()``; a task
    that never checkpoints finishes its current attempt.
    """
    if _get_job(job_id, _db(using)).status == JobStatus.RUNNING:
        return _request_stop(job_id, "cancel", expected, using)
    return _transition(
        job_id,
        "cancel",
        {"status": JobStatus.CANCELLED, "finished_at": timezone.now()},
        expected,
        using,
    )


def run_job_now(job_id: int, *, expected: Expected | None = None, using: str | None = None) -> Job:
    """Make a queued job due now (clears a delay or a retry backoff)."""
    return _transition(job_id, "run_now", {"run_after": timezone.now()}, expected, using)


JOB_ACTION_FUNCTIONS = {
    "pause": pause_job,
    "resume": resume_job,
    "retry": retry_job,
    "cancel": cancel_job,
    "run_now": run_job_now,
}


def apply_to_jobs(
    action: str, job_ids: Iterable[int], *, using: str | None = None
) -> tuple[list[Job], list[tuple[int, str]]]:
    """Apply one action to many jobs; return (changed jobs, [(job id, why refused)])."""
    function = JOB_ACTION_FUNCTIONS[action]
    done, refused = [], []
    for job_id in job_ids:
        try:
            done.append(function(job_id, using=using))
        except ActionRefused as exc:
            refused.append((job_id, str(exc)))
    return done, refused


def _request_stop(job_id: int, reason: str, expected: Expected | None, using: str | None) -> Job:
    """Ask a running attempt to stop at its next checkpoint (a cancel overrides a pause)."""
    db = _db(using)
    conditions = Q(pk=job_id, status=JobStatus.RUNNING)
    conditions &= (
        Q(stop_requested__in=["", "pause"]) if reason == "cancel" else Q(stop_requested="")
    )
    if expected is not None and expected.attempts is not None:
        conditions &= Q(attempts=expected.attempts)
    if expected is not None and expected.status not in (None, JobStatus.RUNNING):
        conditions &= Q(pk__in=[])
    updated = Job.objects.using(db).filter(conditions).update(stop_requested=reason)
    job = _get_job(job_id, db)
    if not updated:
        if job.status == JobStatus.RUNNING and job.stop_requested:
            raise ActionRefused(
                f"Job {job_id} was already asked to {job.stop_requested} at its next checkpoint."
            )
        raise ActionRefused(
            f"Job {job_id} changed since you looked at it (now {job.status}, attempt "
            f"{job.attempts}). Nothing was changed; look again and choose anew."
        )
    return job


def stop_running_jobs(queue: str | None, reason: str = "pause", *, using: str | None = None) -> int:
    """Ask every running job of ``queue`` (None: of every queue) to stop at its next
    checkpoint, unless it was already asked; return how many."""
    running = Job.objects.using(_db(using)).filter(status=JobStatus.RUNNING, stop_requested="")
    if queue is not None:
        running = running.filter(queue=queue)
    return running.update(stop_requested=reason)


def _attempt_budget(job: Job) -> int:
    from .task import find_task

    registered = find_task(job.task_name)
    if registered is not None:
        return registered.max_attempts
    return max(1, job.max_attempts)


def _get_job(job_id: int, db: str) -> Job:
    try:
        return Job.objects.using(db).get(pk=job_id)
    except (Job.DoesNotExist, ValueError, TypeError):
        raise NotFound(f"No job with id {job_id!r}.") from None


def _transition(
    job_id: int,
    action: str,
    changes: dict[str, object],
    expected: Expected | None,
    using: str | None,
) -> Job:
    db = _db(using)
    allowed = JOB_ACTIONS[action]
    conditions = Q(pk=job_id, status__in=allowed)
    if expected is not None:
        if expected.status is not None:
            conditions &= Q(status=expected.status)
        if expected.attempts is not None:
            conditions &= Q(attempts=expected.attempts)
    try:
        with transaction.atomic(using=db):
            updated = Job.objects.using(db).filter(conditions).update(**changes)
            job = _get_job(job_id, db)
    except IntegrityError:
        key = Job.objects.using(db).filter(pk=job_id).values_list("dedup_key", flat=True).first()
        raise ActionRefused(
            f"Job {job_id} cannot become active again: another queued, running or paused job "
            f"has its dedup key {key!r}. Nothing was changed."
        ) from None
    if not updated:
        label = action.replace("_", " ")
        if job.status not in allowed:
            raise ActionRefused(
                f"Job {job_id} is {job.status}: {label} applies only to "
                f"{' or '.join(allowed)} jobs. Nothing was changed."
            )
        raise ActionRefused(
            f"Job {job_id} changed since you looked at it (now {job.status}, attempt "
            f"{job.attempts}). Nothing was changed; look again and choose anew."
        )
    return job
