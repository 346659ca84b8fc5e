"""The schedule list and page: periodic schedules with their cron expression, task, last run
(linked to its job) and next run, and Pause / Resume and Run now.

Workers create and update the rows from ``@periodic`` and ``TASKENGINE["PERIODIC"]``; the admin
never edits them. Pause, Resume and Run now are POSTs that call
:mod:`django_taskengine.operations` (``pause_schedule``, ``resume_schedule``,
``run_schedule_now``), write Django's admin log, and need the permissions ``pause_schedule``
(pause and resume) and ``run_schedule`` (run now). A schedule that this process's code and
settings no longer define can be deleted by users with ``delete_schedule``; one still defined
would be created again by the next worker that looks.
"""

from __future__ import annotations

import json
from typing import Any

from django.contrib import admin, messages
from django.contrib.admin.utils import flatten_fieldsets, unquote
from django.contrib.admin.views.main import ChangeList
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.urls import path
from django.utils import timezone
from django.utils.html import format_html
from django.utils.safestring import SafeString

from ..audit_trail import AuditObject
from ..conf import taskengine_settings
from ..models import Job, Schedule
from ..operations import ActionRefused, pause_schedule, resume_schedule, run_schedule_now

# A name, not the module: ``django_taskengine.periodic`` is also the decorator's name.
from ..periodic import definitions
from .audit import object_entries
from .common import (
    ReadOnlyModelAdmin,
    acting,
    describe_pause,
    exact_time_column,
    format_age,
    has_app_permission,
    operator_view,
    redirect_back,
)
from .job_list import job_change_url, short_time

PAUSE_PERMISSION = "pause_schedule"
RUN_PERMISSION = "run_schedule"
#: The schedule page lists this many of the latest ticks.
TICKS_SHOWN = 20


def _db() -> str:
    return taskengine_settings.DATABASE


class ScheduleChangeList(ChangeList):
    """Attaches the status of each listed schedule's last job (one query for the page), and
    which buttons the user may see."""

    def get_results(self, request: HttpRequest) -> None:
        super().get_results(request)
        schedules = list(self.result_list)
        statuses = _last_job_statuses(schedules)
        can_pause = has_app_permission(request, PAUSE_PERMISSION)
        can_run = has_app_permission(request, RUN_PERMISSION)
        for schedule in schedules:
            schedule.te_last_job_status = statuses.get(schedule.last_job_id)
            schedule.te_can_pause, schedule.te_can_run = can_pause, can_run


def _last_job_statuses(schedules: list[Schedule]) -> dict[int, str]:
    """The status of each schedule's last job, by job id, in one query."""
    ids = [s.last_job_id for s in schedules if s.last_job_id is not None]
    return dict(Job.objects.using(_db()).filter(pk__in=ids).values_list("pk", "status"))


@admin.register(Schedule)
class ScheduleAdmin(ReadOnlyModelAdmin):
    list_display = ("name", "state", "task", "cron_label", "last_run", "next_run")
    search_fields = ("name", "task_name")
    list_per_page = 100
    actions = None
    fieldsets = (
        (None, {"fields": ("name", "state", "task", "queue_label", "priority_label")}),
        ("When", {"fields": ("cron_label", "catch_up", "last_run", "next_run")}),
        (
            "History",
            {
                "fields": (
                    "paused_by",
                    "paused_at_label",
                    "created_at_label",
                    "updated_at_label",
                )
            },
        ),
    )
    readonly_fields = tuple(flatten_fieldsets(fieldsets))
    paused_at_label = exact_time_column("paused_at", "paused at")
    created_at_label = exact_time_column("created_at", "created at")
    updated_at_label = exact_time_column("updated_at", "updated at")

    # -- permissions: rows come from code and settings ---------------------------------

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # Only the leftovers of schedules removed from the code or settings.
        return (
            obj is not None
            and obj.name not in definitions()
            and admin.ModelAdmin.has_delete_permission(self, request, obj)
        )

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return super().has_view_permission(request, obj) or any(
            has_app_permission(request, codename) for codename in (PAUSE_PERMISSION, RUN_PERMISSION)
        )

    # -- the list --------------------------------------------------------------------

    def get_queryset(self, request: HttpRequest) -> QuerySet[Schedule]:
        return super().get_queryset(request).using(_db())

    def get_changelist(self, request: HttpRequest, **kwargs: Any) -> type[ChangeList]:
        return ScheduleChangeList

    def get_list_display(self, request: HttpRequest) -> Any:
        if has_app_permission(request, PAUSE_PERMISSION) or has_app_permission(
            request, RUN_PERMISSION
        ):
            return (*self.list_display, "buttons")
        return self.list_display

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        return super().changelist_view(
            request, {"title": "Periodic schedules", **(extra_context or {})}
        )

    @admin.display(description="state")
    def state(self, schedule: Schedule) -> SafeString:
        if schedule.paused:
            shown = format_html(
                '<strong class="te-paused">Paused</strong> <span class="te-detail">{}</span>',
                describe_pause(schedule.paused_by, schedule.paused_at, "", None),
            )
        else:
            shown = format_html('<span class="te-running">{}</span>', "Active")
        if schedule.name not in definitions():
            shown = format_html(
                '{} <span class="te-warning" title="{}">(not defined here)</span>',
                shown,
                "Neither @periodic nor TASKENGINE['PERIODIC'] defines it in this process: only "
                "workers whose code still does enqueue its ticks.",
            )
        return shown

    @admin.display(description="task")
    def task(self, schedule: Schedule) -> SafeString:
        call = _call_text(schedule.args, schedule.kwargs)
        if not call:
            return format_html("{}", schedule.task_name)
        return format_html('{} <span class="te-detail">{}</span>', schedule.task_name, call)

    @admin.display(description="cron")
    def cron_label(self, schedule: Schedule) -> SafeString:
        return format_html(
            '<code>{}</code> <span class="te-detail">{}</span>', schedule.cron, schedule.timezone
        )

    @admin.display(description="last run")
    def last_run(self, schedule: Schedule) -> SafeString | str:
        if schedule.last_tick_at is None:
            return "—"
        if schedule.last_job_id is None:
            return short_time(schedule.last_tick_at)
        status = getattr(schedule, "te_last_job_status", None)
        job_url = job_change_url(self.admin_site.name, schedule.last_job_id)
        return format_html(
            '{} <a href="{}" data-job="{}">job {}</a> '
            '<span class="te-status te-status-{}">{}</span>',
            short_time(schedule.last_tick_at),
            job_url,
            schedule.last_job_id,
            schedule.last_job_id,
            status or "deleted",
            status or "(deleted)",
        )

    @admin.display(description="next run")
    def next_run(self, schedule: Schedule) -> SafeString | str:
        if schedule.paused:
            return format_html('<span class="te-detail">{}</span>', "none while paused")
        if schedule.next_tick_at is None:
            return format_html('<span class="te-detail">{}</span>', "never")
        wait = schedule.next_tick_at - timezone.now()
        when = f"in {format_age(wait)}" if wait.total_seconds() >= 0 else "due now"
        return format_html(
            '{} <span class="te-detail">({})</span>', short_time(schedule.next_tick_at), when
        )

    @admin.display(description="queue")
    def queue_label(self, schedule: Schedule) -> str:
        return schedule.queue or "the task's own"

    @admin.display(description="priority")
    def priority_label(self, schedule: Schedule) -> str:
        return "the task's own" if schedule.priority is None else str(schedule.priority)

    @admin.display(description="actions")
    def buttons(self, schedule: Schedule) -> SafeString:
        # The changelist is already a POST form with a CSRF token: a button only redirects it.
        html = []
        if getattr(schedule, "te_can_pause", False):
            action = "resume" if schedule.paused else "pause"
            html.append(self._button(action, action.capitalize(), schedule))
        if getattr(schedule, "te_can_run", False):
            html.append(self._button("run_now", "Run now", schedule))
        return SafeString(" ".join(html))  # each part escaped by format_html

    def _button(self, action: str, label: str, schedule: Schedule) -> str:
        return str(
            format_html(
                '<button type="submit" class="button" formmethod="post" formaction="{}" '
                'formnovalidate data-action="{}-schedule" data-schedule="{}">{}</button>',
                self._url(action, schedule.pk),
                action.replace("_", "-"),
                schedule.name,
                label,
            )
        )

    # -- one schedule ------------------------------------------------------------------

    def get_urls(self) -> list[Any]:
        info = self.opts.app_label, self.opts.model_name
        return [
            path(
                f"<path:object_id>/{segment}/",
                self.admin_site.admin_view(view),
                name="{}_{}_{}".format(*info, name),
            )
            for segment, name, view in (
                ("pause", "pause", self.pause_view),
                ("resume", "resume", self.resume_view),
                ("run-now", "run_now", self.run_now_view),
            )
        ] + super().get_urls()

    def get_object(self, request: HttpRequest, object_id: str, from_field: Any = None) -> Any:
        schedule = super().get_object(request, object_id, from_field)
        if schedule is not None:
            schedule.te_last_job_status = _last_job_statuses([schedule]).get(schedule.last_job_id)
        return schedule

    def _page_context(self, request: HttpRequest, schedule: Schedule) -> dict[str, Any]:
        ticks = list(schedule.ticks.using(_db()).order_by("-tick")[:TICKS_SHOWN])
        statuses = dict(
            Job.objects.using(_db())
            .filter(pk__in=[t.job_id for t in ticks if t.job_id is not None])
            .values_list("pk", "status")
        )
        return {
            "te_can_pause": has_app_permission(request, PAUSE_PERMISSION),
            "te_can_run": has_app_permission(request, RUN_PERMISSION),
            "te_pause_url": self._url("pause", schedule.pk),
            "te_resume_url": self._url("resume", schedule.pk),
            "te_run_now_url": self._url("run_now", schedule.pk),
            "te_next": request.get_full_path(),
            "te_arguments": json.dumps(
                {"args": schedule.args, "kwargs": schedule.kwargs}, indent=2, ensure_ascii=False
            ),
            "te_ticks": [
                {
                    "tick": short_time(tick.tick),
                    "enqueued_at": short_time(tick.enqueued_at),
                    "job_id": tick.job_id,
                    "job_url": job_change_url(self.admin_site.name, tick.job_id)
                    if tick.job_id is not None
                    else "",
                    "status": statuses.get(tick.job_id, "") if tick.job_id is not None else "",
                }
                for tick in ticks
            ],
            **object_entries(request, AuditObject.SCHEDULE, schedule.name, self.admin_site.name),
        }

    def _schedule_or_message(self, request: HttpRequest, object_id: str) -> Schedule | None:
        schedule = Schedule.objects.using(_db()).filter(pk=_int(unquote(object_id))).first()
        if schedule is None:
            self.message_user(
                request,
                f"No schedule with id {unquote(object_id)!r}; nothing changed.",
                messages.ERROR,
            )
        return schedule

    @operator_view(PAUSE_PERMISSION)
    def pause_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """POST: stop enqueueing the schedule's ticks, everywhere, until Resume."""
        back = redirect_back(request, self._url("changelist"))
        schedule = self._schedule_or_message(request, object_id)
        if schedule is None:
            return back
        try:
            pause_schedule(schedule.name, **acting(request), using=_db())
        except ActionRefused as refused:
            self.message_user(request, str(refused), messages.WARNING)
            return back
        self.log_change(request, schedule, f"Paused schedule {schedule.name}.")
        self.message_user(
            request,
            f"Paused schedule “{schedule.name}”: no job of it is enqueued until Resume.",
            messages.SUCCESS,
        )
        return back

    @operator_view(PAUSE_PERMISSION)
    def resume_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """POST: resume a paused schedule from its next tick (ticks while paused are skipped)."""
        back = redirect_back(request, self._url("changelist"))
        schedule = self._schedule_or_message(request, object_id)
        if schedule is None:
            return back
        try:
            resumed = resume_schedule(schedule.name, **acting(request), using=_db())
        except ActionRefused as refused:
            self.message_user(request, str(refused), messages.WARNING)
            return back
        self.log_change(request, schedule, f"Resumed schedule {schedule.name}.")
        following = (
            f"its next job is for {timezone.localtime(resumed.next_tick_at):%Y-%m-%d %H:%M:%S}"
            if resumed.next_tick_at
            else "it has no further tick"
        )
        self.message_user(
            request,
            f"Resumed schedule “{schedule.name}”: {following} (ticks while it was paused are "
            "skipped).",
            messages.SUCCESS,
        )
        return back

    @operator_view(RUN_PERMISSION)
    def run_now_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """POST: enqueue one job of the schedule now (not a tick: the ticks go on as before)."""
        back = redirect_back(request, self._url("changelist"))
        schedule = self._schedule_or_message(request, object_id)
        if schedule is None:
            return back
        try:
            job = run_schedule_now(schedule.name, **acting(request), using=_db())
        except ActionRefused as refused:
            self.message_user(request, str(refused), messages.ERROR)
            return back
        self.log_change(request, schedule, f"Ran schedule {schedule.name} now: job {job.pk}.")
        job_url = job_change_url(self.admin_site.name, job.pk)
        self.message_user(
            request,
            format_html(
                'Enqueued <a href="{}">job {}</a> of schedule “{}” now.',
                job_url,
                job.pk,
                schedule.name,
            ),
            messages.SUCCESS,
        )
        return back


def _call_text(args: Any, kwargs: Any) -> str:
    """'(1, "a", days=7)', shortened to 80 characters; '' without arguments."""
    if not args and not kwargs:
        return ""
    parts = [json.dumps(value, ensure_ascii=False) for value in args or []]
    parts += [
        f"{key}={json.dumps(value, ensure_ascii=False)}" for key, value in (kwargs or {}).items()
    ]
    text = f"({', '.join(parts)})"
    return text if len(text) <= 80 else text[:78] + "…)"


def _int(value: str) -> int:
    try:
        return int(value)
    except ValueError:
        return 0
