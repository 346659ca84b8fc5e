"""Helpers shared by the peer scripts: a fresh database, worker subprocesses, peak RSS, output.

Standard library and psycopg only, so the peer scripts run in the comparison venv
(``benchmarks/.venvs/peers``), which has neither Django nor django_taskengine. ``run.py``
imports this module too, for the RSS sampler and the percentiles, so the same code measures
every system.
"""

from __future__ import annotations

import json
import os
import resource
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

#: A latency above this means the worker missed the wake-up and found the job by polling.
LATENCY_SPIKE_MS = 100.0


def percentiles(values: list[float]) -> dict[str, float]:
    q = statistics.quantiles(values, n=100, method="inclusive")
    return {
        "p50": q[49],
        "p95": q[94],
        "p99": q[98],
        "min": min(values),
        "max": max(values),
        "mean": statistics.fmean(values),
        "n": len(values),
        "spikes_ms": [round(v, 1) for v in values if v > LATENCY_SPIKE_MS],
    }


def loadavg() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def fresh_database(dsn: str) -> None:
    """Drop and create the database ``dsn`` names (connecting to the server's ``postgres``)."""
    import psycopg
    from psycopg import sql
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    params = conninfo_to_dict(dsn)
    name = params["dbname"]
    if "bench" not in name:
        raise SystemExit(f"refusing to recreate database {name!r}: its name lacks 'bench'")
    admin = make_conninfo(dsn, dbname="postgres")
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))


def _children(pid: int) -> list[int]:
    """Child pids of ``pid`` (Linux's /proc/PID/task/TID/children, cheap to read)."""
    kids: list[int] = []
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return kids
    for tid in tids:
        try:
            kids.extend(
                int(k) for k in Path(f"/proc/{pid}/task/{tid}/children").read_text().split()
            )
        except (OSError, ValueError):
            pass
    return kids


def peak_rss_mb(pid: int) -> float | None:
    """VmHWM (the peak resident set size) of a live process, in MiB."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except (OSError, ValueError):
        pass
    return None


class RssSampler:
    """Samples the peak RSS (VmHWM) of a process and all its descendants every ``interval``
    seconds on a thread, so that worker processes that exit at the end of a drain are still
    measured: ``peaks`` maps pid -> the highest VmHWM seen, in MiB."""

    def __init__(self, root_pid: int, interval: float = 0.1) -> None:
        self.root = root_pid
        self.interval = interval
        self.peaks: dict[int, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)
        self._thread.start()

    def sample(self) -> None:
        todo = [self.root]
        while todo:
            pid = todo.pop()
            rss = peak_rss_mb(pid)
            if rss is not None:
                self.peaks[pid] = max(rss, self.peaks.get(pid, 0.0))
                todo.extend(_children(pid))

    def _run(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(self.interval)

    def stop(self) -> dict[int, float]:
        self._stop.set()
        self._thread.join()
        return dict(self.peaks)

    def workers(self) -> list[float]:
        """Peaks of the worker processes: the root's descendants if it has any (a supervisor
        that forks workers), else the root itself."""
        others = [mb for pid, mb in self.peaks.items() if pid != self.root]
        if others:
            return sorted(others)
        return [self.peaks[self.root]] if self.root in self.peaks else []


class Proc:
    """A subprocess in its own session with its output in a temp file; killed (the whole
    group) if still running when closed."""

    def __init__(
        self, args: list[str], env: dict[str, str] | None = None, cwd: str | None = None
    ) -> None:
        self.args = args
        self.log = tempfile.NamedTemporaryFile(prefix="bench-peer-", suffix=".log", delete=False)
        self.started = time.perf_counter()
        self.proc = subprocess.Popen(
            args,
            env=env,
            cwd=cwd,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.exited: float | None = None

    def wait(self, timeout: float) -> int:
        try:
            code = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise RuntimeError(
                f"`{' '.join(self.args)}` did not exit within {timeout:.0f} s\n{self.output()}"
            ) from None
        self.exited = time.perf_counter()
        return code

    def terminate(self, timeout: float = 20.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            return self.proc.wait()

    def kill(self) -> None:
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        if self.proc.poll() is None:
            self.proc.wait()

    def output(self, tail: int = 3000) -> str:
        self.log.flush()
        return Path(self.log.name).read_text(errors="replace")[-tail:]

    def close(self) -> None:
        if self.proc.poll() is None:
            self.kill()
        self.log.close()
        try:
            os.unlink(self.log.name)
        except OSError:
            pass


#: The data folder of the private cluster the benchmarks run on (set by benchmarks/cluster.py),
#: whose server's CPU time a :class:`CpuClock` reads.
SERVER_DATA_ENV = "TASKENGINE_BENCH_SERVER_DATA"


def _proc_stat(pid: int | str) -> tuple[int, list[str]]:
    """A process's parent and the fields of its /proc stat after the command name."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[1]), fields


def _live_children_ticks(parent: int) -> int:
    ticks = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            ppid, fields = _proc_stat(entry)
        except (OSError, ValueError, IndexError):
            continue  # ended meanwhile
        if ppid == parent:
            ticks += int(fields[11]) + int(fields[12])  # utime, stime
    return ticks


def server_cpu_seconds(data: str | None) -> float | None:
    """The CPU time (user and system) used so far by the server whose data folder is ``data``:
    the postmaster's own, that of its children that ended (it waits for each) and that of
    those alive (backends, and the WAL writer, the checkpointer, autovacuum). None without a
    folder (a shared server serves others too: its CPU time would not be the benchmark's) or
    on a system without /proc."""
    if not data:
        return None
    try:
        with open(os.path.join(data, "postmaster.pid")) as f:
            postmaster = int(f.readline())
        for _ in range(10):
            _, own = _proc_stat(postmaster)
            ticks = _live_children_ticks(postmaster)
            _, again = _proc_stat(postmaster)
            # A child that ended and was waited for during the scan moved from the living to
            # the postmaster's children's time: read again.
            if again[13:15] == own[13:15]:
                break
    except (OSError, ValueError):
        return None
    ticks += sum(int(own[i]) for i in (11, 12, 13, 14))  # utime, stime, cutime, cstime
    return ticks / os.sysconf("SC_CLK_TCK")


class CpuClock:
    """CPU time used since it was made: by the processes this one started and waited for
    (worker commands; a supervisor waits for its workers, so theirs is in its own), and by the
    private cluster's server (None on any other server)."""

    def __init__(self) -> None:
        self.data = os.environ.get(SERVER_DATA_ENV)
        self.children = self._children()
        self.server = server_cpu_seconds(self.data)

    @staticmethod
    def _children() -> float:
        usage = resource.getrusage(resource.RUSAGE_CHILDREN)
        return usage.ru_utime + usage.ru_stime

    def read(self) -> dict[str, float | None]:
        """``worker_cpu_seconds`` and ``server_cpu_seconds`` (None on a shared server), read
        once the workers exited."""
        server = server_cpu_seconds(self.data)
        return {
            "worker_cpu_seconds": self._children() - self.children,
            "server_cpu_seconds": None
            if server is None or self.server is None
            else server - self.server,
        }


def median_or_none(values: list[float | None]) -> float | None:
    """The median of the values that were read, None if none was."""
    known = [v for v in values if v is not None]
    return statistics.median(known) if known else None


def cpu_per_job(
    result: dict[str, Any], side: str, idle: dict[str, float | None] | None = None
) -> float | None:
    """A drain's CPU time per job in µs, ``side`` "worker" or "server" (None if not read);
    less ``idle``'s (a run of the same command with nothing to do: start-up and exit), if
    given."""
    seconds = result.get(f"{side}_cpu_seconds")
    if seconds is None:
        return None
    if idle is not None:
        base = idle.get(f"{side}_cpu_seconds")
        if base is None:
            return None
        seconds -= base
    return seconds * 1e6 / result["jobs"]


def run_drain(
    procs_args: list[list[str]], env: dict[str, str], timeout: float, cwd: str | None = None
) -> dict[str, Any]:
    """Start the worker commands at once, wait for all to exit; wall time, peak RSS and CPU
    time (see :class:`CpuClock`)."""
    cpu = CpuClock()
    started = time.perf_counter()
    procs = [Proc(args, env=env, cwd=cwd) for args in procs_args]
    samplers = [RssSampler(p.proc.pid) for p in procs]
    try:
        codes = [p.wait(timeout=max(1.0, timeout - (time.perf_counter() - started))) for p in procs]
        elapsed = time.perf_counter() - started
        used = cpu.read()
        for s in samplers:
            s.stop()
        if any(codes):
            raise RuntimeError(
                f"worker exit codes {codes}\n" + "\n---\n".join(p.output() for p in procs)
            )
        rss = [mb for s in samplers for mb in s.workers()]
        return {"wall_seconds": elapsed, "exit_codes": codes, "worker_peak_rss_mb": rss, **used}
    finally:
        for s in samplers:
            s._stop.set()
        for p in procs:
            p.close()


def emit(result: dict[str, Any]) -> None:
    """The one line run.py reads: ``RESULT {json}``."""
    result.setdefault("loadavg_end", loadavg())
    sys.stdout.write("RESULT " + json.dumps(result, default=str) + "\n")
    sys.stdout.flush()


def uvloop_run(coro: Any) -> Any:
    """Run on uvloop when it is installed (as ``pgq`` does), else on asyncio."""
    try:
        import uvloop
    except ImportError:
        import asyncio

        return asyncio.run(coro)
    return uvloop.run(coro)
