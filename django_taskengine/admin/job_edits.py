"""The job page's edits (a ModelAdmin mixin): Run again, change priority, change the due time,
Delete (a finished job) and Discard (one that never ran), each a POST carrying the state the
operator saw, calling :mod:`django_taskengine.operations.job_edits`; and the bulk action "Run
selected jobs again".

Permissions: Run again is a retry (``retry_job``); priority and due time are changes of the
job (Django's ``change_job``); Delete and Discard are deletions (``delete_job``), confirmed on
a page of their own first.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path
from django.utils.html import format_html

from .. import operations
from ..conf import taskengine_settings
from ..models import Job
from .common import acting, exact_time_text, has_app_permission, operator_view, redirect_back

#: A bulk Run again enqueues at most this many jobs.
BULK_RUN_AGAIN_LIMIT = 1000

#: Edit name -> (URL part, permission, the word for messages).
EDITS = {
    "run_again": ("run-again", "retry_job"),
    "set_priority": ("set-priority", "change_job"),
    "set_run_after": ("set-run-after", "change_job"),
    "delete_finished": ("delete-finished", "delete_job"),
    "discard": ("discard", "delete_job"),
}


class RunAfterForm(forms.Form):
    """The due time, entered in the current time zone (the input's label names it)."""

    run_after = forms.DateTimeField(
        input_formats=["%Y-%m-%dT%H:%M:%S", "%Y-%m-%dT%H:%M", "%Y-%m-%d %H:%M:%S"]
    )


def _db() -> str:
    return taskengine_settings.DATABASE


def _expected(request: HttpRequest) -> operations.Expected:
    return operations.Expected(
        status=request.POST["expected_status"], attempts=int(request.POST["expected_attempts"])
    )


class JobEditsMixin:
    """Views and bulk action of the job edits (mixed into ``JobAdmin``)."""

    admin_site: admin.AdminSite
    opts: Any
    message_user: Any
    log_change: Any
    _url: Any

    def edit_urls(self) -> list[Any]:
        info = self.opts.app_label, self.opts.model_name
        views = {
            "run_again": self.run_again_view,
            "set_priority": self.set_priority_view,
            "set_run_after": self.set_run_after_view,
            "delete_finished": self.delete_finished_view,
            "discard": self.discard_view,
        }
        return [
            path(
                f"<path:object_id>/{part}/",
                self.admin_site.admin_view(views[name]),
                name="{}_{}_{}".format(*info, name),
            )
            for name, (part, _) in EDITS.items()
        ]

    @operator_view(permission="retry_job")
    def run_again_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """POST: enqueue a copy of a finished job; go to the new job's page."""
        job_id, expected = self._read(request, object_id)
        if expected is None:
            return _bad_request()
        try:
            new = operations.run_job_again(
                job_id, expected=expected, **acting(request), using=_db()
            )
        except operations.ActionRefused as refused:
            self.message_user(request, str(refused), messages.ERROR)
            return redirect_back(request, self._url("change", job_id))
        self._log(request, job_id, f"Run again as new job {new.pk}.")
        self._log(request, new.pk, f"Enqueued by Run again of job {job_id}.")
        self.message_user(
            request,
            format_html(
                'Job <a href="{}">{}</a> runs again as this new job, {}.',
                self._url("change", job_id),
                job_id,
                new.pk,
            ),
            messages.SUCCESS,
        )
        return HttpResponseRedirect(self._url("change", new.pk))

    @operator_view(permission="change_job")
    def set_priority_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        job_id, expected = self._read(request, object_id)
        try:
            priority = int(request.POST.get("priority", "").strip())
        except ValueError:
            priority = None
        if expected is None:
            return _bad_request()
        if priority is None:
            self.message_user(
                request, "Priority: enter a whole number. Nothing was changed.", messages.ERROR
            )
            return redirect_back(request, self._url("change", job_id))
        return self._apply(
            request,
            job_id,
            lambda: operations.set_job_priority(
                job_id, priority, expected=expected, **acting(request), using=_db()
            ),
            lambda job: f"Priority of job {job_id} set to {job.priority}.",
        )

    @operator_view(permission="change_job")
    def set_run_after_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        job_id, expected = self._read(request, object_id)
        if expected is None:
            return _bad_request()
        form = RunAfterForm(request.POST)
        if not form.is_valid():
            self.message_user(
                request,
                "Due time: enter a date and time, e.g. 2026-12-01T14:05:00. Nothing was changed.",
                messages.ERROR,
            )
            return redirect_back(request, self._url("change", job_id))
        run_after = form.cleaned_data["run_after"]
        return self._apply(
            request,
            job_id,
            lambda: operations.set_job_run_after(
                job_id, run_after, expected=expected, **acting(request), using=_db()
            ),
            lambda job: f"Job {job_id} is due at {exact_time_text(job.run_after)}.",
        )

    @operator_view(permission="delete_job")
    def delete_finished_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        return self._delete(request, object_id, "delete_finished")

    @operator_view(permission="delete_job")
    def discard_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        return self._delete(request, object_id, "discard")

    @admin.action(description="Run selected finished jobs again", permissions=["retry_job"])
    def run_selected_again(self, request: HttpRequest, queryset: QuerySet[Job]) -> None:
        ids = list(queryset.order_by("pk").values_list("pk", flat=True)[: BULK_RUN_AGAIN_LIMIT + 1])
        if len(ids) > BULK_RUN_AGAIN_LIMIT:
            self.message_user(
                request,
                f"Run again: more than {BULK_RUN_AGAIN_LIMIT:,} jobs are selected. Nothing was "
                "enqueued; narrow the list with filters.",
                messages.ERROR,
            )
            return
        copies, refused = [], []
        for job_id in ids:
            try:
                new = operations.run_job_again(job_id, **acting(request), using=_db())
            except operations.ActionRefused as exc:
                refused.append(str(exc))
            else:
                copies.append((job_id, new.pk))
                self._log(request, job_id, f"Run again as new job {new.pk} (bulk action).")
        if copies:
            pairs = ", ".join(f"{old} as {new}" for old, new in copies[:20])
            more = " …" if len(copies) > 20 else ""
            self.message_user(
                request, f"Ran {len(copies)} jobs again: {pairs}{more}.", messages.SUCCESS
            )
        if refused:
            more = f" …and {len(refused) - 5} more." if len(refused) > 5 else ""
            self.message_user(
                request,
                f"Run again refused for {len(refused)} jobs: {' '.join(refused[:5])}{more}",
                messages.WARNING,
            )

    # -- shared ------------------------------------------------------------------------

    def _read(self, request: HttpRequest, object_id: str) -> tuple[int, operations.Expected | None]:
        """The job's id and the state the operator saw (None: the form did not say)."""
        try:
            return int(unquote(object_id)), _expected(request)
        except (KeyError, ValueError):
            return 0, None

    def _apply(self, request: HttpRequest, job_id: int, change: Any, told: Any) -> HttpResponse:
        try:
            job = change()
        except operations.ActionRefused as refused:
            self.message_user(request, str(refused), messages.ERROR)
        except (TypeError, ValueError) as invalid:
            self.message_user(request, f"{invalid}. Nothing was changed.", messages.ERROR)
        else:
            self.log_change(request, job, told(job))
            self.message_user(request, told(job), messages.SUCCESS)
        return redirect_back(request, self._url("change", job_id))

    def _delete(self, request: HttpRequest, object_id: str, name: str) -> HttpResponse:
        job_id, expected = self._read(request, object_id)
        if expected is None:
            return _bad_request()
        if request.POST.get("confirmed") != "yes":
            return self._confirm_delete(request, job_id, name, expected)
        function = operations.delete_job if name == "delete_finished" else operations.discard_job
        try:
            function(job_id, expected=expected, **acting(request), using=_db())
        except operations.ActionRefused as refused:
            self.message_user(request, str(refused), messages.ERROR)
            return HttpResponseRedirect(self._url("change", job_id))
        verb = "Deleted" if name == "delete_finished" else "Discarded"
        self.message_user(request, f"{verb} job {job_id}.", messages.SUCCESS)
        return HttpResponseRedirect(self._url("changelist"))

    def _confirm_delete(
        self, request: HttpRequest, job_id: int, name: str, expected: operations.Expected
    ) -> HttpResponse:
        """The page that asks the operator to confirm (reached by the button's POST; it changes
        nothing); its form posts again, confirmed, with the state the operator saw."""
        job = Job.objects.using(_db()).filter(pk=job_id).first()
        if job is None:
            self.message_user(request, f"No job with id {job_id}.", messages.ERROR)
            return HttpResponseRedirect(self._url("changelist"))
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": f"{'Delete' if name == 'delete_finished' else 'Discard'} job {job.pk}?",
            "job": job,
            "discard": name == "discard",
            "action_url": self._url(name, job.pk),
            "expected": expected,
            "change_url": self._url("change", job.pk),
            "attempt_count": job.attempt_set.count(),
        }
        return TemplateResponse(request, "admin/django_taskengine/job/confirm_delete.html", context)

    def _log(self, request: HttpRequest, job_id: int, message: str) -> None:
        job = Job.objects.using(_db()).filter(pk=job_id).first()
        if job is not None:
            self.log_change(request, job, message)


def _bad_request() -> HttpResponse:
    return HttpResponseBadRequest(
        "A job edit needs the expected_status and expected_attempts the operator saw."
    )


def edit_permissions(request: HttpRequest) -> dict[str, bool]:
    """Which edits the user may make, for the page's buttons."""
    return {name: has_app_permission(request, codename) for name, (_, codename) in EDITS.items()}
