"""The console's charts: percentiles from histogram buckets, the SVG drawing (escaped, empty,
one point), and the charts on the overview and a queue's page, read from the per-minute rows."""

from __future__ import annotations

import math
import random
import re
import time

import pytest

from django_taskengine.admin.charts import Axis, Series, bar_chart, line_chart, nice_ceiling
from django_taskengine.core.wait_histogram import (
    BUCKETS,
    bucket_of,
    lower_bound,
    percentile,
    upper_bound,
)
from django_taskengine.models import MinuteStats
from django_taskengine.worker.stats import MinuteCounts, write_counts
from tests.admin_helpers import admin_url, content
from tests.factories import QueueFactory


def _histogram(waits: list[float]) -> list[int]:
    counts = [0] * BUCKETS
    for wait in waits:
        counts[bucket_of(wait)] += 1
    return counts


def test_each_wait_falls_in_the_bucket_whose_bounds_hold_it():
    for wait in [0.0, -0.5, 0.0005, 0.001, 0.0015, 0.002, 0.7, 1.0, 59.9, 3600.0, 1e9]:
        bucket = bucket_of(wait)
        assert 0 <= bucket < BUCKETS
        assert lower_bound(bucket) <= max(wait, 0.0) < upper_bound(bucket)


def test_percentiles_from_buckets_are_within_a_bucket_of_the_truth():
    rng = random.Random(15)
    waits = [rng.lognormvariate(0, 2) for _ in range(10_000)]
    counts = _histogram(waits)
    for fraction in (0.5, 0.95, 0.99):
        truth = sorted(waits)[int(fraction * len(waits)) - 1]
        estimate = percentile(counts, fraction)
        assert estimate is not None
        # Geometric interpolation: within the factor of 2 of a bucket, in practice far closer.
        assert truth / 2 <= estimate <= truth * 2
        assert abs(math.log(estimate / truth)) < math.log(1.25)


def test_percentiles_of_summed_histograms_are_those_of_all_waits():
    fast, slow = [0.01] * 90, [10.0] * 10
    summed = [a + b for a, b in zip(_histogram(fast), _histogram(slow), strict=True)]
    p50, p95 = percentile(summed, 0.5), percentile(summed, 0.95)
    assert p50 is not None and 0.008 <= p50 <= 0.016
    assert p95 is not None and 8 <= p95 <= 16.4


def test_percentile_of_nothing_is_none_and_of_the_last_bucket_its_lower_bound():
    assert percentile([0] * BUCKETS, 0.5) is None
    only_long = [0] * BUCKETS
    only_long[-1] = 3
    assert percentile(only_long, 0.95) == lower_bound(BUCKETS - 1)


def test_nice_ceiling():
    assert [nice_ceiling(v) for v in (0, 0.3, 1, 3, 7, 11, 180)] == [1, 0.5, 1, 5, 10, 20, 200]


def _axis(n: int) -> Axis:
    return Axis([f"12:{i:02d}" for i in range(n)], [(0, "12:00")])


def test_a_chart_escapes_every_label():
    evil = '<script>alert("x")</script>'
    svg = bar_chart(
        "c1",
        f"Title {evil}",
        f"unit {evil}",
        Axis([evil], [(0, evil)]),
        [Series(evil, "te-c-ok", [3])],
        f"summary {evil}",
    )
    assert "<script>" not in svg
    assert "&lt;script&gt;" in svg
    assert svg.count("<svg") == 1 and svg.endswith("</svg>")


def test_a_chart_is_an_image_with_a_title_a_description_and_numbers_on_hover():
    svg = bar_chart(
        "c2",
        "Jobs finished",
        "jobs / minute",
        _axis(3),
        [Series("succeeded", "te-c-ok", [1, 5, 2]), Series("failed", "te-c-fail", [0, 1, 0])],
        "8 succeeded, 1 failed.",
    )
    assert 'role="img"' in svg and 'aria-labelledby="c2-t c2-d"' in svg
    assert '<title id="c2-t">Jobs finished</title>' in svg
    assert '<desc id="c2-d">8 succeeded, 1 failed.</desc>' in svg
    assert "<title>12:01: succeeded 5; failed 1</title>" in svg
    assert svg.count('class="te-chart-bar te-c-ok"') == 3
    assert svg.count('class="te-chart-bar te-c-fail"') == 1
    assert "No data yet" not in svg
    # Colours come from classes (Django's variables, in admin.css), never from the drawing.
    assert not re.search(r"#[0-9a-fA-F]{3,6}\b|rgb\(", svg)


def test_an_empty_chart_says_so():
    for svg in (
        bar_chart("e1", "t", "u", _axis(60), [Series("s", "te-c-ok", [0] * 60)], "none"),
        line_chart(
            "e2",
            "t",
            "u",
            _axis(60),
            [Series("p50", "te-c-p50", [None] * 60)],
            "none",
            durations=True,
        ),
        line_chart("e3", "t", "u", _axis(0), [Series("r", "te-c-running", [])], "none"),
    ):
        assert "No data yet" in svg
        assert "<polyline" not in svg and "te-chart-bar" not in svg


def test_a_line_with_one_point_is_drawn_as_a_dot_and_gaps_split_lines():
    one = line_chart(
        "o1",
        "t",
        "u",
        _axis(5),
        [Series("p50", "te-c-p50", [None, None, 0.2, None, None])],
        "s",
        durations=True,
    )
    assert one.count("<circle") == 1 and "<polyline" not in one
    two = line_chart(
        "o2", "t", "u", _axis(5), [Series("r", "te-c-running", [1, 2, None, 3, 4])], "s", area=True
    )
    assert two.count("<polyline") == 2 and two.count("<polygon") == 2


def test_the_wait_axis_is_logarithmic_with_human_ticks():
    svg = line_chart(
        "w",
        "t",
        "wait",
        _axis(3),
        [Series("p95", "te-c-p95", [0.004, 2.0, 90.0])],
        "s",
        durations=True,
    )
    for label in ("10 ms", "1 s", "1 min"):
        assert f">{label}</text>" in svg


@pytest.mark.django_db
def test_the_overview_charts_read_the_per_minute_rows(admin_client):
    QueueFactory(name="emails")
    QueueFactory(name="<b>odd</b>")
    now_minute = int(time.time() // 60)
    waits = [0] * BUCKETS
    waits[10] = 4  # 0.5 to 1 s
    # Written as the workers write them, with the rows that sum every queue.
    write_counts(
        "default",
        {
            ("emails", now_minute - 2): MinuteCounts(7, 2, 1, 120.0, waits),
            ("<b>odd</b>", now_minute - 2): MinuteCounts(succeeded=3),
            # Older than a day: on no chart.
            ("emails", now_minute - 2000): MinuteCounts(succeeded=1000),
        },
    )

    html = content(admin_client.get(admin_url("overview_changelist")))
    assert 'data-te-live="charts"' in html
    assert "10 succeeded, 2 failed, 1 attempts failed and retried." in html
    assert "2 running on average" in html or "Peak 2" in html
    assert "&lt;b&gt;odd&lt;/b&gt;" in html and "<b>odd</b>" not in html

    one = content(admin_client.get(admin_url("overview_changelist", query="chart_queue=emails")))
    assert "7 succeeded, 2 failed" in one
    assert "4 attempts started" in one

    day = content(admin_client.get(admin_url("overview_changelist", query="charts=day")))
    assert "Jobs finished per 15 minutes, last day, all queues" in day
    assert "10 succeeded" in day and "1,010 succeeded" not in day


@pytest.mark.django_db
def test_the_overview_marks_its_regions_for_live_refresh_and_loads_the_script(admin_client):
    html = content(admin_client.get(admin_url("overview_changelist")))
    for region in ("summary", "queues", "workers", "charts"):
        assert f'data-te-live="{region}"' in html
    assert "django_taskengine/console.js" in html


@pytest.mark.django_db
def test_a_queue_page_shows_that_queues_charts(admin_client):
    QueueFactory(name="emails")
    now_minute = int(time.time() // 60)
    write_counts(
        "default",
        {
            ("emails", now_minute): MinuteCounts(succeeded=5),
            ("other", now_minute): MinuteCounts(succeeded=50),
        },
    )
    assert MinuteStats.objects.get(queue="", minute=now_minute).succeeded == 55
    html = content(admin_client.get(admin_url("queue_change", "emails")))
    assert "Activity of queue emails" in html
    assert "5 succeeded, 0 failed" in html
