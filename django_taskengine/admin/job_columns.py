"""The job list's columns, and the pieces the job page shares with them: a progress bar with
its percentage and ETA, an argument preview, an error's first line, a due time in words.

The list reads only a bounded prefix of the heavy columns (see
:meth:`.job_list.JobChangeList.get_queryset`): every column here works on those prefixes, so a
job with megabytes of arguments or a long traceback costs the page no more than any other.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from django.contrib import admin
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString, mark_safe

from ..core.statuses import TERMINAL_STATUSES, AttemptOutcome, JobStatus
from ..models import Job
from .common import exact_time_text, format_age, format_seconds, relative_time

#: Characters of the argument preview shown in the list (the rest is in its title).
PREVIEW_CHARS = 60
#: Characters of the error's first line shown in the list.
ERROR_CHARS = 80
#: The attempt outcomes that are failures: a waiting job whose last attempt ended so shows
#: that attempt's error (a pause, a snooze or a shutdown is no error).
FAILED_OUTCOMES = (AttemptOutcome.FAILED, AttemptOutcome.TIMED_OUT, AttemptOutcome.ORPHANED)
#: Statuses a job waits in: its due time is worded "due in 12 s", "overdue by 3 min".
WAITING = (JobStatus.QUEUED, JobStatus.PAUSED)


def truncated(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` characters, with an ellipsis when it was cut."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def first_line(text: str) -> str:
    """The first non-empty line of an error."""
    for line in text.splitlines():
        if line.strip():
            return line.strip()
    return ""


def due_words(run_after: dt.datetime, now: dt.datetime | None = None) -> str:
    """'due now', 'due in 12 s', 'overdue by 3 min' (a waiting job's due time)."""
    delta = run_after - (now or timezone.now())
    if abs(delta) < dt.timedelta(seconds=1):
        return "due now"
    if delta > dt.timedelta(0):
        return f"due in {format_age(delta)}"
    return f"overdue by {format_age(-delta)}"


def eta_seconds(job: Job, now: dt.datetime | None = None) -> float | None:
    """Seconds until a running job with a progress total is done, at the rate it progressed
    since its attempt started; None when that cannot be told."""
    current, total = job.progress_current, job.progress_total
    if job.status != JobStatus.RUNNING or not total or not current or job.started_at is None:
        return None
    elapsed = ((now or timezone.now()) - job.started_at).total_seconds()
    if elapsed <= 0 or current >= total:
        return None
    return (total - current) * elapsed / current


def progress_bar(job: Job, now: dt.datetime | None = None) -> SafeString | str:
    """A bar with the percentage done and, while the job runs, about how long is left; the
    count alone when the task gave no total; '—' when it reported no progress."""
    current, total = job.progress_current, job.progress_total
    if current is None:
        return "—"
    if not total:
        return format_html('<span class="te-progress-count">{}</span>', f"{current:,}")
    percent = max(0, min(100, int(current * 100 / total)))
    eta = eta_seconds(job, now)
    left = f"about {format_age(dt.timedelta(seconds=eta or 0))} left"
    return format_html(
        '<span class="te-progress" title="{} of {}">'
        '<span class="te-progress-bar" role="progressbar" aria-valuemin="0" aria-valuemax="100"'
        ' aria-valuenow="{}"><span class="te-progress-fill" style="width: {}%"></span></span>'
        ' <span class="te-progress-percent">{}%</span>{}</span>',
        f"{current:,}",
        f"{total:,}",
        percent,
        percent,
        percent,
        format_html(' <span class="te-progress-eta">{}</span>', left) if eta is not None else "",
    )


def when(moment: dt.datetime, label: str) -> SafeString:
    """A time as the list shows it, on two lines: the date and time to the second, then its
    zone and ``label`` (how long ago or how soon)."""
    local = timezone.localtime(moment)
    exact = exact_time_text(local)
    stamp, _, zone = exact.rpartition(" ")
    return format_html(
        '<span class="te-when"><time datetime="{}" title="{}">{}</time>'
        '<span class="te-relative">{} · {}</span></span>',
        local.isoformat(),
        exact,
        stamp,
        zone,
        label,
    )


class JobColumnsMixin:
    """The job list's display methods (a ModelAdmin mixin)."""

    @admin.display(description="status")
    def status_label(self, job: Job) -> SafeString:
        label = format_html(
            '<span class="te-status te-status-{}">{}</span>', job.status, job.status
        )
        if job.reserved:
            # Claimed ahead by a worker: it starts when one of its threads is free.
            return format_html('{} <span class="te-reserved">reserved</span>', label)
        return label

    @admin.display(description="task")
    def task_label(self, job: Job) -> SafeString:
        # A break opportunity after each dot: long dotted names wrap instead of widening.
        parts = job.task_name.split(".")
        return format_html(
            '<span class="te-task" title="{}">{}</span>',
            job.task_name,
            format_html_join(mark_safe("<wbr>."), "{}", ((part,) for part in parts)),
        )

    @admin.display(description="attempts")
    def attempts_label(self, job: Job) -> str:
        return f"{job.attempts}/{job.max_attempts}"

    @admin.display(description="arguments")
    def arguments_preview(self, job: Job) -> SafeString | str:
        args = getattr(job, "args_head", None)
        kwargs = getattr(job, "kwargs_head", None)
        if args is None:  # not from the list's queryset: the whole columns are loaded
            args, kwargs = _json_text(job.args), _json_text(job.kwargs)
        text = " ".join(part for part in (args, kwargs) if part not in ("[]", "{}", None, ""))
        if not text:
            return "—"
        return format_html(
            '<code class="te-args" title="{}">{}</code>', text, truncated(text, PREVIEW_CHARS)
        )

    @admin.display(description="progress")
    def progress_label(self, job: Job) -> SafeString | str:
        return progress_bar(job)

    @admin.display(description="error")
    def error_label(self, job: Job) -> SafeString | str:
        error = getattr(job, "error_head", None)
        if error is None:
            error = job.error[:1000]
        if not error:
            return ""
        line = first_line(error)
        if job.status in (JobStatus.FAILED, JobStatus.CANCELLED):
            label = ""
        elif job.status == JobStatus.QUEUED and getattr(job, "last_outcome", None) in (
            FAILED_OUTCOMES
        ):
            label = "last error: "
        else:
            return ""
        return format_html(
            '<span class="te-error" title="{}"><span class="te-error-label">{}</span>{}</span>',
            line,
            label,
            truncated(line, ERROR_CHARS),
        )

    @admin.display(description="time")
    def time_label(self, job: Job) -> SafeString | str:
        """The time that matters for the job's status: when it is due, when it started, when
        it finished (and how long it ran)."""
        now = timezone.now()
        if job.status in WAITING:
            return when(job.run_after, due_words(job.run_after, now))
        if job.status == JobStatus.RUNNING and job.started_at is not None:
            return when(job.started_at, f"started {relative_time(job.started_at, now)}")
        if job.status in TERMINAL_STATUSES and job.finished_at is not None:
            took = f" · ran {format_seconds(job.duration)}" if job.duration is not None else ""
            return when(job.finished_at, f"finished {relative_time(job.finished_at, now)}{took}")
        return "—"


def _json_text(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)
