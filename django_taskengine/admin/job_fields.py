"""The read-only fields of the job page: arguments, result and checkpoint as indented JSON,
error and traceback preformatted, all escaped; times exact with seconds and zone; the progress
bar; links to the queue and the worker."""

from __future__ import annotations

import json
from typing import Any

from django.contrib import admin
from django.contrib.admin.utils import quote
from django.urls import reverse
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

from ..models import Dependency, Job
from ..registry import find_task
from .common import exact_time
from .job_columns import WAITING, due_words, progress_bar
from .workflows import workflow_link

#: Most jobs listed each way on a job's page (a fan-in may wait for thousands).
MOST_SHOWN = 50


class JobFieldsMixin:
    """Display methods named in ``JobAdmin.fieldsets`` (a ModelAdmin mixin)."""

    admin_site: admin.AdminSite

    @admin.display(description="on orphan")
    def on_orphan(self, job: Job) -> str:
        task = find_task(job.task_name)
        if task is None:
            return "unknown task (not registered in this process)"
        return str(task.on_orphan)

    @admin.display(description="queue")
    def queue_link(self, job: Job) -> SafeString:
        url = reverse(
            f"{self.admin_site.name}:django_taskengine_queue_change", args=[quote(job.queue)]
        )
        return format_html('<a href="{}">{}</a>', url, job.queue)

    @admin.display(description="waits for")
    def dependencies_links(self, job: Job) -> SafeString | str:
        """The jobs it was enqueued after, with their status; then the jobs that wait for it."""
        after = Dependency.objects.filter(job_id=job.pk).values_list("after_id", flat=True)
        before = Dependency.objects.filter(after_id=job.pk).values_list("job_id", flat=True)
        parts = [
            self._job_links(list(after[:MOST_SHOWN])),
            self._job_links(list(before[:MOST_SHOWN])),
        ]
        if not any(parts):
            return "—"
        waiting = " (waiting)" if job.blocked else ""
        return format_html("{}{}<br>waited for by: {}", parts[0] or "—", waiting, parts[1] or "—")

    def _job_links(self, ids: list[int]) -> SafeString | str:
        statuses = dict(Job.objects.filter(id__in=ids).values_list("id", "status"))
        return format_html_join(
            ", ",
            '<a href="{}">{}</a> ({})',
            (
                (
                    reverse(f"{self.admin_site.name}:django_taskengine_job_change", args=[job_id]),
                    job_id,
                    statuses.get(job_id, "deleted"),
                )
                for job_id in ids
            ),
        )

    @admin.display(description="workflow")
    def workflow_graph(self, job: Job) -> SafeString | str:
        return workflow_link(self.admin_site.name, job)

    @admin.display(description="worker")
    def worker_link(self, job: Job) -> SafeString | str:
        if job.worker_id is None:
            return "—"
        url = reverse(
            f"{self.admin_site.name}:django_taskengine_worker_change",
            args=[quote(job.worker_id)],
        )
        return format_html('<a href="{}">{}</a>', url, job.worker_id)

    @admin.display(description="progress")
    def progress(self, job: Job) -> SafeString | str:
        if job.progress_current is None:
            return "—"
        total = f" of {job.progress_total:,}" if job.progress_total else ""
        return format_html(
            '{} <span class="te-relative">{}{}</span>',
            progress_bar(job),
            f"{job.progress_current:,}",
            total,
        )

    # -- times: exact, with seconds and zone, and how long ago or how soon --

    @admin.display(description="created")
    def created_label(self, job: Job) -> SafeString | str:
        return exact_time(job.created_at)

    @admin.display(description="due")
    def due_label(self, job: Job) -> SafeString | str:
        if job.status not in WAITING:
            return exact_time(job.run_after)
        if job.blocked:
            return "when the jobs it waits for have finished"
        return format_html(
            '{} <span class="te-relative">({})</span>',
            exact_time(job.run_after, relative=False),
            due_words(job.run_after),
        )

    @admin.display(description="started")
    def started_label(self, job: Job) -> SafeString | str:
        return exact_time(job.started_at)

    @admin.display(description="last attempt started")
    def last_started_label(self, job: Job) -> SafeString | str:
        return exact_time(job.started_at)

    @admin.display(description="finished")
    def finished_label(self, job: Job) -> SafeString | str:
        return exact_time(job.finished_at)

    @admin.display(description="args")
    def args_json(self, job: Job) -> SafeString:
        return _pretty_json(job.args)

    @admin.display(description="kwargs")
    def kwargs_json(self, job: Job) -> SafeString:
        return _pretty_json(job.kwargs)

    @admin.display(description="result")
    def result_json(self, job: Job) -> SafeString:
        return _pretty_json(job.result)

    @admin.display(description="checkpoint")
    def checkpoint_json(self, job: Job) -> SafeString:
        return _pretty_json(job.checkpoint)

    @admin.display(description="durable waits done")
    def waits_json(self, job: Job) -> SafeString:
        return _pretty_json(job.waits)

    @admin.display(description="error")
    def error_text(self, job: Job) -> SafeString:
        return _preformatted(job.error)

    @admin.display(description="traceback")
    def traceback_text(self, job: Job) -> SafeString:
        return _preformatted(job.traceback)

    # A job that waits for (or runs) its next attempt: the error is its last attempt's.
    @admin.display(description="last attempt's error")
    def last_error_text(self, job: Job) -> SafeString:
        return _preformatted(job.error)

    @admin.display(description="last attempt's traceback")
    def last_traceback_text(self, job: Job) -> SafeString:
        return _preformatted(job.traceback)


def _pretty_json(value: Any) -> SafeString:
    """JSON, indented, inside an escaped <pre>."""
    text = json.dumps(value, indent=2, ensure_ascii=False, default=str)
    return format_html('<pre class="te-pre">{}</pre>', text)


def _preformatted(text: str) -> SafeString:
    if not text:
        return format_html("{}", "—")
    return format_html('<pre class="te-pre">{}</pre>', text)
