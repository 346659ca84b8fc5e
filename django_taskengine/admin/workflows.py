"""The workflow list and page (workflows and batches): their steps counted by status, the
graph of steps and dependencies (:mod:`.workflow_graph`), the steps' table, and Cancel, Pause,
Resume and Retry of the whole workflow.

Each action is a POST that calls :mod:`django_taskengine.operations.workflows`, which applies
the job action to every step it fits, each step its own audited change; it needs the job
permission the action needs on one job (``pause_job`` for pause and resume, ``cancel_job``,
``retry_job``).
"""

from __future__ import annotations

import functools
from collections import Counter
from collections.abc import Callable
from typing import Any

from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.contrib.admin.views.main import ChangeList
from django.db.models import Count, QuerySet
from django.http import HttpRequest, HttpResponse
from django.urls import path, reverse
from django.utils.html import format_html
from django.utils.safestring import SafeString

from .. import operations
from ..conf import taskengine_settings
from ..inspection import count_text, workflow_graph
from ..models import Job, Workflow
from .common import ReadOnlyModelAdmin, acting, has_app_permission, operator_view, redirect_back
from .job_list import job_change_url, short_time
from .workflow_graph import render, state

#: Action -> (operation, button, permission, past participle).
WORKFLOW_ACTIONS: dict[str, tuple[Callable[..., operations.WorkflowResult], str, str, str]] = {
    "pause": (operations.pause_workflow, "Pause all", "pause_job", "Paused"),
    "resume": (operations.resume_workflow, "Resume all", "pause_job", "Resumed"),
    "retry": (operations.retry_workflow, "Retry failed", "retry_job", "Retried"),
    "cancel": (operations.cancel_workflow, "Cancel all", "cancel_job", "Cancelled"),
}


def _db() -> str:
    return taskengine_settings.DATABASE


def _summary(counts: Counter[str]) -> str:
    return count_text(counts) or "no steps"


class WorkflowChangeList(ChangeList):
    """Counts each listed workflow's steps by status, in one query for the page."""

    def get_results(self, request: HttpRequest) -> None:
        super().get_results(request)
        ids = [workflow.pk for workflow in self.result_list]
        counts: dict[int, Counter[str]] = {pk: Counter() for pk in ids}
        rows = (
            Job.objects.using(_db())
            .filter(workflow_id__in=ids)
            .values_list("workflow_id", "status")
            .annotate(n=Count("id"))
            .order_by()
        )
        for workflow_id, status, n in rows:
            counts[workflow_id][status] += n
        for workflow in self.result_list:
            workflow.te_counts = counts[workflow.pk]


@admin.register(Workflow)
class WorkflowAdmin(ReadOnlyModelAdmin):
    list_display = ("id", "name", "kind", "created", "steps")
    list_filter = ("kind",)
    search_fields = ("name",)
    list_per_page = 100
    actions = None
    fields = ("id", "name", "kind", "created", "steps")
    readonly_fields = fields

    def get_queryset(self, request: HttpRequest) -> QuerySet[Workflow]:
        return super().get_queryset(request).using(_db())

    def get_changelist(self, request: HttpRequest, **kwargs: Any) -> type[ChangeList]:
        return WorkflowChangeList

    @admin.display(description="created")
    def created(self, workflow: Workflow) -> str:
        return short_time(workflow.created_at)

    @admin.display(description="steps")
    def steps(self, workflow: Workflow) -> str:
        counts = getattr(workflow, "te_counts", None)
        if counts is None:
            steps = Job.objects.using(_db()).filter(workflow_id=workflow.pk)
            counts = Counter(steps.values_list("status", flat=True))
        return _summary(counts)

    def get_urls(self) -> list[Any]:
        info = self.opts.app_label, self.opts.model_name
        return [
            path(
                f"<path:object_id>/{name}/",
                self.admin_site.admin_view(self._view(name)),
                name="{}_{}_{}".format(*info, name),
            )
            for name in WORKFLOW_ACTIONS
        ] + super().get_urls()

    def _view(self, name: str) -> Callable[..., HttpResponse]:
        function, _, permission, done = WORKFLOW_ACTIONS[name]

        @operator_view(permission)
        def view(admin_: WorkflowAdmin, request: HttpRequest, object_id: str) -> HttpResponse:
            back = redirect_back(request, self._url("changelist"))
            try:
                workflow_id = int(unquote(object_id))
                result = function(workflow_id, **acting(request), using=_db())
            except (ValueError, operations.NotFound):
                self.message_user(request, "No such workflow; nothing changed.", messages.ERROR)
                return back
            self.log_change(request, result.workflow, f"{done} {len(result.changed)} steps.")
            level = messages.WARNING if result.refused else messages.SUCCESS
            text = f"{done} {len(result.changed)} step(s) of workflow {workflow_id}."
            if result.refused:
                text += f" {len(result.refused)} refused: " + "; ".join(
                    why for _, why in result.refused[:5]
                )
            self.message_user(request, text, level)
            return back

        return functools.partial(view, self)

    def _url(self, name: str, *args: Any) -> str:
        info = self.opts.app_label, self.opts.model_name
        return reverse(f"{self.admin_site.name}:{info[0]}_{info[1]}_{name}", args=args)

    def _page_context(self, request: HttpRequest, workflow: Workflow) -> dict[str, Any]:
        nodes = workflow_graph(workflow.pk, using=_db())
        return {
            "te_graph": render(nodes, self.admin_site.name),
            "te_steps": [
                {
                    "name": node.job.step,
                    "job_id": node.job.pk,
                    "job_url": job_change_url(self.admin_site.name, node.job.pk),
                    "task": node.job.task_name,
                    "state": state(node),
                    "after": ", ".join(node.after),
                }
                for node in nodes
            ],
            "te_actions": [
                {"name": name, "label": label, "url": self._url(name, workflow.pk)}
                for name, (_, label, permission, _) in WORKFLOW_ACTIONS.items()
                if has_app_permission(request, permission)
            ],
            "te_next": request.get_full_path(),
        }


def workflow_link(site_name: str, job: Job) -> SafeString | str:
    """A step's workflow, linked, with its graph (the step outlined), for the job's page."""
    if job.workflow_id is None:
        return "—"
    url = reverse(f"{site_name}:django_taskengine_workflow_change", args=[job.workflow_id])
    nodes = workflow_graph(job.workflow_id, using=_db())
    return format_html(
        '<a href="{}">workflow {}</a>, step {}<div class="te-graph-box">{}</div>',
        url,
        job.workflow_id,
        job.step or "—",
        render(nodes, site_name, current=job.pk),
    )
