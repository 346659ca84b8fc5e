"""An optional Prometheus metrics view: ``pip install 'django-taskengine[prometheus]'``.

::

    # urls.py
    urlpatterns = [..., path("taskengine/", include("django_taskengine.urls"))]
    # -> /taskengine/metrics

Every figure is read from the database at scrape time, with the same indexed queries as the
``taskengine status`` command (:func:`~django_taskengine.inspection.queue_stats`): jobs run in
worker processes and the view is served by web processes, so in-process counters would only
ever see one process. For the same reason the durations histogram is not a counter since
start-up but a window: the run time of the last attempt of every job that succeeded or failed
in the last :data:`WINDOW`, bucketed in SQL over the partial index on ``finished_at`` (the
attempt table has no index on its end time, and a scrape must not scan history). It is exposed
as a *gauge histogram*: each scrape is a fresh window; do not ``rate()`` it.

Access: staff users (a session), requests carrying ``Authorization: Bearer <METRICS_TOKEN>``
when ``TASKENGINE["METRICS_TOKEN"]`` is set, or anyone with
``TASKENGINE["METRICS_ALLOW_ANONYMOUS"] = True``.

``prometheus_client`` is imported only when the view runs, and each request collects into a
fresh ``CollectorRegistry``: nothing is added to the global registry.
"""

from __future__ import annotations

import datetime as dt
import hmac
import math
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.db.models import Count, DurationField, ExpressionWrapper, F, Q, Sum
from django.http import HttpRequest, HttpResponse
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from . import inspection
from .conf import taskengine_settings
from .dispatch.state import DispatchState, dispatch_state
from .models import TERMINAL_STATUSES, Job, JobStatus

#: The window of the throughput figures and of the durations histogram.
WINDOW: dt.timedelta = inspection.THROUGHPUT_WINDOW
#: Upper bounds (seconds) of the duration histogram's buckets; "+Inf" is added.
DURATION_BUCKETS: tuple[float, ...] = (
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1,
    2.5,
    5,
    10,
    30,
    60,
    300,
    900,
    3600,
)


def _prometheus_client() -> Any:
    try:
        import prometheus_client
    except ImportError as exc:
        raise ImproperlyConfigured(
            "The task engine's metrics view needs the prometheus-client package, which is not "
            "installed: pip install 'django-taskengine[prometheus]' (or remove "
            "django_taskengine.urls / metrics_view from your URLconf)."
        ) from exc
    return prometheus_client


@never_cache
@require_GET
def metrics_view(request: HttpRequest) -> HttpResponse:
    """The Prometheus exposition of the task engine's figures (see the module docstring)."""
    refusal = _refusal(request)
    if refusal is not None:
        return refusal
    prometheus_client = _prometheus_client()
    from prometheus_client.exposition import choose_encoder

    registry = prometheus_client.CollectorRegistry(auto_describe=False)
    registry.register(TaskEngineCollector())
    encoder, content_type = choose_encoder(request.headers.get("Accept", ""))
    return HttpResponse(encoder(registry), content_type=content_type)


def _refusal(request: HttpRequest) -> HttpResponse | None:
    """None if the request may see the metrics; else a 401 or 403 that says how to get in."""
    if taskengine_settings.METRICS_ALLOW_ANONYMOUS:
        return None
    token = taskengine_settings.METRICS_TOKEN
    if token:
        scheme, _, given = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() == "bearer" and hmac.compare_digest(
            given.strip().encode(), token.encode()
        ):
            return None
    user = getattr(request, "user", None)
    if user is not None and user.is_active and user.is_staff:
        return None
    if user is not None and user.is_authenticated:
        return HttpResponse(
            "Forbidden: the task engine's metrics are for staff users.\n",
            status=403,
            content_type="text/plain",
        )
    how = "a staff user's session"
    if token:
        how = "the header 'Authorization: Bearer <TASKENGINE[\"METRICS_TOKEN\"]>', or " + how
    response = HttpResponse(
        f"Unauthorized: the task engine's metrics need {how}.\n",
        status=401,
        content_type="text/plain",
    )
    response["WWW-Authenticate"] = 'Bearer realm="taskengine metrics"'
    return response


class TaskEngineCollector:
    """A Prometheus collector that reads the job, queue and worker tables when collected."""

    def __init__(self, using: str | None = None) -> None:
        self.using = using

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import GaugeHistogramMetricFamily, GaugeMetricFamily
        from prometheus_client.utils import floatToGoString

        db = self.using or taskengine_settings.DATABASE
        now = timezone.now()
        window = WINDOW.total_seconds()
        stats = inspection.queue_stats(using=db)

        jobs = GaugeMetricFamily(
            "taskengine_jobs",
            "Jobs by queue and status: queued (due or not yet), running, paused, and failed "
            "jobs not yet pruned. Succeeded and cancelled jobs are not counted.",
            labels=["queue", "status"],
        )
        due = GaugeMetricFamily(
            "taskengine_jobs_due", "Queued jobs whose run_after has passed.", labels=["queue"]
        )
        oldest = GaugeMetricFamily(
            "taskengine_oldest_due_job_age_seconds",
            "How long the oldest due job of the queue has been due; 0 when none is.",
            labels=["queue"],
        )
        paused = GaugeMetricFamily(
            "taskengine_queue_paused", "1 while the queue is paused, else 0.", labels=["queue"]
        )
        for name, item in stats.items():
            for status, count in (
                (JobStatus.QUEUED, item.queued),
                (JobStatus.RUNNING, item.running),
                (JobStatus.PAUSED, item.paused_jobs),
                (JobStatus.FAILED, item.failed),
            ):
                jobs.add_metric([name, status.value], count)
            due.add_metric([name], item.due)
            age = item.oldest_due_age
            oldest.add_metric([name], max(0.0, age.total_seconds()) if age is not None else 0.0)
            paused.add_metric([name], 1 if item.paused else 0)
        yield from (jobs, due, oldest, paused)

        finished = GaugeMetricFamily(
            "taskengine_jobs_finished_recently",
            f"Jobs that finished in the last {window:g} s, by queue and final status "
            f"(throughput per second: divide by {window:g}).",
            labels=["queue", "status"],
        )
        counts = inspection.finished_since(now - WINDOW, using=db)
        for name in sorted(set(stats) | set(counts)):
            for status in TERMINAL_STATUSES:
                finished.add_metric([name, status.value], counts.get(name, {}).get(status, 0))
        yield finished
        yield GaugeMetricFamily(
            "taskengine_recent_window_seconds",
            "The window of taskengine_jobs_finished_recently and taskengine_job_duration_seconds.",
            value=window,
        )
        yield GaugeMetricFamily(
            "taskengine_workers_alive",
            "Worker processes whose heartbeat is recent.",
            value=len(inspection.live_workers(using=db)),
        )

        durations = GaugeHistogramMetricFamily(
            "taskengine_job_duration_seconds",
            f"Run time of the last attempt of jobs that succeeded or failed in the last "
            f"{window:g} s, by queue and task (a window recomputed at each scrape).",
            labels=["queue", "task"],
        )
        for (queue, task_name), (buckets, total) in duration_histogram(now - WINDOW, db).items():
            points = [(floatToGoString(bound), count) for bound, count in buckets]
            durations.add_metric([queue, task_name], points, gsum_value=total)
        yield durations
        yield from dispatch_metrics(dispatch_state(db))


def dispatch_metrics(state: DispatchState) -> Iterator[Any]:
    """Redis Streams dispatch: Redis reachable, the streams, the relay (none under postgres)."""
    from prometheus_client.core import GaugeMetricFamily

    if state.backend != "redis-streams":
        return
    yield GaugeMetricFamily(
        "taskengine_dispatch_redis_up",
        "1 if Redis answered this scrape, else 0.",
        value=0 if state.error else 1,
    )
    families = {
        "length": GaugeMetricFamily(
            "taskengine_stream_length", "Entries in the queue's stream.", labels=["queue"]
        ),
        "undelivered": GaugeMetricFamily(
            "taskengine_stream_undelivered",
            "Entries of the queue's stream no worker has read yet.",
            labels=["queue"],
        ),
        "pending": GaugeMetricFamily(
            "taskengine_stream_pending",
            "Entries delivered to a worker and not yet acknowledged.",
            labels=["queue"],
        ),
        "oldest_pending_age": GaugeMetricFamily(
            "taskengine_stream_oldest_pending_seconds",
            "Seconds since the oldest pending entry was delivered; 0 when none is pending.",
            labels=["queue"],
        ),
    }
    for item in state.streams:
        for name, family in families.items():
            family.add_metric([item.queue], getattr(item, name) or 0)
    yield from families.values()
    if state.relay_round_age is not None:
        yield GaugeMetricFamily(
            "taskengine_relay_last_round_age_seconds",
            "Seconds since the relay's last round (it runs about every POLL_INTERVAL at most).",
            value=state.relay_round_age,
        )
    if state.relay_lag is not None:
        yield GaugeMetricFamily(
            "taskengine_relay_lag_seconds",
            "How long the jobs the relay last published had been due, at most.",
            value=state.relay_lag,
        )


def duration_histogram(
    since: dt.datetime, using: str
) -> dict[tuple[str, str], tuple[list[tuple[float, int]], float]]:
    """``(queue, task) -> ([(upper bound, cumulative count), …, (inf, count)], sum of seconds)``
    for jobs that succeeded or failed at or after ``since``, counted in one grouped query."""
    # Not "duration": that name is the model's property.
    run_time = ExpressionWrapper(F("finished_at") - F("started_at"), output_field=DurationField())
    buckets = {
        f"le_{index}": Count("id", filter=Q(run_time__lte=dt.timedelta(seconds=bound)))
        for index, bound in enumerate(DURATION_BUCKETS)
    }
    # Mappings: the row type the type checker derives leaves out the keys from **buckets.
    rows: Iterable[Mapping[str, Any]] = (
        Job.objects.using(using)
        .order_by()
        .filter(
            finished_at__gte=since,
            status__in=[JobStatus.SUCCEEDED, JobStatus.FAILED],
            started_at__isnull=False,
        )
        .alias(run_time=run_time)
        .values("queue", "task_name")
        .annotate(count=Count("id"), total=Sum("run_time"), **buckets)
    )
    histogram = {}
    for row in rows:
        points = [
            (float(bound), row[f"le_{index}"]) for index, bound in enumerate(DURATION_BUCKETS)
        ]
        points.append((math.inf, row["count"]))
        total = row["total"].total_seconds() if row["total"] is not None else 0.0
        histogram[(row["queue"], row["task_name"])] = (points, total)
    return histogram
