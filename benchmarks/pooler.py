"""Workers behind PgBouncer in transaction pooling mode, against workers connected directly, in
the same run: the drain of no-op jobs and of jobs whose task uses the database in its own
transaction (an ``atomic`` task, whose end commits with its work).

    ./dev bench --pooler [--jobs 5000] [--processes 2,8] [--concurrency 4] [--pool-size 4]
                         [--rounds 3] [--json PATH] [--database-url URL | --private-cluster]

Behind the pooler, ``DATABASES`` is a ``pgbouncer`` this run starts in front of the benchmark's
server (devsupport/pgbouncer.py: transaction mode, ``--pool-size`` server connections) and
``TASKENGINE["DIRECT_DATABASE_URL"]`` the server itself: each worker process's own session
(claims, advisory locks, LISTEN, outcomes) is direct, its task threads share the pool. Each
round drains ``--jobs`` jobs per case and connection, interleaved, every job verified succeeded
with one attempt. Direct is measured twice: with Django's default ``CONN_MAX_AGE`` (0: task
code opens a connection per job that uses the database) and with persistent connections (60 s).
Medians of the rounds: steady rate (first start → last finish), and the pooled rate against the
direct one with persistent connections.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
from typing import Any
from unittest import mock

from psycopg.conninfo import conninfo_to_dict

from benchmarks import run as bench
from benchmarks import session as sess

KINDS = ("noop", "atomic_write")


def _enqueue(kind: str, jobs: int) -> None:
    from benchmarks.benchapp.tasks import atomic_write

    if kind == "noop":
        bench.bulk_enqueue_noops(jobs)
        return
    left = jobs
    while left > 0:
        batch = min(bench.BULK_BATCH, left)
        atomic_write.bulk_enqueue([((), {})] * batch)
        left -= batch


#: How the workers' task code reaches the database: directly with Django's default
#: CONN_MAX_AGE (0: a connection per job that uses it), directly with persistent connections,
#: or through the pooler (the engine's own connections direct).
ROUTES = ("direct", "direct_persistent", "pgbouncer")


def _route_env(route: str, pooler: Any, direct: str) -> dict[str, str]:
    """The environment by which worker commands reach the database by ``route``."""
    if route == "direct_persistent":
        return {"TASKENGINE_BENCH_CONN_MAX_AGE": "60"}
    if route == "pgbouncer":
        return {
            "DATABASE_URL": pooler.url(conninfo_to_dict(direct)["dbname"]),
            "TASKENGINE_BENCH_DIRECT_URL": direct,
        }
    return {}


def main(argv: list[str]) -> int:
    from devsupport.pgbouncer import Bouncer

    parser = argparse.ArgumentParser(
        prog="./dev bench --pooler", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--jobs", type=int, default=5_000, help="jobs per drain (default 5,000)")
    parser.add_argument(
        "--processes", default="2,8", help="worker processes, comma separated (default 2,8)"
    )
    parser.add_argument("--concurrency", type=int, default=4, help="threads each (default 4)")
    parser.add_argument(
        "--pool-size", type=int, default=4, help="the pooler's server connections (default 4)"
    )
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (default 3)")
    sess.add_arguments(parser)
    opts = parser.parse_args(argv)
    reason = Bouncer.unavailable_reason()
    if reason:
        print(f"cannot run: {reason}", file=sys.stderr)
        return 2
    processes = [int(p) for p in opts.processes.split(",") if p.strip()]
    session = sess.Session(opts)
    direct = os.environ.get("DATABASE_URL", bench_default_url())
    params = conninfo_to_dict(direct)
    pooler = Bouncer(
        str(params.get("host") or "127.0.0.1"),
        int(params.get("port") or 5432),
        pool_size=opts.pool_size,
    )
    pooler.start()
    session.print_header(
        f"workers behind PgBouncer (transaction mode, {opts.pool_size} server connections) "
        "against direct"
    )
    runs: dict[tuple[str, int, str], list[float]] = {}
    try:
        for rnd in range(opts.rounds):
            for kind in KINDS:
                for p in processes:
                    for route in ROUTES:
                        print(
                            f"  round {rnd + 1}: {kind}, {p} processes, {route} "
                            f"(load {bench.loadavg()})",
                            file=sys.stderr,
                            flush=True,
                        )
                        bench.truncate()
                        _enqueue(kind, opts.jobs)
                        with mock.patch.dict(os.environ, _route_env(route, pooler, direct)):
                            run = bench.drain_once(p, opts.concurrency, expect=opts.jobs)
                        runs.setdefault((kind, p, route), []).append(run["drain_steady"])
    finally:
        pooler.stop()
        bench.truncate()
    print(
        f"\n{opts.jobs:,} jobs per drain, run_workers --burst --concurrency {opts.concurrency}; "
        f"medians of {opts.rounds} interleaved rounds (steady jobs/s)"
    )
    print(
        f"{'task':<14} {'processes':>9} {'direct':>9} {'persistent':>11} {'pgbouncer':>10} "
        f"{'pgb × persistent':>17}"
    )
    figures: dict[str, Any] = {}
    for kind in KINDS:
        for p in processes:
            d, c, b = (statistics.median(runs[(kind, p, route)]) for route in ROUTES)
            figures[f"{kind}_p{p}"] = dict(zip(ROUTES, (d, c, b), strict=True))
            print(f"{kind:<14} {p:>9} {d:>9,.0f} {c:>11,.0f} {b:>10,.0f} {b / c:>16.2f}×")
    session.finish(opts, "pooler", {"figures": figures, "pool_size": opts.pool_size})
    return 0


def bench_default_url() -> str:
    from benchmarks.settings import DEFAULT_DATABASE_URL

    return DEFAULT_DATABASE_URL
