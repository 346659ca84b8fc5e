"""The job actions as the admin offers them (buttons, bulk actions, URLs), and the page on which
an operator confirms a hard stop before it applies."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse

from .. import operations
from ..conf import taskengine_settings
from ..models import Job
from .common import redirect_back


@dataclass(frozen=True)
class JobAction:
    """How the admin offers one of :data:`operations.JOB_ACTIONS`."""

    name: str  # the operations name: "pause", "run_now"…
    label: str  # the button: "Run now"
    permission: str  # codename that allows it
    done: str  # "Retried", for messages and the admin log
    url_name: str  # "run-now", the last part of its URL
    #: A hard stop: the operator confirms it on a page of its own before it applies.
    confirm: str = ""


#: The job actions, in the order :func:`operations.actions_for` lists them.
JOB_ACTIONS = {
    action.name: action
    for action in [
        JobAction("pause", "Pause", "pause_job", "Paused", "pause"),
        JobAction("resume", "Resume", "pause_job", "Resumed", "resume"),
        JobAction("retry", "Retry", "retry_job", "Retried", "retry"),
        JobAction("cancel", "Cancel", "cancel_job", "Cancelled", "cancel"),
        JobAction("run_now", "Run now", "retry_job", "Made due now", "run-now"),
        JobAction(
            "hard_pause",
            "Pause now",
            "pause_job",
            "Paused now",
            "pause-now",
            confirm="Its attempt is ended now, whatever it is doing, with its worker process "
            "(replaced once the process's other jobs finish); the job is paused once that code "
            "can no longer run, its attempt not counted. Resume runs it again, from its last "
            "checkpoint if it saved one. Work it did since then is done again: use this for a "
            "task that does not stop at a checkpoint.",
        ),
        JobAction(
            "hard_cancel",
            "Cancel now",
            "cancel_job",
            "Cancelled now",
            "cancel-now",
            confirm="Its attempt is ended now, whatever it is doing, with its worker process "
            "(replaced once the process's other jobs finish); the job is cancelled once that "
            "code can no longer run. Whatever the task left half done stays half done: use "
            "this for a task that does not stop at a checkpoint.",
        ),
    ]
}


def confirm_page(
    model_admin: Any,
    request: HttpRequest,
    job_id: int,
    spec: JobAction,
    expected: operations.Expected,
) -> HttpResponse:
    """The page that asks the operator to confirm a hard stop (reached by the button's POST; it
    changes nothing). Its own form posts the action again, confirmed, with the state the
    operator saw, so a job that changed meanwhile is still refused."""
    job = Job.objects.using(taskengine_settings.DATABASE).filter(pk=job_id).first()
    if job is None:
        model_admin.message_user(request, f"No job with id {job_id}.", messages.ERROR)
        return redirect_back(request, model_admin._url("changelist"))
    context = {
        **model_admin.admin_site.each_context(request),
        "opts": model_admin.opts,
        "title": f"{spec.label}: job {job.pk}?",
        "job": job,
        "action": spec,
        "action_url": model_admin._url(spec.name, job.pk),
        "expected": expected,
        "next_url": request.POST.get("next", ""),
        "change_url": model_admin._url("change", job.pk),
    }
    return TemplateResponse(request, "admin/django_taskengine/job/confirm_hard_stop.html", context)
