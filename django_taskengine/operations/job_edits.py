"""Operator edits of one job beyond its lifecycle's actions: run a finished job again as a new
job, change a waiting job's priority or due time, delete a finished job, discard one that never
ran.

Like every operation, each is refused with :class:`~.common.ActionRefused` when the job is not
in a state it applies to, or not as the operator saw it (``expected``), and records an entry in
the audit trail in the transaction of its change.

Priority and due time are columns of the claim's indexes (the plain claim's and each flow
lane's), so a change is one guarded ``UPDATE`` and the next claim sorts the job where it now
belongs. A job a worker reserved (claimed ahead, not started) is taken back from it, as an
enqueue that replaces a waiting job does: the worker's start is fenced out by its token, and the
job is claimed again in its new place. With Redis Streams dispatch (django_taskengine/dispatch/
relay.py), a job published already keeps its stream entry: a worker that reads it claims it by
id if it is still due (a higher priority does not move it ahead of entries published before);
one whose due time moved later is skipped when read, drops out of the relay's window, and is
published again once due. Nothing is lost either way: the table stays the truth.
"""

from __future__ import annotations

import datetime as dt

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from ..audit_trail import AuditObject, AuditSource
from ..core.limits import check_int32
from ..core.ownership import RELEASED
from ..core.statuses import ACTIVE_STATUSES, TERMINAL_STATUSES, JobStatus
from ..job_indexes import DEDUP_HOLDER
from ..models import Dependency, Job
from ..registry import tasks as registry
from .audit import Actor
from .common import ActionRefused, database
from .jobs import Expected, _get_job, changed_since_seen, wake_workers

#: The statuses whose priority and due time an operator may change: waiting ones.
EDITABLE_STATUSES = (JobStatus.QUEUED, JobStatus.PAUSED)
#: The statuses of a job that may be discarded (deleted before it ever ran).
DISCARDABLE_STATUSES = (JobStatus.QUEUED, JobStatus.PAUSED)

NOTHING_CHANGED = "Nothing was changed."


def run_job_again(
    job_id: int,
    *,
    expected: Expected | None = None,
    by: str = "",
    reason: str = "",
    source: str = AuditSource.PYTHON,
    using: str | None = None,
) -> Job:
    """Enqueue a new job that runs a finished job's task with the same arguments, queue,
    priority, group and sequence; return the new job. The finished job is left as it is.

    The new job gets the task's current ``max_attempts`` and is due now. It keeps the dedup key,
    so that it is the only active job of that key: if another queued, running or paused job
    holds the key, nothing is enqueued and the action is refused (the copy would be that job).
    It is enqueued in the plain ``skip`` mode: a throttle or debounce window does not delay an
    operator's explicit run. It waits for no other job and belongs to no workflow. Only a task
    registered in this process can be run again.
    """
    actor = Actor(by, source, reason)
    db = database(using)
    job = _get_job(job_id, db)
    _check_expected(job, expected)
    if job.status not in TERMINAL_STATUSES:
        raise ActionRefused(
            f"Job {job_id} is {job.status}: only a finished job (succeeded, failed or "
            f"cancelled) can be run again as a new job. {NOTHING_CHANGED}"
        )
    task = registry.find(job.task_name)
    if task is None:
        raise ActionRefused(
            f"Job {job_id}'s task {job.task_name!r} is not registered in this process, so it "
            f"cannot be run again from here. {NOTHING_CHANGED}"
        )
    _check_dedup_key_free(db, job)
    bound = task.using(
        queue=job.queue,
        priority=job.priority,
        dedup_key=job.dedup_key,
        timeout=job.timeout,
        group=job.group_key,
        sequence=job.sequence_key,
        database=db,
    )
    with transaction.atomic(using=db):
        try:
            new: Job = bound.enqueue(*job.args, **job.kwargs)
        except (TypeError, ValueError) as exc:
            raise ActionRefused(f"Job {job_id} cannot be run again: {exc}") from None
        if not new.created:
            raise ActionRefused(_key_held(job, new))
        actor.record("run_job_again", AuditObject.JOB, job_id, detail={"new_job": new.pk}, using=db)
        actor.record("run_job_again", AuditObject.JOB, new.pk, detail={"copy_of": job_id}, using=db)
    return new


def set_job_priority(
    job_id: int,
    priority: int,
    *,
    expected: Expected | None = None,
    by: str = "",
    reason: str = "",
    source: str = AuditSource.PYTHON,
    using: str | None = None,
) -> Job:
    """Change the priority of a queued or paused job (higher runs first); a worker's
    reservation of it is taken back, so that it is claimed again in its new place."""
    check_int32(priority, "priority")
    return _edit(job_id, "priority", priority, expected, Actor(by, source, reason), using)


def set_job_run_after(
    job_id: int,
    run_after: dt.datetime,
    *,
    expected: Expected | None = None,
    by: str = "",
    reason: str = "",
    source: str = AuditSource.PYTHON,
    using: str | None = None,
) -> Job:
    """Change when a queued or paused job is due (an aware datetime; a past one makes it due
    now). A worker's reservation of it is taken back. Not for a job that waits for the jobs it
    was enqueued after: it is due when they have finished."""
    if not isinstance(run_after, dt.datetime) or timezone.is_naive(run_after):
        raise ValueError(f"run_after must be an aware datetime, not {run_after!r}")
    return _edit(job_id, "run_after", run_after, expected, Actor(by, source, reason), using)


def delete_job(
    job_id: int,
    *,
    expected: Expected | None = None,
    by: str = "",
    reason: str = "",
    source: str = AuditSource.PYTHON,
    using: str | None = None,
) -> None:
    """Delete a finished job with its attempts, as retention would.

    Refused while an active job waits for it (``.using(after=…)``): that job's fate is decided
    when its dependencies finish, and a retry would bring this one back. Jobs that waited for it
    and are decided already keep their record that they did ("deleted" on their page)."""
    _delete(job_id, TERMINAL_STATUSES, "delete_job", expected, Actor(by, source, reason), using)


def discard_job(
    job_id: int,
    *,
    expected: Expected | None = None,
    by: str = "",
    reason: str = "",
    source: str = AuditSource.PYTHON,
    using: str | None = None,
) -> None:
    """Delete a queued or paused job that never ran (no attempt started, no worker holds it):
    as if it had never been enqueued. Its dedup key is free again.

    Refused while another job waits for it: cancel it instead, and the jobs that wait for it
    are cancelled in turn (or run, if they run whatever happens)."""
    _delete(job_id, DISCARDABLE_STATUSES, "discard_job", expected, Actor(by, source, reason), using)


def _edit(
    job_id: int,
    column: str,
    value: object,
    expected: Expected | None,
    actor: Actor,
    using: str | None,
) -> Job:
    """Set one claim-order column of a waiting job, guarded by its state; wake workers if it
    is due."""
    db = database(using)
    before = _get_job(job_id, db)
    if column == "run_after" and before.blocked:
        raise ActionRefused(
            f"Job {job_id} waits for the jobs it was enqueued after: it is due when they have "
            f"finished, so its due time cannot be set. {NOTHING_CHANGED}"
        )
    conditions = Q(pk=job_id, status__in=EDITABLE_STATUSES) & _expected_q(expected)
    with transaction.atomic(using=db):
        updated = Job.objects.using(db).filter(conditions).update(**{column: value}, **RELEASED)
        job = _get_job(job_id, db)
        if updated:
            detail = {column: _plain(value), "was": _plain(getattr(before, column))}
            actor.record(f"set_job_{column}", AuditObject.JOB, job_id, detail=detail, using=db)
    if not updated:
        _refuse(job, EDITABLE_STATUSES, f"changing its {column.replace('_', ' ')}")
    if job.status == JobStatus.QUEUED and job.run_after <= timezone.now():
        wake_workers([job.queue], using=db)
    return job


def _delete(
    job_id: int,
    statuses: tuple[str, ...],
    action: str,
    expected: Expected | None,
    actor: Actor,
    using: str | None,
) -> None:
    db = database(using)
    job = _get_job(job_id, db)
    conditions = Q(pk=job_id, status__in=statuses) & _expected_q(expected)
    if action == "discard_job":
        # Never ran, and no worker holds it: nothing of it can be executing.
        conditions &= Q(attempts=0, token__isnull=True, started_at__isnull=True)
    waiting = _active_dependent(db, job_id)
    if waiting is not None:
        instead = "Cancel it instead: they are cancelled in turn. "
        instead = instead if action == "discard_job" else ""
        raise ActionRefused(
            f"Job {job_id} cannot be deleted: job {waiting[0]} ({waiting[1]}) waits for it. "
            f"{instead}{NOTHING_CHANGED}"
        )
    with transaction.atomic(using=db):
        deleted, _ = Job.objects.using(db).filter(conditions).delete()
        if deleted:
            # The ORM's cascade took its attempts; what it waited for is plain ids.
            Dependency.objects.using(db).filter(job_id=job_id).delete()
            detail = {"status": job.status, "task": job.task_name, "queue": job.queue}
            actor.record(action, AuditObject.JOB, job_id, detail=detail, using=db)
    if not deleted:
        current = _get_job(job_id, db)
        if (
            action == "discard_job"
            and current.status in statuses
            and _is_as_expected(current, expected)
        ):
            raise ActionRefused(
                f"Job {job_id} has run (or a worker holds it): only a job that never ran can "
                f"be discarded. Cancel it, then delete it once it is finished. {NOTHING_CHANGED}"
            )
        _refuse(current, statuses, "deleting it" if action == "delete_job" else "discarding it")


def _active_dependent(db: str, job_id: int) -> tuple[int, str] | None:
    """A job still active that waits for ``job_id`` (its id and status), or None."""
    waiting = Dependency.objects.using(db).filter(after_id=job_id).values_list("job_id", flat=True)
    row = (
        Job.objects.using(db)
        .filter(pk__in=list(waiting[:1000]), status__in=list(ACTIVE_STATUSES))
        .order_by("pk")
        .values_list("pk", "status")
        .first()
    )
    return None if row is None else (int(row[0]), str(row[1]))


def _check_dedup_key_free(db: str, job: Job) -> None:
    if job.dedup_key is None:
        return
    holder = Job.objects.using(db).filter(DEDUP_HOLDER, dedup_key=job.dedup_key).first()
    if holder is not None:
        raise ActionRefused(_key_held(job, holder))


def _key_held(job: Job, holder: Job) -> str:
    return (
        f"Job {job.pk} cannot be run again now: job {holder.pk} ({holder.status}) holds its "
        f"dedup key {job.dedup_key!r}, and a copy would be that job. Run it again once job "
        f"{holder.pk} has finished. {NOTHING_CHANGED}"
    )


def _expected_q(expected: Expected | None) -> Q:
    return Q() if expected is None else expected.condition()


def _is_as_expected(job: Job, expected: Expected | None) -> bool:
    return expected is None or expected.matches(job)


def _check_expected(job: Job, expected: Expected | None) -> None:
    if not _is_as_expected(job, expected):
        raise ActionRefused(changed_since_seen(job))


def _refuse(job: Job, statuses: tuple[str, ...], what: str) -> None:
    if job.status not in statuses:
        raise ActionRefused(
            f"Job {job.pk} is {job.status}: {what} applies only to "
            f"{' or '.join(statuses)} jobs. {NOTHING_CHANGED}"
        )
    raise ActionRefused(changed_since_seen(job))


def _plain(value: object) -> object:
    """A value as the audit trail's JSON keeps it."""
    return value.isoformat() if isinstance(value, dt.datetime) else value
