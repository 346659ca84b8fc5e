"""Failed jobs grouped by exception class and message, with "Retry all in this group".

A job's error is written as ``"ValueError: order 17 not found"`` (core/lifecycle.py). Errors
that differ only in numbers, ids, UUIDs or hex values ("order 17 not found", "order 18 not
found") are one group: the class is kept, the message normalized (:func:`normalize_message`).

The page stays cheap on a large table: it reads the failures of a window (the last 24 hours by
default) through ``taskengine_job_failed_idx``, newest first, at most :data:`SAMPLE_SIZE` of
them (the short head of each error, not the traceback), and groups them in Python. When the
window holds more failures than that, the page says the counts are of the newest ones.
Retrying a group is a POST (permission ``retry_job``) that shows a confirmation with the
number of jobs first, then retries them through :func:`django_taskengine.operations.apply_to_jobs`
in chunks, each job audited; at most :data:`GROUP_ACTION_LIMIT` per click, newest first — the
page then says how many are left for the next click.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
from dataclasses import dataclass, field
from typing import Any

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.db.models.functions import Left
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path
from django.utils import timezone

from .. import operations
from ..conf import taskengine_settings
from ..failure_models import Failures
from ..models import Job, JobStatus
from .common import (
    ReadOnlyModelAdmin,
    acting,
    exact_time,
    has_app_permission,
    operator_view,
)
from .job_list import job_change_url, job_list_url

#: At most this many failures of the window are read and grouped.
SAMPLE_SIZE = 5_000
#: "Retry all in this group" retries at most this many jobs per click (the bulk actions' bound).
GROUP_ACTION_LIMIT = 1000
#: Jobs per call of the operations, so that a long retry shows progress in the audit trail.
CHUNK = 100
#: Characters of each error read: enough for the class and the message's first line.
ERROR_HEAD = 300
#: The windows the page offers, in hours.
WINDOWS = (1, 24, 24 * 7)
DEFAULT_WINDOW = 24

_CLASS = re.compile(r"^([A-Za-z_][\w.]*): ?(.*)$", re.DOTALL)
_NORMALIZERS = [
    (
        re.compile(
            r"\b[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\b"
        ),
        "<uuid>",
    ),
    (re.compile(r"\b0x[0-9a-fA-F]+\b"), "<hex>"),
    (re.compile(r"\b(?=[0-9a-fA-F]*\d)(?=[0-9a-fA-F]*[a-fA-F])[0-9a-fA-F]{8,}\b"), "<hex>"),
    (re.compile(r"\d+(?:\.\d+)?"), "<n>"),
]
_PLACEHOLDER = re.compile(r"<(?:uuid|hex|n)>")


def split_error(error: str) -> tuple[str, str]:
    """('ValueError', 'bad input') from 'ValueError: bad input'; ('', text) for an error that
    names no exception class (an operator's hard stop, a snooze)."""
    first_line = error.strip().splitlines()[0] if error.strip() else ""
    match = _CLASS.match(first_line)
    if match is None:
        return "", first_line
    return match.group(1), match.group(2)


def normalize_message(message: str) -> str:
    """The message with what varies between jobs replaced: UUIDs by <uuid>, hex values by
    <hex>, numbers by <n> ('order 17 not found' -> 'order <n> not found')."""
    for pattern, placeholder in _NORMALIZERS:
        message = pattern.sub(placeholder, message)
    return " ".join(message.split())[:200]


def group_key(exception: str, message: str) -> str:
    """A short stable id of a group, for URLs."""
    return hashlib.sha1(f"{exception}\n{message}".encode()).hexdigest()[:16]


def search_term(exception: str, message: str) -> str:
    """Words that the job list's search finds this group's jobs by (its placeholders left out)."""
    words = _PLACEHOLDER.sub(" ", f"{exception} {message}").split()
    return " ".join(word.strip(".,;:'\"()[]{}") for word in words if word.strip(".,;:'\"()[]{}"))


@dataclass
class FailureGroup:
    """Failed jobs whose errors have one class and one normalized message."""

    key: str
    exception: str
    message: str
    job_ids: list[int] = field(default_factory=list)
    tasks: set[str] = field(default_factory=set)
    queues: set[str] = field(default_factory=set)
    first_seen: dt.datetime | None = None
    last_seen: dt.datetime | None = None

    @property
    def count(self) -> int:
        return len(self.job_ids)


@dataclass
class FailureReport:
    """The groups of one window, largest first."""

    since: dt.datetime
    groups: list[FailureGroup]
    read: int
    #: More failures in the window than were read: counts are of the newest ones.
    truncated: bool


def failed_jobs(since: dt.datetime, using: str) -> QuerySet[Job]:
    """Failed jobs finished since ``since``, newest first (served by the failed index)."""
    return (
        Job.objects.using(using)
        .filter(finished_at__gte=since, status=JobStatus.FAILED)
        .order_by("-finished_at", "-id")
    )


def failure_groups(since: dt.datetime, *, using: str, sample: int = SAMPLE_SIZE) -> FailureReport:
    """Group the newest ``sample`` failures since ``since`` by class and normalized message."""
    rows = list(
        failed_jobs(since, using)
        .annotate(error_head=Left("error", ERROR_HEAD))
        .values_list("id", "task_name", "queue", "error_head")[: sample + 1]
    )
    truncated = len(rows) > sample
    groups: dict[str, FailureGroup] = {}
    # Many failures repeat an error word for word: each distinct text is normalized once.
    seen: dict[str, FailureGroup] = {}
    for job_id, task_name, queue, error in rows[:sample]:
        group = seen.get(error)
        if group is None:
            exception, message = split_error(error or "")
            normalized = normalize_message(message)
            key = group_key(exception, normalized)
            group = groups.get(key)
            if group is None:
                group = groups[key] = FailureGroup(key, exception, normalized)
            seen[error] = group
        group.job_ids.append(job_id)
        group.tasks.add(task_name)
        group.queues.add(queue)
    # When each group was first and last seen: the end times of its oldest and newest jobs,
    # read for those only (parsing a timestamp per row read took half the page's time).
    ends = [job_id for group in groups.values() for job_id in (group.job_ids[0], group.job_ids[-1])]
    finished = dict(Job.objects.using(using).filter(pk__in=ends).values_list("pk", "finished_at"))
    for group in groups.values():
        group.last_seen = finished.get(group.job_ids[0])
        group.first_seen = finished.get(group.job_ids[-1])
    ordered = sorted(groups.values(), key=lambda g: (-g.count, g.exception, g.message))
    return FailureReport(since, ordered, min(len(rows), sample), truncated)


def window_hours(request: HttpRequest) -> int:
    try:
        hours = int(request.GET.get("hours") or request.POST.get("hours") or DEFAULT_WINDOW)
    except ValueError:
        return DEFAULT_WINDOW
    return hours if hours in WINDOWS else DEFAULT_WINDOW


@admin.register(Failures)
class FailuresAdmin(ReadOnlyModelAdmin):
    """The failures page, in place of a list of rows."""

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return bool(
            request.user.has_perm("django_taskengine.view_job")
            or has_app_permission(request, "retry_job")
        )

    def get_urls(self) -> list[Any]:
        info = self.opts.app_label, self.opts.model_name
        return [
            path(
                "retry/",
                self.admin_site.admin_view(self.retry_group_view),
                name="{}_{}_retry".format(*info),
            ),
            *super().get_urls(),
        ]

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        if not self.has_view_permission(request):
            raise PermissionDenied
        hours = window_hours(request)
        report = failure_groups(timezone.now() - dt.timedelta(hours=hours), using=_db())
        site = self.admin_site.name
        rows = [
            {
                "group": group,
                "tasks": sorted(group.tasks),
                "queues": sorted(group.queues),
                "first_seen": exact_time(group.first_seen),
                "last_seen": exact_time(group.last_seen),
                "example_url": job_change_url(site, group.job_ids[0]),
                "example_id": group.job_ids[0],
                "list_url": job_list_url(
                    site, status="failed", q=search_term(group.exception, group.message)
                ),
            }
            for group in report.groups
        ]
        context = {
            **self.admin_site.each_context(request),
            "title": "Failures",
            "opts": self.opts,
            "te_report": report,
            "te_rows": rows,
            "te_hours": hours,
            "te_windows": [(value, _window_label(value)) for value in WINDOWS],
            "te_since": exact_time(report.since),
            "te_sample": SAMPLE_SIZE,
            "te_can_retry": has_app_permission(request, "retry_job"),
            "te_retry_url": self._url("retry"),
            "te_failed_url": job_list_url(site, status="failed"),
            "media": self.media,
            **(extra_context or {}),
        }
        return TemplateResponse(request, "admin/django_taskengine/failures/groups.html", context)

    @operator_view("retry_job")
    def retry_group_view(self, request: HttpRequest) -> HttpResponse:
        """POST: confirm, then retry the failed jobs of one group (newest first, bounded)."""
        hours = window_hours(request)
        report = failure_groups(timezone.now() - dt.timedelta(hours=hours), using=_db())
        back = HttpResponseRedirect(f"{self._url('changelist')}?hours={hours}")
        group = next((g for g in report.groups if g.key == request.POST.get("group")), None)
        if group is None:
            self.message_user(
                request,
                "That failure group has no failed jobs left in the window (retried already, or "
                "older now); nothing was retried.",
                messages.WARNING,
            )
            return back
        ids = group.job_ids[:GROUP_ACTION_LIMIT]
        left = group.count - len(ids)
        if request.POST.get("confirmed") != "yes":
            context = {
                **self.admin_site.each_context(request),
                "title": "Retry a failure group?",
                "opts": self.opts,
                "te_group": group,
                "te_count": len(ids),
                "te_left": left,
                "te_limit": GROUP_ACTION_LIMIT,
                "te_hours": hours,
                "te_retry_url": self._url("retry"),
                "te_back_url": back.url,
            }
            return TemplateResponse(
                request, "admin/django_taskengine/failures/confirm_retry.html", context
            )
        label = f"{group.exception}: {group.message}" if group.exception else group.message
        changed: list[Job] = []
        refused: list[tuple[int, str]] = []
        for start in range(0, len(ids), CHUNK):
            done, not_done = operations.apply_to_jobs(
                "retry",
                ids[start : start + CHUNK],
                **acting(request),
                reason=f"retry all in failure group “{label[:200]}”",
                using=_db(),
            )
            changed += done
            refused += not_done
        job_admin = self.admin_site._registry.get(Job)
        if job_admin is not None:
            for job in changed:
                job_admin.log_change(request, job, f"Retried (failure group “{label[:200]}”).")
        self.message_user(
            request,
            f"Retried {len(changed)} job{'s' if len(changed) != 1 else ''} of the group "
            f"“{label[:200]}”."
            + (f" {left:,} older ones are left: retry the group again for them." if left else ""),
            messages.SUCCESS,
        )
        if refused:
            self.message_user(
                request,
                f"{len(refused)} job(s) were left unchanged: {refused[0][1]}",
                messages.WARNING,
            )
        return back


def _window_label(hours: int) -> str:
    if hours < 24:
        return f"last {hours} hour{'s' if hours != 1 else ''}"
    return "last 24 hours" if hours == 24 else f"last {hours // 24} days"


def _db() -> str:
    return taskengine_settings.DATABASE
