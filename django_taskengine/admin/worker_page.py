"""What a worker's admin page shows besides its fields: its state, the request an operator made
of it, the jobs it holds now, and the attempts it ran last.

Every query here is bounded and served by an index, at any size of the job table: the jobs a
worker holds by the partial running and reserved indexes on ``worker_id``; its history by
``taskengine_attempt_worker_idx`` (worker_id, id) — migration 0030 says why and what it costs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.db.models import Q
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html
from django.utils.safestring import SafeString

from .. import inspection
from ..conf import taskengine_settings
from ..core.statuses import JobStatus
from ..models import Attempt, Job, Worker
from .common import exact_time, format_seconds

#: Jobs listed as held by a worker (a worker holds its concurrency plus what it claimed ahead).
HELD_SHOWN = 100
#: The latest attempts listed in a worker's history.
HISTORY_SHOWN = 25
#: Characters of an attempt's error shown in the history (the job's page has all of it).
ERROR_SHOWN = 120

#: What each state means, for the title of its badge.
STATE_HELP = {
    "live": "sends heartbeats and takes jobs",
    "draining": "takes no new jobs; finishing those it runs",
    "drained": "takes no new jobs and runs none: idle until resumed or stopped",
    "stopping": "finishing its jobs, then exiting (not replaced)",
    "hard-stopping": "exiting now; its running jobs are rescued and run again",
    "stale": "no heartbeat for a while: presumed dead, its jobs are rescued",
    "stopped": "has exited",
}


def _db() -> str:
    return taskengine_settings.DATABASE


def worker_state(worker: Worker, running: int | None = None) -> str:
    """'live', 'draining', 'drained', 'stopping', 'hard-stopping', 'stale' (no heartbeat for a
    while: presumed dead) or 'stopped'. ``running``: how many jobs it runs, if known."""
    if worker.stopped_at is not None:
        return "stopped"
    if inspection.worker_is_stale(worker):
        return "stale"
    request = worker.control_requested
    if request == "kill":
        return "hard-stopping"
    if request == "stop":
        return "stopping"
    if request == "drain":
        asked = worker.control_requested_at
        heard = asked is not None and worker.last_heartbeat_at > asked
        return "drained" if heard and running == 0 else "draining"
    return "live"


def state_badge(state: str) -> SafeString:
    return format_html(
        '<span class="te-worker-state te-worker-{}" title="{}">{}</span>',
        state,
        STATE_HELP.get(state, ""),
        state,
    )


def request_text(worker: Worker) -> SafeString | str:
    """'stop requested by alice at … (12 s ago)', or '' when nothing was asked."""
    words = {"drain": "Drain", "stop": "Stop", "kill": "Hard stop"}
    if not worker.control_requested:
        return ""
    return format_html(
        "{} requested by {} at {}",
        words.get(worker.control_requested, worker.control_requested),
        worker.control_requested_by or "an unknown user",
        exact_time(worker.control_requested_at),
    )


@dataclass
class HeldJob:
    """A job the worker holds now: running, or reserved (claimed ahead, not started)."""

    job: Job
    url: str

    @property
    def status(self) -> str:
        return "running" if self.job.status == JobStatus.RUNNING else "reserved"

    def started(self) -> SafeString | str:
        return exact_time(self.job.started_at)

    def progress(self) -> SafeString | str:
        return progress_html(self.job)


def progress_html(job: Job) -> SafeString | str:
    """A bar with its percentage for a job that reported a total; the count otherwise."""
    current, total = job.progress_current, job.progress_total
    if current is None:
        return "—"
    if not total:
        return f"{current:,}"
    percent = max(0, min(100, round(100 * current / total)))
    return format_html(
        '<progress class="te-worker-progress" max="{}" value="{}"></progress> {}% '
        '<span class="te-relative">({} of {})</span>',
        total,
        min(current, total),
        percent,
        f"{current:,}",
        f"{total:,}",
    )


@dataclass
class PastAttempt:
    """One attempt of the worker's history."""

    attempt: Attempt
    url: str

    def finished(self) -> SafeString | str:
        return exact_time(self.attempt.finished_at)

    def duration(self) -> str:
        return format_seconds(self.attempt.duration)

    def error(self) -> str:
        text = self.attempt.error.strip().splitlines()[0] if self.attempt.error.strip() else ""
        return text if len(text) <= ERROR_SHOWN else text[: ERROR_SHOWN - 1] + "…"


def held_jobs(worker: Worker, site_name: str) -> list[HeldJob]:
    """The jobs the worker runs or has reserved, running first, oldest first."""
    jobs = (
        Job.objects.using(_db())
        .filter(worker_id=worker.id)
        .filter(Q(status=JobStatus.RUNNING) | Q(status=JobStatus.QUEUED, token__isnull=False))
        .only(
            "id", "task_name", "queue", "status", "started_at", "progress_current",
            "progress_total", "worker_id", "token",
        )
        .order_by("id")[:HELD_SHOWN]
    )  # fmt: skip
    held = [HeldJob(job, _job_url(site_name, job.id)) for job in jobs]
    held.sort(key=lambda h: (h.status != "running", h.job.id))
    return held


def history(worker: Worker, site_name: str) -> list[PastAttempt]:
    """The latest attempts the worker ran, newest first."""
    attempts = (
        Attempt.objects.using(_db())
        .filter(worker_id=worker.id)
        .select_related("job")
        .only(
            "id", "number", "worker_id", "started_at", "finished_at", "outcome", "error",
            "job__id", "job__task_name", "job__queue",
        )
        .order_by("-id")[:HISTORY_SHOWN]
    )  # fmt: skip
    return [PastAttempt(a, _job_url(site_name, a.job_id)) for a in attempts]


def page_context(worker: Worker, site_name: str) -> dict[str, Any]:
    """The context of the worker's page (buttons apart)."""
    held = held_jobs(worker, site_name)
    running = sum(1 for h in held if h.status == "running")
    state = worker_state(worker, running)
    return {
        "te_state": state,
        "te_state_badge": state_badge(state),
        "te_state_help": STATE_HELP.get(state, ""),
        "te_request": request_text(worker),
        "te_held": held,
        "te_held_more": len(held) >= HELD_SHOWN,
        "te_running": running,
        "te_reserved": len(held) - running,
        "te_history": history(worker, site_name),
        "te_history_shown": HISTORY_SHOWN,
        "te_heartbeat": exact_time(worker.last_heartbeat_at),
        "te_now": exact_time(timezone.now(), relative=False),
    }


def _job_url(site_name: str, job_id: int) -> str:
    return reverse(f"{site_name}:django_taskengine_job_change", args=[job_id])
