"""The charts of the overview and of a queue's page, read from the per-minute statistics.

One query per page view, over the roll-up (:class:`~django_taskengine.models.MinuteStats`),
never over the job table: the last hour is 60 rows, the last day 1,440, of one queue or of the
rows that sum every queue, summed by the database into 60 one-minute or 96 fifteen-minute slots
(``minute / 15``), whatever the number of jobs and of queues. Percentiles of the wait come from
the summed histogram buckets.
"""

from __future__ import annotations

import datetime as dt
import time
import zlib
from dataclasses import dataclass, field
from typing import Any

from django.db.models import F, Sum
from django.http import HttpRequest
from django.utils import timezone
from django.utils.safestring import SafeString

from ..conf import taskengine_settings
from ..core.wait_histogram import BUCKETS, percentile
from ..models import MinuteStats
from ..stats_models import ALL_QUEUES, WAIT_COLUMNS
from .charts import Axis, Series, bar_chart, format_number, format_wait, line_chart
from .common import time_zone_name

#: The query parameters that choose the period and the queue of the charts.
PERIOD_PARAM = "charts"
QUEUE_PARAM = "chart_queue"


@dataclass(frozen=True)
class Period:
    name: str
    label: str
    #: Minutes per slot, and slots shown (the last one is the slot now).
    step: int
    slots: int
    #: A tick label every this many slots.
    tick_every: int


PERIODS = {
    "hour": Period("hour", "Last hour", 1, 60, 10),
    "day": Period("day", "Last day", 15, 96, 12),
}


@dataclass
class Slots:
    """The summed statistics of each slot of a period."""

    succeeded: list[int]
    failed: list[int]
    retried: list[int]
    running_seconds: list[float]
    waits: list[list[int]] = field(default_factory=list)


def read_slots(period: Period, queue: str | None, now: float, using: str) -> tuple[int, Slots]:
    """The first slot's number (minutes since the epoch / step) and the period's slots."""
    last = int(now // 60) // period.step
    first = last - period.slots + 1
    rows = MinuteStats.objects.using(using).filter(
        queue=ALL_QUEUES if queue is None else queue, minute__gte=first * period.step
    )
    slot_of = F("minute") / period.step if period.step > 1 else F("minute")
    sums: dict[str, Any] = {
        "succeeded_sum": Sum("succeeded"),
        "failed_sum": Sum("failed"),
        "retried_sum": Sum("retried"),
        "running_sum": Sum("running_seconds"),
        **{f"{column}_sum": Sum(column) for column in WAIT_COLUMNS},
    }
    grouped = rows.annotate(slot=slot_of).values("slot").annotate(**sums).order_by()
    n = period.slots
    slots = Slots([0] * n, [0] * n, [0] * n, [0.0] * n, [[0] * BUCKETS for _ in range(n)])
    row: dict[str, Any]
    for row in grouped:  # type: ignore[assignment]  # the sums are named at run time
        index = row["slot"] - first
        if not 0 <= index < n:
            continue  # a row stamped ahead of this clock
        slots.succeeded[index] = row["succeeded_sum"] or 0
        slots.failed[index] = row["failed_sum"] or 0
        slots.retried[index] = row["retried_sum"] or 0
        slots.running_seconds[index] = row["running_sum"] or 0.0
        slots.waits[index] = [row[f"{column}_sum"] or 0 for column in WAIT_COLUMNS]
    return first, slots


def _axis(period: Period, first: int) -> Axis:
    labels, ticks = [], []
    for index in range(period.slots):
        start = timezone.localtime(
            dt.datetime.fromtimestamp((first + index) * period.step * 60, dt.UTC)
        )
        if period.step == 1:
            labels.append(f"{start:%H:%M}")
        else:
            end = start + dt.timedelta(minutes=period.step)
            labels.append(f"{start:%d %b %H:%M}–{end:%H:%M}")
        if (first + index) % period.tick_every == 0:
            ticks.append((index, f"{start:%H:%M}"))
    return Axis(labels, ticks)


def build_charts(period: Period, queue: str | None, using: str) -> list[dict[str, Any]]:
    """The three charts of a period (jobs finished, wait before start, running jobs), for one
    queue or (``queue`` None) all of them together."""
    now = time.time()
    first, slots = read_slots(period, queue, now, using)
    axis = _axis(period, first)
    where = f"queue {queue}" if queue else "all queues"
    per = "minute" if period.step == 1 else f"{period.step} minutes"
    # Ids stable across page loads (the live refresh swaps charts by their region).
    key = f"te-chart-{period.name}-{f'q{zlib.crc32(queue.encode())}' if queue else 'all'}"

    total = [sum(values) for values in (slots.succeeded, slots.failed, slots.retried)]
    finished = bar_chart(
        f"{key}-finished",
        f"Jobs finished per {per}, {period.label.lower()}, {where}",
        f"jobs / {per}",
        axis,
        [
            Series("succeeded", "te-c-ok", slots.succeeded),
            Series("failed", "te-c-fail", slots.failed),
            Series("failed, retrying", "te-c-retry", slots.retried),
        ],
        f"{total[0]:,} succeeded, {total[1]:,} failed, {total[2]:,} attempts failed and retried.",
    )

    p50 = [percentile(counts, 0.5) for counts in slots.waits]
    p95 = [percentile(counts, 0.95) for counts in slots.waits]
    every = [sum(column) for column in zip(*slots.waits, strict=True)] or [0] * BUCKETS
    whole50, whole95 = percentile(every, 0.5), percentile(every, 0.95)
    wait_summary = (
        f"{sum(every):,} attempts started; wait p50 {format_wait(whole50)}, "
        f"p95 {format_wait(whole95)}."
        if whole50 is not None and whole95 is not None
        else "No attempt started."
    )
    waits = line_chart(
        f"{key}-wait",
        f"Wait before start, p50 and p95, {period.label.lower()}, {where}",
        "wait",
        axis,
        [Series("p50", "te-c-p50", p50), Series("p95", "te-c-p95", p95)],
        wait_summary,
        durations=True,
    )

    slot_seconds = period.step * 60.0
    current = now - (first + period.slots - 1) * slot_seconds
    running = [
        seconds / (slot_seconds if index < period.slots - 1 else max(current, 1.0))
        for index, seconds in enumerate(slots.running_seconds)
    ]
    peak = max(running, default=0.0)
    running_chart = line_chart(
        f"{key}-running",
        f"Jobs running (mean per {per}), {period.label.lower()}, {where}",
        "jobs",
        axis,
        [Series("running", "te-c-running", running)],
        f"At most {format_number(peak)} running on average in one slot.",
        area=True,
    )
    return [
        _chart(
            "finished",
            "Jobs finished",
            finished,
            _legend(["ok", "fail", "retry"]),
            f"Per {per}: jobs that succeeded, failed for good, and attempts that failed "
            "and will be retried. " + f"{total[0]:,} succeeded, {total[1]:,} failed.",
        ),
        _chart(
            "wait",
            "Wait before start",
            waits,
            _legend(["p50", "p95"]),
            "How long jobs waited from when they were due (the later of enqueued and "
            "run_after) until an attempt started; p50 and p95 of the attempts that started "
            "in each slot. " + wait_summary,
        ),
        _chart(
            "running",
            "Jobs running",
            running_chart,
            _legend(["running"]),
            f"Mean number of jobs running during each slot (the latest slot so far). "
            f"Peak {format_number(peak)}.",
        ),
    ]


_LEGENDS = {
    "ok": "succeeded",
    "fail": "failed",
    "retry": "failed, retrying",
    "p50": "p50",
    "p95": "p95",
    "running": "running",
}


def _legend(keys: list[str]) -> list[tuple[str, str]]:
    return [(_LEGENDS[key], f"te-c-{key}") for key in keys]


def _chart(
    name: str, title: str, svg: SafeString, legend: list[tuple[str, str]], caption: str
) -> dict[str, Any]:
    return {"name": name, "title": title, "svg": svg, "legend": legend, "caption": caption}


def _link(request: HttpRequest, **changes: str | None) -> str:
    params = request.GET.copy()
    for name, value in changes.items():
        if value is None:
            params.pop(name, None)
        else:
            params[name] = value
    encoded = params.urlencode()
    return f"{request.path}?{encoded}" if encoded else request.path


def charts_context(
    request: HttpRequest, *, queue: str | None = None, queues: list[str] | None = None
) -> dict[str, Any]:
    """The context of ``includes/charts.html``: for one queue (its page), or for all queues
    with links to each of ``queues`` (the overview, where ``?chart_queue=`` picks one)."""
    period = PERIODS.get(request.GET.get(PERIOD_PARAM, ""), PERIODS["hour"])
    queue_links: list[dict[str, Any]] = []
    if queues is not None:
        chosen = request.GET.get(QUEUE_PARAM) or None
        queue = chosen if chosen in queues else None
        queue_links = [
            {
                "label": "all queues",
                "url": _link(request, **{QUEUE_PARAM: None}),
                "active": queue is None,
            }
        ]
        queue_links += [
            {"label": name, "url": _link(request, **{QUEUE_PARAM: name}), "active": name == queue}
            for name in queues
        ]
    return {
        "te_chart_period": period,
        "te_chart_queue": queue,
        "te_chart_zone": time_zone_name(),
        "te_chart_period_links": [
            {
                "label": item.label,
                "url": _link(request, **{PERIOD_PARAM: item.name}),
                "active": item is period,
            }
            for item in PERIODS.values()
        ],
        "te_chart_queue_links": queue_links,
        "te_charts": build_charts(period, queue, taskengine_settings.DATABASE),
    }
