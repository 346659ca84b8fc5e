"""The queue list and page, and the engine-wide controls: pause or resume a queue, every queue,
or one task type across all queues.

Every pause and resume is a POST that calls :mod:`django_taskengine.operations` with the
operator's user name, and is written to Django's admin log. The list's job counts come from one
:func:`~django_taskengine.inspection.queue_stats` call per page, not from queries per row.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.contrib.admin.utils import quote, unquote
from django.contrib.admin.views.main import ChangeList
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.urls import path, reverse
from django.utils.html import format_html
from django.utils.safestring import SafeString

from .. import inspection, operations
from ..conf import taskengine_settings
from ..models import Pause, PauseScope, Queue
from ..task import registered_tasks
from .common import (
    PAUSE_DURATIONS,
    STYLESHEET,
    PauseForm,
    describe_pause,
    describe_until,
    format_age,
    has_app_permission,
    operator_view,
    redirect_back,
    username,
)
from .jobs import job_list_url

PAUSE_PERMISSION = "pause_queue"


def _db() -> str:
    return taskengine_settings.DATABASE


def queue_state(queue: Queue | None, engine_pause: Pause | None = None) -> SafeString:
    """'Paused by alice 3 min ago: "smtp outage"; until …' or 'Running', as escaped HTML."""
    if queue is not None and queue.is_paused:
        return format_html(
            '<strong class="te-paused">Paused</strong> <span class="te-detail">{}</span>',
            describe_pause(queue.paused_by, queue.paused_at, queue.pause_reason, queue.paused_until),
        )
    notes = []
    if queue is not None and queue.paused and queue.paused_until is not None:
        notes.append(f"timed pause {describe_until(queue.paused_until)}")
    if engine_pause is not None:
        notes.append("held: every queue is paused")
    if not notes:
        return format_html('<span class="te-running">{}</span>', "Running")
    return format_html(
        '<span class="te-running">Running</span> <span class="te-detail">({})</span>',
        "; ".join(notes),
    )


def pause_controls_context(request: HttpRequest, admin_site_name: str, next_url: str) -> dict[str, Any]:
    """Context of ``engine_controls.html``: Pause all / Resume all, and task-type pauses."""
    pauses = operations.active_pauses(using=_db())
    task_pauses = [p for p in pauses if p.scope == PauseScope.TASK]
    engine_pause = next((p for p in pauses if p.scope == PauseScope.ENGINE), None)
    url = f"{admin_site_name}:django_taskengine_queue_"
    return {
        "can_pause": has_app_permission(request, PAUSE_PERMISSION),
        "engine_pause": engine_pause,
        "engine_pause_text": engine_pause and describe_pause(
            engine_pause.paused_by,
            engine_pause.paused_at,
            engine_pause.pause_reason,
            engine_pause.paused_until,
        ),
        "task_pauses": [
            {
                "pause": pause,
                "text": describe_pause(
                    pause.paused_by, pause.paused_at, pause.pause_reason, pause.paused_until
                ),
            }
            for pause in task_pauses
        ],
        "task_names": sorted(set(registered_tasks()) | {p.target for p in task_pauses}),
        "durations": [(value, label) for value, label, _ in PAUSE_DURATIONS],
        "next_url": next_url,
        "urls": {
            name: reverse(url + name)
            for name in ("pause_all", "resume_all", "pause_task", "resume_task")
        },
    }


class QueueChangeList(ChangeList):
    """Attaches each listed queue's statistics, computed once for the page."""

    def get_results(self, request: HttpRequest) -> None:
        super().get_results(request)
        stats = inspection.queue_stats(using=_db())
        engine_pause = next(
            (p for p in operations.active_pauses(using=_db()) if p.scope == PauseScope.ENGINE), None
        )
        for queue in self.result_list:
            queue.te_stats = stats.get(queue.name) or inspection.QueueStats(queue.name, queue)
            queue.te_engine_pause = engine_pause


@admin.register(Queue)
class QueueAdmin(admin.ModelAdmin):
    list_display = (
        "name", "state", "queued", "due", "running", "failed", "oldest_due", "throughput",
    )
    actions = ("pause_selected", "resume_selected")
    list_per_page = 100
    fields = (
        "name", "state", "paused_by", "paused_at", "pause_reason", "paused_until", "created_at",
    )
    readonly_fields = fields

    class Media:
        css = {"all": [STYLESHEET]}

    # -- permissions: queue rows change only through pause and resume ------------------

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return super().has_view_permission(request, obj) or self.has_pause_queue_permission(request)

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
        return self._count_link(queue, queue.te_stats.queued, "queued")

    @admin.display(description="due")
    def due(self, queue: Queue) -> str:
        return f"{queue.te_stats.due:,}"

    @admin.display(description="running")
    def running(self, queue: Queue) -> SafeString:
        return self._count_link(queue, queue.te_stats.running, "running")

    @admin.display(description="failed")
    def failed(self, queue: Queue) -> SafeString:
        return self._count_link(queue, queue.te_stats.failed, "failed")

    @admin.display(description="oldest due")
    def oldest_due(self, queue: Queue) -> str:
        return format_age(queue.te_stats.oldest_due_age)

    @admin.display(description="finished per minute (5 min)")
    def throughput(self, queue: Queue) -> str:
        return f"{queue.te_stats.throughput_per_minute:.1f}"

    @admin.display(description="actions")
    def buttons(self, queue: Queue) -> SafeString:
        # The changelist is already a POST form with a CSRF token: the button only redirects it.
        action = "resume" if queue.is_paused else "pause"
        return format_html(
            '<button type="submit" class="button" formmethod="post" formaction="{}" '
            'formnovalidate data-action="{}-queue" data-queue="{}">{}</button>',
            self._url(action, queue.name),
            action,
            queue.name,
            action.capitalize(),
        )

    def _url(self, name: str, queue_name: str | None = None) -> str:
        args = [] if queue_name is None else [quote(queue_name)]
        return reverse(
            f"{self.admin_site.name}:{self.opts.app_label}_{self.opts.model_name}_{name}",
            args=args,
        )

    # -- bulk actions ------------------------------------------------------------------

    @admin.action(description="Pause selected queues", permissions=[PAUSE_PERMISSION])
    def pause_selected(self, request: HttpRequest, queryset: QuerySet[Queue]) -> None:
        names = list(queryset.values_list("name", flat=True))
        for name in names:
            queue = operations.pause_queue(name, by=username(request), using=_db())
            self._log_pause(request, queue)
        self.message_user(request, f"Paused {_queues(names)}.", messages.SUCCESS)

    @admin.action(description="Resume selected queues", permissions=[PAUSE_PERMISSION])
    def resume_selected(self, request: HttpRequest, queryset: QuerySet[Queue]) -> None:
        resumed = []
        for queue in queryset:
            if queue.paused:
                operations.resume_queue(queue.name, by=username(request), using=_db())
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
            path("<path:object_id>/pause/", wrap(self.pause_view), name="{}_{}_pause".format(*info)),
            path(
                "<path:object_id>/resume/", wrap(self.resume_view), name="{}_{}_resume".format(*info)
            ),
            *super().get_urls(),
        ]

    def change_view(
        self,
        request: HttpRequest,
        object_id: str,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        name = unquote(object_id)
        stats = inspection.queue_stats(using=_db()).get(name)
        context = {
            "te_stats": stats,
            "te_oldest_due_age": format_age(stats.oldest_due_age) if stats else "",
            "te_throughput": f"{stats.throughput_per_minute:.1f}" if stats else "",
            "te_can_pause": self.has_pause_queue_permission(request),
            "te_durations": [(value, label) for value, label, _ in PAUSE_DURATIONS],
            "te_pause_url": self._url("pause", name),
            "te_resume_url": self._url("resume", name),
            "te_jobs_url": job_list_url(self.admin_site.name, queue=name),
            "te_next": request.get_full_path(),
            **(extra_context or {}),
        }
        return super().change_view(request, object_id, form_url, context)

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
                by=username(request),
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
            self.message_user(request, f"Queue “{name}” was not paused; nothing changed.", messages.WARNING)
            return back
        operations.resume_queue(name, by=username(request), using=_db())
        self.log_change(request, queue, f"Resumed queue {name}.")
        self.message_user(request, f"Resumed queue “{name}”.", messages.SUCCESS)
        return back

    def _log_pause(self, request: HttpRequest, queue: Queue, note: str = "") -> None:
        self.log_change(
            request,
            queue,
            f"Paused queue {queue.name} "
            + describe_pause(queue.paused_by, queue.paused_at, queue.pause_reason, queue.paused_until)
            + "."
            + note,
        )

    # -- the engine and task types -----------------------------------------------------

    @operator_view(PAUSE_PERMISSION)
    def pause_all_view(self, request: HttpRequest) -> HttpResponse:
        """POST: pause every queue at once."""
        back = redirect_back(request, self._url("changelist"))
        form = PauseForm(request.POST)
        if not form.is_valid():
            self.message_user(request, form.error_text(), messages.ERROR)
            return back
        pause = operations.pause_all(
            by=username(request),
            reason=form.cleaned_data["reason"],
            until=form.pause_until(),
            using=_db(),
        )
        self._log_wide_pause(request, pause)
        self.message_user(request, "Paused all queues: no job starts until Resume all.", messages.SUCCESS)
        return back

    @operator_view(PAUSE_PERMISSION)
    def resume_all_view(self, request: HttpRequest) -> HttpResponse:
        """POST: end the engine-wide pause (queues paused on their own stay paused)."""
        back = redirect_back(request, self._url("changelist"))
        pause = Pause.objects.using(_db()).filter(scope=PauseScope.ENGINE).first()
        if pause is None or not operations.resume_all(by=username(request), using=_db()):
            self.message_user(request, "The queues were not all paused; nothing changed.", messages.WARNING)
            return back
        self.log_change(request, pause, "Resumed all queues (the engine-wide pause ended).")
        still = Queue.objects.using(_db()).filter(paused=True).count()
        note = f" {still} queue(s) paused on their own stay paused." if still else ""
        self.message_user(request, f"Resumed all queues.{note}", messages.SUCCESS)
        return back

    @operator_view(PAUSE_PERMISSION)
    def pause_task_view(self, request: HttpRequest) -> HttpResponse:
        """POST: stop starting jobs of one task type, in every queue."""
        back = redirect_back(request, self._url("changelist"))
        form = PauseForm(request.POST)
        task_name = request.POST.get("task_name", "").strip()
        if not form.is_valid():
            self.message_user(request, form.error_text(), messages.ERROR)
            return back
        try:
            pause = operations.pause_task(
                task_name,
                by=username(request),
                reason=form.cleaned_data["reason"],
                until=form.pause_until(),
                using=_db(),
            )
        except ValueError as exc:
            self.message_user(request, f"Nothing was paused: {exc}", messages.ERROR)
            return back
        self._log_wide_pause(request, pause)
        self.message_user(
            request, f"Paused task type {task_name}: none of its jobs starts now.", messages.SUCCESS
        )
        return back

    @operator_view(PAUSE_PERMISSION)
    def resume_task_view(self, request: HttpRequest) -> HttpResponse:
        """POST: end one task type's pause."""
        back = redirect_back(request, self._url("changelist"))
        task_name = request.POST.get("task_name", "")
        pause = Pause.objects.using(_db()).filter(scope=PauseScope.TASK, target=task_name).first()
        if pause is None or not operations.resume_task(task_name, by=username(request), using=_db()):
            self.message_user(
                request, f"Task type {task_name} was not paused; nothing changed.", messages.WARNING
            )
            return back
        self.log_change(request, pause, f"Resumed task type {task_name}.")
        self.message_user(request, f"Resumed task type {task_name}.", messages.SUCCESS)
        return back

    def _log_wide_pause(self, request: HttpRequest, pause: Pause) -> None:
        what = "all queues" if pause.scope == PauseScope.ENGINE else f"task type {pause.target}"
        self.log_change(
            request,
            pause,
            f"Paused {what} "
            + describe_pause(pause.paused_by, pause.paused_at, pause.pause_reason, pause.paused_until)
            + ".",
        )


def _queues(names: list[str]) -> str:
    listed = ", ".join(names[:10]) + (" …" if len(names) > 10 else "")
    return f"{len(names)} queue{'s' if len(names) != 1 else ''} ({listed})"


__all__ = ["QueueAdmin", "pause_controls_context", "queue_state"]
