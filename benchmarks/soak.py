"""Soak: producers enqueue at a fixed offered rate while long-running workers drain, with
retention on; and the same soak with a transaction holding the xmin horizon in the middle.

    ./dev bench --soak [--minutes 10] [--warmup 60] [--rates 0.5,0.8] [--runs soak,held]
                       [--held-minutes M] [--hold-minutes 5] [--processes 2] [--concurrency 1]
                       [--max-rate R] [--retention 1m] [--prune-every 60] [--window 60]
                       [--json PATH] [--plot [PATH]] [--database-url]

1. **Calibrate**: the maximum drain rate of the workers of the soak (``run_workers --burst
   --processes P --concurrency C``, ``--calibrate-jobs`` queued no-op jobs; the steady rate,
   first start → last finish), unless ``--max-rate`` gives it. With ``--calibrate
   sustained``, then the highest offered rate those workers keep up with while the producer
   enqueues beside them (:func:`calibrate_sustained`): on a machine whose few CPUs the
   producer, the workers and the server share, a burst's rate is not one they can sustain.
2. **Soak**, for each fraction of ``--rates``: empty tables; ``run_workers --processes P
   --concurrency C`` (long-running: LISTEN, heartbeats, rescue and its own retention duty);
   one producer process (``producer.py``) enqueueing at ``fraction × max rate`` for
   ``--minutes`` after ``--warmup`` seconds that do not count (the table fills up to its
   retention, autovacuum and autoanalyze get their first turn). Retention: succeeded jobs are
   kept ``--retention`` (the workers' own duty prunes for at most a second every 5 minutes, by
   design), and this process runs ``retention.prune()`` every ``--prune-every`` seconds, as an
   operator's cron of ``manage.py taskengine prune`` would (0: only the workers' duty).
3. **Held horizon** (``--runs held``): the soak at the highest rate for ``--held-minutes``
   with a REPEATABLE READ transaction that did one read held open for ``--hold-minutes`` in
   the middle (a long report in the web app), and the recovery after it commits.

Measured, per ``--window`` (a minute by default): throughput (jobs started), enqueue → start
p50/p99 (``started_at - created_at``, both database clock; from a histogram of 2 % bins, read
off the table every few seconds, before retention deletes the rows), job and attempt table and
index sizes, dead tuples, autovacuum runs, the backlog, and the claim statement's mean
execution time (``pg_stat_statements`` when the server has it loaded, as the private cluster
does; else a timed ``EXPLAIN ANALYZE`` sample); in the middle of every window, one ``EXPLAIN
(ANALYZE, BUFFERS)`` of a claim of 100 (rolled back) shows the pages it reads. Targets: see
:func:`soak_targets` and :func:`held_targets`.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from benchmarks import run as bench
from benchmarks import session as sess

#: The first queued job: the first entry of the claim index (not reserved) from a cursor (the
#: producer's jobs have one priority), or an older job a worker reserved. Each is an index
#: probe: `status = 'queued'` alone matches no index since the status indexes cover only jobs
#: at rest, and cost 150 ms a sample with a backlog. From the cursor, because the claim index
#: keeps an entry per claimed job until vacuum removes it (while a transaction holds the
#: horizon, all of them): from its head the probe would cost what a claim from the head does.
FIRST_QUEUED = (
    "LEAST((SELECT id FROM taskengine_job WHERE status = 'queued' AND token IS NULL "
    "AND flow_key IS NULL AND priority = 0 AND (run_after, id) >= "
    "(COALESCE(%(head_run)s::timestamptz, '-infinity'), %(head_id)s::bigint) "
    "ORDER BY run_after, id LIMIT 1), "
    "(SELECT min(id) FROM taskengine_job WHERE status = 'queued' AND token IS NOT NULL))"
)
#: Seconds between probes of the first queued job from the claim index's head.
HEAD_PROBE_EVERY = 30.0


#: Seconds: the grain of the throughput and latency bins (a window is several of these).
FINE = 10.0
#: Latency histogram bins grow by this ratio (percentiles good to about 1 %).
RATIO = 1.02
#: Seconds between the heavier samples (sizes, claim counters, latency histogram).
SAMPLE_EVERY = 5.0


def db_now() -> float:
    return float(bench.query("SELECT extract(epoch FROM clock_timestamp())")[0][0])


class LatencyHistogram:
    """Enqueue → start latencies per FINE-second bin (of the start time), in RATIO bins."""

    def __init__(self) -> None:
        self.bins: dict[int, dict[int, int]] = {}

    def add(self, fine: int, bucket: int, count: int) -> None:
        per = self.bins.setdefault(fine, {})
        per[bucket] = per.get(bucket, 0) + count

    def count(self, fines: range) -> int:
        return sum(sum(self.bins.get(f, {}).values()) for f in fines)

    def percentile(self, fines: range, q: float) -> float | None:
        merged: dict[int, int] = {}
        for f in fines:
            for b, c in self.bins.get(f, {}).items():
                merged[b] = merged.get(b, 0) + c
        total = sum(merged.values())
        if not total:
            return None
        rank = q * total
        seen = 0
        for b in sorted(merged):
            seen += merged[b]
            if seen >= rank:
                return RATIO ** (b + 0.5)  # the bin's geometric middle, in ms
        return None


class Sampler:
    """Reads the job table and the server's statistics while the soak runs (main thread)."""

    def __init__(self, t0: float, pgss: bool) -> None:
        self.t0 = t0
        self.pgss = pgss
        self.cursor = 0  # every job with a lower id has been counted (or deleted unseen)
        self.latency = LatencyHistogram()
        self.samples: list[dict[str, Any]] = []
        self.light: list[dict[str, Any]] = []
        self.plans: list[dict[str, Any]] = []
        # FIRST_QUEUED's cursor: (run_after, id) of the first queued job last seen.
        self.head: dict[str, Any] = {"head_run": None, "head_id": 0}
        self.head_probe_at = 0.0

    def first_queued_params(self) -> dict[str, Any]:
        if time.monotonic() >= self.head_probe_at:
            self.head = {"head_run": None, "head_id": 0}
            self.head_probe_at = time.monotonic() + HEAD_PROBE_EVERY
        return self.head

    def advance(self, first_queued: int) -> None:
        """Move FIRST_QUEUED's cursor to the job ``first_queued`` (if it is still there)."""
        rows = bench.query("SELECT run_after, id FROM taskengine_job WHERE id = %s", [first_queued])
        if rows:
            self.head = {"head_run": rows[0][0], "head_id": rows[0][1]}

    def plan_sample(self) -> None:
        """One EXPLAIN (ANALYZE, BUFFERS) of the claim (rolled back): how many index and heap
        pages a claim of 100 reads at this moment."""
        plan = bench.claim_plan(analyze=True)
        lines = plan.get("plan") or []
        buffers = next((line.strip() for line in lines if "Buffers:" in line), "")
        self.plans.append(
            {
                "t": db_now() - self.t0,
                "summary": bench.plan_summary(plan),
                "buffers": buffers,
                "plan": lines,
            }
        )

    def light_sample(self) -> dict[str, Any]:
        # Jobs are claimed in id order (one priority, run_after = enqueue time), so the backlog
        # is the ids from the first queued job to the last job: index probes, where a count(*)
        # of a backlog of 100,000s would cost the server more than the claims do.
        now, first, last, xmin_age = bench.query(
            "SELECT extract(epoch FROM clock_timestamp()), "
            f"{FIRST_QUEUED}, (SELECT max(id) FROM taskengine_job), "
            "(SELECT coalesce(max(age(backend_xmin)), 0) FROM pg_stat_activity)",
            self.first_queued_params(),
        )[0]
        backlog = 0 if first is None or last is None else last + 1 - first
        if first is not None:
            self.advance(first)
        row = {"t": float(now) - self.t0, "backlog": int(backlog), "xmin_age": int(xmin_age)}
        self.light.append(row)
        return row

    def sample(self) -> dict[str, Any]:
        """The latency histogram up to the oldest queued job; sizes; the claim counters."""
        (first_queued,) = bench.query(
            f"SELECT coalesce({FIRST_QUEUED}, "
            "(SELECT coalesce(max(id), 0) + 1 FROM taskengine_job))",
            self.first_queued_params(),
        )[0]
        if first_queued > self.cursor + 1:
            for fine, bucket, count in bench.query(
                "SELECT floor((extract(epoch FROM started_at) - %(t0)s) / %(g)s)::int, "
                "floor(ln(greatest(extract(epoch FROM started_at - created_at) * 1000, 0.001)) "
                "/ ln(%(r)s))::int, count(*) FROM taskengine_job "
                "WHERE id > %(lo)s AND id < %(hi)s AND started_at IS NOT NULL GROUP BY 1, 2",
                {"t0": self.t0, "g": FINE, "r": RATIO, "lo": self.cursor, "hi": first_queued},
            ):
                self.latency.add(fine, bucket, count)
            self.cursor = first_queued - 1
        row: dict[str, Any] = {
            "t": db_now() - self.t0,
            "tables": sess.table_stats(),
            "load": bench.loadavg(),
        }
        if self.pgss:
            row["claim"] = sess.claim_counters()
            row["complete"] = sess.claim_counters(sess.COMPLETE_MARK)
        else:
            row["claim_sample_ms"] = bench.claim_ms(samples=1)
        self.samples.append(row)
        return row


class Pruner(threading.Thread):
    """``retention.prune()`` every ``every`` seconds, as a cron of ``taskengine prune`` would."""

    def __init__(self, every: float, t0: float) -> None:
        super().__init__(name="pruner", daemon=True)
        self.every = every
        self.t0 = t0
        self.stop = threading.Event()
        self.runs: list[dict[str, Any]] = []

    def run(self) -> None:
        from django.db import connections

        from django_taskengine.retention import prune

        try:
            while not self.stop.wait(self.every):
                started = time.time()
                result = prune()
                self.runs.append(
                    {
                        "t": started - self.t0,
                        "seconds": time.time() - started,
                        "jobs": result.total_jobs,
                        "batches": result.batches,
                    }
                )
        finally:
            connections.close_all()


class Horizon(threading.Thread):
    """A REPEATABLE READ transaction that did one read, held open from ``at`` for ``hold``
    seconds (times relative to the soak's start, database clock)."""

    def __init__(self, at: float, hold: float, t0: float) -> None:
        super().__init__(name="horizon", daemon=True)
        self.at, self.hold, self.t0 = at, hold, t0
        self.opened: float | None = None
        self.closed: float | None = None

    def run(self) -> None:
        import psycopg

        time.sleep(max(0.0, self.t0 + self.at - time.time()))
        with psycopg.connect(**bench.db_params(), application_name="long report") as conn:
            conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
            self.opened = (
                float(
                    conn.execute(
                        "SELECT extract(epoch FROM clock_timestamp()), (SELECT count(*) FROM "
                        "taskengine_job WHERE id < 1000)"
                    ).fetchone()[0]
                )
                - self.t0
            )
            time.sleep(self.hold)
            self.closed = (
                float(conn.execute("SELECT extract(epoch FROM clock_timestamp())").fetchone()[0])
                - self.t0
            )
            conn.commit()


def calibrate(opts: argparse.Namespace) -> dict[str, Any]:
    bench.truncate()
    bench.bulk_enqueue_noops(opts.calibrate_jobs)
    run = bench.drain_once(opts.processes, opts.concurrency, expect=opts.calibrate_jobs)
    bench.truncate()
    return run


#: A sustained calibration's steps: seconds each, of which the first WARM do not count; at most
#: STEPS of them; a step keeps up when its workers started KEPT_UP of the offered rate.
CALIBRATE_SECONDS = 40.0
CALIBRATE_WARM = 10.0
CALIBRATE_STEPS = 5
KEPT_UP = 0.97


def calibrate_sustained(opts: argparse.Namespace, offer: float) -> dict[str, Any]:
    """The highest offered rate the soak's workers keep up with while the producer enqueues on
    the same machine (a burst drain has the machine to itself). Each step offers a rate to
    fresh workers and tables, no retention, and counts the jobs started after its warm-up;
    the next step offers a little less than what was started, until a step keeps up."""
    steps: list[dict[str, Any]] = []
    workers_args = ["--processes", str(opts.processes), "--concurrency", str(opts.concurrency)]
    for _ in range(CALIBRATE_STEPS):
        bench.truncate()
        with bench.Workers(*workers_args, "--shutdown-timeout", "5") as workers:
            wait_for_workers(opts.processes, workers)
            begin = db_now()
            subprocess.run(
                [
                    sys.executable,
                    str(bench.BENCH_DIR / "producer.py"),
                    "--rate",
                    str(offer),
                    "--seconds",
                    str(CALIBRATE_SECONDS),
                ],
                cwd=bench.REPO_ROOT,
                check=True,
                stdout=subprocess.DEVNULL,
            )
            end = db_now()
            (started,) = bench.query(
                "SELECT count(*) FROM taskengine_job WHERE started_at >= to_timestamp(%s) "
                "AND started_at < to_timestamp(%s)",
                [begin + CALIBRATE_WARM, end],
            )[0]
            workers.stop(timeout=60)
        rate = started / (end - begin - CALIBRATE_WARM)
        step = {"offered": offer, "started": rate, "load": bench.loadavg()}
        steps.append(step)
        print(
            f"  sustained calibration: offered {offer:,.0f} jobs/s, started {rate:,.0f} "
            f"(load {step['load']})",
            file=sys.stderr,
            flush=True,
        )
        if rate >= KEPT_UP * offer:
            break
        offer = 0.95 * rate
    bench.truncate()
    kept = [s["offered"] for s in steps if s["started"] >= KEPT_UP * s["offered"]]
    return {"steps": steps, "sustained": kept[-1] if kept else steps[-1]["started"]}


def wait_for_workers(count: int, workers: bench.Workers) -> None:
    def registered() -> bool:
        if workers.proc.poll() is not None:
            raise bench.BenchmarkFailed(f"run_workers exited early\n{workers.output()}")
        return (
            bench.query("SELECT count(*) FROM taskengine_worker WHERE stopped_at IS NULL")[0][0]
            >= count
        )

    bench.wait_until(registered, timeout=60, interval=0.1, what=f"{count} workers to register")


def soak_once(
    opts: argparse.Namespace, name: str, rate: float, seconds: float, hold: tuple[float, float]
) -> dict[str, Any]:
    """One soak at ``rate`` jobs/s for ``seconds``; ``hold`` = (start, length) of the held
    transaction in seconds from the start, or (0, 0)."""
    bench.truncate()
    if sess_pgss(opts):
        sess.reset_statements()
    tables_before = sess.table_stats()
    print(
        f"  {name}: {rate:,.0f} jobs/s for {opts.warmup:.0f} + {seconds:.0f} s "
        f"(load {bench.loadavg()})",
        file=sys.stderr,
        flush=True,
    )
    workers_args = ["--processes", str(opts.processes), "--concurrency", str(opts.concurrency)]
    with bench.Workers(*workers_args, "--shutdown-timeout", "5") as workers:
        wait_for_workers(opts.processes, workers)
        # Figures count from the end of the warm-up: by then retention, autovacuum and
        # autoanalyze have run as on a server that has been up for a while.
        t0 = db_now() + opts.warmup
        sampler = Sampler(t0, sess_pgss(opts))
        pruner = Pruner(opts.prune_every, t0) if opts.prune_every > 0 else None
        horizon = Horizon(hold[0], hold[1], t0) if hold[1] > 0 else None
        producer = subprocess.Popen(
            [
                sys.executable,
                str(bench.BENCH_DIR / "producer.py"),
                "--rate",
                str(rate),
                "--seconds",
                str(opts.warmup + seconds),
            ],
            cwd=bench.REPO_ROOT,
            stdout=subprocess.PIPE,
            text=True,
        )
        for thread in (pruner, horizon):
            if thread:
                thread.start()
        # The server's statistics of the emptied tables settle within a second.
        next_sample = time.monotonic() + 1.0
        next_plan = time.monotonic() + opts.warmup + opts.window / 2
        try:
            while producer.poll() is None:
                sampler.light_sample()
                if time.monotonic() >= next_sample:
                    sampler.sample()
                    next_sample += opts.sample_every
                if time.monotonic() >= next_plan:
                    sampler.plan_sample()
                    next_plan += opts.window
                if workers.proc.poll() is not None:
                    raise bench.BenchmarkFailed(f"run_workers exited\n{workers.output()}")
                time.sleep(1.0)
            out, _ = producer.communicate()
        finally:
            if producer.poll() is None:
                producer.kill()
                producer.wait()
            if pruner:
                pruner.stop.set()
        produced = next(
            (json.loads(line[7:]) for line in out.splitlines() if line.startswith("RESULT ")),
            None,
        )
        if producer.returncode != 0 or produced is None:
            raise bench.BenchmarkFailed(f"the producer exited {producer.returncode}\n{out}")
        # What the workers had not drained when the producer stopped, then the last sample.
        left_at_end = sampler.light_sample()["backlog"]
        drain_deadline = time.monotonic() + 60
        while sampler.light_sample()["backlog"] and time.monotonic() < drain_deadline:
            time.sleep(0.5)
        sampler.sample()
        if horizon:
            horizon.join(timeout=hold[1] + 30)
        if pruner:
            pruner.join(timeout=120)
        code = workers.stop(timeout=60)
        if code != 0:
            raise bench.BenchmarkFailed(f"run_workers exited {code}\n{workers.output()}")
    failed = bench.query(
        "SELECT count(*) FROM taskengine_job WHERE status NOT IN ('succeeded', 'queued')"
    )[0][0]
    result = {
        "name": name,
        "offered": rate,
        "seconds": seconds,
        "producer": produced,
        "left_at_end": left_at_end,
        "not_succeeded": failed,
        "tables_before": tables_before,
        "samples": sampler.samples,
        "light": sampler.light,
        "fine": fine_bins(sampler, seconds),
        "windows": windows(sampler, seconds, opts.window),
        "prunes": pruner.runs if pruner else [],
        "claim_plans": sampler.plans,
        "hold": {"opened": horizon.opened, "closed": horizon.closed} if horizon else None,
        "statements": sess.statement_summary() if sess_pgss(opts) else [],
    }
    return result


def sess_pgss(opts: argparse.Namespace) -> bool:
    return bool(opts.session.pg_stat_statements)


def fine_bins(sampler: Sampler, seconds: float) -> list[dict[str, Any]]:
    out = []
    for f in range(math.ceil(seconds / FINE)):
        span = range(f, f + 1)
        length = min(FINE, seconds - f * FINE)
        out.append(
            {
                "t": f * FINE,
                "throughput": sampler.latency.count(span) / length,
                "p50_ms": sampler.latency.percentile(span, 0.50),
                "p99_ms": sampler.latency.percentile(span, 0.99),
            }
        )
    return out


def _at(samples: list[dict[str, Any]], t: float) -> dict[str, Any] | None:
    """The last sample taken at or before ``t``."""
    before = [s for s in samples if s["t"] <= t + 0.5]
    return before[-1] if before else (samples[0] if samples else None)


def windows(sampler: Sampler, seconds: float, width: float) -> list[dict[str, Any]]:
    per = max(1, round(width / FINE))
    out = []
    count = math.ceil(seconds / (per * FINE) - 1e-9)
    for w in range(count):
        fines = range(w * per, (w + 1) * per)
        start, end = w * per * FINE, min((w + 1) * per * FINE, seconds)
        first, last = _at(sampler.samples, start), _at(sampler.samples, end)
        row: dict[str, Any] = {
            "start": start,
            "end": end,
            "throughput": sampler.latency.count(fines) / max(end - start, 1e-9),
            "p50_ms": sampler.latency.percentile(fines, 0.50),
            "p99_ms": sampler.latency.percentile(fines, 0.99),
            "backlog_max": max(
                (s["backlog"] for s in sampler.light if start <= s["t"] < end), default=None
            ),
            "xmin_age_max": max(
                (s["xmin_age"] for s in sampler.light if start <= s["t"] < end), default=None
            ),
        }
        if last:
            row["tables"] = last["tables"]
            row["load"] = last["load"]
        if first and last and "claim" in last:
            calls = last["claim"]["calls"] - first["claim"]["calls"]
            row["claims"] = calls
            row["claim_ms"] = (
                (last["claim"]["total_ms"] - first["claim"]["total_ms"]) / calls if calls else None
            )
            row["jobs_per_claim"] = (
                (last["claim"]["rows"] - first["claim"]["rows"]) / calls if calls else None
            )
            if "complete" in last and "complete" in first:
                done = last["complete"]["calls"] - first["complete"]["calls"]
                row["complete_ms"] = (
                    (last["complete"]["total_ms"] - first["complete"]["total_ms"]) / done
                    if done
                    else None
                )
        else:
            inside = [
                s["claim_sample_ms"]
                for s in sampler.samples
                if start <= s["t"] < end and s.get("claim_sample_ms") is not None
            ]
            row["claim_ms"] = statistics.median(inside) if inside else None
        out.append(row)
    return out


def _size(window: dict[str, Any], table: str) -> int | None:
    t = (window.get("tables") or {}).get(table)
    return t["heap_bytes"] + t["index_bytes"] if t else None


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def soak_targets(run: dict[str, Any]) -> list[sess.Target]:
    """At a fixed offered rate: latency, sizes and claim time must not grow."""
    ws = run["windows"]
    if len(ws) < 2:
        return [sess.Target(f"{run['name']}: needs ≥ 2 windows", "—", None)]
    first, last = ws[0], ws[-1]
    half = {"tables": (_at(run["samples"], run["seconds"] / 2) or {}).get("tables")}
    targets = []
    # Not one of the issue's targets but their premise: a soak whose workers fall behind the
    # offered rate measures a growing backlog, not the engine at that rate. Kept up: never
    # more than a second's worth of jobs waiting in the last window.
    behind = last["backlog_max"]
    r = _ratio(behind, run["offered"])
    targets.append(
        sess.Target(
            f"{run['name']}: keeps up (last window's backlog ≤ 1 s of jobs)",
            f"{behind or 0:,} jobs = {r or 0:.1f} s",
            None if r is None else r <= 1.0,
            r,
        )
    )
    r = _ratio(last["p99_ms"], first["p99_ms"])
    targets.append(
        sess.Target(
            f"{run['name']}: p99 last ≤ 1.5× first window",
            f"{last['p99_ms'] or 0:.1f} / {first['p99_ms'] or 0:.1f} ms = ×{r or 0:.2f}",
            None if r is None else r <= 1.5,
            r,
        )
    )
    for table in ("taskengine_job", "taskengine_attempt"):
        mid_size, end_size = _size(half, table), _size(last, table)
        r = _ratio(end_size, mid_size)
        targets.append(
            sess.Target(
                f"{run['name']}: {table} heap+indexes plateau (end ≤ 1.1× half-way)",
                f"{sess.mb(end_size or 0)} / {sess.mb(mid_size or 0)} MB = ×{r or 0:.2f}",
                None if r is None else r <= 1.1,
                r,
            )
        )
    r = _ratio(last.get("claim_ms"), first.get("claim_ms"))
    targets.append(
        sess.Target(
            f"{run['name']}: claim time last ≤ 1.2× first window",
            f"{last.get('claim_ms') or 0:.3f} / {first.get('claim_ms') or 0:.3f} ms "
            f"= ×{r or 0:.2f}",
            None if r is None else r <= 1.2,
            r,
        )
    )
    return targets


def held_targets(run: dict[str, Any], soak_rate: float) -> list[sess.Target]:
    """While the horizon is held: ≥ 80 % of the soak's rate; caught up ≤ 60 s after."""
    hold = run["hold"] or {}
    opened, closed = hold.get("opened"), hold.get("closed")
    if opened is None or closed is None:
        return [sess.Target("held: the transaction was held", "—", None)]
    fine = run["fine"]
    inside = [b["throughput"] for b in fine if b["t"] >= opened and b["t"] + FINE <= closed]
    spans = [sum(inside[i : i + 3]) / 3 for i in range(max(0, len(inside) - 2))] or inside
    worst = min(spans) if spans else None
    r = _ratio(worst, soak_rate)
    pre = [s["backlog"] for s in run["light"] if 30 <= s["t"] < opened] or [0]
    pre_backlog = statistics.median(pre)
    threshold = max(2 * pre_backlog, 0.5 * run["offered"])
    after = [s for s in run["light"] if s["t"] >= closed]
    caught = next((s["t"] - closed for s in after if s["backlog"] <= threshold), None)
    peak = max((s["backlog"] for s in run["light"] if opened <= s["t"]), default=None)
    run["recovery"] = {
        "worst_30s_throughput": worst,
        "soak_rate": soak_rate,
        "pre_hold_backlog": pre_backlog,
        "threshold": threshold,
        "peak_backlog": peak,
        "caught_up_after": caught,
    }
    if pre_backlog > run["offered"]:
        # Behind before the hold: "back to the backlog before it" would be met by any backlog.
        recovered = sess.Target(
            "held: back to the soak's backlog ≤ 60 s after commit",
            f"not measured: {pre_backlog:,.0f} jobs waiting before the hold",
            None,
            caught,
        )
    else:
        recovered = sess.Target(
            "held: back to the soak's backlog ≤ 60 s after commit",
            "never" if caught is None else f"{caught:.0f} s (peak backlog {peak:,})",
            caught is not None and caught <= 60,
            caught,
        )
    return [
        sess.Target(
            "held: throughput while open ≥ 80% of soak (worst 30 s)",
            f"{worst or 0:,.0f} / {soak_rate:,.0f} /s = {r or 0:.0%}",
            None if r is None else r >= 0.8,
            r,
        ),
        recovered,
    ]


def print_run(run: dict[str, Any]) -> None:
    p = run["producer"]
    print(
        f"\n{run['name']}: offered {run['offered']:,.0f} jobs/s for {run['seconds']:.0f} s "
        f"(producer sent {p['sent']:,} = {p['rate']:,.0f}/s, at worst "
        f"{p['worst_behind_seconds']:.2f} s behind); backlog when it stopped "
        f"{run['left_at_end']:,}; jobs not succeeded {run['not_succeeded']}"
    )
    if run.get("hold"):
        h = run["hold"]
        print(f"  transaction held open from {h['opened']:.0f} s to {h['closed']:.0f} s")
    # vac: autovacuums of the job table since the run started; done ms: mean execution time
    # of the statement that writes finished attempts' outcomes (a batch of jobs each).
    print(
        f"  {'window':>9} {'jobs/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'backlog':>8} "
        f"{'job MB':>8} {'job idx':>8} {'att MB':>8} {'att idx':>8} {'dead job':>9} "
        f"{'dead att':>9} {'vac':>4} {'claim ms':>9} {'jobs/cl':>8} {'done ms':>8} "
        f"{'xmin age':>9}  load"
    )
    vacuums_before = (run["tables_before"].get("taskengine_job") or {}).get("vacuums", 0)
    for w in run["windows"]:
        t = w.get("tables") or {}
        job, att = t.get("taskengine_job") or {}, t.get("taskengine_attempt") or {}

        def f(v: float | None, spec: str) -> str:
            return "—" if v is None else format(v, spec)

        print(
            f"  {w['start']:>4.0f}-{w['end']:<4.0f} {w['throughput']:>8,.0f} "
            f"{f(w['p50_ms'], '.1f'):>8} {f(w['p99_ms'], '.1f'):>8} "
            f"{f(w['backlog_max'], ','):>8} {sess.mb(job.get('heap_bytes', 0)):>8} "
            f"{sess.mb(job.get('index_bytes', 0)):>8} {sess.mb(att.get('heap_bytes', 0)):>8} "
            f"{sess.mb(att.get('index_bytes', 0)):>8} {f(job.get('dead'), ','):>9} "
            f"{f(att.get('dead'), ','):>9} {job.get('vacuums', 0) - vacuums_before:>4} "
            f"{f(w.get('claim_ms'), '.3f'):>9} {f(w.get('jobs_per_claim'), '.1f'):>8} "
            f"{f(w.get('complete_ms'), '.3f'):>8} "
            f"{f(w['xmin_age_max'], ','):>9}  {w.get('load')}"
        )
    for plan in run.get("claim_plans", []):
        print(f"  claim of 100 at {plan['t']:.0f} s: {plan['summary']}; {plan['buffers']}")
    if run["prunes"]:
        jobs = sum(p["jobs"] for p in run["prunes"])
        longest = max(p["seconds"] for p in run["prunes"])
        print(
            f"  retention: {len(run['prunes'])} prune runs deleted {jobs:,} jobs "
            f"(longest {longest:.1f} s)"
        )


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="./dev bench --soak", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--minutes", type=float, default=10.0, help="each soak (default 10)")
    parser.add_argument(
        "--rates", default="0.5,0.8", help="fractions of the max drain rate (default 0.5,0.8)"
    )
    parser.add_argument("--runs", default="soak,held", help="soak, held or both (default)")
    parser.add_argument(
        "--held-minutes", type=float, help="the held-horizon soak (default: --minutes)"
    )
    parser.add_argument(
        "--hold-minutes", type=float, default=5.0, help="transaction held open (default 5)"
    )
    parser.add_argument("--processes", type=int, default=2, help="worker processes (default 2)")
    parser.add_argument("--concurrency", type=int, default=1, help="threads each (default 1)")
    parser.add_argument(
        "--warmup",
        type=float,
        default=60.0,
        help="seconds of producing before the figures count (default 60)",
    )
    parser.add_argument("--max-rate", type=float, help="jobs/s; skips the calibration")
    parser.add_argument("--calibrate-jobs", type=int, default=30_000)
    parser.add_argument(
        "--calibrate",
        choices=("burst", "sustained"),
        default="burst",
        help="the maximum rate: a burst drain with nothing else running (default), or the "
        "highest offered rate the workers keep up with while the producer runs beside them "
        "(steps of 40 s, starting from the burst rate)",
    )
    parser.add_argument(
        "--retention", default="1m", help="how long succeeded jobs are kept (default 1m)"
    )
    parser.add_argument(
        "--prune-every",
        type=float,
        default=60.0,
        help="seconds between prune() calls of this process (default 60; 0: workers only)",
    )
    parser.add_argument(
        "--window", type=float, default=60.0, help="seconds per row of the table (default 60)"
    )
    parser.add_argument("--sample-every", type=float, default=SAMPLE_EVERY, help=argparse.SUPPRESS)
    parser.add_argument(
        "--plot",
        metavar="PATH",
        nargs="?",
        const=str(bench.REPO_ROOT / "docs" / "soak.png"),
        help="also draw the per-window figures (default docs/soak.png)",
    )
    sess.add_arguments(parser)
    opts = parser.parse_args(argv)
    runs = {r.strip() for r in opts.runs.split(",") if r.strip()}
    if not runs <= {"soak", "held"}:
        parser.error("--runs takes soak, held or both")
    rates = [float(r) for r in opts.rates.split(",") if r.strip()]
    held_minutes = opts.held_minutes or opts.minutes
    if "held" in runs and opts.hold_minutes >= held_minutes:
        parser.error("--hold-minutes must be shorter than the held soak (--held-minutes)")

    # Before Django reads its settings: the workers inherit it.
    sess.env_for_workers(TASKENGINE_BENCH_RETENTION=opts.retention)
    opts.session = session = sess.Session(opts)
    session.print_header("soak: a fixed offered rate, long-running workers, retention on")
    payload: dict[str, Any] = {"options": {k: v for k, v in vars(opts).items() if k != "session"}}
    if opts.max_rate:
        max_rate = opts.max_rate
        payload["calibration"] = {"given": max_rate}
    else:
        print(f"  calibrating (load {bench.loadavg()}) ...", file=sys.stderr, flush=True)
        cal = calibrate(opts)
        max_rate = cal["drain_steady"]
        payload["calibration"] = cal
        print(
            f"\nmax drain rate: {max_rate:,.0f} jobs/s steady ({cal['drain']:,.0f} start → exit), "
            f"{opts.calibrate_jobs:,} jobs, {cal['command']} (load {cal['loadavg_before']})"
        )
        if opts.calibrate == "sustained":
            sustained = calibrate_sustained(opts, max_rate)
            payload["calibration"]["sustained"] = sustained
            max_rate = sustained["sustained"]
            print(
                f"sustained rate (the workers keep up with a producer beside them): "
                f"{max_rate:,.0f} jobs/s; the rates below are fractions of it"
            )
    results: list[dict[str, Any]] = []
    targets: list[sess.Target] = []
    failures: dict[str, str] = {}
    seconds = opts.minutes * 60
    plan = [(f"soak {f:.0%}", f, seconds, (0.0, 0.0)) for f in rates] if "soak" in runs else []
    if "held" in runs:
        hold = opts.hold_minutes * 60
        held_seconds = held_minutes * 60
        plan.append(
            (f"held {max(rates):.0%}", max(rates), held_seconds, ((held_seconds - hold) / 2, hold))
        )
    for name, fraction, length, hold in plan:
        try:
            run = soak_once(opts, name, fraction * max_rate, length, hold)
        except Exception as exc:  # noqa: BLE001 - report it and go on with the others
            failures[name] = str(exc) if isinstance(exc, bench.BenchmarkFailed) else repr(exc)
            print(f"\n*** {name} FAILED ***\n{failures[name]}", file=sys.stderr, flush=True)
            continue
        run["fraction"] = fraction
        results.append(run)
        print_run(run)
        if run["hold"]:
            # The soak's rate: this run's own throughput before the transaction (after 30 s
            # of warm-up), measured under the same conditions as the hold.
            pre = [
                b["throughput"] for b in run["fine"] if 30 <= b["t"] and b["t"] + FINE <= hold[0]
            ]
            run_targets = held_targets(run, statistics.fmean(pre) if pre else run["offered"])
        else:
            run_targets = soak_targets(run)
        targets += run_targets
    sess.print_targets(targets)
    payload.update(
        max_rate=max_rate,
        runs=results,
        targets=sess.targets_json(targets),
        failures=failures,
    )
    session.finish(opts, "soak", payload)
    if opts.plot:
        bench.write_plot(session.payload, Path(opts.plot), script="plot_soak.py")
    return 1 if failures else 0
