"""The read-only fields of the job page: arguments, result and checkpoint as indented JSON,
error and traceback preformatted, all escaped; links to the queue and the worker."""

from __future__ import annotations

import json
from typing import Any

from django.contrib import admin
from django.contrib.admin.utils import quote
from django.urls import reverse
from django.utils.html import format_html
from django.utils.safestring import SafeString

from ..models import Job
from ..registry import find_task


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
    def progress(self, job: Job) -> str:
        if job.progress_current is None:
            return "—"
        if job.progress_total:
            return f"{job.progress_current:,} of {job.progress_total:,}"
        return f"{job.progress_current:,}"

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

    @admin.display(description="error")
    def error_text(self, job: Job) -> SafeString:
        return _preformatted(job.error)

    @admin.display(description="traceback")
    def traceback_text(self, job: Job) -> SafeString:
        return _preformatted(job.traceback)


def _pretty_json(value: Any) -> SafeString:
    """JSON, indented, inside an escaped <pre>."""
    text = json.dumps(value, indent=2, ensure_ascii=False, default=str)
    return format_html('<pre class="te-pre">{}</pre>', text)


def _preformatted(text: str) -> SafeString:
    if not text:
        return format_html("{}", "—")
    return format_html('<pre class="te-pre">{}</pre>', text)
