"""Flow control's and composition's cost: the drain rate of no-op jobs under limits that do not
bind, of 50 groups of 200 jobs under ``group_concurrency=1``, and of a workflow's fan-out and
fan-in, against the plain drain in the same run.

    ./dev bench --flow [--jobs 10000] [--processes 2] [--concurrency 4] [--rounds 3]
                       [--analyze] [--json PATH] [--database-url URL | --private-cluster]

Each round drains ``--jobs`` queued no-op jobs with ``run_workers --burst --processes P
--concurrency C`` once per case (the cases interleaved, each from empty tables, every job
verified succeeded with one attempt):

- ``plain``: no limit anywhere (the baseline of the ratios);
- ``queue_limit``: the jobs' queue has a concurrency limit of 100,000, never reached;
- ``rate_limit``: the jobs' queue has a rate limit of 100,000/s, never reached;
- ``groups``: 50 groups × (jobs / 50) jobs of a task with ``group_concurrency=1``: at most 50
  jobs at once, more than the threads, so the limit decides which jobs run, not how many;
- ``workflow``: one workflow of ``--jobs`` steps, a root, a fan-out of all but two that wait
  for it, and a fan-in that waits for them all (``--cases plain,workflow --jobs 1002``: the
  1,000-step fan-out and fan-in).

Per case, medians of the rounds: throughput start → exit and steady (first start → last
finish), and the ratio to ``plain``; and the paired ratio, each round's steady rate over
plain's of the same round (a drift of the machine's speed over the run cancels out in it);
and the CPU time per job of the worker processes and of the server (a private cluster's only;
less that of a drain with no jobs, the workers' start-up and exit), which tells where a case's
cost goes, and plain's sum of the two over the case's ("by CPU": on a machine the drain keeps
busy, the rate its cost allows, steadier from run to run than the rates). Targets: a
non-binding queue limit and a non-binding rate limit each drain at ≥ 0.9× the plain rate.

``--analyze`` analyzes the job table once its backlog is queued, in every round, as a
production table would have been: the workers then plan their statements with statistics of
a backlog. Without it a round drains with whatever statistics autovacuum last took, of an
empty table, or of an earlier round's backlog (autoanalyze may come during any round).
"""

from __future__ import annotations

import argparse
import statistics
import sys
from collections.abc import Callable
from typing import Any

from benchmarks import run as bench
from benchmarks import session as sess
from benchmarks.peers.common import CpuClock, cpu_per_job, median_or_none

LIMITED_QUEUE = "bench-limited"
GROUPS = 50


def _plain(jobs: int) -> None:
    bench.bulk_enqueue_noops(jobs)


def _queue_limit(jobs: int) -> None:
    from django_taskengine import operations

    operations.set_queue_limits(LIMITED_QUEUE, concurrency=100_000)
    _enqueue_in(LIMITED_QUEUE, jobs)


def _rate_limit(jobs: int) -> None:
    from django_taskengine import operations

    operations.set_queue_limits(LIMITED_QUEUE, rate_limit="100000/s")
    _enqueue_in(LIMITED_QUEUE, jobs)


def _groups(jobs: int) -> None:
    from benchmarks.benchapp.tasks import grouped_noop

    per_group = jobs // GROUPS
    for group in range(GROUPS):
        grouped_noop.using(group=f"tenant-{group}").bulk_enqueue([((), {})] * per_group)


def _enqueue_in(queue: str, jobs: int) -> None:
    from benchmarks.benchapp.tasks import noop

    left = jobs
    while left > 0:
        batch = min(bench.BULK_BATCH, left)
        noop.using(queue=queue).bulk_enqueue([((), {})] * batch)
        left -= batch


def _workflow(jobs: int) -> None:
    from benchmarks.benchapp.tasks import noop
    from django_taskengine import Workflow

    wf = Workflow("bench fan-out and fan-in")
    root = wf.add(noop, name="root")
    parts = [wf.add(noop, after=[root]) for _ in range(jobs - 2)]
    wf.add(noop, after=parts, name="join")
    wf.enqueue()


def _workflow_hops() -> dict[str, float]:
    """The workflow's two hops, in ms: the root's end to its fan-out's first start, and the
    fan-out's last end to the fan-in's start (a decision, a notification and a claim each)."""
    (fan_out, fan_in), *_ = bench.query(
        "SELECT extract(epoch FROM min(s.started_at) FILTER (WHERE s.step NOT IN ('root', 'join'))"
        "  - max(s.finished_at) FILTER (WHERE s.step = 'root')) * 1000,"
        " extract(epoch FROM max(s.started_at) FILTER (WHERE s.step = 'join')"
        "  - max(s.finished_at) FILTER (WHERE s.step NOT IN ('root', 'join'))) * 1000 "
        "FROM taskengine_job s WHERE s.workflow_id IS NOT NULL",
        [],
    )
    return {"fan_out_hop_ms": float(fan_out), "fan_in_hop_ms": float(fan_in)}


CASES: dict[str, Callable[[int], None]] = {
    "plain": _plain,
    "queue_limit": _queue_limit,
    "rate_limit": _rate_limit,
    "groups": _groups,
    "workflow": _workflow,
}


def _paired(case_runs: list[dict[str, Any]], plain_runs: list[dict[str, Any]]) -> list[float]:
    """Each round's steady rate of a case over plain's in the same round."""
    plain = {run["round"]: run["drain_steady"] for run in plain_runs}
    return [
        run["drain_steady"] / plain[run["round"]] for run in case_runs if plain.get(run["round"])
    ]


def _show_paired(ratios: list[float]) -> str:
    if not ratios:
        return "—"
    return (
        f"×{statistics.median(ratios):.2f} ({min(ratios):.2f}-{max(ratios):.2f})"
        if len(ratios) > 1
        else f"×{ratios[0]:.2f}"
    )


def _cpu_ratio(case: dict[str, Any], plain: dict[str, Any] | None) -> float | None:
    """Plain's CPU time per job (workers and server) over the case's, if both were read."""
    if plain is None:
        return None
    sums = [
        f["worker_cpu"] + f["server_cpu"]
        for f in (plain, case)
        if None not in (f["worker_cpu"], f["server_cpu"])
    ]
    return sums[0] / sums[1] if len(sums) == 2 and sums[1] > 0 else None


def _idle_cpu(processes: int, concurrency: int) -> dict[str, float | None]:
    """The CPU time of a drain with nothing to drain (the workers' start-up and exit, and what
    they cost the server), the median of three: taken off each drain's."""
    used: list[dict[str, float | None]] = []
    cmd = ["--burst", "--processes", str(processes), "--concurrency", str(concurrency)]
    bench.truncate()
    for _ in range(3):
        clock = CpuClock()
        with bench.Workers(*cmd) as workers:
            if workers.wait(timeout=120.0) != 0:
                raise bench.BenchmarkFailed(f"run_workers {' '.join(cmd)} on no jobs failed")
            used.append(clock.read())
    return {
        side: median_or_none([u[side] for u in used])
        for side in ("worker_cpu_seconds", "server_cpu_seconds")
    }


def _show_cpu(value: float | None) -> str:
    return "—" if value is None else f"{value:.1f}"


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="./dev bench --flow", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--jobs", type=int, default=10_000, help="backlog (default 10,000)")
    parser.add_argument("--processes", type=int, default=2, help="worker processes (default 2)")
    parser.add_argument("--concurrency", type=int, default=4, help="threads each (default 4)")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (default 3)")
    parser.add_argument("--cases", default=",".join(CASES), help=f"a subset of {', '.join(CASES)}")
    parser.add_argument(
        "--analyze",
        action="store_true",
        help="ANALYZE the job table after enqueueing, every round (default: no)",
    )
    sess.add_arguments(parser)
    opts = parser.parse_args(argv)
    cases = [c.strip() for c in opts.cases.split(",") if c.strip()]
    unknown = sorted(set(cases) - set(CASES))
    if unknown:
        parser.error(f"unknown case(s) {', '.join(unknown)}; choose from {', '.join(CASES)}")
    jobs = opts.jobs - opts.jobs % GROUPS
    session = sess.Session(opts)
    session.print_header("flow control: drains under limits, against the plain drain")
    idle = _idle_cpu(opts.processes, opts.concurrency)
    runs: dict[str, list[dict[str, Any]]] = {case: [] for case in cases}
    failures: dict[str, str] = {}
    for rnd in range(opts.rounds):
        for case in cases:
            print(
                f"  round {rnd + 1}: {case} (load {bench.loadavg()})", file=sys.stderr, flush=True
            )
            try:
                bench.truncate()
                CASES[case](jobs)
                if opts.analyze:
                    bench.execute("ANALYZE taskengine_job")
                run = bench.drain_once(opts.processes, opts.concurrency, expect=jobs)
                run["round"] = rnd
                if case == "workflow":
                    run.update(_workflow_hops())
                runs[case].append(run)
            except Exception as exc:  # noqa: BLE001 - report it and go on
                failures[case] = str(exc)
                print(f"*** {case} FAILED ***\n{exc}", file=sys.stderr, flush=True)
    bench.truncate()

    figures: dict[str, dict[str, Any]] = {}
    for case, rs in runs.items():
        if rs:
            figures[case] = {
                "wall": statistics.median(r["drain"] for r in rs),
                "steady": statistics.median(r["drain_steady"] for r in rs),
                "jobs_per_claim": statistics.median(r["jobs_per_claim"] for r in rs),
                "worker_cpu": median_or_none([cpu_per_job(r, "worker", idle) for r in rs]),
                "server_cpu": median_or_none([cpu_per_job(r, "server", idle) for r in rs]),
                "hops_ms": [
                    (round(r["fan_out_hop_ms"], 1), round(r["fan_in_hop_ms"], 1))
                    for r in rs
                    if "fan_out_hop_ms" in r
                ],
                "load": [r["loadavg_before"] for r in rs],
            }
    base = figures.get("plain")
    print(
        f"\n{jobs:,} queued no-op jobs, run_workers --burst --processes {opts.processes} "
        f"--concurrency {opts.concurrency}; medians of {opts.rounds} interleaved rounds"
        + ("; the job table analyzed with each backlog" if opts.analyze else "")
    )
    print(
        f"{'case':<12} {'wall /s':>9} {'steady /s':>10} {'× plain':>8} {'paired':>17} "
        f"{'jobs/cl':>8} {'wkr µs':>7} {'srv µs':>7} {'by CPU':>7}  load"
    )
    for case, f in figures.items():
        ratio = f["steady"] / base["steady"] if base else None
        f["ratio"] = ratio
        f["paired"] = _paired(runs[case], runs.get("plain", []))
        f["cpu_ratio"] = _cpu_ratio(f, base)
        shown = "—" if ratio is None else f"×{ratio:.2f}"
        by_cpu = "—" if f["cpu_ratio"] is None else f"×{f['cpu_ratio']:.2f}"
        print(
            f"{case:<12} {f['wall']:>9,.0f} {f['steady']:>10,.0f} {shown:>8} "
            f"{_show_paired(f['paired']):>17} {f['jobs_per_claim']:>8.1f} "
            f"{_show_cpu(f['worker_cpu']):>7} {_show_cpu(f['server_cpu']):>7} {by_cpu:>7}  "
            f"{f['load']}"
        )
    print(
        "paired: each round's steady rate against plain's of the same round (run just before "
        "it), median (lowest-highest): a drift of the machine over the run cancels out\n"
        "wkr µs, srv µs: CPU time per job of the worker processes and of the server (user and "
        "system; the server's on a private cluster only; start-up and exit taken off, as an "
        "empty drain measured them), medians: on a machine whose CPUs the "
        "drain keeps busy, their sum is what bounds its rate\n"
        "by CPU: plain's sum of the two over the case's, the rate the case's cost allows (it moves "
        "less from run to run than the rates do)"
    )
    if figures.get("workflow", {}).get("hops_ms"):
        print(
            "workflow hops (ms, root's end -> fan-out's first start, fan-out's last end -> "
            f"fan-in's start), per round: {figures['workflow']['hops_ms']}"
        )
    targets = []
    ratio = figures.get("workflow", {}).get("ratio")
    if ratio is not None:
        targets.append(
            sess.Target(
                "a workflow's fan-out and fan-in drains at ≥ 0.5× the plain rate (steady)",
                f"×{ratio:.2f}",
                ratio >= 0.5,
                ratio,
            )
        )
    for case, what in (("queue_limit", "queue limit"), ("rate_limit", "rate limit")):
        ratio = figures.get(case, {}).get("ratio")
        targets.append(
            sess.Target(
                f"a non-binding {what} drains at ≥ 0.9× the plain rate (steady)",
                "—" if ratio is None else f"×{ratio:.2f}",
                None if ratio is None else ratio >= 0.9,
                ratio,
            )
        )
    sess.print_targets(targets)
    session.finish(
        opts,
        "flow",
        {
            "options": vars(opts),
            "figures": figures,
            "runs": runs,
            "targets": sess.targets_json(targets),
            "failures": failures,
        },
    )
    return 1 if failures else 0
