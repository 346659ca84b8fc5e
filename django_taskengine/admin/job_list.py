"""The job list's machinery: filters whose choices cost no scan of the job table, a change
list that reads only the columns it shows (and of the heavy ones, a bounded prefix), and list
times (the search: :mod:`.job_search`; the columns: :mod:`.job_columns`)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.contrib import admin
from django.contrib.admin.utils import quote
from django.contrib.admin.views.main import ChangeList
from django.db.models import (
    Case,
    CharField,
    OuterRef,
    Q,
    QuerySet,
    Subquery,
    TextField,
    Value,
    When,
)
from django.db.models.functions import Cast, Left
from django.http import HttpRequest
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html
from django.utils.http import urlencode
from django.utils.safestring import SafeString

from ..conf import taskengine_settings
from ..job_indexes import ANY_STATUS, status_in
from ..models import Attempt, Job, JobStatus, Queue
from ..registry import registered_tasks
from .common import exact_time_text, relative_time
from .job_search import search_jobs as search_jobs  # its former home: the name stays importable

#: Columns the list reads; the rest (arguments, results, tracebacks) may be large.
LIST_COLUMNS = (
    "id",
    "task_name",
    "queue",
    "status",
    "priority",
    "attempts",
    "max_attempts",
    "run_after",
    "started_at",
    "finished_at",
    "created_at",
    # A queued job with a token is reserved by a worker (shown next to its status).
    "token",
    "progress_current",
    "progress_total",
)
#: Characters read of the arguments, keyword arguments and error of each listed job: enough
#: for the preview and its title, however large the job's columns are.
HEAD_CHARS = 300


def _db() -> str:
    return taskengine_settings.DATABASE


# -- filters ---------------------------------------------------------------------------


class StatusFilter(admin.SimpleListFilter):
    title = "status"
    parameter_name = "status"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return list(JobStatus.choices)

    def queryset(self, request: HttpRequest, queryset: QuerySet[Job]) -> QuerySet[Job]:
        value = self.value()
        if not value:
            return queryset
        return queryset.filter(status_in(value) if value in JobStatus.values else Q(status=value))


class QueueFilter(admin.SimpleListFilter):
    """Choices from the queue table (a few rows), never a DISTINCT over millions of jobs."""

    title = "queue"
    parameter_name = "queue"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        names = list(Queue.objects.using(_db()).order_by("name").values_list("name", flat=True))
        return _with_current(names, self.value())

    def queryset(self, request: HttpRequest, queryset: QuerySet[Job]) -> QuerySet[Job]:
        return queryset.filter(queue=self.value()) if self.value() else queryset


class TaskFilter(admin.SimpleListFilter):
    """Choices from the tasks registered in this process (and the one filtered on, if it is
    not registered any more): no query at all."""

    title = "task"
    parameter_name = "task"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return _with_current(sorted(registered_tasks()), self.value())

    def queryset(self, request: HttpRequest, queryset: QuerySet[Job]) -> QuerySet[Job]:
        return queryset.filter(ANY_STATUS, task_name=self.value()) if self.value() else queryset


def _with_current(names: list[str], current: str | None) -> list[tuple[str, str]]:
    if current and current not in names:
        names = [*names, current]
    return [(name, name) for name in names]


class JobChangeList(ChangeList):
    """Reads only the columns the list shows, and tells the pagination how exact its count is."""

    def get_queryset(self, request: HttpRequest, exclude_parameters: Any = None) -> QuerySet[Job]:
        queryset: QuerySet[Job] = super().get_queryset(request, exclude_parameters)
        return queryset.only(*LIST_COLUMNS)

    def get_results(self, request: HttpRequest) -> None:
        super().get_results(request)
        # The heavy columns' prefixes are read for the page's rows only, by primary key: in
        # the query that picks the page, a filtered list sorted by id would compute them for
        # every row it sorts.
        self.result_list = with_heads(list(self.result_list))
        if not self.query:
            # Django's search bar repeats the count ("10001 results") even when nothing was
            # searched; the pagination below says it with the right words.
            self.full_result_count = self.result_count

    @property
    def with_count_label(self) -> _CountLabelled:
        return _CountLabelled(self)


class _CountLabelled:
    """The change list as Django's pagination template sees it, with ``result_count`` in words
    ("about 1,000,000", "more than 10,000") when the paginator did not count every row."""

    def __init__(self, changelist: ChangeList) -> None:
        self._changelist = changelist

    def __getattr__(self, name: str) -> Any:
        return getattr(self._changelist, name)

    @property
    def result_count(self) -> int | str:
        paginator = self._changelist.paginator
        if getattr(paginator, "count_is_exact", True):
            return int(self._changelist.result_count)
        return str(paginator.count_label)


def list_heads() -> dict[str, Any]:
    """Annotations for the listed jobs: the first :data:`HEAD_CHARS` characters of the heavy
    columns (the database sends no more), and for a job that waits for a retry the outcome of
    its last attempt (one index lookup per listed row, none for the others)."""
    last_outcome = (
        Attempt.objects.filter(job_id=OuterRef("pk"))
        .order_by("-number", "-id")
        .values("outcome")[:1]
    )
    return {
        "args_head": Left(Cast("args", TextField()), HEAD_CHARS),
        "kwargs_head": Left(Cast("kwargs", TextField()), HEAD_CHARS),
        "error_head": Left("error", HEAD_CHARS),
        "last_outcome": Case(
            When(status=JobStatus.QUEUED, attempts__gt=0, then=Subquery(last_outcome)),
            default=Value(""),
            output_field=CharField(),
        ),
    }


def with_heads(jobs: list[Job]) -> list[Job]:
    """``jobs``, each given the annotations of :func:`list_heads` (one query by primary key)."""
    if not jobs:
        return jobs
    annotations = list_heads()  # built once: each build costs 0.6 ms of ORM expressions
    rows = (
        Job.objects.using(jobs[0]._state.db)
        .filter(pk__in=[job.pk for job in jobs])
        .annotate(**annotations)
        .values_list("pk", *annotations)
    )
    heads = {row[0]: row[1:] for row in rows}
    for job in jobs:
        for name, value in zip(annotations, heads.get(job.pk, ()), strict=False):
            setattr(job, name, value)
    return jobs


def short_time(moment: dt.datetime | None) -> SafeString | str:
    """'2026-12-01 14:05:09 UTC', to the second, with the date and the zone; how long ago (or
    how soon) on hover."""
    if moment is None:
        return "—"
    local = timezone.localtime(moment)
    return format_html(
        '<time datetime="{}" title="{}">{}</time>',
        local.isoformat(),
        relative_time(moment),
        exact_time_text(local),
    )


def job_change_url(admin_site_name: str, job_id: int) -> str:
    """One job's page."""
    return reverse(f"{admin_site_name}:django_taskengine_job_change", args=[quote(job_id)])


def job_list_url(admin_site_name: str = "admin", **filters: str) -> str:
    """The job list, filtered: ``job_list_url(queue="emails", status="failed")``."""
    url = reverse(f"{admin_site_name}:django_taskengine_job_changelist")
    return f"{url}?{urlencode(filters)}" if filters else url
