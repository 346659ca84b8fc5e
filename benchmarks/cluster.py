"""The benchmarks' own PostgreSQL: a throwaway cluster with production-like settings, so that a
figure does not depend on how the machine's server happens to be configured.

``initdb`` in a temporary folder (``devsupport.pgcluster``, shared with the tests), started on
a free port of 127.0.0.1 with :data:`SERVER_SETTINGS`: PostgreSQL's defaults where a production
server keeps them (``fsync``, ``synchronous_commit``, ``full_page_writes`` and autovacuum on,
the default autovacuum thresholds), memory sized for a small dedicated server, and
``pg_stat_statements`` loaded so that a benchmark can read the claim statement's execution time
from the server. The benchmark database is created in it, ``DATABASE_URL`` is pointed at it for
this process and every worker it starts, and the cluster is removed when the process exits.
"""

from __future__ import annotations

import atexit
import os
import shutil
import sys
import tempfile
from typing import Any

from benchmarks.peers.common import SERVER_DATA_ENV
from devsupport.pgcluster import PrivateCluster

#: A dedicated small server: durable writes and autovacuum as shipped, shared_buffers and
#: effective_cache_size as a 4 GB machine would be given, connections for 16 worker processes
#: and the peers' pools, and the statistics the benchmarks read.
SERVER_SETTINGS: dict[str, str] = {
    "fsync": "on",
    "synchronous_commit": "on",
    "full_page_writes": "on",
    "autovacuum": "on",
    "shared_buffers": "1GB",
    "effective_cache_size": "3GB",
    "maintenance_work_mem": "256MB",
    "max_wal_size": "2GB",
    "max_connections": "400",
    "shared_preload_libraries": "pg_stat_statements",
    "pg_stat_statements.track": "all",
    "track_io_timing": "on",
    "log_autovacuum_min_duration": "0",
}

#: The settings reported with every result (whether or not the private cluster is used).
REPORTED_SETTINGS = (
    "server_version",
    "fsync",
    "synchronous_commit",
    "full_page_writes",
    "wal_level",
    "autovacuum",
    "autovacuum_naptime",
    "autovacuum_vacuum_scale_factor",
    "autovacuum_vacuum_threshold",
    "autovacuum_vacuum_insert_scale_factor",
    "autovacuum_vacuum_cost_limit",
    "shared_buffers",
    "effective_cache_size",
    "work_mem",
    "maintenance_work_mem",
    "max_wal_size",
    "checkpoint_timeout",
    "max_connections",
    "shared_preload_libraries",
)

DATABASE = "taskengine_bench"


def start_private_cluster(database: str = DATABASE) -> PrivateCluster:
    """Create, configure and start the cluster and its benchmark database (``database``);
    point ``DATABASE_URL`` at it. Must run before Django's settings are first read."""
    reason = PrivateCluster.unavailable_reason()
    if reason:
        raise SystemExit(f"cannot create a private PostgreSQL cluster: {reason}")
    settings = dict(SERVER_SETTINGS)
    slow_ms = os.environ.get("TASKENGINE_BENCH_SLOW_MS")
    if slow_ms:
        # Profiling: the plan of every statement slower than this goes to the server's log,
        # which is copied to TASKENGINE_BENCH_SERVER_LOG (default: the temporary folder) at exit.
        settings["shared_preload_libraries"] += ",auto_explain"
        settings["auto_explain.log_min_duration"] = f"{int(slow_ms)}ms"
        settings["auto_explain.log_nested_statements"] = "on"
    cluster = PrivateCluster(settings)
    atexit.register(cluster.stop)
    if slow_ms:
        target = os.environ.get("TASKENGINE_BENCH_SERVER_LOG") or os.path.join(
            tempfile.gettempdir(), "taskengine-bench-server.log"
        )
        # atexit runs the last registered first: the copy, then the removal.
        atexit.register(shutil.copyfile, cluster.log, target)
        print(f"statements over {slow_ms} ms: their plans go to {target}", file=sys.stderr)
    print(f"initdb + start of a private cluster in {cluster.root} ...", file=sys.stderr)
    cluster.init()
    cluster.start()
    with cluster.connect() as conn:
        conn.execute(f"CREATE DATABASE {database}")
    with cluster.connect(database) as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
    os.environ["DATABASE_URL"] = f"postgres://postgres@127.0.0.1:{cluster.port}/{database}"
    # Whose server's CPU time the benchmarks, and the peers' drains, read (peers/common.py).
    os.environ[SERVER_DATA_ENV] = cluster.data
    print(f"private cluster: {os.environ['DATABASE_URL']}", file=sys.stderr)
    return cluster


def server_settings(query: Any) -> dict[str, str]:
    """The server's values of :data:`REPORTED_SETTINGS` (``query`` runs SQL, returns rows)."""
    rows = query(
        "SELECT name, setting || coalesce(' ' || unit, '') FROM pg_settings WHERE name = ANY(%s)",
        [list(REPORTED_SETTINGS)],
    )
    return {name: value for name, value in sorted(rows)}


def has_pg_stat_statements(query: Any) -> bool:
    """Whether the view answers (loaded by shared_preload_libraries and the extension made)."""
    preloaded = query("SHOW shared_preload_libraries")[0][0]
    if "pg_stat_statements" not in preloaded:
        return False
    try:
        if not query("SELECT 1 FROM pg_extension WHERE extname = 'pg_stat_statements'"):
            query("CREATE EXTENSION pg_stat_statements")
        query("SELECT 1 FROM pg_stat_statements LIMIT 1")
    except Exception:  # noqa: BLE001 - not loaded, or not allowed: fall back to EXPLAIN samples
        return False
    return True
