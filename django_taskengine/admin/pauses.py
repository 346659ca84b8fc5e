"""Pauses wider than one queue — every queue at once, or one task type across all queues —
and how pauses are shown. The views live under the queue admin's URLs (``queue/pause-all/``…)
and are shared with the overview page."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html
from django.utils.safestring import SafeString

from .. import operations
from ..conf import taskengine_settings
from ..models import Pause, PauseScope, Queue
from ..registry import registered_tasks
from .common import (
    PAUSE_DURATION_CHOICES,
    PauseForm,
    acting,
    describe_pause,
    describe_until,
    exact_time_text,
    has_app_permission,
    operator_view,
    redirect_back,
    time_zone_name,
)

PAUSE_PERMISSION = "pause_queue"


def _db() -> str:
    return taskengine_settings.DATABASE


def queue_state(queue: Queue | None, engine_pause: Pause | None = None) -> SafeString:
    """'Paused by alice 3 min ago: "smtp outage"; until …' or 'Running', as escaped HTML."""
    if queue is not None and queue.is_paused:
        return format_html(
            '<strong class="te-paused">Paused</strong> <span class="te-detail">{}</span>',
            describe_pause(
                queue.paused_by, queue.paused_at, queue.pause_reason, queue.paused_until
            ),
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


def time_input_context() -> dict[str, str]:
    """What labels every "pause until" input: the zone the time is read in, and the time now
    in that zone (``time_zone``, ``now``)."""
    return {"time_zone": time_zone_name(), "now": exact_time_text(timezone.now())}


def pause_controls_context(
    request: HttpRequest, admin_site_name: str, next_url: str
) -> dict[str, Any]:
    """Context of ``engine_controls.html``: Pause all / Resume all, and task-type pauses."""
    pauses = operations.active_pauses(using=_db())
    task_pauses = [p for p in pauses if p.scope == PauseScope.TASK]
    engine_pause = next((p for p in pauses if p.scope == PauseScope.ENGINE), None)
    url = f"{admin_site_name}:django_taskengine_queue_"
    return {
        "can_pause": has_app_permission(request, PAUSE_PERMISSION),
        "engine_pause": engine_pause,
        "engine_pause_text": (
            describe_pause(
                engine_pause.paused_by,
                engine_pause.paused_at,
                engine_pause.pause_reason,
                engine_pause.paused_until,
            )
            if engine_pause
            else ""
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
        "durations": PAUSE_DURATION_CHOICES,
        **time_input_context(),
        "next_url": next_url,
        "urls": {
            name: reverse(url + name)
            for name in ("pause_all", "resume_all", "pause_task", "resume_task")
        },
    }


class EnginePauseViews:
    """Pause all / Resume all and task-type pauses, as views of the queue admin (a ModelAdmin
    mixin: it uses ``message_user``, ``log_change`` and ``_url``)."""

    message_user: Any
    log_change: Any
    _url: Any

    @operator_view(PAUSE_PERMISSION)
    def pause_all_view(self, request: HttpRequest) -> HttpResponse:
        """POST: pause every queue at once."""
        back = redirect_back(request, self._url("changelist"))
        form = PauseForm(request.POST)
        if not form.is_valid():
            self.message_user(request, form.error_text(), messages.ERROR)
            return back
        pause = operations.pause_all(
            **acting(request),
            reason=form.cleaned_data["reason"],
            until=form.pause_until(),
            using=_db(),
        )
        self._log_wide_pause(request, pause)
        self.message_user(
            request, "Paused all queues: no job starts until Resume all.", messages.SUCCESS
        )
        return back

    @operator_view(PAUSE_PERMISSION)
    def resume_all_view(self, request: HttpRequest) -> HttpResponse:
        """POST: end the engine-wide pause (queues paused on their own stay paused)."""
        back = redirect_back(request, self._url("changelist"))
        pause = Pause.objects.using(_db()).filter(scope=PauseScope.ENGINE).first()
        if pause is None or not operations.resume_all(**acting(request), using=_db()):
            self.message_user(
                request, "The queues were not all paused; nothing changed.", messages.WARNING
            )
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
                **acting(request),
                reason=form.cleaned_data["reason"],
                until=form.pause_until(),
                stop_running=form.cleaned_data["stop_running"],
                using=_db(),
            )
        except ValueError as exc:
            self.message_user(request, f"Nothing was paused: {exc}", messages.ERROR)
            return back
        self._log_wide_pause(request, pause)
        told = f"Paused task type {task_name}: none of its jobs starts now."
        if form.cleaned_data["stop_running"]:
            told += (
                " Its running jobs pause at their next checkpoint (a task that never "
                "checkpoints finishes its current attempt); Resume requeues them."
            )
        self.message_user(request, told, messages.SUCCESS)
        return back

    @operator_view(PAUSE_PERMISSION)
    def resume_task_view(self, request: HttpRequest) -> HttpResponse:
        """POST: end one task type's pause."""
        back = redirect_back(request, self._url("changelist"))
        task_name = request.POST.get("task_name", "")
        pause = Pause.objects.using(_db()).filter(scope=PauseScope.TASK, target=task_name).first()
        if pause is None or not operations.resume_task(task_name, **acting(request), using=_db()):
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
            + describe_pause(
                pause.paused_by, pause.paused_at, pause.pause_reason, pause.paused_until
            )
            + ".",
        )
