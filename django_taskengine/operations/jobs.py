"""Operator actions on jobs: pause, resume, retry, cancel, run now.

Every change is one conditional ``UPDATE``: an action on a job that changed state meanwhile
(another operator retried it, a worker claimed it) is refused with
:class:`~.common.ActionRefused`, never applied twice. A running job is not changed under its
worker: it is asked to stop at its next checkpoint — or, with ``hard=True``, its attempt is
ended with its worker process (a hard stop, for a task that never checkpoints).

Each function takes ``by`` (who acts), ``reason`` and ``source`` ("admin", "cli", "python"), and
records a change in the audit trail (:mod:`.audit`) in the change's transaction.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from django.db import IntegrityError, transaction
from django.db.models import F, Q
from django.utils import timezone

from ..audit_trail import AuditObject, AuditSource
from ..core.actions import JOB_ACTIONS, STOP_REQUEST_REPLACES, retry_budget
from ..core.actions import actions_for as core_actions_for
from ..core.lifecycle import is_hard_stop, stop_kind
from ..models import Job, JobStatus
from ..registry import tasks as registry
from ..store import get_store
from ..store.orm_dependencies import (
    SWEEP_INTERVAL,
    resolve,
    retried,
    sweep,
    unmet_dependency,
)
from ..worker.maintenance import register
from .audit import Actor
from .common import ActionRefused, NotFound, database


@dataclass(frozen=True)
class Expected:
    """The state an operator saw when choosing an action; the action applies only if unchanged."""

    status: str | None = None
    attempts: int | None = None

    def condition(self) -> Q:
        """Rows still in the state the operator saw."""
        conditions = Q()
        if self.status is not None:
            conditions &= Q(status=self.status)
        if self.attempts is not None:
            conditions &= Q(attempts=self.attempts)
        return conditions

    def matches(self, job: Job) -> bool:
        """Whether ``job`` is still in the state the operator saw."""
        return (self.status is None or job.status == self.status) and (
            self.attempts is None or job.attempts == self.attempts
        )


def changed_since_seen(job: Job) -> str:
    """Why an action on a job that changed since the operator looked was refused."""
    return (
        f"Job {job.pk} changed since you looked at it (now {job.status}, attempt "
        f"{job.attempts}). Nothing was changed; look again and choose anew."
    )


def actions_for(job: Job) -> list[str]:
    """The actions that fit the job's current state, in display order."""
    return core_actions_for(job.status, job.stop_requested)


def pause_job(
    job_id: int,
    *,
    expected: Expected | None = None,
    hard: bool = False,
    by: str = "",
    reason: str = "",
    source: str = AuditSource.PYTHON,
    using: str | None = None,
) -> Job:
    """queued → paused: the job is not claimed until resumed.

    A running job is asked to stop: at its next ``ctx.checkpoint()`` it becomes paused, keeping
    its checkpoint, and Resume continues from there. A task that never checkpoints finishes its
    current attempt — unless ``hard``: then the attempt is ended with its worker process (which
    the supervisor replaces; the process's other jobs finish first, up to the shutdown
    timeout), and the job becomes paused once that code can no longer run, its attempt not
    counted. On a job that is not running, ``hard`` changes nothing: it is paused at once.
    """
    actor = Actor(by, source, reason)
    if _get_job(job_id, database(using)).status == JobStatus.RUNNING:
        return _request_stop(job_id, "hard_pause" if hard else "pause", expected, actor, using)
    return _transition(job_id, "pause", {}, expected, actor, using)


def resume_job(
    job_id: int,
    *,
    expected: Expected | None = None,
    by: str = "",
    reason: str = "",
    source: str = AuditSource.PYTHON,
    using: str | None = None,
) -> Job:
    """paused → queued, and idle workers of its queue are woken for it."""
    job = _transition(job_id, "resume", {}, expected, Actor(by, source, reason), using)
    wake_workers([job.queue], using=using)
    return job


def retry_job(
    job_id: int,
    *,
    expected: Expected | None = None,
    by: str = "",
    reason: str = "",
    source: str = AuditSource.PYTHON,
    using: str | None = None,
) -> Job:
    """failed or cancelled → queued, due now, with a fresh set of attempts; idle workers are
    woken for it.

    Attempts are *extended*, not reset: the job keeps its history (attempt numbers go on from
    where they stopped) and may run ``max_attempts`` more times, the per-run budget it had.
    """
    actor = Actor(by, source, reason)
    db = database(using)
    job = _get_job(job_id, db)
    registered = registry.find(job.task_name)
    budget = retry_budget(registered.max_attempts if registered else None, job.max_attempts)
    extra: dict[str, object] = {"max_attempts": F("attempts") + budget}
    unmet = unmet_dependency(db, job_id)
    if unmet is not None:
        raise ActionRefused(
            f"Job {job_id} waits for job {unmet[0]}, which is {unmet[1]}: retry that one, and "
            "the jobs cancelled because of it come back with it. Nothing was changed."
        )
    with transaction.atomic(using=db):
        job = _transition(job_id, "retry", extra, expected, actor, db)
        if retried(db, job_id, get_store(db).wake_workers):
            job.refresh_from_db()
    wake_workers([job.queue], using=db)
    return job


def cancel_job(
    job_id: int,
    *,
    expected: Expected | None = None,
    hard: bool = False,
    by: str = "",
    reason: str = "",
    source: str = AuditSource.PYTHON,
    using: str | None = None,
) -> Job:
    """queued or paused → cancelled (terminal; Retry brings it back).

    A running job is asked to stop and becomes cancelled at its next ``ctx.checkpoint()``; a task
    that never checkpoints finishes its current attempt — unless ``hard``: then the attempt is
    ended with its worker process (which the supervisor replaces; the process's other jobs
    finish first, up to the shutdown timeout), and the job becomes cancelled once that code can
    no longer run. On a job that is not running, ``hard`` changes nothing: it is cancelled at
    once.
    """
    actor = Actor(by, source, reason)
    db = database(using)
    if _get_job(job_id, db).status == JobStatus.RUNNING:
        return _request_stop(job_id, "hard_cancel" if hard else "cancel", expected, actor, db)
    job = _transition(job_id, "cancel", {}, expected, actor, db)
    # The jobs that wait for it are cancelled in turn, or run if they run whatever happens.
    resolve(db, get_store(db).wake_workers, finished=[job_id])
    return job


def run_job_now(
    job_id: int,
    *,
    expected: Expected | None = None,
    by: str = "",
    reason: str = "",
    source: str = AuditSource.PYTHON,
    using: str | None = None,
) -> Job:
    """Make a queued job due now (clears a delay or a retry backoff), and wake idle workers.

    Not a job that waits for others (``.using(after=…)``): that waits until they finish."""
    if _get_job(job_id, database(using)).blocked:
        raise ActionRefused(
            f"Job {job_id} waits for the jobs it was enqueued after: it runs when they have "
            "finished. Nothing was changed."
        )
    job = _transition(job_id, "run_now", {}, expected, Actor(by, source, reason), using)
    wake_workers([job.queue], using=using)
    return job


#: Job action -> its name in the audit trail (the operation's name).
_AUDIT_ACTIONS = {
    "pause": "pause_job",
    "resume": "resume_job",
    "retry": "retry_job",
    "cancel": "cancel_job",
    "run_now": "run_job_now",
    "hard_pause": "hard_pause_job",
    "hard_cancel": "hard_cancel_job",
}

JOB_ACTION_FUNCTIONS: dict[str, Callable[..., Job]] = {
    "pause": pause_job,
    "resume": resume_job,
    "retry": retry_job,
    "cancel": cancel_job,
    "run_now": run_job_now,
    "hard_pause": functools.partial(pause_job, hard=True),
    "hard_cancel": functools.partial(cancel_job, hard=True),
}


def apply_to_jobs(
    action: str,
    job_ids: Iterable[int],
    *,
    by: str = "",
    reason: str = "",
    source: str = AuditSource.PYTHON,
    using: str | None = None,
) -> tuple[list[Job], list[tuple[int, str]]]:
    """Apply one action to many jobs; return (changed jobs, [(job id, why refused)]).

    Each job's change is its own transaction, with its own audit entry."""
    function = JOB_ACTION_FUNCTIONS[action]
    Actor(by, source, reason)  # refuse a bad actor before the first job changes
    done, refused = [], []
    for job_id in job_ids:
        try:
            done.append(function(job_id, by=by, reason=reason, source=source, using=using))
        except ActionRefused as exc:
            refused.append((job_id, str(exc)))
    return done, refused


def _request_stop(
    job_id: int, action: str, expected: Expected | None, actor: Actor, using: str | None
) -> Job:
    """Ask a running attempt to stop at its next checkpoint, or (a hard stop) have its worker
    end it; a stronger request replaces a weaker pending one (see STOP_REQUEST_REPLACES)."""
    db = database(using)
    stop = JOB_ACTIONS[action].stop_request
    conditions = Q(pk=job_id, status=JobStatus.RUNNING)
    conditions &= Q(stop_requested__in=STOP_REQUEST_REPLACES[stop])
    if expected is not None and expected.attempts is not None:
        conditions &= Q(attempts=expected.attempts)
    if expected is not None and expected.status not in (None, JobStatus.RUNNING):
        conditions &= Q(pk__in=[])
    with transaction.atomic(using=db):
        updated = Job.objects.using(db).filter(conditions).update(stop_requested=stop)
        if updated:
            detail = {"stop_requested": stop}
            actor.record(_AUDIT_ACTIONS[action], AuditObject.JOB, job_id, detail=detail, using=db)
    job = _get_job(job_id, db)
    if not updated:
        if job.status == JobStatus.RUNNING and job.stop_requested:
            raise ActionRefused(
                f"Job {job_id} was already asked to {describe_stop(job.stop_requested)}."
            )
        raise ActionRefused(changed_since_seen(job))
    return job


def wake_workers(queues: Iterable[str], *, using: str | None = None) -> None:
    """Wake idle workers for the jobs of ``queues`` an action made due (``NOTIFY`` on
    PostgreSQL, at commit; other databases' workers poll). Every resume goes through here."""
    get_store(database(using)).wake_workers(sorted(set(queues)))


def stop_running_jobs(
    queue: str | None,
    reason: str = "pause",
    *,
    task_name: str | None = None,
    using: str | None = None,
) -> int:
    """Ask every running job of ``queue`` (None: of every queue), and of ``task_name`` if
    given, to stop at its next checkpoint, unless it was already asked; return how many.

    ``reason`` says which pause asks ("pause:queue", "pause:task", "pause:engine"…, see
    :data:`~..core.actions.PAUSE_REQUESTS`): the job it pauses keeps it, so that the end of
    that pause requeues it."""
    running = Job.objects.using(database(using)).filter(status=JobStatus.RUNNING, stop_requested="")
    if queue is not None:
        running = running.filter(queue=queue)
    if task_name is not None:
        running = running.filter(task_name=task_name)
    return running.update(stop_requested=reason)


def describe_stop(request: str) -> str:
    """A pending stop request in words, for operators ("pause at its next checkpoint")."""
    if is_hard_stop(request):
        return (
            f"{stop_kind(request)} at once (a hard stop: its attempt is ended with its worker "
            "process, which is replaced)"
        )
    return f"{request} at its next checkpoint"


def _get_job(job_id: int, db: str) -> Job:
    try:
        return Job.objects.using(db).get(pk=job_id)
    except (Job.DoesNotExist, ValueError, TypeError):
        raise NotFound(f"No job with id {job_id!r}.") from None


def _transition(
    job_id: int,
    action: str,
    extra: dict[str, object],
    expected: Expected | None,
    actor: Actor,
    using: str | None,
) -> Job:
    """Apply ``action`` (and the ``extra`` column changes) if the job is in a state it applies
    to, and as the operator saw it; record it in the audit trail in the same transaction."""
    db = database(using)
    allowed = JOB_ACTIONS[action].applies_to
    changes = {**JOB_ACTIONS[action].changes(timezone.now()), **extra}
    conditions = Q(pk=job_id, status__in=allowed)
    if JOB_ACTIONS[action].stop_request:
        # A running job is asked to stop (_request_stop), never changed under its worker: one
        # that started since the caller looked is refused as changed.
        conditions &= ~Q(status=JobStatus.RUNNING)
    if expected is not None:
        conditions &= expected.condition()
    try:
        with transaction.atomic(using=db):
            updated = Job.objects.using(db).filter(conditions).update(**changes)
            job = _get_job(job_id, db)
            if updated:
                detail = {"status": job.status}
                actor.record(
                    _AUDIT_ACTIONS[action], AuditObject.JOB, job_id, detail=detail, using=db
                )
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
        raise ActionRefused(changed_since_seen(job))
    return job


@register("decide for jobs that wait for others", SWEEP_INTERVAL)
def sweep_dependencies(alias: str) -> int:
    """Decide for jobs whose dependencies have all finished but that nothing decided for (a
    process that finished one died before its decision); how many were decided."""
    return sweep(alias, get_store(alias).wake_workers)
