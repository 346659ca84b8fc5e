"""Operator actions on a whole workflow (django_taskengine/workflows.py): each is the job action
applied to every step it fits, each step its own guarded change with its own audit entry
(:func:`.jobs.apply_to_jobs`). Steps already in a state the action does not fit are left as
they are; the result lists what changed and what was refused, and why."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..audit_trail import AuditSource
from ..core.dependencies import CANCELLED_PREFIX
from ..models import Job, JobStatus, Workflow
from .common import NotFound, database
from .jobs import apply_to_jobs


@dataclass
class WorkflowResult:
    """What a workflow action did: the steps it changed, and those it refused, with why."""

    workflow: Workflow
    changed: list[Job] = field(default_factory=list)
    refused: list[tuple[int, str]] = field(default_factory=list)


def get_workflow(workflow_id: int, *, using: str | None = None) -> Workflow:
    try:
        return Workflow.objects.using(database(using)).get(pk=workflow_id)
    except (Workflow.DoesNotExist, ValueError, TypeError):
        raise NotFound(f"No workflow with id {workflow_id!r}.") from None


def workflow_steps(workflow_id: int, *, using: str | None = None) -> list[Job]:
    """The workflow's steps, in the order they were added."""
    return list(Job.objects.using(database(using)).filter(workflow_id=workflow_id).order_by("id"))


def cancel_workflow(
    workflow_id: int,
    *,
    hard: bool = False,
    by: str = "",
    reason: str = "",
    source: str = AuditSource.PYTHON,
    using: str | None = None,
) -> WorkflowResult:
    """Cancel every step not finished: waiting ones at once, running ones at their next
    checkpoint (or at once with ``hard``)."""
    action = "hard_cancel" if hard else "cancel"
    # The last steps first: cancelling a step cancels what waits for it, and each step is to
    # be cancelled by the operator (and recorded so), not by that cascade.
    return _apply(workflow_id, action, _ACTIVE, by, reason, source, using, last_first=True)


def pause_workflow(
    workflow_id: int,
    *,
    by: str = "",
    reason: str = "",
    source: str = AuditSource.PYTHON,
    using: str | None = None,
) -> WorkflowResult:
    """Pause every queued or running step (running ones at their next checkpoint); steps
    that wait for others stay paused once those allow them to run."""
    return _apply(
        workflow_id, "pause", (JobStatus.QUEUED, JobStatus.RUNNING), by, reason, source, using
    )


def resume_workflow(
    workflow_id: int,
    *,
    by: str = "",
    reason: str = "",
    source: str = AuditSource.PYTHON,
    using: str | None = None,
) -> WorkflowResult:
    """Resume every paused step."""
    return _apply(workflow_id, "resume", (JobStatus.PAUSED,), by, reason, source, using)


def retry_workflow(
    workflow_id: int,
    *,
    by: str = "",
    reason: str = "",
    source: str = AuditSource.PYTHON,
    using: str | None = None,
) -> WorkflowResult:
    """Retry every step that failed or that an operator cancelled; the steps cancelled because
    of them wait again, and run when they succeed."""
    db = database(using)
    result = WorkflowResult(get_workflow(workflow_id, using=db))
    left = [
        job.pk
        for job in workflow_steps(workflow_id, using=db)
        if job.status == JobStatus.FAILED
        or (job.status == JobStatus.CANCELLED and not job.error.startswith(CANCELLED_PREFIX))
    ]
    # A step is refused while a step it waits for has failed: once that one is retried, so
    # is it, on a later pass.
    while left:
        done, refused = apply_to_jobs("retry", left, by=by, reason=reason, source=source, using=db)
        result.changed.extend(done)
        if not done:
            result.refused.extend(refused)
            break
        left = [job_id for job_id, _ in refused]
    return result


_ACTIVE = (JobStatus.QUEUED, JobStatus.RUNNING, JobStatus.PAUSED)


def _apply(
    workflow_id: int,
    action: str,
    statuses: tuple[str, ...],
    by: str,
    reason: str,
    source: str,
    using: str | None,
    *,
    last_first: bool = False,
) -> WorkflowResult:
    db = database(using)
    result = WorkflowResult(get_workflow(workflow_id, using=db))
    steps = [job.pk for job in workflow_steps(workflow_id, using=db) if job.status in statuses]
    if last_first:
        steps.reverse()
    result.changed, result.refused = apply_to_jobs(
        action, steps, by=by, reason=reason, source=source, using=db
    )
    return result
