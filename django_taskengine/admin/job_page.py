"""What the job page shows besides plain fields: the fields that apply to the job's state (an
error only where there is one to show, a started time worded for what it is), its runs
numbered unambiguously, and the buttons and forms of the actions that fit it.

A job waiting for its next attempt keeps the error and start time of its last one: they are
shown as "last attempt's error" and "last attempt started", and only when that attempt failed
(a pause or a snooze ends an attempt with a note, not an error).
"""

from __future__ import annotations

from typing import Any

from django.contrib.admin.utils import quote
from django.urls import reverse
from django.utils.html import format_html
from django.utils.safestring import SafeString

from ..core.statuses import TERMINAL_STATUSES, AttemptOutcome, JobStatus
from ..models import Attempt, Job
from ..registry import find_task
from .common import exact_time, format_seconds
from .job_columns import FAILED_OUTCOMES, WAITING

#: The statuses whose priority and due time an operator may change (operations.job_edits).
EDITABLE = (JobStatus.QUEUED, JobStatus.PAUSED)
#: The job page lists this many of the latest runs.
ATTEMPTS_SHOWN = 100
#: The outcomes that give their attempt back (core/lifecycle.py: ``refund_attempt``): the next
#: run has the same attempt number.
NOT_COUNTED = (
    AttemptOutcome.PAUSED,
    AttemptOutcome.SNOOZED,
    AttemptOutcome.INTERRUPTED,
    AttemptOutcome.SUPERSEDED,
)

_MAIN = (
    "id",
    "status_label",
    "task_name",
    "on_orphan",
    "queue_link",
    "priority",
    "dedup_key",
    "dedup_mode",
)
_EXECUTION = (
    "attempts_label",
    "worker_link",
    "progress",
    "timeout",
    "retry_backoff",
    "stop_requested",
    "waiting_for",
    "dependencies_links",
    "workflow_graph",
)
#: Every field the page may show (Django's readonly_fields).
ALL_FIELDS = (
    *_MAIN,
    "created_label",
    "due_label",
    "started_label",
    "last_started_label",
    "finished_label",
    "duration_label",
    *_EXECUTION,
    "args_json",
    "kwargs_json",
    "result_json",
    "error_text",
    "traceback_text",
    "last_error_text",
    "last_traceback_text",
    "checkpoint_json",
    "waits_json",
)


def last_outcome(job: Job) -> str | None:
    """The outcome of the job's last recorded attempt (None: none ended yet)."""
    outcome = job.attempt_set.order_by("-number", "-id").values_list("outcome", flat=True).first()
    return None if outcome is None else str(outcome)


def page_fieldsets(job: Job) -> list[tuple[str | None, dict[str, Any]]]:
    """The job page's fieldsets for ``job`` as it is now."""
    times = ["created_label", "due_label"]
    if job.started_at is not None:
        # A waiting job's start time is its last attempt's: never shown as if it were running.
        times.append("last_started_label" if job.status in WAITING else "started_label")
    if job.status in TERMINAL_STATUSES:
        times += ["finished_label", "duration_label"]
    outcome = ["result_json"] if job.status == JobStatus.SUCCEEDED or job.result else []
    if job.status in (JobStatus.FAILED, JobStatus.CANCELLED) and job.error:
        outcome += ["error_text", "traceback_text"]
    elif job.status not in TERMINAL_STATUSES and job.error and last_outcome(job) in FAILED_OUTCOMES:
        outcome += ["last_error_text", "last_traceback_text"]
    outcome += ["checkpoint_json", "waits_json"]
    return [
        (None, {"fields": _MAIN}),
        ("Times", {"fields": times}),
        ("Execution", {"fields": _EXECUTION}),
        ("Arguments", {"fields": ("args_json", "kwargs_json")}),
        ("Outcome", {"fields": outcome}),
    ]


def attempt_rows(job: Job, site_name: str) -> tuple[list[dict[str, Any]], int]:
    """The latest runs of ``job``, oldest first, each with its run ordinal (every run counts),
    its attempt number (what counts toward ``max_attempts``) and whether it counted; and how
    many runs there were in all."""
    total = job.attempt_set.count()
    latest: list[Attempt] = list(job.attempt_set.order_by("-id")[:ATTEMPTS_SHOWN])[::-1]
    first = total - len(latest) + 1
    return [
        {
            "run": first + index,
            "attempt": attempt,
            "counted": attempt.outcome not in NOT_COUNTED,
            "worker": worker_link(site_name, attempt.worker_id),
            "started": exact_time(attempt.started_at),
            "ended": exact_time(attempt.finished_at),
            "duration": format_seconds(attempt.duration),
        }
        for index, attempt in enumerate(latest)
    ], total


def worker_link(site_name: str, worker_id: Any) -> SafeString | str:
    """A link to a worker process's admin page ('—' for none)."""
    if worker_id is None:
        return "—"
    url = reverse(f"{site_name}:django_taskengine_worker_change", args=[quote(worker_id)])
    return format_html('<a href="{}" class="te-worker-id">{}</a>', url, worker_id)


def can_run_again(job: Job) -> bool:
    """A finished job of a task registered here."""
    return job.status in TERMINAL_STATUSES and find_task(job.task_name) is not None


def can_discard(job: Job) -> bool:
    """A waiting job that never ran and that no worker holds."""
    return (
        job.status in WAITING and job.attempts == 0 and job.token is None and job.started_at is None
    )
