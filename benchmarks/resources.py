"""CPU time spent by each party to a measurement: the worker processes, the PostgreSQL server
and Redis, read from ``/proc`` and ``INFO`` before and after it (``benchmarks/dispatch.py``).

On a machine of two cores the parties share, CPU seconds per job say more about where a
throughput goes than wall time does: a cost moved from the database server to a worker, or to
Redis, shows up here even when the rate does not move.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.peers.common import _children

_TICK = os.sysconf("SC_CLK_TCK")


def _own_and_reaped_cpu(pid: int) -> float | None:
    """CPU seconds of ``pid`` and of the children it has reaped (None if it is gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (2nd field) may hold spaces and parentheses: fields follow the last ")".
    fields = stat.rsplit(")", 1)[1].split()
    utime, stime, cutime, cstime = (int(f) for f in fields[11:15])
    return (utime + stime + cutime + cstime) / _TICK


def tree_cpu(root: int) -> float:
    """CPU seconds of ``root`` and its descendants, live and exited: each live process's own
    and that of the children it reaped (an exited one counts in its parent's, once)."""
    total = 0.0
    todo = [root]
    while todo:
        pid = todo.pop()
        cpu = _own_and_reaped_cpu(pid)
        if cpu is not None:
            total += cpu
            todo.extend(_children(pid))
    return total


def postmaster_pid(query: Any) -> int | None:
    """The PostgreSQL server's pid, from its data directory (None if the server is not on this
    machine, or its folder cannot be read). ``query`` runs SQL and returns rows."""
    try:
        (directory,) = query("SHOW data_directory")[0]
        pid = int(Path(directory, "postmaster.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    return pid if Path(f"/proc/{pid}").exists() else None


#: The stream commands whose calls are counted (``INFO commandstats``).
REDIS_COMMANDS = ("xadd", "xreadgroup", "xack", "xautoclaim", "hset", "exists")


def redis_counters(client: Any) -> dict[str, float]:
    """Redis's CPU seconds (main and background threads) and calls of :data:`REDIS_COMMANDS`."""
    cpu = client.info("cpu")
    out = {"cpu": float(cpu["used_cpu_user"]) + float(cpu["used_cpu_sys"])}
    stats = client.info("commandstats")
    for command in REDIS_COMMANDS:
        out[command] = float(stats.get(f"cmdstat_{command}", {}).get("calls", 0))
    return out


@dataclass
class CpuSnapshot:
    workers: float
    server: float | None
    redis: dict[str, float] | None


def snapshot(workers_root: int, server: int | None, redis: Any = None) -> CpuSnapshot:
    """The CPU seconds so far of the worker supervisor's tree, of the server's (``server``: the
    postmaster's pid, or None) and Redis's counters (``redis``: a client, or None)."""
    return CpuSnapshot(
        workers=tree_cpu(workers_root),
        server=tree_cpu(server) if server is not None else None,
        redis=redis_counters(redis) if redis is not None else None,
    )


def spent(before: CpuSnapshot, after: CpuSnapshot, jobs: int) -> dict[str, Any]:
    """Milliseconds of CPU per job of each party between two snapshots, and the Redis command
    calls per job. Redis's figures are the whole server's: other clients of a shared Redis
    count in them too."""
    out: dict[str, Any] = {"worker_ms_per_job": (after.workers - before.workers) * 1000 / jobs}
    out["server_ms_per_job"] = (
        (after.server - before.server) * 1000 / jobs
        if after.server is not None and before.server is not None
        else None
    )
    if before.redis is not None and after.redis is not None:
        out["redis_ms_per_job"] = (after.redis["cpu"] - before.redis["cpu"]) * 1000 / jobs
        out["redis_calls_per_job"] = {
            c: (after.redis[c] - before.redis[c]) / jobs for c in REDIS_COMMANDS
        }
    return out
