"""Read-only views of the engine for operators: queue statistics, live workers, and why a job
is not running. Used by the admin and the ``taskengine`` command."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from django.db.models import Count, Min, Q
from django.utils import timesince as _timesince
from django.utils import timezone

from .conf import taskengine_settings
from .flow_report import holding_back
from .job_indexes import ANY_STATUS, status_in
from .models import ACTIVE_STATUSES, Dependency, Job, JobStatus, Pause, PauseScope, Queue, Worker
from .registry import tasks as registry

#: Window for the throughput figure.
THROUGHPUT_WINDOW = dt.timedelta(minutes=5)


def timesince(moment: dt.datetime) -> str:
    # Django joins number and unit with a no-break space; plain text reads better in a terminal.
    return _timesince.timesince(moment).replace("\xa0", " ")


def timeuntil(moment: dt.datetime) -> str:
    left = int((moment - timezone.now()).total_seconds())  # not "0 minutes" under a minute
    return f"{max(left, 0)} s" if left < 60 else _timesince.timeuntil(moment).replace("\xa0", " ")


def stale_after() -> dt.timedelta:
    """A worker whose heartbeat is older than this is presumed dead."""
    return dt.timedelta(
        seconds=max(taskengine_settings.RESCUE_GRACE, 3 * taskengine_settings.HEARTBEAT_INTERVAL)
    )


@dataclass
class QueueStats:
    name: str
    queue: Queue | None
    queued: int = 0
    due: int = 0
    running: int = 0
    paused_jobs: int = 0
    failed: int = 0
    oldest_due: dt.datetime | None = None
    finished_recently: int = 0
    failed_recently: int = 0

    @property
    def paused(self) -> bool:
        return bool(self.queue and self.queue.is_paused)

    @property
    def oldest_due_age(self) -> dt.timedelta | None:
        return timezone.now() - self.oldest_due if self.oldest_due else None

    @property
    def throughput_per_minute(self) -> float:
        return self.finished_recently / (THROUGHPUT_WINDOW.total_seconds() / 60)


def queue_stats(*, using: str | None = None) -> dict[str, QueueStats]:
    """Per-queue counts in three indexed queries (never a scan of finished history)."""
    db = using or taskengine_settings.DATABASE
    now = timezone.now()
    jobs = Job.objects.using(db).order_by()
    stats: dict[str, QueueStats] = {
        q.name: QueueStats(q.name, q) for q in Queue.objects.using(db).all()
    }

    def entry(name: str) -> QueueStats:
        if name not in stats:
            stats[name] = QueueStats(name, None)
        return stats[name]

    active = (
        jobs.filter(status_in(*ACTIVE_STATUSES))
        .values("queue")
        .annotate(
            queued=Count("id", filter=Q(status=JobStatus.QUEUED)),
            due=Count("id", filter=Q(status=JobStatus.QUEUED, run_after__lte=now)),
            running=Count("id", filter=Q(status=JobStatus.RUNNING)),
            paused=Count("id", filter=Q(status=JobStatus.PAUSED)),
            oldest_due=Min("run_after", filter=Q(status=JobStatus.QUEUED, run_after__lte=now)),
        )
    )
    for row in active:
        item = entry(row["queue"])
        item.queued, item.due, item.running = row["queued"], row["due"], row["running"]
        item.paused_jobs, item.oldest_due = row["paused"], row["oldest_due"]
    # COUNT(*), not COUNT(id): the rest index holds (status, queue) but not the id, so this
    # is an index-only scan (8 ms for 29,000 failed jobs, against 250 ms reading the table).
    failed = jobs.filter(status=JobStatus.FAILED).values("queue").annotate(n=Count("*"))
    for failed_row in failed:
        entry(failed_row["queue"]).failed = failed_row["n"]
    recent = (
        jobs.filter(finished_at__gte=now - THROUGHPUT_WINDOW)
        .values("queue")
        .annotate(
            finished=Count("id"),
            failed=Count("id", filter=Q(status=JobStatus.FAILED)),
        )
    )
    for recent_row in recent:
        item = entry(recent_row["queue"])
        item.finished_recently = recent_row["finished"]
        item.failed_recently = recent_row["failed"]
    return dict(sorted(stats.items()))


def live_workers(*, using: str | None = None) -> list[Worker]:
    db = using or taskengine_settings.DATABASE
    return list(
        Worker.objects.using(db).filter(
            stopped_at__isnull=True, last_heartbeat_at__gte=timezone.now() - stale_after()
        )
    )


def worker_is_stale(worker: Worker) -> bool:
    return worker.stopped_at is None and worker.last_heartbeat_at < timezone.now() - stale_after()


@dataclass
class Reason:
    """One reason a job is not running (or what it is doing), in words."""

    code: str
    text: str
    blocking: bool = True


@dataclass
class Explanation:
    job: Job
    reasons: list[Reason] = field(default_factory=list)

    @property
    def summary(self) -> str:
        return " ".join(r.text for r in self.reasons)


def _ago(moment: dt.datetime | None) -> str:
    if moment is None:
        return "at an unknown time"
    seconds = (timezone.now() - moment).total_seconds()
    if seconds < 60:
        return f"{max(0, int(seconds))} s ago"
    return f"{timesince(moment)} ago"


def _who(by: str, at: dt.datetime | None, reason: str, until: dt.datetime | None) -> str:
    text = f" by {by}" if by else ""
    text += f" {_ago(at)}"
    if reason:
        text += f' ("{reason}")'
    if until:
        text += f"; resumes by itself in {timeuntil(until)}"
    return text


def _waiting_on(job: Job, db: str) -> str:
    """The jobs a blocked job waits for that have not finished, in words."""
    after = Dependency.objects.using(db).filter(job_id=job.pk).values_list("after_id", flat=True)
    open_ = list(
        Job.objects.using(db)
        .filter(id__in=list(after), status__in=list(ACTIVE_STATUSES))
        .order_by("id")
        .values_list("id", "status")[:5]
    )
    listed = ", ".join(f"job {job_id} ({status})" for job_id, status in open_)
    more = " and others" if len(open_) == 5 else ""
    return (
        f"Waiting for the jobs it was enqueued after (.using(after=…)): {listed or 'none'}{more}"
        " not finished; it runs when they all have."
    )


def explain_job(job: Job, *, using: str | None = None) -> Explanation:
    """Say in words why ``job`` is not running, or what it is doing."""
    db = using or taskengine_settings.DATABASE
    now = timezone.now()
    explanation = Explanation(job)
    add = explanation.reasons.append
    if job.status in (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED):
        add(
            Reason(
                "finished", f"The job is {job.status}; it will not run again unless retried.", False
            )
        )
        return explanation
    if job.status == JobStatus.RUNNING:
        worker = (
            Worker.objects.using(db).filter(id=job.worker_id).first() if job.worker_id else None
        )
        if worker is None or worker.stopped_at is not None or worker_is_stale(worker):
            last = _ago(worker.last_heartbeat_at) if worker else "never"
            add(
                Reason(
                    "worker_dead",
                    f"Its worker died (last heartbeat {last}); the job will be rescued and run "
                    "again (or fail, if its attempts are used up).",
                )
            )
        else:
            add(
                Reason(
                    "running",
                    f"Running attempt {job.attempts} on {worker.hostname} (pid {worker.pid}) since "
                    f"{_ago(job.started_at)}.",
                    False,
                )
            )
        return explanation
    if job.status == JobStatus.PAUSED:
        add(Reason("job_paused", "The job itself is paused; Resume puts it back in its queue."))
    if job.blocked:
        add(Reason("waiting_for_dependencies", _waiting_on(job, db)))
    elif job.run_after > now and job.status == JobStatus.QUEUED and job.waiting_for:
        add(
            Reason(
                "waiting_for_event",
                f"Waiting for event {job.waiting_for!r} (ctx.wait_for_event): due when "
                "send_event sends it, or when its wait ends in "
                f"{timeuntil(job.run_after)} (at {job.run_after:%Y-%m-%d %H:%M:%S %Z}).",
            )
        )
    elif job.run_after > now:
        add(
            Reason(
                "not_due",
                f"Due in {timeuntil(job.run_after)} (at {job.run_after:%Y-%m-%d %H:%M:%S %Z}).",
            )
        )
    queue = Queue.objects.using(db).filter(name=job.queue).first()
    if queue is not None and queue.is_paused:
        add(
            Reason(
                "queue_paused",
                f"Queue '{job.queue}' is paused"
                + _who(queue.paused_by, queue.paused_at, queue.pause_reason, queue.paused_until)
                + ".",
            )
        )
    for pause in Pause.objects.using(db).filter(
        Q(scope=PauseScope.ENGINE) | Q(scope=PauseScope.TASK, target=job.task_name)
    ):
        if not pause.is_active:
            continue
        what = (
            "Every queue is paused"
            if pause.scope == PauseScope.ENGINE
            else f"Task type {job.task_name} is paused"
        )
        add(
            Reason(
                "engine_paused" if pause.scope == PauseScope.ENGINE else "task_paused",
                what
                + _who(pause.paused_by, pause.paused_at, pause.pause_reason, pause.paused_until)
                + ".",
            )
        )
    if job.status == JobStatus.QUEUED and job.run_after <= now:
        for text in holding_back(job, using=db):
            add(Reason("flow_limit", text))
        ahead = _jobs_ahead(job, db, now)
        if ahead:
            shown = f"{ahead:,}" if ahead < 10_000 else "10,000 or more"
            add(
                Reason(
                    "behind",
                    f"Waiting behind {shown} due job(s) of the same queue that run first "
                    "(higher priority or older).",
                    False,
                )
            )
    workers = [w for w in live_workers(using=db) if not w.queues or job.queue in w.queues]
    if not workers:
        add(
            Reason(
                "no_worker",
                f"No live worker takes jobs from queue '{job.queue}': start one with "
                f"`manage.py run_workers --queues {job.queue}` (or without --queues).",
            )
        )
    if not explanation.reasons:
        add(
            Reason("soon", "Nothing holds it back: a worker should claim it within moments.", False)
        )
    return explanation


def _jobs_ahead(job: Job, db: str, now: dt.datetime) -> int:
    ahead = (
        Job.objects.using(db)
        .filter(status_in(JobStatus.QUEUED), queue=job.queue, run_after__lte=now)
        .filter(
            Q(priority__gt=job.priority)
            | Q(priority=job.priority, run_after__lt=job.run_after)
            | Q(priority=job.priority, run_after=job.run_after, id__lt=job.id)
        )
        .order_by()
        .values("id")[:10_000]
    )
    return ahead.count()


def finished_since(since: dt.datetime, *, using: str | None = None) -> dict[str, dict[str, int]]:
    """Jobs that finished at or after ``since``, per queue and status (served by the index on
    ``finished_at``): ``{"emails": {"succeeded": 120, "failed": 3}}``."""
    db = using or taskengine_settings.DATABASE
    counts: dict[str, dict[str, int]] = {}
    rows = (
        Job.objects.using(db)
        .order_by()
        .filter(finished_at__gte=since)
        .values("queue", "status")
        .annotate(n=Count("id"))
    )
    for row in rows:
        counts.setdefault(row["queue"], {})[row["status"]] = row["n"]
    return counts


def running_jobs_by_worker(worker_ids: list[Any], *, using: str | None = None) -> dict[Any, int]:
    """Running jobs per worker id, for the given workers, in one query."""
    db = using or taskengine_settings.DATABASE
    rows = (
        Job.objects.using(db)
        .order_by()
        .filter(status=JobStatus.RUNNING, worker_id__in=worker_ids)
        .values("worker_id")
        .annotate(n=Count("id"))
    )
    return {row["worker_id"]: row["n"] for row in rows}


def find_job(job_id: int, *, using: str | None = None) -> Job | None:
    """The job with id ``job_id``, or None."""
    db = using or taskengine_settings.DATABASE
    return Job.objects.using(db).filter(pk=job_id).first()


def jobs_by_id(job_ids: Iterable[int], *, using: str | None = None) -> dict[int, Job]:
    """The jobs among ``job_ids`` that exist, by id, with the fields that say their state
    (status, attempts, when due, a pending stop request): what an operator saw before acting."""
    db = using or taskengine_settings.DATABASE
    jobs = (
        Job.objects.using(db)
        .filter(pk__in=list(job_ids))
        .only("id", "status", "attempts", "run_after", "stop_requested")
    )
    return {job.pk: job for job in jobs}


def task_is_known(task_name: str, *, using: str | None = None) -> bool:
    """Registered in this process, or has jobs: a task name that is neither is probably a typo."""
    db = using or taskengine_settings.DATABASE
    return (
        task_name in registry
        or Job.objects.using(db).filter(ANY_STATUS, task_name=task_name).exists()
    )


@dataclass
class StepNode:
    """A workflow's step as its graph shows it: the job, and what it waits for (step names
    of the same workflow, or ids of other jobs)."""

    job: Job
    after: list[str] = field(default_factory=list)


def count_text(counts: Mapping[str, int]) -> str:
    """Counts by state in words, states in alphabetical order: "2 failed, 8 succeeded"."""
    return ", ".join(f"{n} {state}" for state, n in sorted(counts.items()))


def workflow_graph(workflow_id: int, *, using: str | None = None) -> list[StepNode]:
    """The steps of workflow ``workflow_id`` in the order they were added, with their edges."""
    db = using or taskengine_settings.DATABASE
    steps = list(Job.objects.using(db).filter(workflow_id=workflow_id).order_by("id"))
    names = {job.pk: job.step or str(job.pk) for job in steps}
    nodes = {job.pk: StepNode(job) for job in steps}
    edges = Dependency.objects.using(db).filter(job_id__in=list(nodes)).order_by("after_id")
    for job_id, after_id in edges.values_list("job_id", "after_id"):
        nodes[job_id].after.append(names.get(after_id, f"job {after_id}"))
    return list(nodes.values())
