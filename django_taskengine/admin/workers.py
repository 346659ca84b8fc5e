"""The worker list and each worker's page: processes as they report themselves through
heartbeats, the jobs they hold and ran, and an operator's requests to them (drain, resume,
stop, hard stop: :mod:`django_taskengine.operations.workers`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.contrib.admin.views.main import ChangeList
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.urls import path
from django.utils import timezone
from django.utils.html import format_html
from django.utils.safestring import SafeString

from .. import inspection, operations
from ..audit_trail import AuditObject
from ..conf import taskengine_settings
from ..models import Worker
from .audit import object_entries
from .common import (
    ReadOnlyModelAdmin,
    acting,
    exact_time,
    exact_time_text,
    has_app_permission,
    operator_view,
    redirect_back,
    relative_time,
)
from .worker_page import page_context, request_text, state_badge, worker_state

#: The permission an operator needs to drain, resume or stop a worker process.
CONTROL_PERMISSION = "control_worker"

#: The buttons of each state: (action, label, what it does).
BUTTONS: dict[str, list[tuple[str, str, str]]] = {
    "drain": [("drain", "Drain", "take no new jobs, finish the running ones, stay up idle")],
    "resume": [("resume", "Resume", "take jobs again")],
    "stop": [("stop", "Stop", "finish the running jobs (as on SIGTERM), then exit; not replaced")],
    "kill": [("hard-stop", "Hard stop", "exit now; its running jobs are rescued and run again")],
}
_OFFERED = {
    "live": ["drain", "stop", "kill"],
    "draining": ["resume", "stop", "kill"],
    "drained": ["resume", "stop", "kill"],
    "stopping": ["kill"],
}


def _db() -> str:
    return taskengine_settings.DATABASE


class StateFilter(admin.SimpleListFilter):
    title = "state"
    parameter_name = "state"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [
            ("live", "live"),
            ("draining", "draining or drained"),
            ("stopping", "stopping"),
            ("stale", "stale (presumed dead)"),
            ("stopped", "stopped"),
        ]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Worker]) -> QuerySet[Worker]:
        fresh_since = timezone.now() - inspection.stale_after()
        alive = queryset.filter(stopped_at__isnull=True, last_heartbeat_at__gte=fresh_since)
        if self.value() == "live":
            return alive
        if self.value() == "draining":
            return alive.filter(control_requested="drain")
        if self.value() == "stopping":
            return alive.filter(control_requested__in=("stop", "kill"))
        if self.value() == "stale":
            return queryset.filter(stopped_at__isnull=True, last_heartbeat_at__lt=fresh_since)
        if self.value() == "stopped":
            return queryset.filter(stopped_at__isnull=False)
        return queryset


class WorkerChangeList(ChangeList):
    """Attaches each listed worker's running-job count, in one query for the page."""

    def get_results(self, request: HttpRequest) -> None:
        super().get_results(request)
        workers = list(self.result_list)
        running = inspection.running_jobs_by_worker([w.id for w in workers], using=_db())
        for worker in workers:
            worker.te_running = running.get(worker.id, 0)


@admin.register(Worker)
class WorkerAdmin(ReadOnlyModelAdmin):
    list_display = (
        "host",
        "pid",
        "queue_names",
        "state",
        "started",
        "last_heartbeat",
        "running_now",
        "succeeded",
        "failed",
    )
    list_filter = (StateFilter,)
    show_facets = admin.ShowFacets.NEVER
    search_fields = ("hostname",)
    list_per_page = 100
    fields = (
        "id",
        "hostname",
        "pid",
        "queue_names",
        "concurrency",
        "started",
        "heartbeat_at",
        "stopped",
        "jobs_succeeded",
        "jobs_failed",
    )
    readonly_fields = fields
    change_form_template = "admin/django_taskengine/worker/change_form.html"

    def get_queryset(self, request: HttpRequest) -> QuerySet[Worker]:
        return super().get_queryset(request).using(_db())

    def get_changelist(self, request: HttpRequest, **kwargs: Any) -> type[ChangeList]:
        return WorkerChangeList

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        return super().changelist_view(
            request, {"title": "Worker processes", **(extra_context or {})}
        )

    def get_urls(self) -> list[Any]:
        info = self.opts.app_label, self.opts.model_name
        views: dict[str, Callable[..., HttpResponse]] = {
            "drain": self.drain_view,
            "resume": self.resume_view,
            "stop": self.stop_view,
            "hard-stop": self.hard_stop_view,
        }
        return [
            *[
                path(
                    f"<path:object_id>/{action}/",
                    self.admin_site.admin_view(view),
                    name="{}_{}_{}".format(*info, action.replace("-", "_")),
                )
                for action, view in views.items()
            ],
            *super().get_urls(),
        ]

    # -- columns and fields ----------------------------------------------------------------

    @admin.display(description="host", ordering="hostname")
    def host(self, worker: Worker) -> SafeString:
        # Stopped workers are kept for the record, greyed out.
        css = "te-stopped" if worker.stopped_at is not None else ""
        return format_html('<span class="{}">{}</span>', css, worker.hostname)

    @admin.display(description="queues")
    def queue_names(self, worker: Worker) -> str:
        return ", ".join(worker.queues) if worker.queues else "all"

    @admin.display(description="state")
    def state(self, worker: Worker) -> SafeString:
        return state_badge(worker_state(worker, getattr(worker, "te_running", None)))

    @admin.display(description="started", ordering="started_at")
    def started(self, worker: Worker) -> SafeString | str:
        return exact_time(worker.started_at)

    @admin.display(description="heartbeat", ordering="last_heartbeat_at")
    def last_heartbeat(self, worker: Worker) -> SafeString:
        # The list shows how long ago (what an operator scans for); the exact time on hover.
        moment = timezone.localtime(worker.last_heartbeat_at)
        return format_html(
            '<time datetime="{}" title="{}">{}</time>',
            moment.isoformat(),
            exact_time_text(moment),
            relative_time(moment),
        )

    @admin.display(description="last heartbeat")
    def heartbeat_at(self, worker: Worker) -> SafeString | str:
        return exact_time(worker.last_heartbeat_at)

    @admin.display(description="stopped")
    def stopped(self, worker: Worker) -> SafeString | str:
        return exact_time(worker.stopped_at)

    @admin.display(description="running")
    def running_now(self, worker: Worker) -> int:
        return int(getattr(worker, "te_running", 0))

    # Not named after the fields: Django would take the fields' longer names as the headers.
    @admin.display(description="succeeded", ordering="jobs_succeeded")
    def succeeded(self, worker: Worker) -> int:
        """Jobs that succeeded in this process."""
        return worker.jobs_succeeded

    @admin.display(description="failed", ordering="jobs_failed")
    def failed(self, worker: Worker) -> int:
        """Jobs that ended failed in this process (a failed attempt retried is not counted)."""
        return worker.jobs_failed

    # -- the worker's page -----------------------------------------------------------------

    def _page_context(self, request: HttpRequest, worker: Worker) -> dict[str, Any]:
        context = page_context(worker, self.admin_site.name)
        buttons: list[tuple[str, str, str, str]] = []
        if has_app_permission(request, CONTROL_PERMISSION):
            for key in _OFFERED.get(context["te_state"], []):
                for action, label, help_text in BUTTONS[key]:
                    url = self._url(action.replace("-", "_"), worker.id)
                    buttons.append((action, label, help_text, url))
        return {
            **context,
            "te_buttons": buttons,
            "te_can_control": has_app_permission(request, CONTROL_PERMISSION),
            "te_next": request.get_full_path(),
            "title": f"Worker {worker.hostname}:{worker.pid}",
            **object_entries(request, AuditObject.WORKER, worker.id, self.admin_site.name),
        }

    @operator_view(CONTROL_PERMISSION)
    def drain_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """POST: the worker takes no new jobs, finishes its running ones, stays up idle."""
        return self._control(request, object_id, operations.drain_worker, "asked to drain")

    @operator_view(CONTROL_PERMISSION)
    def resume_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """POST: a draining worker takes jobs again."""
        return self._control(request, object_id, operations.resume_worker, "resumed")

    @operator_view(CONTROL_PERMISSION)
    def stop_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """POST: the worker finishes its running jobs and exits (not replaced)."""
        return self._control(request, object_id, operations.stop_worker, "asked to stop")

    @operator_view(CONTROL_PERMISSION)
    def hard_stop_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """POST: the worker exits now; its running jobs are rescued and run again."""
        return self._control(
            request, object_id, operations.hard_stop_worker, "asked to stop now (hard stop)"
        )

    def _control(
        self,
        request: HttpRequest,
        object_id: str,
        operation: Callable[..., Worker],
        done: str,
    ) -> HttpResponse:
        key = unquote(object_id)
        back = redirect_back(request, self._url("change", key))
        try:
            worker = operation(
                key, **acting(request), reason=request.POST.get("reason", "")[:1000], using=_db()
            )
        except operations.ActionRefused as exc:
            self.message_user(request, str(exc), messages.ERROR)
            return back
        self.message_user(
            request,
            format_html(
                "Worker {}:{} {}; it carries this out at its next heartbeat (within {} s). {}.",
                worker.hostname,
                worker.pid,
                done,
                f"{taskengine_settings.HEARTBEAT_INTERVAL:g}",
                request_text(worker),
            ),
            messages.SUCCESS,
        )
        return back
