"""The job list and the job page.

Both are read-only views of the job table: every change an operator makes (pause, resume,
retry, cancel, run now; run again, priority and due time, delete: :mod:`.job_edits`) goes
through :mod:`django_taskengine.operations`, as a POST that carries the status and attempt
count the operator saw, so a job that changed meanwhile is refused rather than changed twice.
The list stays fast on millions of rows: no full ``COUNT(*)``
(:class:`~.paginator.EstimatedCountPaginator`), no facet counts, filters with fixed choices,
sorting by id only, and of the heavy columns (arguments, errors) a bounded prefix read, of
results and tracebacks nothing.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.contrib.admin.views.main import ChangeList
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest
from django.urls import path
from django.utils import timezone

from .. import inspection, operations
from ..audit_trail import AuditObject
from ..conf import taskengine_settings
from ..models import Job, JobStatus
from .audit import object_entries
from .common import (
    ReadOnlyModelAdmin,
    acting,
    format_seconds,
    has_app_permission,
    operator_view,
    redirect_back,
    time_zone_name,
)
from .job_actions import JOB_ACTIONS, confirm_page
from .job_columns import JobColumnsMixin
from .job_edits import JobEditsMixin, edit_permissions
from .job_fields import JobFieldsMixin
from .job_list import JobChangeList, QueueFilter, StatusFilter, TaskFilter
from .job_page import (
    ALL_FIELDS,
    EDITABLE,
    attempt_rows,
    can_discard,
    can_run_again,
    page_fieldsets,
)
from .job_search import search
from .paginator import EstimatedCountPaginator

#: The request attribute that carries the search's matching ids to the paginator.
SEARCH_IDS = "taskengine_search_ids"

#: A bulk action touches at most this many jobs; more is a job for a script, not a click.
BULK_ACTION_LIMIT = 1000


#: The statuses whose page says why the job is not (or what it is) running.
EXPLAINED_STATUSES = (JobStatus.QUEUED, JobStatus.PAUSED, JobStatus.RUNNING)


def _db() -> str:
    return taskengine_settings.DATABASE


# -- the admin -------------------------------------------------------------------------


@admin.register(Job)
class JobAdmin(JobColumnsMixin, JobEditsMixin, JobFieldsMixin, ReadOnlyModelAdmin):
    # Every column fits at 1280 px (tests/browser/test_console_jobs_in_chromium.py).
    list_display = (
        "id",
        "status_label",
        "task_label",
        "queue",
        "priority",
        "attempts_label",
        "arguments_preview",
        "progress_label",
        "error_label",
        "time_label",
    )
    list_filter = (
        StatusFilter,
        QueueFilter,
        TaskFilter,
        ("created_at", admin.DateFieldListFilter),
    )
    search_fields = ("task_name", "dedup_key")
    search_help_text = (
        "Words of a job's arguments or error (an email address, an order id, "
        "ConnectionRefusedError, timed out), a job id, a dedup key, or a task name."
    )
    # Only the primary key has an index that serves every filter's order.
    sortable_by = ("id",)
    ordering = ("-id",)
    list_per_page = 50
    list_max_show_all = 200
    show_full_result_count = False
    show_facets = admin.ShowFacets.NEVER
    paginator = EstimatedCountPaginator
    actions = (
        "pause_selected",
        "resume_selected",
        "retry_selected",
        "cancel_selected",
        "run_selected_now",
        "run_selected_again",
    )
    # The fields that apply to the job's state: see get_fieldsets.
    readonly_fields = ALL_FIELDS

    # -- permissions: the job table is written by workers and operations, never by a form --

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # Whoever may act on jobs may see them.
        return super().has_view_permission(request, obj) or any(
            has_app_permission(request, codename)
            for codename in ("pause_job", "retry_job", "cancel_job", "delete_job")
        )

    def get_fieldsets(self, request: HttpRequest, obj: Any = None) -> Any:
        return page_fieldsets(obj) if obj is not None else super().get_fieldsets(request, obj)

    def has_pause_job_permission(self, request: HttpRequest) -> bool:
        return has_app_permission(request, "pause_job")

    def has_retry_job_permission(self, request: HttpRequest) -> bool:
        return has_app_permission(request, "retry_job")

    def has_cancel_job_permission(self, request: HttpRequest) -> bool:
        return has_app_permission(request, "cancel_job")

    # -- the list --------------------------------------------------------------------

    def get_queryset(self, request: HttpRequest) -> QuerySet[Job]:
        return super().get_queryset(request).using(_db())

    def get_changelist(self, request: HttpRequest, **kwargs: Any) -> type[ChangeList]:
        return JobChangeList

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        return super().changelist_view(request, {"title": "Jobs", **(extra_context or {})})

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[Job], search_term: str
    ) -> tuple[QuerySet[Job], bool]:
        found, ids = search(queryset, search_term)
        # The list's paginator takes the matches from here (get_paginator): the search has
        # them as a list of ids, and counting them again cost as much as the page.
        setattr(request, SEARCH_IDS, ids)
        return found, False

    def get_paginator(
        self,
        request: HttpRequest,
        queryset: Any,
        per_page: int,
        orphans: int = 0,
        allow_empty_first_page: bool = True,
    ) -> EstimatedCountPaginator:
        return EstimatedCountPaginator(
            queryset,
            per_page,
            orphans,
            allow_empty_first_page,
            known_ids=getattr(request, SEARCH_IDS, None),
        )

    @admin.display(description="duration")
    def duration_label(self, job: Job) -> str:
        return format_seconds(job.duration)

    # -- bulk actions ------------------------------------------------------------------

    @admin.action(description="Pause selected jobs", permissions=["pause_job"])
    def pause_selected(self, request: HttpRequest, queryset: QuerySet[Job]) -> None:
        self._apply_to_selected(request, queryset, "pause")

    @admin.action(description="Resume selected jobs", permissions=["pause_job"])
    def resume_selected(self, request: HttpRequest, queryset: QuerySet[Job]) -> None:
        self._apply_to_selected(request, queryset, "resume")

    @admin.action(description="Retry selected jobs", permissions=["retry_job"])
    def retry_selected(self, request: HttpRequest, queryset: QuerySet[Job]) -> None:
        self._apply_to_selected(request, queryset, "retry")

    @admin.action(description="Cancel selected jobs", permissions=["cancel_job"])
    def cancel_selected(self, request: HttpRequest, queryset: QuerySet[Job]) -> None:
        self._apply_to_selected(request, queryset, "cancel")

    @admin.action(description="Run selected jobs now", permissions=["retry_job"])
    def run_selected_now(self, request: HttpRequest, queryset: QuerySet[Job]) -> None:
        self._apply_to_selected(request, queryset, "run_now")

    def _apply_to_selected(self, request: HttpRequest, queryset: QuerySet[Job], name: str) -> None:
        action = JOB_ACTIONS[name]
        ids = list(queryset.order_by("-pk").values_list("pk", flat=True)[: BULK_ACTION_LIMIT + 1])
        if len(ids) > BULK_ACTION_LIMIT:
            self.message_user(
                request,
                f"{action.label}: more than {BULK_ACTION_LIMIT:,} jobs are selected, and a bulk "
                f"action handles at most {BULK_ACTION_LIMIT:,}. Nothing was changed; narrow the "
                "list with filters, or use `manage.py taskengine` in a script.",
                messages.ERROR,
            )
            return
        changed, refused = operations.apply_to_jobs(name, ids, **acting(request), using=_db())
        # Running jobs are only asked to stop: they change at their next checkpoint.
        asked = [job for job in changed if job.status == JobStatus.RUNNING]
        done = [job for job in changed if job.status != JobStatus.RUNNING]
        for job in done:
            self.log_change(request, job, f"{action.done} (bulk action).")
        for job in asked:
            self.log_change(
                request,
                job,
                f"Asked to {action.label.lower()} at its next checkpoint (bulk action).",
            )
        if done:
            self.message_user(request, f"{action.done} {_jobs(done)}.", messages.SUCCESS)
        if asked:
            verb = action.label.lower()
            self.message_user(
                request,
                f"Asked {_jobs(asked)} (running) to {verb} at their next checkpoint.",
                messages.SUCCESS,
            )
        if refused:
            reasons = " ".join(reason for _, reason in refused[:5])
            more = f" …and {len(refused) - 5} more." if len(refused) > 5 else ""
            self.message_user(
                request,
                f"{action.label} refused for {len(refused)} job{'s' if len(refused) != 1 else ''}"
                f" (left unchanged): {reasons}{more}",
                messages.WARNING,
            )

    # -- the job page ------------------------------------------------------------------

    def get_urls(self) -> list[Any]:
        info = self.opts.app_label, self.opts.model_name
        urls = [
            path(
                f"<path:object_id>/{action.url_name}/",
                self.admin_site.admin_view(self.job_action_view),
                {"action": action.name},
                name="{}_{}_{}".format(*info, action.name),
            )
            for action in JOB_ACTIONS.values()
        ]
        return urls + self.edit_urls() + super().get_urls()

    @operator_view(permission=None)
    def job_action_view(self, request: HttpRequest, object_id: str, action: str) -> HttpResponse:
        """POST: apply one action to one job, if it is still in the state the operator saw."""
        spec = JOB_ACTIONS[action]
        if not has_app_permission(request, spec.permission):
            raise PermissionDenied
        try:
            job_id = int(unquote(object_id))
            expected = operations.Expected(
                status=request.POST["expected_status"],
                attempts=int(request.POST["expected_attempts"]),
            )
        except (KeyError, ValueError):
            return HttpResponseBadRequest(
                "A job action needs the job's id and the expected_status and expected_attempts "
                "the operator saw."
            )
        if spec.confirm and request.POST.get("confirmed") != "yes":
            return confirm_page(self, request, job_id, spec, expected)
        function = operations.JOB_ACTION_FUNCTIONS[action]
        try:
            job = function(job_id, expected=expected, **acting(request), using=_db())
        except operations.ActionRefused as refused:
            self.message_user(request, str(refused), messages.ERROR)
        else:
            if job.status == JobStatus.RUNNING and spec.confirm:
                done = f"Asked to {spec.label.lower()}: its attempt is ended with its process"
                told = (
                    f"Job {job.pk}: {spec.label.lower()} asked. Its worker ends the attempt "
                    "with its process, which is replaced once its other jobs finish; the job "
                    f"is {spec.done.split()[0].lower()} then."
                )
            elif job.status == JobStatus.RUNNING:
                done = f"Asked to {spec.label.lower()} at its next checkpoint"
                told = (
                    f"Asked job {job.pk} to {spec.label.lower()} at its next checkpoint (a task "
                    "that never checkpoints finishes its current attempt)."
                )
            else:
                done = spec.done
                told = f"{spec.done} job {job.pk}: now {job.status}."
            self.log_change(
                request, job, f"{done} (was {expected.status}, {expected.attempts} attempts)."
            )
            self.message_user(request, told, messages.SUCCESS)
        return redirect_back(request, self._url("change", job_id))

    def _page_context(self, request: HttpRequest, job: Job) -> dict[str, Any]:
        buttons = [
            {
                "label": action.label,
                "data_action": f"{action.url_name}-job",
                "url": self._url(action.name, job.pk),
            }
            for action in (
                JOB_ACTIONS[name] for name in operations.actions_for(job) if name in JOB_ACTIONS
            )
            if has_app_permission(request, action.permission)
        ]
        # The latest runs, oldest first; a job retried for ever does not flood the page.
        runs, run_count = attempt_rows(job, self.admin_site.name)
        allowed = edit_permissions(request)
        return {
            "te_job_actions": buttons,
            "te_explanation": (
                inspection.explain_job(job, using=_db())
                if job.status in EXPLAINED_STATUSES
                else None
            ),
            "te_progress": (
                self.progress(job)
                if job.status == JobStatus.RUNNING and job.progress_current is not None
                else ""
            ),
            "te_attempts": runs,
            "te_attempts_truncated": run_count > len(runs),
            "te_run_count": run_count,
            "te_edits": {
                "run_again": allowed["run_again"] and can_run_again(job),
                "delete_finished": allowed["delete_finished"] and job.is_finished,
                "discard": allowed["discard"] and can_discard(job),
                "reschedule": allowed["set_priority"] and job.status in EDITABLE,
                "run_after_value": timezone.localtime(job.run_after).strftime("%Y-%m-%dT%H:%M:%S"),
                "time_zone": time_zone_name(),
            },
            "te_expected": {"status": job.status, "attempts": job.attempts},
            "te_next": request.get_full_path(),
            **object_entries(request, AuditObject.JOB, job.pk, self.admin_site.name),
        }


def _jobs(jobs: list[Job]) -> str:
    """'3 jobs: 12, 11, 9' (at most 20 ids)."""
    ids = ", ".join(str(job.pk) for job in jobs[:20]) + (" …" if len(jobs) > 20 else "")
    return f"{len(jobs)} job{'s' if len(jobs) != 1 else ''}: {ids}"
