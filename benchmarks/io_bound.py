"""I/O-bound jobs: 10,000 jobs that each wait 20 ms, at concurrency 10, 50 and 100, for us and
for pgqueuer and procrastinate on the same workload in the same run.

    ./dev bench --io [--concurrency 10,50,100] [--kinds sync,async] [--jobs 10000]
                     [--seconds 0.02] [--processes 2] [--rounds 1] [--json PATH] [--database-url]

Two kinds of task: ``sync``, ``time.sleep(0.02)`` in a thread, and ``async``, an ``async def``
awaiting ``asyncio.sleep(0.02)``. Concurrency is the jobs that may run at once over all
``--processes`` worker processes (each gets C / P):

- ours: ``run_workers --burst --processes P --concurrency C/P``. Both kinds run on the worker's
  threads; an ``async def`` task runs to completion on an event loop of its thread
  (``worker/runner.py``), so C/P threads is also its concurrency.
- pgqueuer (``peers/pgqueuer_bench.py io``): P workers, ``max_concurrent_tasks`` C/P; the sync
  kind through ``asyncio.to_thread``, as its docs say for blocking code, with C/P threads.
- procrastinate (``peers/procrastinate_bench.py io``): P workers with ``concurrency`` C/P; sync
  tasks run in threads of the event loop's executor, given C/P threads.

Each in a fresh database (ours: emptied tables), rounds interleaved (ours, pgqueuer,
procrastinate per case); throughput from worker start until every worker exited, and steady
(first start → last finish). The ideal is C / 0.02 s jobs/s. Targets: ≥ 1.0× pgqueuer and
≥ 10× procrastinate at every concurrency (for each kind).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import traceback
from typing import Any

from benchmarks import run as bench
from benchmarks import session as sess

SYSTEMS = ("taskengine", "pgqueuer", "procrastinate")


def enqueue(kind: str, count: int, seconds: float) -> None:
    from benchmarks.benchapp.tasks import io_wait, io_wait_async

    task = io_wait if kind == "sync" else io_wait_async
    calls = [((seconds,), {})] * bench.BULK_BATCH
    left = count
    while left > 0:
        task.bulk_enqueue(calls[: min(bench.BULK_BATCH, left)])
        left -= bench.BULK_BATCH


def ours(opts: argparse.Namespace, kind: str, concurrency: int) -> dict[str, Any]:
    bench.truncate()
    enqueue(kind, opts.jobs, opts.seconds)
    return bench.drain_once(opts.processes, concurrency // opts.processes, expect=opts.jobs)


def theirs(
    opts: argparse.Namespace, python: Any, peer: str, kind: str, concurrency: int
) -> dict[str, Any]:
    args = [
        "--jobs",
        str(opts.jobs),
        "--processes",
        str(opts.processes),
        "--concurrency",
        str(concurrency // opts.processes),
        "--kind",
        kind,
        "--seconds",
        str(opts.seconds),
    ]
    dbname = f"{bench.db_params()['dbname']}_{peer}"
    try:
        return bench.run_peer(python, peer, "io", args, dbname)
    finally:
        bench.drop_database(dbname)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="./dev bench --io", description=__doc__.split("\n\n")[0])
    parser.add_argument("--concurrency", default="10,50,100", help="(default 10,50,100)")
    parser.add_argument("--kinds", default="sync,async", help="(default sync,async)")
    parser.add_argument("--jobs", type=int, default=10_000, help="(default 10,000)")
    parser.add_argument("--seconds", type=float, default=0.02, help="each job's wait (0.02)")
    parser.add_argument("--processes", type=int, default=2, help="worker processes (default 2)")
    parser.add_argument("--rounds", type=int, default=1, help="interleaved rounds (default 1)")
    parser.add_argument(
        "--systems", default=",".join(SYSTEMS), help=f"(default {','.join(SYSTEMS)})"
    )
    sess.add_arguments(parser)
    opts = parser.parse_args(argv)
    concurrencies = [int(c) for c in opts.concurrency.split(",") if c.strip()]
    kinds = [k.strip() for k in opts.kinds.split(",") if k.strip()]
    systems = [s.strip() for s in opts.systems.split(",") if s.strip()]
    if any(c % opts.processes for c in concurrencies):
        parser.error("every --concurrency must be a multiple of --processes")
    if not set(kinds) <= {"sync", "async"} or not set(systems) <= set(SYSTEMS):
        parser.error("--kinds takes sync and/or async; --systems: " + ", ".join(SYSTEMS))
    session = sess.Session(opts)
    session.print_header("io: 20 ms jobs, against pgqueuer and procrastinate")
    python = bench.ensure_peer_venv() if set(systems) - {"taskengine"} else None
    runs: dict[str, list[dict[str, Any]]] = {}
    failures: dict[str, str] = {}
    for rnd in range(opts.rounds):
        for c in concurrencies:
            for kind in kinds:
                for system in systems:
                    key = f"{system} {kind} c{c}"
                    if key in failures:
                        continue
                    load = bench.loadavg()
                    print(f"  round {rnd + 1}: {key} (load {load})", file=sys.stderr, flush=True)
                    try:
                        if system == "taskengine":
                            result = ours(opts, kind, c)
                        else:
                            result = theirs(opts, python, system, kind, c)
                    except Exception as exc:  # noqa: BLE001 - report it and go on
                        failures[key] = (
                            str(exc)
                            if isinstance(exc, bench.BenchmarkFailed)
                            else traceback.format_exc()
                        )
                        print(f"*** {key} FAILED ***\n{failures[key]}", file=sys.stderr)
                        continue
                    result["loadavg_before"] = load
                    runs.setdefault(key, []).append(result)
    bench.truncate()

    def figure(system: str, kind: str, c: int, what: str) -> float | None:
        rs = runs.get(f"{system} {kind} c{c}") or []
        return statistics.median(r[what] for r in rs) if rs else None

    print(
        f"\n{opts.jobs:,} jobs of {opts.seconds * 1000:g} ms, {opts.processes} worker processes; "
        "jobs/s start → all exited (steady in brackets); medians of "
        f"{opts.rounds} round(s)"
    )
    head = f"{'C':>4} {'kind':<6} {'ideal':>7}" + "".join(f" {s:>22}" for s in systems)
    print(head + "  load before (ours)")
    targets: list[sess.Target] = []
    table: list[dict[str, Any]] = []
    for c in concurrencies:
        for kind in kinds:
            line = f"{c:>4} {kind:<6} {c / opts.seconds:>7,.0f}"
            row: dict[str, Any] = {"concurrency": c, "kind": kind, "ideal": c / opts.seconds}
            for s in systems:
                wall, steady = figure(s, kind, c, "drain"), figure(s, kind, c, "drain_steady")
                row[s] = {"drain": wall, "drain_steady": steady}
                cell = "FAILED" if wall is None else f"{wall:,.0f} ({steady:,.0f})"
                line += f" {cell:>22}"
            load = [r["loadavg_before"] for r in runs.get(f"taskengine {kind} c{c}", [])]
            print(f"{line}  {load}")
            table.append(row)
            mine = row.get("taskengine", {}).get("drain")
            for peer, factor in (("pgqueuer", 1.0), ("procrastinate", 10.0)):
                if peer not in systems:
                    continue
                other = row[peer]["drain"]
                r = mine / other if mine and other else None
                targets.append(
                    sess.Target(
                        f"c{c} {kind}: ≥ {factor:g}× {peer}",
                        "—" if r is None else f"×{r:.2f}",
                        None if r is None else r >= factor,
                        r,
                    )
                )
    configs = {key: rs[0].get("config") or rs[0].get("command") for key, rs in runs.items() if rs}
    sess.print_targets(targets)
    session.finish(
        opts,
        "io",
        {
            "options": vars(opts),
            "table": table,
            "configs": configs,
            "runs": runs,
            "targets": sess.targets_json(targets),
            "failures": failures,
        },
    )
    return 1 if failures else 0
