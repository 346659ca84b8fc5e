#!/usr/bin/env python
"""django-taskengine benchmarks on PostgreSQL: one command, a table, optionally JSON.

    python benchmarks/run.py [--jobs N] [--only NAME,...] [--json out.json]

Benchmarks (each starts from empty taskengine tables):

- ``enqueue_single``  N ``noop.enqueue()`` calls through the public API, autocommit.
- ``enqueue_bulk``    ``noop.bulk_enqueue`` of 10,000 jobs in batches of 1,000.
- ``drain_p1``, ``drain_p2``, ``drain_p2_c4``  10,000 queued no-op jobs drained by
  ``python -m django run_workers --burst --processes P --concurrency C`` (a subprocess), timed
  from start until it exits (start-up included) and from the first job's ``started_at`` to the
  last job's ``finished_at`` (steady state). Afterwards every job must be ``succeeded`` with
  exactly one attempt row, or the benchmark fails.
- ``kill_recovery``   SIGKILL the worker process running a 30 s job; seconds until the job is
  running again (attempt 2), with the default TASKENGINE settings. 3 repetitions.
- ``latency``         an idle ``run_workers --processes 1``; 200 no-op jobs one at a time;
  ``started_at - created_at`` (both database timestamps) percentiles.

The database (``DATABASE_URL``, default ``postgres://postgres@127.0.0.1:5432/taskengine_bench``)
is created if missing and migrated; its task engine tables are emptied, so its name must contain
"bench" unless ``--force`` is given. Never part of the test suite.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))
os.environ["DJANGO_SETTINGS_MODULE"] = "benchmarks.settings"

DRAIN_JOBS = 10_000
BULK_JOBS = 10_000
BULK_BATCH = 1_000
KILL_REPEATS = 3
LATENCY_JOBS = 200
#: A latency above this means the worker missed the wake-up and found the job by polling.
LATENCY_SPIKE_MS = 100.0


class BenchmarkFailed(RuntimeError):
    """A benchmark's run or its verification went wrong: reported loudly, exit code 1."""


@dataclass
class Row:
    name: str
    value: float | None
    unit: str
    note: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


# -- set-up ---------------------------------------------------------------------------------


def ensure_database() -> None:
    """CREATE DATABASE if the benchmark database does not exist (via the ``postgres`` db)."""
    import psycopg
    from psycopg import sql

    from django.conf import settings

    db = settings.DATABASES["default"]
    if db["ENGINE"] != "django.db.backends.postgresql":
        raise SystemExit(f"The benchmarks need PostgreSQL; DATABASE_URL gives {db['ENGINE']}.")
    params = {
        "host": db.get("HOST") or None,
        "port": db.get("PORT") or None,
        "user": db.get("USER") or None,
        "password": db.get("PASSWORD") or None,
        "dbname": "postgres",
        "autocommit": True,
    }
    with psycopg.connect(**{k: v for k, v in params.items() if v is not None}) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [db["NAME"]]).fetchone()
        if not exists:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(db["NAME"])))
            print(f"created database {db['NAME']}", file=sys.stderr)


#: Advisory lock key held by a running benchmark, so two runs never share the database.
RUN_LOCK_KEY = 0x7A5E_BE7C


def hold_run_lock() -> Any:
    """Take a session advisory lock on the benchmark database, or exit if another run holds it.

    Returns the connection that holds it; the lock goes when the process ends.
    """
    import psycopg

    from django.conf import settings

    db = settings.DATABASES["default"]
    params = {"host": db.get("HOST") or None, "port": db.get("PORT") or None,
              "user": db.get("USER") or None, "password": db.get("PASSWORD") or None,
              "dbname": db["NAME"], "autocommit": True, "application_name": "taskengine-bench"}
    conn = psycopg.connect(**{k: v for k, v in params.items() if v is not None})
    got = conn.execute("SELECT pg_try_advisory_lock(%s)", [RUN_LOCK_KEY]).fetchone()[0]
    if not got:
        raise SystemExit(f"Another benchmark run is using database {db['NAME']!r}; wait for it to "
                         "finish (or point DATABASE_URL at another database).")
    return conn


def setup_django(*, force: bool) -> Any:
    import django
    from django.conf import settings

    # settings are lazy: reading DATABASES does not connect, so the database can be created first.
    db = settings.DATABASES["default"]
    if "bench" not in db["NAME"] and not force:
        # DATABASE_URL may still point at the database of the tests or of a project.
        raise SystemExit(
            f"DATABASE_URL names database {db['NAME']!r}. Every benchmark empties the task "
            "engine's tables, so the database's name must contain 'bench' (the default is "
            "taskengine_bench); pass --force to use this one anyway."
        )
    ensure_database()
    lock = hold_run_lock()
    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0, interactive=False)
    return lock


def truncate() -> None:
    """Empty every table of the engine's models (jobs, attempts, workers, queues, pauses...)."""
    from django.apps import apps
    from django.db import connection

    from django_taskengine.store import get_store

    models = apps.get_app_config("django_taskengine").get_models()
    tables = sorted({m._meta.db_table for m in models if not m._meta.proxy})
    with connection.cursor() as cursor:
        cursor.execute(
            f"TRUNCATE {', '.join(connection.ops.quote_name(t) for t in tables)} RESTART IDENTITY"
        )
    # The store remembers queue rows it created; the table is empty again.
    known = getattr(get_store(), "_known_queues", None)
    if isinstance(known, set):
        known.clear()


def query(sql: str, params: Any = None) -> list[tuple[Any, ...]]:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall()


def execute(sql: str, params: Any = None) -> None:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(sql, params)


def machine_info() -> dict[str, Any]:
    import django
    import psycopg

    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        nproc = int(subprocess.run(["nproc"], capture_output=True, text=True, check=True).stdout)
    except (OSError, ValueError, subprocess.CalledProcessError):
        nproc = len(os.sched_getaffinity(0))
    mem_total = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_total = f"{int(line.split()[1]) // 1024} MiB"
    except OSError:
        pass
    return {
        "nproc": nproc,
        "cpu": cpu,
        "memory": mem_total,
        "kernel": platform.release(),
        "postgresql": query("SELECT version()")[0][0],
        "python": platform.python_version(),
        "django": django.get_version(),
        "psycopg": psycopg.__version__,
        "database": _db_location(),
        "loadavg_start": _loadavg(),
    }


def _loadavg() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def _db_location() -> str:
    from django.conf import settings

    db = settings.DATABASES["default"]
    return f"{db.get('HOST') or 'local socket'}:{db.get('PORT') or 5432}/{db['NAME']}"


def bulk_enqueue_noops(count: int) -> None:
    from benchmarks.benchapp.tasks import noop

    calls = [((), {})] * BULK_BATCH
    left = count
    while left > 0:
        noop.bulk_enqueue(calls[: min(BULK_BATCH, left)])
        left -= BULK_BATCH


# -- worker subprocesses ------------------------------------------------------------------------


class Workers:
    """``python -m django run_workers ...`` as a subprocess in its own process group, its output
    kept in a temp file. Use as a context manager: on the way out a still-running supervisor is
    stopped (SIGTERM, then SIGKILL for the group it leads)."""

    def __init__(self, *args: str) -> None:
        env = dict(os.environ)
        env["DJANGO_SETTINGS_MODULE"] = "benchmarks.settings"
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in [str(REPO_ROOT), env.get("PYTHONPATH", "")] if p
        )
        env.setdefault("PYTHONUNBUFFERED", "1")
        self.args = [sys.executable, "-m", "django", "run_workers", *args]
        self.log = tempfile.NamedTemporaryFile(prefix="taskengine-bench-", suffix=".log", delete=False)
        self.started = time.perf_counter()
        self.proc = subprocess.Popen(
            self.args, cwd=REPO_ROOT, env=env, stdout=self.log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def __enter__(self) -> Workers:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        try:
            if self.proc.poll() is None:
                self.stop(timeout=15.0)
        except BenchmarkFailed:
            pass
        finally:
            # A supervisor that exited 0 had reaped all its workers; otherwise none may outlive us.
            if self.proc.returncode != 0:
                self._kill_group()
            self.log.close()
            try:
                os.unlink(self.log.name)
            except OSError:
                pass

    def wait(self, timeout: float) -> int:
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self._kill_group()
            raise BenchmarkFailed(
                f"`{' '.join(self.args[2:])}` did not exit within {timeout:.0f} s\n{self.output()}"
            ) from None

    def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM the supervisor (it stops its workers gracefully) and wait for it to exit."""
        if self.proc.poll() is not None:
            return self.proc.returncode
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self._kill_group()
            raise BenchmarkFailed(f"run_workers did not stop within {timeout:.0f} s of SIGTERM\n"
                                  f"{self.output()}") from None

    def _kill_group(self) -> None:
        # The group was created for this subprocess (start_new_session): its id is our child's pid.
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        if self.proc.poll() is None:
            self.proc.wait()

    def output(self, tail: int = 4000) -> str:
        self.log.flush()
        return Path(self.log.name).read_text(errors="replace")[-tail:]


def wait_until(predicate: Callable[[], Any], *, timeout: float, interval: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise BenchmarkFailed(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


# -- benchmarks ---------------------------------------------------------------------------------


def bench_enqueue_single(opts: argparse.Namespace) -> list[Row]:
    from benchmarks.benchapp.tasks import noop

    for _ in range(20):  # warm up: connection, queue row, code paths
        noop.enqueue()
    n = opts.jobs
    start = time.perf_counter()
    for _ in range(n):
        noop.enqueue()
    elapsed = time.perf_counter() - start
    return [Row("enqueue_single", n / elapsed, "jobs/s",
                f"{n} noop.enqueue() in autocommit, {elapsed * 1e6 / n:.0f} µs each",
                {"jobs": n, "seconds": elapsed})]


def bench_enqueue_bulk(opts: argparse.Namespace) -> list[Row]:
    from benchmarks.benchapp.tasks import noop

    noop.bulk_enqueue([((), {})] * 10)  # warm up
    calls = [((), {})] * BULK_BATCH
    batches = BULK_JOBS // BULK_BATCH
    start = time.perf_counter()
    for _ in range(batches):
        noop.bulk_enqueue(calls)
    elapsed = time.perf_counter() - start
    return [Row("enqueue_bulk", BULK_JOBS / elapsed, "jobs/s",
                f"{batches} × bulk_enqueue({BULK_BATCH}), autocommit",
                {"jobs": BULK_JOBS, "batch": BULK_BATCH, "seconds": elapsed})]


def _drain(name: str, processes: int, concurrency: int) -> Callable[[argparse.Namespace], list[Row]]:
    def bench(opts: argparse.Namespace) -> list[Row]:
        jobs = opts.drain_jobs
        bulk_enqueue_noops(jobs)
        if opts.analyze:
            execute("ANALYZE taskengine_job")
        plan = claim_plan()
        cmd = f"--burst --processes {processes} --concurrency {concurrency}"
        with Workers(*cmd.split()) as workers:
            code = workers.wait(timeout=max(120.0, jobs / 50))
            elapsed = time.perf_counter() - workers.started
            if code != 0:
                raise BenchmarkFailed(f"run_workers {cmd} exited {code}\n{workers.output()}")
            verify_drained(jobs, workers)
        span, claims = query(
            "SELECT extract(epoch FROM max(finished_at) - min(started_at)), "
            "count(DISTINCT started_at) FROM taskengine_job"
        )[0]
        span = float(span)
        extra = {"jobs": jobs, "processes": processes, "concurrency": concurrency,
                 "wall_seconds": elapsed, "steady_seconds": span,
                 # Jobs claimed by one statement share started_at (the claim's now()).
                 "claims": claims, "jobs_per_claim": jobs / claims, "claim_plan": plan}
        return [
            Row(name, jobs / elapsed, "jobs/s", f"{jobs} noops, {cmd}, incl. start-up ({elapsed:.2f} s)", extra),
            Row(f"{name}_steady", jobs / span, "jobs/s",
                f"first started_at → last finished_at ({span:.2f} s); "
                f"{jobs / claims:.1f} jobs per claim", extra),
        ]

    bench.__name__ = f"bench_{name}"
    return bench


def claim_plan() -> list[str]:
    """EXPLAIN (without running) the worker's claim statement against the queued jobs."""
    import uuid

    try:
        from django_taskengine.conf import taskengine_settings
        from django_taskengine.store.postgres import CLAIM_SQL
    except ImportError as exc:
        return [f"unavailable: {exc}"]
    params = {"queues": [], "all_queues": True, "limit": 10, "worker": uuid.uuid4(),
              "ns": taskengine_settings.ADVISORY_LOCK_NAMESPACE}
    try:
        return [row[0] for row in query("EXPLAIN " + CLAIM_SQL, params)]
    except Exception as exc:  # noqa: BLE001 - the statement's parameters may have changed
        return [f"unavailable: {type(exc).__name__}: {exc}"]


def verify_drained(jobs: int, workers: Workers) -> None:
    total, succeeded, one_attempt = query(
        "SELECT count(*), count(*) FILTER (WHERE status = 'succeeded'), "
        "count(*) FILTER (WHERE attempts = 1) FROM taskengine_job"
    )[0]
    attempt_rows, attempt_succeeded = query(
        "SELECT count(*), count(*) FILTER (WHERE outcome = 'succeeded') FROM taskengine_attempt"
    )[0]
    bad = query(
        "SELECT j.id, j.status, j.attempts, count(a.id) FROM taskengine_job j "
        "LEFT JOIN taskengine_attempt a ON a.job_id = j.id "
        "GROUP BY j.id HAVING count(a.id) <> 1 OR j.status <> 'succeeded' ORDER BY j.id LIMIT 10"
    )
    problems = []
    if total != jobs:
        problems.append(f"{total} jobs in the table, expected {jobs}")
    if succeeded != jobs:
        problems.append(f"{succeeded} of {jobs} jobs succeeded")
    if one_attempt != jobs:
        problems.append(f"{jobs - one_attempt} jobs have attempts != 1")
    if attempt_rows != jobs or attempt_succeeded != jobs:
        problems.append(f"{attempt_rows} attempt rows ({attempt_succeeded} succeeded), expected {jobs}")
    if bad:
        problems.append(f"first bad jobs (id, status, attempts, attempt rows): {bad}")
    if problems:
        raise BenchmarkFailed("drain verification failed: " + "; ".join(problems) + "\n" + workers.output())


def bench_kill_recovery(opts: argparse.Namespace) -> list[Row]:
    from django_taskengine.conf import taskengine_settings
    from django_taskengine.models import Job, Worker

    from benchmarks.benchapp.tasks import sleeper

    times: list[float] = []
    details: list[dict[str, Any]] = []
    jitter = random.Random(6)  # the same kill moments on every run
    for rep in range(KILL_REPEATS):
        if rep:
            truncate()
        # A fresh supervisor per repetition, so each kill starts from two idle workers. The short
        # --shutdown-timeout only makes the closing SIGTERM quick (the sleeper is interrupted and
        # requeued); rescue runs with the default HEARTBEAT_INTERVAL, RESCUE_GRACE, RESCUE_INTERVAL.
        with Workers("--processes", "2", "--shutdown-timeout", "1") as workers:
            job = sleeper.enqueue(30)
            running = wait_until(
                lambda: Job.objects.filter(pk=job.pk, status="running", worker_id__isnull=False)
                .values("worker_id").first(),
                timeout=30, interval=0.01, what=f"job {job.pk} to start running",
            )
            victim = Worker.objects.get(id=running["worker_id"])
            # A worker heartbeats in the loop round that claims, so an immediate kill always
            # finds a fresh heartbeat. A real crash lands anywhere in the heartbeat cycle.
            time.sleep(jitter.uniform(0, taskengine_settings.HEARTBEAT_INTERVAL))
            os.kill(victim.pid, signal.SIGKILL)  # a worker process of the supervisor we started
            killed = time.monotonic()
            # Database time of the kill and the victim's heartbeat age then, to split the figure.
            killed_db, heartbeat_age = query(
                "SELECT now(), extract(epoch FROM now() - last_heartbeat_at) "
                "FROM taskengine_worker WHERE id = %s", [victim.id])[0]

            def running_again() -> Any:
                return Job.objects.filter(pk=job.pk, attempts=2, status="running").values(
                    "worker_id").first()

            rerun = wait_until(running_again, timeout=15, interval=0.005,
                               what=f"job {job.pk} to run again after SIGKILL of pid {victim.pid}")
            seconds = time.monotonic() - killed
            rerun_pid = Worker.objects.filter(id=rerun["worker_id"]).values_list("pid", flat=True).first()
            rescued, reclaimed = query(
                "SELECT extract(epoch FROM a.finished_at - %s), extract(epoch FROM j.started_at - %s) "
                "FROM taskengine_job j JOIN taskengine_attempt a ON a.job_id = j.id "
                "AND a.outcome = 'orphaned' WHERE j.id = %s", [killed_db, killed_db, job.pk])[0]
            times.append(seconds)
            details.append({"seconds": seconds, "killed_pid": victim.pid, "rerun_pid": rerun_pid,
                            "heartbeat_age_at_kill": float(heartbeat_age),
                            "rescued_after": float(rescued), "reclaimed_after": float(reclaimed)})
            if workers.proc.poll() is not None:
                raise BenchmarkFailed(f"the supervisor exited ({workers.proc.returncode})\n{workers.output()}")
            code = workers.stop(timeout=60)
            if code != 0:
                raise BenchmarkFailed(f"run_workers exited {code} after SIGTERM\n{workers.output()}")
    rows = [Row(f"kill_recovery_{i + 1}", t, "s",
                f"SIGKILL → running again (heartbeat {d['heartbeat_age_at_kill']:.2f} s old at kill, "
                f"rescued +{d['rescued_after']:.2f} s, re-claimed +{d['reclaimed_after']:.2f} s)", d)
            for i, (t, d) in enumerate(zip(times, details))]
    rows.append(Row("kill_recovery_median", statistics.median(times), "s",
                    "defaults: HEARTBEAT_INTERVAL 1, RESCUE_GRACE 3, RESCUE_INTERVAL 1, POLL_INTERVAL 1",
                    {"seconds": times}))
    return rows


def _peak_rss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except (OSError, ValueError):
        pass
    return None


def bench_latency(opts: argparse.Namespace) -> list[Row]:
    from django_taskengine.models import Job, Worker

    from benchmarks.benchapp.tasks import noop

    with Workers("--processes", "1", "--shutdown-timeout", "5") as workers:
        worker = wait_until(lambda: Worker.objects.filter(stopped_at__isnull=True).first(),
                            timeout=30, interval=0.01, what="the worker to register")
        time.sleep(0.5)  # let it finish its first rounds and go idle on LISTEN
        latencies: list[float] = []
        for _ in range(opts.latency_jobs):
            job = noop.enqueue()

            def finished(pk: int = job.pk) -> Any:
                return Job.objects.filter(pk=pk, status="succeeded").values(
                    "created_at", "started_at").first()

            row = wait_until(finished, timeout=10, interval=0.001, what=f"job {job.pk} to finish")
            latencies.append((row["started_at"] - row["created_at"]).total_seconds() * 1000)
        rss = _peak_rss_mb(worker.pid)
        if workers.proc.poll() is not None:
            raise BenchmarkFailed(f"run_workers exited early\n{workers.output()}")
        code = workers.stop(timeout=30)
        if code != 0:
            raise BenchmarkFailed(f"run_workers exited {code} after SIGTERM\n{workers.output()}")
    q = statistics.quantiles(latencies, n=100, method="inclusive")
    spikes = [round(ms, 1) for ms in latencies if ms > LATENCY_SPIKE_MS]
    extra = {"jobs": len(latencies), "p50": q[49], "p95": q[94], "p99": q[98],
             "min": min(latencies), "max": max(latencies), "mean": statistics.fmean(latencies),
             "spikes_ms": spikes}
    note = f"enqueue → started_at, idle worker, {len(latencies)} jobs one at a time"
    rows = [
        Row("latency_p50", q[49], "ms", note, extra),
        Row("latency_p95", q[94], "ms", f"max {max(latencies):.1f} ms", extra),
        Row("latency_p99", q[98], "ms",
            f"{len(spikes)} job(s) over {LATENCY_SPIKE_MS:.0f} ms (missed wake-up)", extra),
    ]
    if rss is not None:
        rows.append(Row("worker_peak_rss", rss, "MB", f"VmHWM of the latency run's worker process (pid {worker.pid})"))
    return rows


BENCHMARKS: dict[str, Callable[[argparse.Namespace], list[Row]]] = {
    "enqueue_single": bench_enqueue_single,
    "enqueue_bulk": bench_enqueue_bulk,
    "drain_p1": _drain("drain_p1", 1, 1),
    "drain_p2": _drain("drain_p2", 2, 1),
    "drain_p2_c4": _drain("drain_p2_c4", 2, 4),
    "kill_recovery": bench_kill_recovery,
    "latency": bench_latency,
}


# -- output -------------------------------------------------------------------------------------


def print_table(rows: list[Row], machine: dict[str, Any], elapsed: float) -> None:
    planned = next((r.extra for r in rows if "claim_plan" in r.extra), None)
    print()
    print(f"machine: {machine['nproc']} CPUs, {machine['cpu']}, {machine['memory']}")
    print(f"         {machine['postgresql']}")
    print(f"         Python {machine['python']}, Django {machine['django']}, psycopg {machine['psycopg']}")
    print(f"load average (1, 5, 15 min) at start {machine['loadavg_start']}, at end {machine['loadavg_end']}")
    if (machine["loadavg_start"] or [0])[0] > 0.5 * machine["nproc"]:
        print("WARNING: the machine was busy before the run started (other work, or a previous "
              "run); these figures may not be comparable.")
    print()
    name_w = max(len("name"), *(len(r.name) for r in rows)) if rows else 4
    print(f"{'name':<{name_w}}  {'value':>11}  {'unit':<6}  note")
    print(f"{'-' * name_w}  {'-' * 11}  {'-' * 6}  {'-' * 40}")
    for row in rows:
        if row.value is None:
            value = "FAILED"
        elif row.value >= 100:
            value = f"{row.value:,.0f}"
        else:
            value = f"{row.value:.2f}"
        print(f"{row.name:<{name_w}}  {value:>11}  {row.unit:<6}  {row.note}")
    if planned:
        plan = planned["claim_plan"]
        scans = [line.strip(" ->") for line in plan if "Scan" in line and "taskengine_job" in line]
        print(f"\nclaim plan (EXPLAIN, {planned['jobs']:,} queued): {'; '.join(scans) or plan[0]}")
    print(f"\n(total {elapsed:.1f} s)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=2000, help="enqueue_single: jobs (default 2000)")
    parser.add_argument("--drain-jobs", type=int, default=DRAIN_JOBS,
                        help=f"drain_*: queued jobs to drain (default {DRAIN_JOBS})")
    parser.add_argument("--latency-jobs", type=int, default=LATENCY_JOBS,
                        help=f"latency: jobs enqueued one at a time (default {LATENCY_JOBS})")
    parser.add_argument("--only", default="", help=f"comma-separated subset of: {', '.join(BENCHMARKS)}")
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    parser.add_argument("--force", action="store_true",
                        help="use DATABASE_URL even if its database name lacks 'bench' "
                             "(its task engine tables are emptied)")
    parser.add_argument("--analyze", action="store_true",
                        help="drain_*: ANALYZE the job table after enqueueing (default: no, as after "
                             "a sudden burst of jobs before autovacuum runs)")
    opts = parser.parse_args(argv)
    names = [n.strip() for n in opts.only.split(",") if n.strip()] or list(BENCHMARKS)
    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown:
        parser.error(f"unknown benchmark(s) {', '.join(unknown)}; choose from {', '.join(BENCHMARKS)}")
    if opts.jobs < 1 or opts.drain_jobs < 1 or opts.latency_jobs < 2:
        parser.error("--jobs and --drain-jobs must be at least 1, --latency-jobs at least 2")

    started = time.perf_counter()
    run_lock = setup_django(force=opts.force)  # noqa: F841 - held until the process exits
    machine = machine_info()
    rows: list[Row] = []
    failures: dict[str, str] = {}
    for name in names:
        print(f"running {name} ...", file=sys.stderr, flush=True)
        truncate()
        t0 = time.perf_counter()
        try:
            rows.extend(BENCHMARKS[name](opts))
        except Exception as exc:  # noqa: BLE001 - report it and go on with the others
            detail = str(exc) if isinstance(exc, BenchmarkFailed) else traceback.format_exc()
            failures[name] = detail
            rows.append(Row(name, None, "", "FAILED: " + detail.strip().splitlines()[0][:100]))
            print(f"\n*** {name} FAILED ***\n{detail}\n", file=sys.stderr, flush=True)
        print(f"  {name}: {time.perf_counter() - t0:.1f} s", file=sys.stderr, flush=True)
    truncate()
    machine["loadavg_end"] = _loadavg()
    elapsed = time.perf_counter() - started
    print_table(rows, machine, elapsed)
    if opts.json:
        payload = {
            "command": " ".join([Path(sys.executable).name, *sys.argv]),
            "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "machine": machine,
            "results": [asdict(r) for r in rows],
            "failures": failures,
            "total_seconds": elapsed,
        }
        Path(opts.json).write_text(json.dumps(payload, indent=2, default=str) + "\n")
        print(f"wrote {opts.json}", file=sys.stderr)
    if failures:
        print(f"\nFAILED: {', '.join(failures)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
