"""The worker list: processes as they report themselves through heartbeats (read-only)."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.contrib.admin.views.main import ChangeList
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.utils import timezone
from django.utils.html import format_html
from django.utils.safestring import SafeString

from .. import inspection
from ..conf import taskengine_settings
from ..models import Worker
from .common import ReadOnlyModelAdmin, format_age


def _db() -> str:
    return taskengine_settings.DATABASE


def worker_state(worker: Worker) -> str:
    """'live', 'stale' (no heartbeat for a while: presumed dead) or 'stopped'."""
    if worker.stopped_at is not None:
        return "stopped"
    return "stale" if inspection.worker_is_stale(worker) else "live"


class StateFilter(admin.SimpleListFilter):
    title = "state"
    parameter_name = "state"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("live", "live"), ("stale", "stale (presumed dead)"), ("stopped", "stopped")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Worker]) -> QuerySet[Worker]:
        fresh_since = timezone.now() - inspection.stale_after()
        if self.value() == "live":
            return queryset.filter(stopped_at__isnull=True, last_heartbeat_at__gte=fresh_since)
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
        "started_at",
        "last_heartbeat",
        "running_now",
        "jobs_succeeded",
        "jobs_failed",
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
        "state",
        "concurrency",
        "started_at",
        "last_heartbeat_at",
        "stopped_at",
        "jobs_succeeded",
        "jobs_failed",
    )
    readonly_fields = fields

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
        state = worker_state(worker)
        return format_html('<span class="te-worker-{}">{}</span>', state, state)

    @admin.display(description="last heartbeat", ordering="last_heartbeat_at")
    def last_heartbeat(self, worker: Worker) -> str:
        return f"{format_age(timezone.now() - worker.last_heartbeat_at)} ago"

    @admin.display(description="running now")
    def running_now(self, worker: Worker) -> int:
        return int(getattr(worker, "te_running", 0))
