"""What the sustained-load benchmarks (``soak.py``, ``io_bound.py``, ``fleet.py``) share: their
database (a private cluster by default, see ``cluster.py``), the run's machine and server
facts, the claim statement's figures from ``pg_stat_statements``, the table sizes, and the
table of targets with pass/miss, the JSON file and the plot.

The helpers of ``run.py`` (worker subprocesses, truncation, drains with verification) are
imported from it, not copied.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from benchmarks import cluster
from benchmarks import run as bench

#: A substring of the claim statement (store/sql/postgres.sql, ``claim_jobs``) that no other
#: statement has: how its row in pg_stat_statements is found.
CLAIM_MARK = "lower_priorities"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options every sustained-load benchmark takes."""
    parser.add_argument(
        "--database-url",
        action="store_true",
        help="use the server DATABASE_URL names instead of a private cluster (initdb in a "
        "temporary folder, production-like settings: the default)",
    )
    parser.add_argument(
        "--force",
        action="store_true",
        help="with --database-url: use it even if its database name lacks 'bench'",
    )
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON")


@dataclass
class Target:
    """One of the issue's targets, the figure measured for it, and whether it holds."""

    name: str
    shown: str
    met: bool | None
    figure: float | None = None


class Session:
    """The database and Django, set up once per command; the facts reported with every result."""

    def __init__(self, opts: argparse.Namespace, database: str = cluster.DATABASE) -> None:
        """``database``: the name of the benchmark database in a private cluster."""
        self.started = time.perf_counter()
        self.private = not opts.database_url
        if self.private:
            self.cluster = cluster.start_private_cluster(database)
        bench.precompile()
        self.lock = bench.setup_django(force=opts.force or self.private)
        self.machine = bench.machine_info()
        self.machine["private_cluster"] = self.private
        self.machine["server_settings"] = cluster.server_settings(bench.query)
        self.pg_stat_statements = cluster.has_pg_stat_statements(bench.query)

    def print_header(self, title: str) -> None:
        m = self.machine
        print(f"\n{title}")
        print(
            f"machine: {m['nproc']} CPUs, {m['cpu']}, {m['memory']}; "
            f"load at start {m['loadavg_start']}"
        )
        where = "private cluster (initdb by this run)" if self.private else m["database"]
        print(f"server:  {m['postgresql'].split(' on ')[0]}, {where}")
        settings = m["server_settings"]
        print(
            "         "
            + ", ".join(f"{k} {v}" for k, v in settings.items() if k != "server_version")
        )
        print(
            "pg_stat_statements: loaded (claim execution times from it)"
            if self.pg_stat_statements
            else "pg_stat_statements: not loaded (the soak times EXPLAIN ANALYZE samples of the "
            "claim instead; the fleet shows no claim figures)"
        )

    def finish(self, opts: argparse.Namespace, name: str, payload: dict[str, Any]) -> None:
        self.machine["loadavg_end"] = bench.loadavg()
        payload = {
            "benchmark": name,
            "command": " ".join([Path(sys.executable).name, *sys.argv]),
            "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "machine": self.machine,
            "claim_time_source": "pg_stat_statements"
            if self.pg_stat_statements
            else "EXPLAIN ANALYZE",
            **payload,
            "total_seconds": time.perf_counter() - self.started,
        }
        print(
            f"\nload average at end {self.machine['loadavg_end']}; "
            f"total {payload['total_seconds']:.0f} s"
        )
        if opts.json:
            Path(opts.json).write_text(json.dumps(payload, indent=2, default=str) + "\n")
            print(f"wrote {opts.json}", file=sys.stderr)
        self.payload = payload


def print_targets(targets: list[Target]) -> None:
    print("\ntargets (issue: performance under sustained, realistic load):")
    width = max((len(t.name) for t in targets), default=10)
    for t in targets:
        state = {True: "pass", False: "MISS", None: "not measured"}[t.met]
        print(f"  {t.name:<{width}}  {t.shown:>30}  {state}")


def targets_json(targets: list[Target]) -> list[dict[str, Any]]:
    return [asdict(t) for t in targets]


#: The same for the statement that writes the outcomes of finished attempts (``write_outcomes``).
COMPLETE_MARK = "AS u(id, token, status, outcome"


def claim_counters(mark: str = CLAIM_MARK) -> dict[str, float]:
    """The claim statement's (or, with ``mark``, another statement's) cumulative
    pg_stat_statements counters (zeros if none yet)."""
    calls, total_ms, rows, max_ms = bench.query(
        "SELECT coalesce(sum(calls), 0), coalesce(sum(total_exec_time), 0), "
        "coalesce(sum(rows), 0), coalesce(max(max_exec_time), 0) "
        "FROM pg_stat_statements WHERE query LIKE %s",
        [f"%{mark}%"],
    )[0]
    return {
        "calls": float(calls),
        "total_ms": float(total_ms),
        "rows": float(rows),
        "max_ms": float(max_ms),
    }


def reset_statements() -> None:
    bench.query("SELECT pg_stat_statements_reset() IS NULL")


def statement_summary(limit: int = 8) -> list[dict[str, Any]]:
    """The statements that took the most server time since the last reset."""
    rows = bench.query(
        "SELECT calls, total_exec_time, mean_exec_time, max_exec_time, rows, "
        "left(regexp_replace(query, '\\s+', ' ', 'g'), 120) "
        "FROM pg_stat_statements WHERE dbid = (SELECT oid FROM pg_database "
        "WHERE datname = current_database()) ORDER BY total_exec_time DESC LIMIT %s",
        [limit],
    )
    return [
        {
            "calls": int(calls),
            "total_ms": float(total),
            "mean_ms": float(mean),
            "max_ms": float(mx),
            "rows": int(nrows),
            "query": text,
        }
        for calls, total, mean, mx, nrows, text in rows
    ]


def table_stats() -> dict[str, dict[str, Any]]:
    """Heap and index sizes, live and dead tuples and vacuum counts of the engine's big tables."""
    out: dict[str, dict[str, Any]] = {}
    for name, heap, indexes, live, dead, vacuums, analyzes in bench.query(
        "SELECT relname, pg_relation_size(relid), pg_indexes_size(relid), n_live_tup, "
        "n_dead_tup, autovacuum_count + vacuum_count, autoanalyze_count + analyze_count "
        "FROM pg_stat_user_tables WHERE relname IN ('taskengine_job', 'taskengine_attempt')"
    ):
        out[name] = {
            "heap_bytes": int(heap),
            "index_bytes": int(indexes),
            "live": int(live),
            "dead": int(dead),
            "vacuums": int(vacuums),
            "analyzes": int(analyzes),
        }
    out["indexes"] = {
        name: int(size)
        for name, size in bench.query(
            "SELECT indexrelname, pg_relation_size(indexrelid) FROM pg_stat_user_indexes "
            "WHERE relname = 'taskengine_job'"
        )
    }
    return out


def mb(n: float) -> str:
    return f"{n / 1048576:,.1f}"


def env_for_workers(**extra: str) -> None:
    """Environment that worker subprocesses inherit (Workers copies os.environ)."""
    os.environ.update(extra)
