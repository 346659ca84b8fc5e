"""The operator console's page timings: the server time of every admin page on a job table of a
million rows, against the target of 150 ms on PostgreSQL.

    ./dev bench --admin [--jobs 1000000] [--requests 20] [--explain] [--profile]
                        [--only LABEL,...] [--json PATH]
                        [--database-url [--no-fill]] [--force]

On a private PostgreSQL cluster (``cluster.py``; ``--database-url`` for the server
``DATABASE_URL`` names), migrated, ``admin_fill.py`` fills ``--jobs`` jobs as a busy day leaves
them (set-based SQL: succeeded, failed with varied errors, queued due and scheduled, running
with progress under live workers, paused, cancelled; attempts; VACUUM ANALYZE). Then each page
is requested by Django's test client in this process, logged in as a superuser, ``DEBUG`` off:
one warm-up request (which also counts the page's SQL queries and finds its slowest), then
``--requests`` timed ones. The time is around ``client.get``: URL resolution, middleware,
the view, its queries and the template's rendering, all of the server's work but the network
(the test client keeps one database connection, as ``CONN_MAX_AGE`` or a pool would).

Pages are found by reversing their admin URL names: one that does not exist (yet) is reported
"not present", so the benchmark runs before and after a page is added. Any admin change list or
chart of the engine whose name mentions failures or charts is timed too, and so are the
variants the overview links to on itself (the day's charts beside the hour's, one queue's).

``--explain`` prints ``EXPLAIN (ANALYZE, BUFFERS)`` of each page's slowest query.

Charts at 10M jobs: the console's charts read a per-minute roll-up (one row per queue and
minute, ``MinuteStats``), not the job table. It is filled as the ``--jobs`` jobs of the day would
have left it; afterwards it is refilled as ten million jobs a day would, and the overview pages
are timed again (:func:`charts_at`).
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import sys
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from benchmarks import run as bench
from benchmarks import session as sess

TARGET_MS = 150.0
DEFAULT_JOBS = 1_000_000
DEFAULT_REQUESTS = 20
#: Words in an admin URL name that make it worth timing when it takes no argument.
EXTRA_NAME_HINTS = ("failure", "chart", "stats")


@dataclass
class PageTiming:
    page: str
    url: str
    status: int | None = None
    median_ms: float | None = None
    p95_ms: float | None = None
    max_ms: float | None = None
    queries: int | None = None
    #: The warm-up request's time in SQL statements (the rest: Python and templates).
    sql_ms: float | None = None
    slowest_query_ms: float | None = None
    slowest_query: str = ""
    explain: str = ""
    note: str = ""
    samples_ms: list[float] = field(default_factory=list)

    @property
    def verdict(self) -> str:
        if self.p95_ms is None:
            return self.note or "not present"
        return "pass" if self.p95_ms <= TARGET_MS else "MISS"


def _reverse(name: str, *args: Any) -> str | None:
    from django.urls import NoReverseMatch, reverse

    try:
        return reverse(f"admin:{name}", args=args)
    except NoReverseMatch:
        return None


def _extra_pages(known: set[str]) -> list[tuple[str, str]]:
    """Admin pages of the engine (change lists, charts) with no argument whose names hint at
    failures or charts; not the views of actions (POST only) or forms."""
    from django.contrib import admin
    from django.urls import URLPattern, URLResolver

    found: list[tuple[str, str]] = []

    def walk(patterns: list[Any]) -> None:
        for p in patterns:
            if isinstance(p, URLResolver):
                walk(p.url_patterns)
            elif isinstance(p, URLPattern) and p.name and p.name.startswith("django_taskengine"):
                page = p.name.endswith("_changelist") or "chart" in p.name
                if page and any(h in p.name for h in EXTRA_NAME_HINTS) and p.name not in known:
                    url = _reverse(p.name)
                    if url:
                        found.append((p.name.removeprefix("django_taskengine_"), url))

    walk(admin.site.get_urls())
    return sorted(set(found))


def pages(scene: Any) -> list[tuple[str, str | None]]:
    """(label, URL or None when the page does not exist) for every page to time."""
    from django.utils.http import urlencode

    jobs = _reverse("django_taskengine_job_changelist")

    def job_list(**params: str) -> str | None:
        return f"{jobs}?{urlencode(params)}" if jobs else None

    out: list[tuple[str, str | None]] = [
        ("admin index", _reverse("index")),
        ("overview", _reverse("django_taskengine_overview_changelist")),
        ("queue list", _reverse("django_taskengine_queue_changelist")),
        ("queue page (payments)", _reverse("django_taskengine_queue_change", "payments")),
        ("job list", jobs),
        ("job list status=failed", job_list(status="failed")),
        ("job list status=queued", job_list(status="queued")),
        ("job list status=running", job_list(status="running")),
        ("job list queue=emails", job_list(queue="emails")),
        ("job list task=charge_card", job_list(task="payments.tasks.charge_card")),
        ("job list failed+emails", job_list(status="failed", queue="emails")),
        ("job list page 100", job_list(p="100")),
        ("job list page 2000", job_list(p="2000")),
    ]
    out += [(f"job search {what}", job_list(q=term)) for what, term in scene.search.items()]
    out += [
        ("running job page", _reverse("django_taskengine_job_change", scene.running_job)),
        (
            "failed job, 20 attempts",
            _reverse("django_taskengine_job_change", scene.many_attempts_job),
        ),
        ("worker list", _reverse("django_taskengine_worker_changelist")),
        ("worker page", _reverse("django_taskengine_worker_change", scene.live_worker)),
        ("failures", _reverse("django_taskengine_failures_changelist")),
        ("workflow list", _reverse("django_taskengine_workflow_changelist")),
        ("schedule list", _reverse("django_taskengine_schedule_changelist")),
        ("audit trail", _reverse("django_taskengine_auditentry_changelist")),
    ]
    known_urls = {url for _, url in out if url}
    extra = [(name, url) for name, url in _extra_pages(set()) if url not in known_urls]
    # "failures" was a guess of its name: drop the placeholder when the real page was found.
    if extra and any("failure" in name for name, _ in extra):
        out = [(label, url) for label, url in out if not (label == "failures" and url is None)]
    return out + extra


def _variants(html: str, base: str) -> list[str]:
    """Query strings the overview links to on itself (e.g. a day chart beside the hour's)."""
    links = set(re.findall(r'href="(\?[^"#]+)"', html))
    links |= {m for m in re.findall(rf'href="{re.escape(base)}(\?[^"#]+)"', html)}
    found = sorted(link.replace("&amp;", "&") for link in links)
    # The time spans first (the day's chart reads the most), then other variants (one queue).
    found.sort(key=lambda q: not any(w in q for w in ("day", "week", "hour")))
    return found[:4]


class QueryTimer:
    """A database execute wrapper: each statement's SQL, parameters and time (perf_counter, not
    the ms-rounded times of Django's query log)."""

    def __init__(self) -> None:
        self.queries: list[tuple[float, str, Any]] = []

    def __call__(self, execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        t0 = time.perf_counter()
        try:
            return execute(sql, params, many, context)
        finally:
            self.queries.append((time.perf_counter() - t0, sql, params))


def time_page(client: Any, label: str, url: str, requests: int, explain: bool) -> PageTiming:
    from django.db import connection

    from benchmarks import admin_fill

    result = PageTiming(label, url)
    admin_fill.refresh_heartbeats()
    timer = QueryTimer()
    with connection.execute_wrapper(timer):
        response = client.get(url)
    result.status = response.status_code
    if response.status_code != 200:
        result.note = f"HTTP {response.status_code}"
        return result
    result.queries = len(timer.queries)
    result.sql_ms = sum(q[0] for q in timer.queries) * 1000
    slowest: tuple[float, str, Any] | None = max(timer.queries, default=None, key=lambda q: q[0])
    if slowest:
        result.slowest_query_ms = slowest[0] * 1000
        result.slowest_query = slowest[1]
    for _ in range(requests):
        t0 = time.perf_counter()
        response = client.get(url)
        result.samples_ms.append((time.perf_counter() - t0) * 1000)
        if response.status_code != 200:
            result.note = f"HTTP {response.status_code} on a timed request"
            return result
    ordered = sorted(result.samples_ms)
    result.median_ms = statistics.median(ordered)
    result.p95_ms = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    result.max_ms = ordered[-1]
    if explain and slowest and slowest[1].lstrip().upper().startswith("SELECT"):
        rows = bench.query("EXPLAIN (ANALYZE, BUFFERS) " + slowest[1], slowest[2])
        result.explain = "\n".join(r[0] for r in rows)
    return result


CHART_JOBS_PER_DAY = 10_000_000


def charts_at(client: Any, jobs_per_day: int, overview_pages: list[PageTiming], opts: Any) -> Any:
    """The overview's charts when ``jobs_per_day`` jobs a day went through: the charts read the
    per-minute roll-up (one row per queue and minute, whatever the number of jobs), which is
    filled as those jobs would have left it, and the overview pages are timed again. Returns
    (rows written, timings), or (0, []) when there is no roll-up table."""
    from benchmarks import admin_fill

    rows = admin_fill.fill_minute_stats(jobs_per_day)
    if not rows:
        return 0, []
    timings = [
        time_page(client, f"{t.page} @ {jobs_per_day:,}/day", t.url, opts.requests, False)
        for t in overview_pages
    ]
    return rows, timings


def profile_page(client: Any, url: str, requests: int = 5, top: int = 8) -> str:
    """Where a page's time goes: cProfile over ``requests`` more requests, the engine's own
    functions with the most cumulative time (after the timings, so they are not slowed)."""
    import cProfile
    import io
    import pstats

    profiler = cProfile.Profile()
    profiler.enable()
    for _ in range(requests):
        client.get(url)
    profiler.disable()
    out = io.StringIO()
    stats = pstats.Stats(profiler, stream=out).sort_stats("cumulative")
    stats.print_stats(r"django_taskengine", top)
    lines = [line for line in out.getvalue().splitlines() if line.strip()]
    start = next((i for i, line in enumerate(lines) if "ncalls" in line), 0)
    return "\n".join(lines[start:])


def print_table(results: list[PageTiming], requests: int) -> None:
    print(
        f"\nserver time per page, {requests} requests after a warm-up (ms; queries and their "
        f"time in SQL from the warm-up); target p95 ≤ {TARGET_MS:.0f} ms"
    )
    width = max(len(r.page) for r in results)
    print(
        f"  {'page':<{width}}  {'median':>7} {'p95':>7} {'max':>7} {'queries':>7} "
        f"{'sql ms':>7}  target"
    )
    for r in results:
        if r.median_ms is None:
            dash = f"{'—':>7} "
            print(f"  {r.page:<{width}}  {dash * 5} {r.verdict}")
            continue
        print(
            f"  {r.page:<{width}}  {r.median_ms:>7.1f} {r.p95_ms:>7.1f} {r.max_ms:>7.1f} "
            f"{r.queries:>7} {r.sql_ms:>7.1f}  {r.verdict}"
        )


def print_slowest(results: list[PageTiming]) -> None:
    print("\nslowest query of each page (warm-up request):")
    for r in results:
        if r.slowest_query_ms is None:
            continue
        text = re.sub(r"\s+", " ", r.slowest_query)
        print(f"  {r.page}: {r.slowest_query_ms:.1f} ms  {text[:160]}")
        if r.explain:
            print("    " + r.explain.replace("\n", "\n    "))


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="./dev bench --admin", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument(
        "--jobs", type=int, default=DEFAULT_JOBS, help=f"jobs to fill (default {DEFAULT_JOBS:,})"
    )
    parser.add_argument(
        "--requests",
        type=int,
        default=DEFAULT_REQUESTS,
        help=f"timed requests per page (default {DEFAULT_REQUESTS})",
    )
    parser.add_argument(
        "--explain", action="store_true", help="EXPLAIN ANALYZE each page's slowest query"
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="after the timings, cProfile each page (5 requests): where its time goes",
    )
    parser.add_argument(
        "--no-fill",
        action="store_true",
        help="with --database-url: time the jobs already there (filled by an earlier run)",
    )
    parser.add_argument(
        "--only", default="", help="time only the pages whose label contains one of these (a,b)"
    )
    sess.add_arguments(parser)
    opts = parser.parse_args(argv)
    if opts.jobs < 1000 or opts.requests < 1:
        parser.error("--jobs must be at least 1000 and --requests at least 1")
    if opts.no_fill and not opts.database_url:
        parser.error("--no-fill needs --database-url (a private cluster starts empty)")
    # The benchmarks' settings plus Django's admin (read when the session first needs them).
    os.environ["DJANGO_SETTINGS_MODULE"] = "benchmarks.admin_settings"
    session = sess.Session(opts)
    session.print_header(f"admin page timings at {opts.jobs:,} jobs")

    from django.contrib.auth import get_user_model
    from django.test import Client

    from benchmarks import admin_fill

    if opts.no_fill:
        scene = admin_fill.scene_of_existing(opts.jobs)
    else:
        print(f"filling {opts.jobs:,} jobs (load {bench.loadavg()}) ...", flush=True)
        scene = admin_fill.fill(opts.jobs)
    if not opts.no_fill:
        rollup_rows = admin_fill.fill_minute_stats(opts.jobs)
        print(f"charts' roll-up: {rollup_rows:,} rows (queues x minutes of a day)")
    print(
        f"fill: {scene.seconds:.1f} s; "
        + ", ".join(f"{k} {v:,}" for k, v in sorted(scene.counts.items()))
    )
    user_model = get_user_model()
    user = user_model.objects.filter(username="bench-operator").first()
    if user is None:
        user = user_model.objects.create_superuser("bench-operator", "ops@example.com", None)
    client = Client()
    client.force_login(user)

    wanted = [w.strip() for w in opts.only.split(",") if w.strip()]
    results: list[PageTiming] = []
    todo = pages(scene)
    load_before = bench.loadavg()
    while todo:
        label, url = todo.pop(0)
        if wanted and not any(w in label for w in wanted):
            continue
        if url is None:
            results.append(PageTiming(label, ""))
            continue
        print(f"  {label} ...", file=sys.stderr, flush=True)
        timing = time_page(client, label, url, opts.requests, opts.explain)
        results.append(timing)
        if label == "overview" and timing.status == 200:
            html = client.get(url).content.decode()
            todo[0:0] = [(f"overview {q}", url + q) for q in _variants(html, url)]
    load_after = bench.loadavg()
    overviews = [r for r in results if r.page.startswith("overview") and r.median_ms is not None]
    rollup_rows, at_10m = charts_at(client, CHART_JOBS_PER_DAY, overviews, opts)
    print_table(results, opts.requests)
    print(f"load average: before the timings {load_before}, after {load_after}")
    if at_10m:
        print(
            f"\ncharts at {CHART_JOBS_PER_DAY:,} jobs a day: the roll-up refilled as they would "
            f"leave it ({rollup_rows:,} rows), the overview timed again"
        )
        print_table(at_10m, opts.requests)
    else:
        print("\ncharts at 10M jobs a day: no per-minute roll-up table (nothing to measure)")
    results += at_10m
    print_slowest(results)
    if opts.profile:
        for r in results:
            if r.median_ms is not None:
                print(f"\nprofile of {r.page} ({r.url}), 5 requests:")
                print("  " + profile_page(client, r.url).replace("\n", "\n  "))
    timed = [r for r in results if r.p95_ms is not None]
    misses = [r.page for r in timed if r.verdict == "MISS"]
    errors = [r.page for r in results if r.note]
    target = sess.Target(
        f"every admin page ≤ {TARGET_MS:.0f} ms server time (p95) at {opts.jobs:,} jobs",
        f"{len(timed) - len(misses)}/{len(timed)} pages",
        not misses and bool(timed),
    )
    sess.print_targets([target])
    session.finish(
        opts,
        "admin",
        {
            "options": vars(opts),
            "scene": admin_fill.describe(scene),
            "pages": [asdict(r) | {"verdict": r.verdict} for r in results],
            "loadavg_timings": [load_before, load_after],
            "charts_10m_rollup_rows": rollup_rows,
            "targets": sess.targets_json([target]),
            "failures": {page: "error response" for page in errors},
        },
    )
    return 1 if errors else 0
