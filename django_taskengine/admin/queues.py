"""The queue list and the queue page: counts and limits per queue, and Pause / Resume from a
row button, a bulk action or the queue's page (with a reason and a duration or end time); the
queue's limits are set on its page (:mod:`.limits`).

Every pause and resume is a POST that calls :mod:`django_taskengine.operations` with the
operator's user name, and is written to Django's admin log. The list's job counts come from one
:func:`~django_taskengine.inspection.queue_stats` call per page, not from queries per row.
Pauses of every queue or of a task type are in :mod:`.pauses`.
"""

from __future__ import annotations

import hashlib
from typing import Any

from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.contrib.admin.views.main import ChangeList
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.urls import path
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

from .. import inspection, operations
from ..audit_trail import AuditObject
from ..conf import taskengine_settings
from ..flow_report import in_force
from ..flow_status import flow_state
from ..models import PauseScope, Queue
from .audit import object_entries
from .common import (
    PAUSE_DURATION_CHOICES,
    PauseForm,
    ReadOnlyModelAdmin,
    acting,
    describe_pause,
    exact_time_column,
    format_age,
    has_app_permission,
    operator_view,
    redirect_back,
)
from .job_list import job_list_url
from .limits import LIMIT_PERMISSION, QueueLimitViews, limits_cell, limits_context
from .pauses import (
    PAUSE_PERMISSION,
    EnginePauseViews,
    pause_controls_context,
    queue_state,
    time_input_context,
)


def _db() -> str:
    return taskengine_settings.DATABASE


class QueueChangeList(ChangeList):
    """Attaches each listed queue's statistics and limits, computed once for the page."""

    def get_results(self, request: HttpRequest) -> None:
        super().get_results(request)
        stats = inspection.queue_stats(using=_db())
        # What limits count is read only when a listed queue has a limit.
        limited = any(in_force(queue).any for queue in self.result_list)
        flow = flow_state(using=_db()) if limited else None
        engine_pause = next(
            (p for p in operations.active_pauses(using=_db()) if p.scope == PauseScope.ENGINE), None
        )
        for queue in self.result_list:
            queue.te_stats = stats.get(queue.name) or inspection.QueueStats(queue.name, queue)
            queue.te_limits = flow.queue(queue.name) if flow is not None else None
            queue.te_engine_pause = engine_pause
            queue.te_pause_form = row_pause_form_id(queue.name)


def _listed_stats(queue: Queue) -> inspection.QueueStats:
    """The statistics :class:`QueueChangeList` attached to a listed queue (empty ones if none)."""
    stats: inspection.QueueStats | None = getattr(queue, "te_stats", None)
    return stats if stats is not None else inspection.QueueStats(queue.name, queue)


@admin.register(Queue)
class QueueAdmin(EnginePauseViews, QueueLimitViews, ReadOnlyModelAdmin):
    list_display = (
        "name",
        "state",
        "queued",
        "due",
        "running",
        "paused_jobs",
        "failed",
        "oldest_due",
        "throughput",
        "limits",
    )
    actions = ("pause_selected", "resume_selected")
    list_per_page = 100
    fields = (
        "name",
        "state",
        "paused_by",
        "paused_at_label",
        "pause_reason",
        "paused_until_label",
        "created_at_label",
    )
    readonly_fields = fields
    paused_at_label = exact_time_column("paused_at", "paused at")
    paused_until_label = exact_time_column("paused_until", "paused until")
    created_at_label = exact_time_column("created_at", "created at")

    # -- permissions: queue rows change only through pause, resume and limits ------------

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return (
            super().has_view_permission(request, obj)
            or self.has_pause_queue_permission(request)
            or has_app_permission(request, LIMIT_PERMISSION)
        )

    def has_pause_queue_permission(self, request: HttpRequest) -> bool:
        return has_app_permission(request, PAUSE_PERMISSION)

    # -- the list --------------------------------------------------------------------

    def get_queryset(self, request: HttpRequest) -> QuerySet[Queue]:
        return super().get_queryset(request).using(_db())

    def get_changelist(self, request: HttpRequest, **kwargs: Any) -> type[ChangeList]:
        return QueueChangeList

    def get_list_display(self, request: HttpRequest) -> Any:
        if self.has_pause_queue_permission(request):
            return (*self.list_display, "buttons")
        return self.list_display

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        context = {
            "title": "Queues",
            "te_can_pause": self.has_pause_queue_permission(request),
            "te_controls": pause_controls_context(
                request, self.admin_site.name, request.get_full_path()
            ),
            **(extra_context or {}),
        }
        return super().changelist_view(request, context)

    @admin.display(description="state")
    def state(self, queue: Queue) -> SafeString:
        return queue_state(queue, getattr(queue, "te_engine_pause", None))

    def _count_link(self, queue: Queue, count: int, status: str) -> SafeString:
        url = job_list_url(self.admin_site.name, queue=queue.name, status=status)
        return format_html('<a href="{}">{}</a>', url, f"{count:,}")

    @admin.display(description="queued")
    def queued(self, queue: Queue) -> SafeString:
        return self._count_link(queue, _listed_stats(queue).queued, "queued")

    @admin.display(description="due")
    def due(self, queue: Queue) -> str:
        return f"{_listed_stats(queue).due:,}"

    @admin.display(description="running")
    def running(self, queue: Queue) -> SafeString:
        return self._count_link(queue, _listed_stats(queue).running, "running")

    @admin.display(description="paused")
    def paused_jobs(self, queue: Queue) -> SafeString:
        return self._count_link(queue, _listed_stats(queue).paused_jobs, "paused")

    @admin.display(description="failed")
    def failed(self, queue: Queue) -> SafeString:
        return self._count_link(queue, _listed_stats(queue).failed, "failed")

    @admin.display(description="oldest due")
    def oldest_due(self, queue: Queue) -> str:
        return format_age(_listed_stats(queue).oldest_due_age)

    @admin.display(description="finished / min (5 min)")
    def throughput(self, queue: Queue) -> str:
        return f"{_listed_stats(queue).throughput_per_minute:.1f}"

    @admin.display(description="limits")
    def limits(self, queue: Queue) -> str:
        return limits_cell(getattr(queue, "te_limits", None))

    @admin.display(description="actions")
    def buttons(self, queue: Queue) -> SafeString:
        # The changelist is already a POST form: a row's fields and button belong instead to
        # that row's own pause form (rendered after the list, see queue/change_list.html), so
        # a pause from the list carries its reason and duration.
        if queue.is_paused:
            return format_html(
                '<button type="submit" class="button" formmethod="post" formaction="{}" '
                'formnovalidate data-action="resume-queue" data-queue="{}">Resume</button>',
                self._url("resume", queue.name),
                queue.name,
            )
        form = row_pause_form_id(queue.name)
        durations = format_html_join(
            "", '<option value="{}">{}</option>', ((v, label) for v, label in ROW_DURATIONS)
        )
        return format_html(
            '<span class="te-row-pause">'
            '<input type="text" name="reason" form="{}" maxlength="1000" placeholder="reason" '
            'aria-label="Reason to pause {}" class="te-row-reason">'
            '<select name="duration" form="{}" aria-label="How long to pause {}">{}</select>'
            '<button type="submit" class="button" form="{}" formmethod="post" formaction="{}" '
            'formnovalidate data-action="pause-queue" data-queue="{}">Pause</button></span>',
            form,
            queue.name,
            form,
            queue.name,
            durations,
            form,
            self._url("pause", queue.name),
            queue.name,
        )

    # -- bulk actions ------------------------------------------------------------------

    @admin.action(description="Pause selected queues", permissions=[PAUSE_PERMISSION])
    def pause_selected(self, request: HttpRequest, queryset: QuerySet[Queue]) -> None:
        # Queues already paused keep their pause: who paused them and why is worth keeping.
        paused, kept = [], []
        for queue in queryset:
            if queue.is_paused:
                kept.append(queue.name)
                continue
            queue = operations.pause_queue(queue.name, **acting(request), using=_db())
            self._log_pause(request, queue)
            paused.append(queue.name)
        if paused:
            self.message_user(request, f"Paused {_queues(paused)}.", messages.SUCCESS)
        if kept:
            self.message_user(
                request, f"Already paused, left as they were: {_queues(kept)}.", messages.WARNING
            )

    @admin.action(description="Resume selected queues", permissions=[PAUSE_PERMISSION])
    def resume_selected(self, request: HttpRequest, queryset: QuerySet[Queue]) -> None:
        resumed = []
        for queue in queryset:
            if queue.paused:
                operations.resume_queue(queue.name, **acting(request), using=_db())
                self.log_change(request, queue, f"Resumed queue {queue.name}.")
                resumed.append(queue.name)
        if resumed:
            self.message_user(request, f"Resumed {_queues(resumed)}.", messages.SUCCESS)
        else:
            self.message_user(request, "None of the selected queues was paused.", messages.WARNING)

    # -- one queue ---------------------------------------------------------------------

    def get_urls(self) -> list[Any]:
        info = self.opts.app_label, self.opts.model_name

        def wrap(view: Any) -> Any:
            return self.admin_site.admin_view(view)

        # Before the default URLs: "<path:object_id>/" would swallow "pause-all/".
        return [
            path("pause-all/", wrap(self.pause_all_view), name="{}_{}_pause_all".format(*info)),
            path("resume-all/", wrap(self.resume_all_view), name="{}_{}_resume_all".format(*info)),
            path("pause-task/", wrap(self.pause_task_view), name="{}_{}_pause_task".format(*info)),
            path(
                "resume-task/", wrap(self.resume_task_view), name="{}_{}_resume_task".format(*info)
            ),
            path(
                "<path:object_id>/pause/", wrap(self.pause_view), name="{}_{}_pause".format(*info)
            ),
            path(
                "<path:object_id>/resume/",
                wrap(self.resume_view),
                name="{}_{}_resume".format(*info),
            ),
            path(
                "<path:object_id>/limit/", wrap(self.limit_view), name="{}_{}_limit".format(*info)
            ),
            *super().get_urls(),
        ]

    def _page_context(self, request: HttpRequest, queue: Queue) -> dict[str, Any]:
        name = queue.name
        stats = inspection.queue_stats(using=_db()).get(name)
        return {
            "te_stats": stats,
            "te_oldest_due_age": format_age(stats.oldest_due_age) if stats else "",
            "te_throughput": f"{stats.throughput_per_minute:.1f}" if stats else "",
            "te_can_pause": self.has_pause_queue_permission(request),
            "te_durations": PAUSE_DURATION_CHOICES,
            "te_time": time_input_context(),
            "te_pause_url": self._url("pause", name),
            "te_resume_url": self._url("resume", name),
            "te_jobs_url": job_list_url(self.admin_site.name, queue=name),
            "te_next": request.get_full_path(),
            **limits_context(
                request, queue, flow_state(using=_db()).queue(name), self._url("limit", name)
            ),
            **object_entries(request, AuditObject.QUEUE, name, self.admin_site.name),
        }

    @operator_view(PAUSE_PERMISSION)
    def pause_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """POST: pause one queue (optional reason, and duration or end time)."""
        name = unquote(object_id)
        back = redirect_back(request, self._url("changelist"))
        form = PauseForm(request.POST)
        if not form.is_valid():
            self.message_user(request, form.error_text(), messages.ERROR)
            return back
        try:
            queue = operations.pause_queue(
                name,
                **acting(request),
                reason=form.cleaned_data["reason"],
                until=form.pause_until(),
                stop_running=form.cleaned_data["stop_running"],
                using=_db(),
            )
        except ValueError as exc:
            self.message_user(request, f"Nothing was paused: {exc}", messages.ERROR)
            return back
        stopping = (
            " Its running jobs were asked to pause at their next checkpoint."
            if form.cleaned_data["stop_running"]
            else " Its running jobs finish."
        )
        self._log_pause(request, queue, stopping)
        self.message_user(
            request, f"Paused queue “{name}”: no job of it starts now.{stopping}", messages.SUCCESS
        )
        return back

    @operator_view(PAUSE_PERMISSION)
    def resume_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """POST: resume one queue."""
        name = unquote(object_id)
        back = redirect_back(request, self._url("changelist"))
        queue = Queue.objects.using(_db()).filter(name=name).first()
        if queue is None or not queue.paused:
            self.message_user(
                request, f"Queue “{name}” was not paused; nothing changed.", messages.WARNING
            )
            return back
        operations.resume_queue(name, **acting(request), using=_db())
        self.log_change(request, queue, f"Resumed queue {name}.")
        self.message_user(request, f"Resumed queue “{name}”.", messages.SUCCESS)
        return back

    def _log_pause(self, request: HttpRequest, queue: Queue, note: str = "") -> None:
        self.log_change(
            request,
            queue,
            f"Paused queue {queue.name} "
            + describe_pause(
                queue.paused_by, queue.paused_at, queue.pause_reason, queue.paused_until
            )
            + "."
            + note,
        )


#: The duration choices of a row of the queue list (short labels: the column is narrow).
ROW_DURATIONS = [("", "until resumed"), ("15m", "15 min"), ("1h", "1 h"), ("4h", "4 h")]


def row_pause_form_id(name: str) -> str:
    """The id of the form a queue list row's pause fields belong to."""
    return "te-pause-" + hashlib.sha1(name.encode()).hexdigest()[:12]


def _queues(names: list[str]) -> str:
    listed = ", ".join(names[:10]) + (" …" if len(names) > 10 else "")
    return f"{len(names)} queue{'s' if len(names) != 1 else ''} ({listed})"
