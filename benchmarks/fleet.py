"""Many workers: 2, 8 and 16 worker processes draining the same backlog; throughput, and what
they cost each other in claims and waits.

    ./dev bench --fleet [--processes 2,8,16] [--concurrency 1] [--jobs 200000] [--rounds 2]
                        [--json PATH] [--database-url]

Each round drains ``--jobs`` queued no-op jobs with ``run_workers --burst --processes P
--concurrency C`` for every P (the rounds interleaved, each from empty tables, every job
verified succeeded with one attempt). Per P, medians of the rounds: throughput start → exit
and steady (first start → last finish); from ``pg_stat_statements``: the claim statement's
calls, mean and max execution time and jobs per claim; from ``pg_stat_activity`` sampled every
20 ms on a connection of its own: how many backends were active and what the active ones were
waiting for (heavyweight locks, lightweight locks such as buffer content or WAL, I/O, nothing:
on the CPU or waiting for it). Target: 16 processes drain at ≥ 0.9× the rate of 8 (steady).

The backlog is 200,000 jobs. At 18,000 jobs/s, 50,000 (the earlier default) drain in under 3 s,
and starting 16 processes took a fifth of that: start → exit was 20% below steady at P=16,
against 5% with 200,000. Steady starts with the first job, while the other processes are still
starting, so a short drain understates the larger fleets.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import threading
from typing import Any

from benchmarks import run as bench
from benchmarks import session as sess


class WaitSampler(threading.Thread):
    """Counts, every ``interval`` s, the benchmark database's active backends by wait event."""

    def __init__(self, interval: float = 0.02) -> None:
        super().__init__(name="wait-sampler", daemon=True)
        self.interval = interval
        self.stop = threading.Event()
        self.samples = 0
        self.active = 0
        self.waits: dict[str, int] = {}

    def run(self) -> None:
        import psycopg

        with psycopg.connect(**bench.db_params(), autocommit=True) as conn:
            while not self.stop.wait(self.interval):
                rows = conn.execute(
                    "SELECT coalesce(wait_event_type || ':' || wait_event, 'CPU'), count(*) "
                    "FROM pg_stat_activity WHERE datname = current_database() "
                    "AND state = 'active' AND pid <> pg_backend_pid() GROUP BY 1"
                ).fetchall()
                self.samples += 1
                for event, count in rows:
                    self.active += count
                    self.waits[event] = self.waits.get(event, 0) + count

    def summary(self) -> dict[str, Any]:
        """Mean active backends, and each wait's share of the active backend samples."""
        active = max(self.active, 1)
        by_type: dict[str, float] = {}
        for event, count in self.waits.items():
            kind = event.split(":")[0]
            by_type[kind] = by_type.get(kind, 0.0) + count / active
        top = sorted(self.waits.items(), key=lambda kv: -kv[1])[:6]
        return {
            "samples": self.samples,
            "mean_active": self.active / max(self.samples, 1),
            "share_by_type": by_type,
            "top_events": {event: count / active for event, count in top},
        }


def drain(opts: argparse.Namespace, processes: int, pgss: bool) -> dict[str, Any]:
    bench.truncate()
    bench.bulk_enqueue_noops(opts.jobs)
    if pgss:
        sess.reset_statements()
    sampler = WaitSampler()
    sampler.start()
    try:
        run = bench.drain_once(processes, opts.concurrency, expect=opts.jobs)
    finally:
        sampler.stop.set()
        sampler.join()
    run["waits"] = sampler.summary()
    if pgss:
        c = sess.claim_counters()
        run["claim"] = {
            "calls": c["calls"],
            "mean_ms": c["total_ms"] / c["calls"] if c["calls"] else None,
            "max_ms": c["max_ms"],
            "jobs_per_claim": c["rows"] / c["calls"] if c["calls"] else None,
            "total_ms": c["total_ms"],
        }
        run["statements"] = sess.statement_summary(6)
    run["loadavg_after"] = bench.loadavg()
    return run


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="./dev bench --fleet", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--processes", default="2,8,16", help="(default 2,8,16)")
    parser.add_argument("--concurrency", type=int, default=1, help="threads each (default 1)")
    parser.add_argument("--jobs", type=int, default=200_000, help="backlog (default 200,000)")
    parser.add_argument("--rounds", type=int, default=2, help="interleaved rounds (default 2)")
    sess.add_arguments(parser)
    opts = parser.parse_args(argv)
    counts = [int(p) for p in opts.processes.split(",") if p.strip()]
    session = sess.Session(opts)
    session.print_header("fleet: many worker processes on one backlog")
    runs: dict[int, list[dict[str, Any]]] = {p: [] for p in counts}
    failures: dict[str, str] = {}
    for rnd in range(opts.rounds):
        for p in counts:
            print(
                f"  round {rnd + 1}: {p} processes (load {bench.loadavg()})",
                file=sys.stderr,
                flush=True,
            )
            try:
                runs[p].append(drain(opts, p, session.pg_stat_statements))
            except Exception as exc:  # noqa: BLE001 - report it and go on
                failures[f"{p} processes"] = str(exc)
                print(f"*** {p} processes FAILED ***\n{exc}", file=sys.stderr, flush=True)
    bench.truncate()

    def med(values: list[Any]) -> float | None:
        values = [v for v in values if v is not None]
        return statistics.median(values) if values else None

    figures: dict[int, dict[str, Any]] = {}
    for p, rs in runs.items():
        if not rs:
            continue
        last = rs[-1]
        figures[p] = {
            "wall": med([r["drain"] for r in rs]),
            "steady": med([r["drain_steady"] for r in rs]),
            "claims": med([r.get("claim", {}).get("calls") for r in rs]),
            "claim_mean_ms": med([r.get("claim", {}).get("mean_ms") for r in rs]),
            "claim_max_ms": max((r.get("claim", {}).get("max_ms") or 0 for r in rs), default=0),
            "jobs_per_claim": med([r.get("claim", {}).get("jobs_per_claim") for r in rs]),
            "mean_active": med([r["waits"]["mean_active"] for r in rs]),
            "lock_share": med([r["waits"]["share_by_type"].get("Lock", 0.0) for r in rs]),
            "lwlock_share": med([r["waits"]["share_by_type"].get("LWLock", 0.0) for r in rs]),
            "io_share": med([r["waits"]["share_by_type"].get("IO", 0.0) for r in rs]),
            "top_waits": last["waits"]["top_events"],
            "load": [r["loadavg_before"] for r in rs],
        }
    print(
        f"\n{opts.jobs:,} queued no-op jobs, run_workers --burst --processes P --concurrency "
        f"{opts.concurrency}; medians of {opts.rounds} interleaved rounds"
    )
    print(
        f"{'P':>3} {'wall /s':>9} {'steady /s':>10} {'claims':>7} {'claim ms':>9} "
        f"{'max ms':>8} {'jobs/cl':>8} {'active':>7} {'Lock':>6} {'LWLock':>7} {'IO':>6}  "
        "load before each round"
    )
    for p, f in figures.items():

        def g(v: float | None, spec: str) -> str:
            return "—" if v is None else format(v, spec)

        print(
            f"{p:>3} {g(f['wall'], ',.0f'):>9} {g(f['steady'], ',.0f'):>10} "
            f"{g(f['claims'], ',.0f'):>7} {g(f['claim_mean_ms'], '.3f'):>9} "
            f"{g(f['claim_max_ms'], '.1f'):>8} {g(f['jobs_per_claim'], '.1f'):>8} "
            f"{g(f['mean_active'], '.1f'):>7} {f['lock_share']:>6.1%} {f['lwlock_share']:>7.1%} "
            f"{f['io_share']:>6.1%}  {f['load']}"
        )
        print(
            "      waits of active backends: "
            + ", ".join(f"{e} {s:.0%}" for e, s in f["top_waits"].items())
        )
    targets: list[sess.Target] = []
    if 16 in figures and 8 in figures:
        r = figures[16]["steady"] / figures[8]["steady"]
        wall = figures[16]["wall"] / figures[8]["wall"]
        targets.append(
            sess.Target(
                "16 processes ≥ 0.9× the throughput of 8 (steady)",
                f"×{r:.2f} (start → exit ×{wall:.2f})",
                r >= 0.9,
                r,
            )
        )
    else:
        targets.append(sess.Target("16 processes ≥ 0.9× the throughput of 8", "—", None))
    sess.print_targets(targets)
    session.finish(
        opts,
        "fleet",
        {
            "options": vars(opts),
            "figures": figures,
            "runs": runs,
            "targets": sess.targets_json(targets),
            "failures": failures,
        },
    )
    return 1 if failures else 0
