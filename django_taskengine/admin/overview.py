"""The overview page: the whole engine on one screen, for the operator who was just paged.

Per queue and status counts, failures of the last hour, the oldest due job, the workers alive,
every pause in force with its Resume button, Pause all / Resume all, and the charts of the last
hour or day (:mod:`.chart_data`), for all queues or one. Its regions refresh themselves
(``data-te-live``, see ``console.js``). It is listed on the
admin index through the :class:`~django_taskengine.models.Overview` proxy model.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.contrib import admin
from django.contrib.admin.utils import quote
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone

from .. import inspection
from ..conf import taskengine_settings
from ..models import JobStatus, Overview, Worker
from .chart_data import charts_context
from .common import ReadOnlyModelAdmin, format_age, has_app_permission
from .job_list import job_list_url
from .pauses import pause_controls_context, queue_state

#: "Failures of the last hour" and the per-queue finished counts cover this window.
RECENT_WINDOW = dt.timedelta(hours=1)

#: Any of these lets a user see the overview (it is read-only; its buttons check their own).
VIEW_PERMISSIONS = (
    "view_overview",
    "view_queue",
    "view_job",
    "pause_queue",
    "limit_queue",
    "pause_job",
    "retry_job",
    "cancel_job",
)


@admin.register(Overview)
class OverviewAdmin(ReadOnlyModelAdmin):
    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return any(has_app_permission(request, codename) for codename in VIEW_PERMISSIONS)

    def get_urls(self) -> list[Any]:
        # One page; the proxy has no rows to add, change or delete.
        return [
            path(
                "",
                self.admin_site.admin_view(self.overview_view),
                name=f"{self.opts.app_label}_{self.opts.model_name}_changelist",
            )
        ]

    def overview_view(self, request: HttpRequest) -> HttpResponse:
        if not self.has_view_permission(request):
            raise PermissionDenied
        db = taskengine_settings.DATABASE
        now = timezone.now()
        site = self.admin_site.name
        stats = inspection.queue_stats(using=db)
        recent = inspection.finished_since(now - RECENT_WINDOW, using=db)
        can_pause = has_app_permission(request, "pause_queue")
        controls = pause_controls_context(request, site, request.get_full_path())
        queue_url = f"{site}:django_taskengine_queue_"
        rows: list[dict[str, Any]] = []
        for name, item in stats.items():
            finished = recent.get(name, {})
            paused = item.paused
            rows.append(
                {
                    "stats": item,
                    "state": queue_state(item.queue, controls["engine_pause"]),
                    "paused": paused,
                    "oldest_due_age": format_age(item.oldest_due_age) if item.oldest_due else "—",
                    "succeeded_recently": finished.get(JobStatus.SUCCEEDED, 0),
                    "failed_recently": finished.get(JobStatus.FAILED, 0),
                    "queue_url": reverse(queue_url + "change", args=[quote(name)])
                    if item.queue
                    else "",
                    "button_url": reverse(
                        queue_url + ("resume" if paused else "pause"), args=[quote(name)]
                    ),
                    "jobs_url": {
                        status: job_list_url(site, queue=name, status=status)
                        for status in ("queued", "running", "paused", "failed")
                    },
                }
            )
        oldest = max(
            (item for item in stats.values() if item.oldest_due),
            key=lambda item: item.oldest_due_age or dt.timedelta(0),
            default=None,
        )
        live = inspection.live_workers(using=db)
        stale = (
            Worker.objects.using(db)
            .filter(stopped_at__isnull=True, last_heartbeat_at__lt=now - inspection.stale_after())
            .count()
        )
        context = {
            **self.admin_site.each_context(request),
            "title": "Task engine overview",
            "opts": self.opts,
            "media": self.media,
            "te_rows": rows,
            "te_can_pause": can_pause,
            "te_controls": controls,
            "te_failed_recently": sum(row["failed_recently"] for row in rows),
            "te_failed_recently_url": job_list_url(site, status="failed"),
            "te_oldest": oldest,
            "te_oldest_age": format_age(oldest.oldest_due_age) if oldest else "—",
            "te_oldest_url": job_list_url(site, queue=oldest.name, status="queued")
            if oldest
            else "",
            "te_live_workers": [
                {
                    "worker": w,
                    "queues": ", ".join(w.queues) if w.queues else "all",
                    "heartbeat": format_age(now - w.last_heartbeat_at),
                }
                for w in live
            ],
            "te_stale_workers": stale,
            "te_workers_url": reverse(f"{site}:django_taskengine_worker_changelist"),
            "te_window": "hour",
            **charts_context(request, queues=list(stats)),
        }
        request.current_app = site
        return TemplateResponse(request, "admin/django_taskengine/overview.html", context)
