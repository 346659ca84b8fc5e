#!/usr/bin/env python
"""django-taskengine benchmarks on PostgreSQL: one command, a table, optionally JSON and a plot.

    python benchmarks/run.py [--compare] [--scale] [--repeat N] [--only NAME,...]
                             [--json out.json] [--plot [docs/benchmarks.png]]
    python benchmarks/run.py --baseline REV [--rounds N] [--only NAME,...]
    python benchmarks/run.py --soak | --io | --fleet | --flow | --pooler | --dispatch [options]
    python benchmarks/run.py --admin [options]

``--baseline REV`` (first) compares this tree with commit REV instead: see ``baseline.py``.
``--soak``, ``--io``, ``--fleet``, ``--flow``, ``--pooler`` and ``--dispatch`` run the
sustained-load, flow-control, pooler and dispatch-backend benchmarks instead (``soak.py``,
``io_bound.py``, ``fleet.py``, ``flow.py``, ``pooler.py``, ``dispatch.py``; ``--help`` after
the flag lists their options); ``--admin`` times the admin's pages at a million jobs
(``admin_pages.py``). They run on a
PostgreSQL cluster of their own (``cluster.py``); ``--private-cluster`` does the same for these.

Benchmarks (each starts from empty taskengine tables):

- ``enqueue_single``  N ``noop.enqueue()`` calls through the public API, autocommit.
- ``enqueue_bulk``    ``noop.bulk_enqueue`` of 10,000 jobs in batches of 1,000.
- ``drain_pP_cC``     10,000 queued no-op jobs drained by ``python -m django run_workers --burst
  --processes P --concurrency C`` (a subprocess) for P in 1, 2 and C in 1, 4, 10; the median
  of ``--repeat`` runs. Timed from start until it exits (start-up included: "wall") and from
  the first job's ``started_at`` to the last job's ``finished_at`` ("steady"); the peak RSS of
  every worker process is sampled while it lives, and the CPU time of the workers and (on a
  private cluster) of the server is read around it. Afterwards every job must be ``succeeded``
  with exactly one attempt row, or the benchmark fails.
- ``kill_recovery``   SIGKILL the worker process running a 30 s job; seconds until the job is
  running again (attempt 2), with the default TASKENGINE settings. 3 repetitions.
- ``latency``         an idle ``run_workers --processes 1``; 200 no-op jobs one at a time;
  ``started_at - created_at`` (both database timestamps) percentiles, and the worker's RSS.
- ``latency_wait``    the same, each job waited for by ``job.wait()`` right after its enqueue.

``--compare`` also runs the same workload through procrastinate and pgqueuer, each with its own
worker in its best documented configuration (scripts in ``benchmarks/peers/``, run with a venv
of their own that is created once under ``benchmarks/.venvs/``), each in a fresh database, and
reports every figure as a ratio to theirs measured in this same invocation: enqueue and drain
in ``--repeat`` interleaved rounds (ours, pgqueuer, procrastinate, ours, ...), medians. The
drain's CPU time per job, the workers' and the server's, says where each system's time goes:
on a machine whose CPUs a drain of no-op jobs keeps busy, their sum bounds the rate.

``--scale`` drains 20,000 jobs of a 100,000 and a 1,000,000-job backlog (inserted by one
``INSERT ... SELECT generate_series``) and 10,000 new jobs next to 1,000,000 finished ones,
compares the steady rates with the 10,000-job case, and shows ``EXPLAIN ANALYZE`` of the claim
statement in each case.

The database (``DATABASE_URL``, default ``postgres://postgres@127.0.0.1:5432/taskengine_bench``)
is created if missing and migrated; its task engine tables are emptied, so its name must contain
"bench" unless ``--force`` is given. The peers' databases are that name plus ``_pgqueuer`` and
``_procrastinate``, dropped and created for each run. Never part of the test suite.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))
os.environ["DJANGO_SETTINGS_MODULE"] = "benchmarks.settings"

from benchmarks.peers.common import (  # noqa: E402
    LATENCY_SPIKE_MS,
    CpuClock,
    RssSampler,
    cpu_per_job,
    loadavg,
    median_or_none,
    peak_rss_mb,
    percentiles,
)

BENCH_DIR = REPO_ROOT / "benchmarks"
PEERS_DIR = BENCH_DIR / "peers"
PEER_VENV = BENCH_DIR / ".venvs" / "peers"
#: What the comparison venv holds: the versions this suite was written against (their public
#: APIs change between majors), and matplotlib for the plot.
PEER_REQUIREMENTS = ("procrastinate==3.10.0", "pgqueuer[asyncpg]==1.6.0", "matplotlib>=3.8")
DEFAULT_PLOT = REPO_ROOT / "docs" / "benchmarks.png"

DRAIN_JOBS = 10_000
BULK_JOBS = 10_000
BULK_BATCH = 1_000
KILL_REPEATS = 3
LATENCY_JOBS = 200
#: (processes, concurrency) of the drain sweep.
DRAIN_CONFIGS = [(1, 1), (1, 4), (1, 10), (2, 1), (2, 4), (2, 10)]
#: Our configuration in the comparison when the sweep did not run (else: the sweep's best).
COMPARE_CONFIG = (2, 4)
#: The peers' best documented configurations on a 2-CPU machine (see issue 6).
PGQUEUER_CONFIG = {"processes": 2, "batch_size": 100}
PROCRASTINATE_CONFIG = {"processes": 2, "concurrency": 10}
#: --scale: backlog sizes, how many of them to drain, and the finished jobs next to new ones.
SCALE_BACKLOGS = [100_000, 1_000_000]
SCALE_DRAIN = 20_000
SCALE_FINISHED = 1_000_000


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
    from django.conf import settings
    from psycopg import sql

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
        exists = conn.execute(
            "SELECT 1 FROM pg_database WHERE datname = %s", [db["NAME"]]
        ).fetchone()
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
    params = {
        "host": db.get("HOST") or None,
        "port": db.get("PORT") or None,
        "user": db.get("USER") or None,
        "password": db.get("PASSWORD") or None,
        "dbname": db["NAME"],
        "autocommit": True,
        "application_name": "taskengine-bench",
    }
    conn = psycopg.connect(**{k: v for k, v in params.items() if v is not None})
    got = conn.execute("SELECT pg_try_advisory_lock(%s)", [RUN_LOCK_KEY]).fetchone()[0]
    if not got:
        raise SystemExit(
            f"Another benchmark run is using database {db['NAME']!r}; wait for it to "
            "finish (or point DATABASE_URL at another database)."
        )
    return conn


def precompile() -> None:
    """Write the bytecode of the engine and of the benchmark app, as installing a package does.

    Worker processes would otherwise compile every module of the engine at start-up whenever
    bytecode is not written (PYTHONDONTWRITEBYTECODE), a cost no installed package pays (the
    peers' packages are installed with theirs).
    """
    import compileall

    for package in ("django_taskengine", "benchmarks"):
        compileall.compile_dir(str(REPO_ROOT / package), quiet=1, rx=re.compile(r"[/\\]\.venvs"))


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
        "loadavg_start": loadavg(),
    }


def _db_location() -> str:
    from django.conf import settings

    db = settings.DATABASES["default"]
    return f"{db.get('HOST') or 'local socket'}:{db.get('PORT') or 5432}/{db['NAME']}"


def bulk_enqueue_noops(count: int) -> None:
    """``count`` queued no-op jobs through the public API, in batches of BULK_BATCH."""
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
        self.log = tempfile.NamedTemporaryFile(
            prefix="taskengine-bench-", suffix=".log", delete=False
        )
        self.started = time.perf_counter()
        self.proc = subprocess.Popen(
            self.args,
            cwd=REPO_ROOT,
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        # Peak RSS of the supervisor's worker processes, sampled while they live.
        self.rss = RssSampler(self.proc.pid)

    def __enter__(self) -> Workers:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.rss.stop()
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
            code = self.proc.wait(timeout=timeout)
            self.exited = time.perf_counter()
            return code
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
            raise BenchmarkFailed(
                f"run_workers did not stop within {timeout:.0f} s of SIGTERM\n{self.output()}"
            ) from None

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


def db_params(dbname: str | None = None) -> dict[str, Any]:
    """psycopg.connect() keyword arguments for the benchmark database (or ``dbname``)."""
    from django.conf import settings

    db = settings.DATABASES["default"]
    params = {
        "host": db.get("HOST") or None,
        "port": db.get("PORT") or None,
        "user": db.get("USER") or None,
        "password": db.get("PASSWORD") or None,
        "dbname": dbname or db["NAME"],
    }
    return {k: v for k, v in params.items() if v is not None}


def db_url(dbname: str) -> str:
    """A postgresql:// URL (what asyncpg takes as well as psycopg) for ``dbname``."""
    p = db_params(dbname)
    auth = quote(str(p.get("user", "")), safe="")
    if p.get("password"):
        auth += ":" + quote(str(p["password"]), safe="")
    host = p.get("host", "")
    port = f":{p['port']}" if p.get("port") else ""
    return f"postgresql://{auth}{'@' if auth else ''}{host}{port}/{quote(dbname, safe='')}"


def _median(values: list[float]) -> float:
    return statistics.median(values)


def _fmt(value: float | None) -> str:
    if value is None:
        return "—"
    if value >= 100:
        return f"{value:,.0f}"
    return f"{value:.2f}"


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
    return [
        Row(
            "enqueue_single",
            n / elapsed,
            "jobs/s",
            f"{n} noop.enqueue() in autocommit, {elapsed * 1e6 / n:.0f} µs each",
            {"jobs": n, "seconds": elapsed},
        )
    ]


def bench_enqueue_bulk(opts: argparse.Namespace) -> list[Row]:
    from benchmarks.benchapp.tasks import noop

    noop.bulk_enqueue([((), {})] * 10)  # warm up
    calls = [((), {})] * BULK_BATCH
    batches = BULK_JOBS // BULK_BATCH
    start = time.perf_counter()
    for _ in range(batches):
        noop.bulk_enqueue(calls)
    elapsed = time.perf_counter() - start
    return [
        Row(
            "enqueue_bulk",
            BULK_JOBS / elapsed,
            "jobs/s",
            f"{batches} × bulk_enqueue({BULK_BATCH}), autocommit",
            {"jobs": BULK_JOBS, "batch": BULK_BATCH, "seconds": elapsed},
        )
    ]


def drain_once(
    processes: int, concurrency: int, *, expect: int, max_jobs: int | None = None, min_id: int = 0
) -> dict[str, Any]:
    """Run ``run_workers --burst`` over the queued jobs; verify; wall and steady figures.

    ``expect`` jobs with ids above ``min_id`` must end succeeded with one attempt each (all of
    them, or with ``max_jobs`` per process, that many from the head of a bigger backlog).
    """
    cmd = ["--burst", "--processes", str(processes), "--concurrency", str(concurrency)]
    if max_jobs is not None:
        cmd += ["--max-jobs", str(max_jobs)]
    load = loadavg()
    cpu = CpuClock()
    with Workers(*cmd) as workers:
        code = workers.wait(timeout=max(120.0, expect / 50))
        elapsed = workers.exited - workers.started
        used = cpu.read()
        if code != 0:
            raise BenchmarkFailed(f"run_workers {' '.join(cmd)} exited {code}\n{workers.output()}")
        verify_drained(expect, workers, min_id=min_id, partial=max_jobs is not None)
        workers.rss.stop()
        worker_rss = workers.rss.workers()
        supervisor_rss = workers.rss.peaks.get(workers.proc.pid)
    span, claims = query(
        "SELECT extract(epoch FROM max(finished_at) - min(started_at)), count(DISTINCT started_at) "
        "FROM taskengine_job WHERE id > %s AND status = 'succeeded'",
        [min_id],
    )[0]
    span = float(span)
    return {
        "processes": processes,
        "concurrency": concurrency,
        "jobs": expect,
        "command": "run_workers " + " ".join(cmd),
        "wall_seconds": elapsed,
        "drain": expect / elapsed,
        "steady_seconds": span,
        "drain_steady": expect / span,
        # Jobs claimed by one statement share started_at (the claim's now()).
        "claims": claims,
        "jobs_per_claim": expect / max(1, claims),
        "worker_peak_rss_mb": worker_rss,
        "supervisor_peak_rss_mb": supervisor_rss,
        "loadavg_before": load,
        **used,
    }


def _drain(
    name: str, processes: int, concurrency: int
) -> Callable[[argparse.Namespace], list[Row]]:
    def bench(opts: argparse.Namespace) -> list[Row]:
        jobs = opts.drain_jobs
        runs = []
        plan = None
        for rep in range(opts.repeat):
            if rep:
                truncate()
            bulk_enqueue_noops(jobs)
            if opts.analyze:
                execute("ANALYZE taskengine_job")
            if plan is None:
                plan = claim_plan(analyze=False)
            runs.append(drain_once(processes, concurrency, expect=jobs))
        walls = [r["drain"] for r in runs]
        steadies = [r["drain_steady"] for r in runs]
        rss = max(mb for r in runs for mb in r["worker_peak_rss_mb"])
        per_claim = _median([r["jobs_per_claim"] for r in runs])
        extra = {
            "jobs": jobs,
            "processes": processes,
            "concurrency": concurrency,
            "drain": _median(walls),
            "drain_steady": _median(steadies),
            "worker_peak_rss_mb": rss,
            "jobs_per_claim": per_claim,
            "runs": runs,
            "claim_plan": plan,
        }
        spread = f" ({_fmt(min(walls))}–{_fmt(max(walls))})" if len(runs) > 1 else ""
        return [
            Row(
                name,
                _median(walls),
                "jobs/s",
                f"median of {len(runs)}{spread}; steady {_fmt(_median(steadies))}/s; "
                f"{per_claim:.0f} jobs/claim; worker RSS ≤ {rss:.0f} MB",
                extra,
            )
        ]

    bench.__name__ = f"bench_{name}"
    return bench


def claim_plan(*, analyze: bool = True, limit: int = 100) -> dict[str, Any]:
    """EXPLAIN the worker's claim statement against the jobs in the table.

    With ``analyze``, it runs (``EXPLAIN (ANALYZE, BUFFERS)``) in a transaction that is rolled
    back, on a connection of its own that is closed afterwards (which frees the advisory locks
    the statement takes). Also the generic plan, which the worker's prepared statement may use
    after five executions.
    """
    import psycopg
    from psycopg import sql

    try:
        from django_taskengine.conf import taskengine_settings

        CLAIM_SQL = claim_statement()
    except ImportError as exc:
        return {"plan": [f"unavailable: {exc}"], "generic": []}
    params = claim_statement_params(taskengine_settings.ADVISORY_LOCK_NAMESPACE, limit)
    head = "EXPLAIN (ANALYZE, BUFFERS) " if analyze else "EXPLAIN "
    # The generic plan: EXPLAIN of a statement with parameters plans it for their values, so
    # PREPARE it ($n placeholders) and EXPLAIN EXECUTE with plan_cache_mode forced.
    names: list[str] = []

    def placeholder(match: re.Match[str]) -> str:
        if match.group(1) not in names:
            names.append(match.group(1))
        return f"${names.index(match.group(1)) + 1}"

    prepared = re.sub(r"%\((\w+)\)s", placeholder, CLAIM_SQL)
    try:
        with psycopg.connect(**db_params(), autocommit=True) as conn:
            with conn.transaction(force_rollback=True):
                plan = [row[0] for row in conn.execute(head + CLAIM_SQL, params)]
            conn.execute(f"PREPARE bench_claim AS {prepared}")
            conn.execute("SET plan_cache_mode = force_generic_plan")
            generic = [
                row[0]
                for row in conn.execute(
                    sql.SQL("EXPLAIN EXECUTE bench_claim({})").format(
                        sql.SQL(", ").join(sql.Literal(params[n]) for n in names)
                    )
                )
            ]
    except Exception as exc:  # noqa: BLE001 - the statement's parameters may have changed
        return {"plan": [f"unavailable: {type(exc).__name__}: {exc}"], "generic": []}
    return {"plan": plan, "generic": generic, "limit": limit, "analyzed": analyze}


def plan_summary(plan: dict[str, Any]) -> str:
    """The scans on the job table, and the execution time if it ran."""
    lines = plan.get("plan") or ["(none)"]
    scans = [
        line.strip(" ->").split("  (")[0]
        for line in lines
        if "Scan" in line and "taskengine_job" in line
    ]
    took = [line.strip() for line in lines if line.startswith("Execution Time")]
    return "; ".join(scans or lines[:1]) + (f"; {took[0]}" if took else "")


def verify_drained(
    expect: int, workers: Workers, *, min_id: int = 0, partial: bool = False
) -> None:
    """Jobs with ids above ``min_id``: ``expect`` succeeded with one attempt row each, none
    running or failed; none left queued unless the drain was ``partial``."""
    left, done, succeeded, one_attempt = query(
        "SELECT count(*) FILTER (WHERE status = 'queued'), "
        "count(*) FILTER (WHERE status <> 'queued'), "
        "count(*) FILTER (WHERE status = 'succeeded'), "
        "count(*) FILTER (WHERE status = 'succeeded' AND attempts = 1) "
        "FROM taskengine_job WHERE id > %s",
        [min_id],
    )[0]
    attempt_rows, attempt_succeeded = query(
        "SELECT count(*), count(*) FILTER (WHERE outcome = 'succeeded') FROM taskengine_attempt "
        "WHERE job_id > %s",
        [min_id],
    )[0]
    problems = []
    if left and not partial:
        problems.append(f"{left} jobs still queued")
    if done != expect:
        problems.append(f"{done} jobs left the queue, expected {expect}")
    if succeeded != expect:
        problems.append(f"{succeeded} of {expect} jobs succeeded")
    if one_attempt != succeeded:
        problems.append(f"{succeeded - one_attempt} succeeded jobs have attempts != 1")
    if attempt_rows != expect or attempt_succeeded != expect:
        problems.append(
            f"{attempt_rows} attempt rows ({attempt_succeeded} succeeded), expected {expect}"
        )
    if problems:
        bad = query(
            "SELECT j.id, j.status, j.attempts, count(a.id) FROM taskengine_job j "
            "LEFT JOIN taskengine_attempt a ON a.job_id = j.id "
            "WHERE j.id > %s AND j.status <> 'queued' "
            "GROUP BY j.id HAVING count(a.id) <> 1 OR j.status <> 'succeeded' "
            "ORDER BY j.id LIMIT 10",
            [min_id],
        )
        problems.append(f"first bad jobs (id, status, attempts, attempt rows): {bad}")
        raise BenchmarkFailed(
            "drain verification failed: " + "; ".join(problems) + "\n" + workers.output()
        )


def bench_kill_recovery(opts: argparse.Namespace) -> list[Row]:
    from benchmarks.benchapp.tasks import sleeper
    from django_taskengine.conf import taskengine_settings
    from django_taskengine.models import Job, Worker

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
                lambda job=job: (
                    Job.objects.filter(pk=job.pk, status="running", worker_id__isnull=False)
                    .values("worker_id")
                    .first()
                ),
                timeout=30,
                interval=0.01,
                what=f"job {job.pk} to start running",
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
                "FROM taskengine_worker WHERE id = %s",
                [victim.id],
            )[0]

            def running_again(job: Job = job) -> Any:
                return (
                    Job.objects.filter(pk=job.pk, attempts=2, status="running")
                    .values("worker_id")
                    .first()
                )

            rerun = wait_until(
                running_again,
                timeout=15,
                interval=0.005,
                what=f"job {job.pk} to run again after SIGKILL of pid {victim.pid}",
            )
            seconds = time.monotonic() - killed
            rerun_pid = (
                Worker.objects.filter(id=rerun["worker_id"]).values_list("pid", flat=True).first()
            )
            rescued, reclaimed = query(
                "SELECT extract(epoch FROM a.finished_at - %s), "
                "extract(epoch FROM j.started_at - %s) "
                "FROM taskengine_job j JOIN taskengine_attempt a ON a.job_id = j.id "
                "AND a.outcome = 'orphaned' WHERE j.id = %s",
                [killed_db, killed_db, job.pk],
            )[0]
            times.append(seconds)
            details.append(
                {
                    "seconds": seconds,
                    "killed_pid": victim.pid,
                    "rerun_pid": rerun_pid,
                    "heartbeat_age_at_kill": float(heartbeat_age),
                    "rescued_after": float(rescued),
                    "reclaimed_after": float(reclaimed),
                }
            )
            if workers.proc.poll() is not None:
                raise BenchmarkFailed(
                    f"the supervisor exited ({workers.proc.returncode})\n{workers.output()}"
                )
            code = workers.stop(timeout=60)
            if code != 0:
                raise BenchmarkFailed(
                    f"run_workers exited {code} after SIGTERM\n{workers.output()}"
                )
    rows = [
        Row(
            f"kill_recovery_{i + 1}",
            t,
            "s",
            f"SIGKILL → running again (heartbeat {d['heartbeat_age_at_kill']:.2f} s old at kill, "
            f"rescued +{d['rescued_after']:.2f} s, re-claimed +{d['reclaimed_after']:.2f} s)",
            d,
        )
        for i, (t, d) in enumerate(zip(times, details, strict=True))
    ]
    rows.append(
        Row(
            "kill_recovery_median",
            statistics.median(times),
            "s",
            "defaults: HEARTBEAT_INTERVAL 1, RESCUE_GRACE 3, RESCUE_INTERVAL 1, POLL_INTERVAL 1",
            {"seconds": times},
        )
    )
    return rows


def bench_latency(opts: argparse.Namespace) -> list[Row]:
    return _latency(opts, wait=False)


def bench_latency_wait(opts: argparse.Namespace) -> list[Row]:
    return _latency(opts, wait=True)


def _latency(opts: argparse.Namespace, *, wait: bool) -> list[Row]:
    """``latency``, or with ``wait`` ``latency_wait``: each job waited for by ``job.wait()``
    right after its enqueue (whose mark on the job meets the claims the enqueue woke)."""
    from benchmarks.benchapp.tasks import noop
    from django_taskengine.models import Job, Worker

    with Workers("--processes", "1", "--shutdown-timeout", "5") as workers:
        worker = wait_until(
            lambda: Worker.objects.filter(stopped_at__isnull=True).first(),
            timeout=30,
            interval=0.01,
            what="the worker to register",
        )

        def one() -> float:
            job = noop.enqueue()
            if wait:
                job.wait(timeout=10)

            def finished(pk: int = job.pk) -> Any:
                return (
                    Job.objects.filter(pk=pk, status="succeeded")
                    .values("created_at", "started_at")
                    .first()
                )

            row = wait_until(finished, timeout=10, interval=0.001, what=f"job {job.pk} to finish")
            return (row["started_at"] - row["created_at"]).total_seconds() * 1000

        for _ in range(5):  # not counted: the worker is up, listening and idle once these ran
            one()
        latencies = [one() for _ in range(opts.latency_jobs)]
        rss = peak_rss_mb(worker.pid)
        if workers.proc.poll() is not None:
            raise BenchmarkFailed(f"run_workers exited early\n{workers.output()}")
        code = workers.stop(timeout=30)
        if code != 0:
            raise BenchmarkFailed(f"run_workers exited {code} after SIGTERM\n{workers.output()}")
    extra = percentiles(latencies)
    extra["jobs"] = len(latencies)
    spikes = extra["spikes_ms"]
    note = f"enqueue → started_at, idle worker, {len(latencies)} jobs one at a time"
    name = "latency_wait" if wait else "latency"
    if wait:
        note += ", each waited for by job.wait()"
    rows = [
        Row(f"{name}_p50", extra["p50"], "ms", note, extra),
        Row(f"{name}_p95", extra["p95"], "ms", f"max {extra['max']:.1f} ms", extra),
        Row(
            f"{name}_p99",
            extra["p99"],
            "ms",
            f"{len(spikes)} job(s) over {LATENCY_SPIKE_MS:.0f} ms (missed wake-up)",
            extra,
        ),
    ]
    if rss is not None and not wait:
        rows.append(
            Row(
                "worker_idle_rss",
                rss,
                "MB",
                f"peak RSS (VmHWM) of the latency run's worker process (pid {worker.pid})",
                {"rss_mb": rss},
            )
        )
    return rows


BENCHMARKS: dict[str, Callable[[argparse.Namespace], list[Row]]] = {
    "enqueue_single": bench_enqueue_single,
    "enqueue_bulk": bench_enqueue_bulk,
    **{f"drain_p{p}_c{c}": _drain(f"drain_p{p}_c{c}", p, c) for p, c in DRAIN_CONFIGS},
    "kill_recovery": bench_kill_recovery,
    "latency": bench_latency,
    "latency_wait": bench_latency_wait,
}


def best_drain_config(rows: list[Row]) -> tuple[int, int]:
    """The sweep's fastest (processes, concurrency) by median wall rate; COMPARE_CONFIG if the
    sweep did not run."""
    drains = [r for r in rows if r.name.startswith("drain_") and r.value is not None]
    if not drains:
        return COMPARE_CONFIG
    best = max(drains, key=lambda r: r.value or 0.0)
    return best.extra["processes"], best.extra["concurrency"]


# -- comparison with procrastinate and pgqueuer ---------------------------------------------------


PEERS = {
    "pgqueuer": (
        "pgqueuer_bench.py",
        [
            "--processes",
            str(PGQUEUER_CONFIG["processes"]),
            "--batch-size",
            str(PGQUEUER_CONFIG["batch_size"]),
        ],
        ["--batch-size", str(PGQUEUER_CONFIG["batch_size"])],
    ),
    "procrastinate": (
        "procrastinate_bench.py",
        [
            "--processes",
            str(PROCRASTINATE_CONFIG["processes"]),
            "--concurrency",
            str(PROCRASTINATE_CONFIG["concurrency"]),
        ],
        ["--concurrency", str(PROCRASTINATE_CONFIG["concurrency"])],
    ),
}


def ensure_peer_venv() -> Path:
    """The comparison venv, created once (again only when PEER_REQUIREMENTS or the Python
    version change); returns its python."""
    python = PEER_VENV / "bin" / "python"
    stamp = PEER_VENV / ".bench-requirements"
    wanted = "\n".join([f"python {platform.python_version()}", *PEER_REQUIREMENTS]) + "\n"
    if python.exists() and stamp.exists() and stamp.read_text() == wanted:
        return python
    print(
        f"creating the comparison venv {PEER_VENV.relative_to(REPO_ROOT)} "
        f"({', '.join(PEER_REQUIREMENTS)}) ...",
        file=sys.stderr,
        flush=True,
    )
    if PEER_VENV.exists():
        shutil.rmtree(PEER_VENV)
    PEER_VENV.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-m", "venv", str(PEER_VENV)], check=True)
    subprocess.run(
        [
            str(python),
            "-m",
            "pip",
            "install",
            "-q",
            "--disable-pip-version-check",
            *PEER_REQUIREMENTS,
        ],
        check=True,
    )
    stamp.write_text(wanted)
    return python


def run_peer(python: Path, peer: str, phase: str, args: list[str], dbname: str) -> dict[str, Any]:
    script = PEERS[peer][0]
    cmd = [str(python), str(PEERS_DIR / script), "--dsn", db_url(dbname), phase, *args]
    proc = subprocess.run(cmd, cwd=PEERS_DIR, capture_output=True, text=True, timeout=900)
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT ") :])
    raise BenchmarkFailed(
        f"{script} {phase} exited {proc.returncode}\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"
    )


def drop_database(dbname: str) -> None:
    import psycopg
    from psycopg import sql

    with psycopg.connect(**db_params("postgres"), autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(dbname))
        )


#: The comparison's figures: key, label, unit, whether higher is better.
COMPARE_METRICS = [
    ("drain", "drain, start → all done", "jobs/s", True),
    ("drain_steady", "drain, steady (first start → last finish)", "jobs/s", True),
    ("enqueue_single", "enqueue, one job per call", "jobs/s", True),
    ("enqueue_bulk", "enqueue, 1,000 per call", "jobs/s", True),
    ("latency_p50", "enqueue → start p50 (idle worker)", "ms", False),
    ("latency_p95", "enqueue → start p95", "ms", False),
    ("latency_p99", "enqueue → start p99", "ms", False),
    ("drain_worker_cpu", "drain, workers' CPU time per job, start-up included", "µs", False),
    ("drain_server_cpu", "drain, server's CPU time per job (private cluster)", "µs", False),
    ("drain_rss", "worker RSS while draining (max per process)", "MB", False),
    ("idle_rss", "worker RSS, idle worker (latency run)", "MB", False),
]


def run_compare(opts: argparse.Namespace, rows: list[Row]) -> dict[str, Any]:
    """Enqueue and drain in interleaved rounds (ours, then each peer), latency once each;
    medians, and ours as a ratio of each peer's."""
    python = ensure_peer_venv()
    base = db_params()["dbname"]
    dbs = {peer: f"{base}_{peer}" for peer in PEERS}
    config = best_drain_config(rows)
    systems = ["taskengine", *PEERS]
    runs: dict[str, dict[str, list[Any]]] = {
        s: {"enqueue": [], "drain": [], "latency": []} for s in systems
    }
    failures: dict[str, str] = {}

    def attempt(system: str, what: str, fn: Callable[[], Any]) -> None:
        if system in failures:
            return
        print(f"  compare: {system} {what} (load {loadavg()})", file=sys.stderr, flush=True)
        try:
            runs[system][what].append(fn())
        except Exception as exc:  # noqa: BLE001 - report, and compare with the others
            detail = str(exc) if isinstance(exc, BenchmarkFailed) else traceback.format_exc()
            failures[system] = f"{what}: {detail}"
            print(
                f"\n*** compare: {system} {what} FAILED ***\n{detail}\n",
                file=sys.stderr,
                flush=True,
            )

    def own_enqueue() -> dict[str, Any]:
        truncate()
        single = bench_enqueue_single(opts)[0]
        truncate()
        bulk = bench_enqueue_bulk(opts)[0]
        return {"enqueue_single": single.value, "enqueue_bulk": bulk.value}

    def own_drain() -> dict[str, Any]:
        truncate()
        bulk_enqueue_noops(opts.drain_jobs)
        return drain_once(*config, expect=opts.drain_jobs)

    def own_latency() -> dict[str, Any]:
        truncate()
        found = {r.name: r for r in bench_latency(opts)}
        return {
            "latency": found["latency_p50"].extra,
            "worker_peak_rss_mb": found["worker_idle_rss"].value
            if "worker_idle_rss" in found
            else None,
        }

    for _ in range(opts.repeat):
        attempt("taskengine", "enqueue", own_enqueue)
        for peer in PEERS:
            attempt(
                peer,
                "enqueue",
                lambda peer=peer: run_peer(
                    python, peer, "enqueue", ["--jobs", str(opts.jobs)], dbs[peer]
                ),
            )
    for _ in range(opts.repeat):
        attempt("taskengine", "drain", own_drain)
        for peer in PEERS:
            attempt(
                peer,
                "drain",
                lambda peer=peer: run_peer(
                    python,
                    peer,
                    "drain",
                    ["--jobs", str(opts.drain_jobs), *PEERS[peer][1]],
                    dbs[peer],
                ),
            )
    own_latency_row = next(
        (r for r in rows if r.name == "latency_p50" and r.value is not None), None
    )
    if own_latency_row is not None:
        idle = next((r.value for r in rows if r.name == "worker_idle_rss"), None)
        runs["taskengine"]["latency"].append(
            {"latency": own_latency_row.extra, "worker_peak_rss_mb": idle}
        )
    else:
        attempt("taskengine", "latency", own_latency)
    for peer in PEERS:
        attempt(
            peer,
            "latency",
            lambda peer=peer: run_peer(
                python,
                peer,
                "latency",
                ["--jobs", str(opts.latency_jobs), *PEERS[peer][2]],
                dbs[peer],
            ),
        )
    for dbname in dbs.values():
        try:
            drop_database(dbname)
        except Exception:  # noqa: BLE001 - leaving a benchmark database behind is harmless
            pass
    truncate()

    values: dict[str, dict[str, float | None]] = {}
    for system in systems:
        r = runs[system]
        v: dict[str, float | None] = dict.fromkeys(m[0] for m in COMPARE_METRICS)
        if r["enqueue"]:
            v["enqueue_single"] = _median([e["enqueue_single"] for e in r["enqueue"]])
            v["enqueue_bulk"] = _median([e["enqueue_bulk"] for e in r["enqueue"]])
        if r["drain"]:
            v["drain"] = _median([d["drain"] for d in r["drain"]])
            v["drain_steady"] = _median([d["drain_steady"] for d in r["drain"]])
            v["drain_rss"] = max(mb for d in r["drain"] for mb in d["worker_peak_rss_mb"])
            for side in ("worker", "server"):
                v[f"drain_{side}_cpu"] = median_or_none([cpu_per_job(d, side) for d in r["drain"]])
        if r["latency"]:
            lat = r["latency"][0]
            v["latency_p50"], v["latency_p95"], v["latency_p99"] = (
                lat["latency"]["p50"],
                lat["latency"]["p95"],
                lat["latency"]["p99"],
            )
            v["idle_rss"] = lat["worker_peak_rss_mb"]
        values[system] = v
    ratios = {
        peer: {
            key: (
                values["taskengine"][key] / values[peer][key]
                if values["taskengine"][key] and values[peer][key]
                else None
            )
            for key, *_ in COMPARE_METRICS
        }
        for peer in PEERS
    }
    configs = {
        "taskengine": f"run_workers --processes {config[0]} --concurrency {config[1]} "
        + (
            "(the fastest of this run's drains)"
            if any(r.name.startswith("drain_") and r.value for r in rows)
            else "(default)"
        ),
        "pgqueuer": next((d.get("config") for d in runs["pgqueuer"]["drain"]), None),
        "procrastinate": next((d.get("config") for d in runs["procrastinate"]["drain"]), None),
    }
    versions = {
        peer: next(
            (
                x["version"]
                for what in ("enqueue", "drain", "latency")
                for x in runs[peer][what]
                if "version" in x
            ),
            None,
        )
        for peer in PEERS
    }
    return {
        "rounds": opts.repeat,
        "config": list(config),
        "configs": configs,
        "versions": versions,
        "values": values,
        "ratios": ratios,
        "runs": runs,
        "failures": failures,
        "targets": compare_targets(values, ratios),
    }


def compare_targets(
    values: dict[str, dict[str, float | None]], ratios: dict[str, dict[str, float | None]]
) -> list[dict[str, Any]]:
    """Issue 6's targets, each with the figure measured here and whether it holds."""
    ours = values.get("taskengine", {})

    def ratio(peer: str, key: str) -> float | None:
        return ratios.get(peer, {}).get(key)

    def check(
        name: str, figure: float | None, ok: Callable[[float], bool], shown: str
    ) -> dict[str, Any]:
        return {
            "target": name,
            "figure": figure,
            "shown": shown if figure is not None else "—",
            "met": None if figure is None else bool(ok(figure)),
        }

    pgq, procr = ratio("pgqueuer", "drain"), ratio("procrastinate", "drain")
    return [
        check("drain ≥ 1.0× pgqueuer", pgq, lambda x: x >= 1.0, f"×{pgq:.2f}" if pgq else ""),
        check(
            "drain ≥ 10× procrastinate",
            procr,
            lambda x: x >= 10.0,
            f"×{procr:.1f}" if procr else "",
        ),
        check(
            "single enqueue ≥ 1.0× pgqueuer",
            ratio("pgqueuer", "enqueue_single"),
            lambda x: x >= 1.0,
            f"×{ratio('pgqueuer', 'enqueue_single') or 0:.2f}",
        ),
        check(
            "bulk enqueue ≥ 1.0× pgqueuer",
            ratio("pgqueuer", "enqueue_bulk"),
            lambda x: x >= 1.0,
            f"×{ratio('pgqueuer', 'enqueue_bulk') or 0:.2f}",
        ),
        check(
            "latency p50 ≤ 2.5 ms",
            ours.get("latency_p50"),
            lambda x: x <= 2.5,
            f"{ours.get('latency_p50') or 0:.2f} ms",
        ),
        check(
            "latency p99 ≤ 5 ms",
            ours.get("latency_p99"),
            lambda x: x <= 5.0,
            f"{ours.get('latency_p99') or 0:.2f} ms",
        ),
        check(
            "worker RSS ≤ 50 MB",
            ours.get("drain_rss"),
            lambda x: x <= 50.0,
            f"{ours.get('drain_rss') or 0:.1f} MB",
        ),
    ]


# -- scale: a big backlog, many finished jobs ------------------------------------------------


def insert_copies(count: int, overrides: dict[str, str]) -> int:
    """``count`` job rows in one ``INSERT ... SELECT generate_series``: copies of a job enqueued
    through the public API (so every column has what enqueue writes), with SQL ``overrides``
    per column (``p`` is the prototype row, ``g`` the series). Returns the prototype's id."""
    from benchmarks.benchapp.tasks import noop

    proto = noop.enqueue()
    columns = [
        r[0]
        for r in query(
            "SELECT attname FROM pg_attribute WHERE attrelid = 'taskengine_job'::regclass "
            "AND attnum > 0 AND NOT attisdropped AND attname <> 'id' ORDER BY attnum"
        )
    ]
    exprs = [overrides.get(c, f"p.{c}") for c in columns]
    execute(
        f"INSERT INTO taskengine_job ({', '.join(columns)}) SELECT {', '.join(exprs)} "
        "FROM taskengine_job p CROSS JOIN generate_series(1, %s) g WHERE p.id = %s",
        [count, proto.pk],
    )
    return proto.pk


def fill_backlog(count: int) -> float:
    """``count`` queued no-op jobs (the API's prototype plus count - 1 copies due an hour ago, in
    id order); ANALYZE as autovacuum would have. Seconds taken."""
    start = time.perf_counter()
    insert_copies(
        count - 1,
        {
            "run_after": "p.run_after - interval '1 hour' + g * interval '1 microsecond'",
            "created_at": "p.created_at - interval '1 hour'",
        },
    )
    execute("ANALYZE taskengine_job")
    return time.perf_counter() - start


def fill_finished(count: int) -> float:
    """``count`` succeeded jobs, each with its attempt row, as a busy queue leaves behind
    before pruning; ANALYZE. Seconds taken."""
    start = time.perf_counter()
    proto = insert_copies(
        count,
        {
            "status": "'succeeded'",
            "attempts": "1",
            "result": "'null'::jsonb",
            "started_at": "p.created_at - interval '2 hours' + g * interval '1 millisecond'",
            "finished_at": "p.created_at - interval '2 hours' + g * interval '1 millisecond' "
            "+ interval '1 millisecond'",
            "created_at": "p.created_at - interval '2 hours' + g * interval '1 millisecond'",
            "run_after": "p.created_at - interval '2 hours' + g * interval '1 millisecond'",
        },
    )
    execute("DELETE FROM taskengine_job WHERE id = %s", [proto])
    execute(
        "INSERT INTO taskengine_attempt (job_id, number, worker_id, started_at, finished_at, "
        "outcome, error, traceback) SELECT id, 1, gen_random_uuid(), started_at, finished_at, "
        "'succeeded', '', '' FROM taskengine_job"
    )
    execute("ANALYZE taskengine_job")
    execute("ANALYZE taskengine_attempt")
    return time.perf_counter() - start


def max_job_id() -> int:
    return query("SELECT coalesce(max(id), 0) FROM taskengine_job")[0][0]


def claim_statement_params(ns: int, limit: int) -> dict[str, Any]:
    """Parameters of the claim statement for a claim of ``limit`` from the head of the queue
    (written out: earlier versions of the engine lack the helpers; unused ones are ignored)."""
    return {
        "queues": [],
        "all_queues": True,
        "limit": limit,
        # Every claimed job starts at once, as for a worker with a thread free for each.
        "free": limit,
        "start": limit,
        "park": [],
        "worker": uuid.uuid4(),
        "ns": ns,
        # The start fence's key (django_taskengine/store/postgres_session.py).
        "fence": (ns << 32) | 2,
        # No task type with limits (its jobs would be left to the flow claim).
        "flow_tasks": [],
        # The cursor before every job (CLAIM_FROM_HEAD there).
        "after_priority": 2**31 - 1,
        "after_run": None,
        "after_id": 0,
    }


def claim_statement() -> str:
    """The engine's claim statement (from its SQL files; older versions kept it in the store)."""
    try:
        from django_taskengine.store.sql import query
    except ImportError:
        from django_taskengine.store.postgres import CLAIM_SQL

        return CLAIM_SQL
    return query("claim_jobs")


def claim_ms(samples: int = 5, limit: int = 100) -> float:
    """Median execution time of the claim statement (EXPLAIN (ANALYZE, TIMING OFF), each in a
    rolled-back transaction on a throwaway connection), in ms."""
    import psycopg

    from django_taskengine.conf import taskengine_settings

    CLAIM_SQL = claim_statement()
    times = []
    with psycopg.connect(**db_params(), autocommit=True) as conn:
        for _ in range(samples):
            params = claim_statement_params(taskengine_settings.ADVISORY_LOCK_NAMESPACE, limit)
            with conn.transaction(force_rollback=True):
                plan = [
                    row[0]
                    for row in conn.execute("EXPLAIN (ANALYZE, TIMING OFF) " + CLAIM_SQL, params)
                ]
            times += [float(line.split()[2]) for line in plan if line.startswith("Execution Time")]
    return _median(times)


def run_scale(opts: argparse.Namespace, rows: list[Row]) -> dict[str, Any]:
    """Drain rates with a 10k, 100k and 1M backlog and next to 1M finished jobs, the same worker
    configuration throughout, in ``--repeat`` interleaved rounds (each case set up afresh in
    every round, so that the machine's changing load hits every case alike); the claim's
    EXPLAIN ANALYZE (first round) and its median execution time (every round)."""
    processes, concurrency = best_drain_config(rows)
    per_process = SCALE_DRAIN // processes
    million = SCALE_FINISHED // 1_000_000

    def backlog_name(n: int) -> str:
        return f"backlog {n // 1_000_000}M" if n >= 1_000_000 else f"backlog {n // 1000:,}k"

    cases: list[dict[str, Any]] = [
        {"name": "backlog 10k", "backlog": DRAIN_JOBS, "drained": DRAIN_JOBS},
        *(
            {"name": backlog_name(n), "backlog": n, "drained": per_process * processes}
            for n in SCALE_BACKLOGS
        ),
        {
            "name": f"{million}M finished + 10k new",
            "backlog": DRAIN_JOBS,
            "drained": DRAIN_JOBS,
            "finished": SCALE_FINISHED,
        },
    ]
    for c in cases:
        c.update(runs=[], claim_ms=[], fill_seconds=[])

    for rep in range(opts.repeat):
        for c in cases:
            print(
                f"  scale: round {rep + 1}, {c['name']} (load {loadavg()})",
                file=sys.stderr,
                flush=True,
            )
            truncate()
            min_id, max_jobs = 0, None
            if c.get("finished"):
                c["fill_seconds"].append(fill_finished(c["finished"]))
                min_id = max_job_id()
                bulk_enqueue_noops(DRAIN_JOBS)
            elif c["backlog"] == DRAIN_JOBS:
                bulk_enqueue_noops(DRAIN_JOBS)
                execute("ANALYZE taskengine_job")
            else:
                c["fill_seconds"].append(fill_backlog(c["backlog"]))
                max_jobs = per_process
            if rep == 0:
                c["plan"] = claim_plan()
            c["claim_ms"].append(claim_ms())
            c["runs"].append(
                drain_once(
                    processes, concurrency, expect=c["drained"], max_jobs=max_jobs, min_id=min_id
                )
            )
    truncate()

    for c in cases:
        c["drain"] = _median([r["drain"] for r in c["runs"]])
        c["drain_steady"] = _median([r["drain_steady"] for r in c["runs"]])
        c["claim_ms"] = _median(c["claim_ms"])
        c["plan_summary"] = plan_summary(c.get("plan", {}))
    base = cases[0]
    for c in cases:
        c["vs_10k"] = c["drain_steady"] / base["drain_steady"]
        c["vs_10k_wall"] = c["drain"] / base["drain"]
    return {
        "processes": processes,
        "concurrency": concurrency,
        "rounds": opts.repeat,
        "cases": cases,
        "autovacuum": query("SHOW autovacuum")[0][0],
    }


# -- output -------------------------------------------------------------------------------------


def print_machine(machine: dict[str, Any]) -> None:
    print()
    print(f"machine: {machine['nproc']} CPUs, {machine['cpu']}, {machine['memory']}")
    print(f"         {machine['postgresql']} ({machine['database']})")
    print(
        f"         Python {machine['python']}, Django {machine['django']}, "
        f"psycopg {machine['psycopg']}"
    )
    print(
        f"load average (1, 5, 15 min) at start {machine['loadavg_start']}, "
        f"at end {machine['loadavg_end']}"
    )
    if (machine["loadavg_start"] or [0])[0] > 0.5 * machine["nproc"]:
        print(
            "WARNING: the machine was busy before the run started (other work, or a previous "
            "run); compare figures only with others of the same run (the ratios below)."
        )


def print_table(rows: list[Row]) -> None:
    planned = next((r.extra for r in rows if "claim_plan" in r.extra), None)
    print()
    name_w = max(len("name"), *(len(r.name) for r in rows)) if rows else 4
    print(f"{'name':<{name_w}}  {'value':>11}  {'unit':<6}  note")
    print(f"{'-' * name_w}  {'-' * 11}  {'-' * 6}  {'-' * 40}")
    for row in rows:
        value = "FAILED" if row.value is None else _fmt(row.value)
        print(f"{row.name:<{name_w}}  {value:>11}  {row.unit:<6}  {row.note}")
    if planned:
        print(
            f"\nclaim plan (EXPLAIN, {planned['jobs']:,} queued): "
            f"{plan_summary(planned['claim_plan'])}"
        )


def print_compare(compare: dict[str, Any]) -> None:
    values, ratios = compare["values"], compare["ratios"]
    peers = list(PEERS)
    print(
        f"\ncomparison, same invocation: enqueue and drain are medians of {compare['rounds']} "
        "interleaved rounds; ratio = ours ÷ theirs"
    )
    for system, config in compare["configs"].items():
        version = compare["versions"].get(system)
        print(f"  {system}{' ' + version if version else ''}: {config}")
    label_w = max(len(m[1]) + len(m[2]) + 3 for m in COMPARE_METRICS)
    head = f"{'figure':<{label_w}}  {'taskengine':>10}" + "".join(f"  {p:>13}" for p in peers)
    head += "".join(f"  {'vs ' + p:>16}" for p in peers)
    print(head)
    print("-" * len(head))
    for key, label, unit, higher in COMPARE_METRICS:
        line = f"{label + ' (' + unit + ')':<{label_w}}  {_fmt(values['taskengine'][key]):>10}"
        line += "".join(f"  {_fmt(values[p][key]):>13}" for p in peers)
        for p in peers:
            r = ratios[p][key]
            line += f"  {('×' + format(r, '.2f')) if r is not None else '—':>16}"
        print(line + ("" if higher else "  (lower is better)"))
    print("\ntargets (issue 6):")
    for t in compare["targets"]:
        state = {True: "met", False: "MISSED", None: "not measured"}[t["met"]]
        print(f"  {t['target']:<34} {t['shown']:>12}  {state}")
    for system, detail in compare["failures"].items():
        print(f"  {system} FAILED: {detail.strip().splitlines()[0][:120]}")


def print_scale(scale: dict[str, Any], *, full_plans: bool = True) -> None:
    print(
        f"\nscale: run_workers --processes {scale['processes']} --concurrency "
        f"{scale['concurrency']}; medians of {scale['rounds']} interleaved rounds, each case "
        "set up afresh; steady = drained ÷ (first start → last finish); claim = execution time "
        "of one claim of 100 (EXPLAIN ANALYZE)"
    )
    print(
        f"  (server autovacuum: {scale['autovacuum']}; the table is ANALYZEd after filling it, "
        "as autovacuum would have)"
    )
    print(
        f"{'case':<24} {'backlog':>10} {'drained':>8} {'wall jobs/s':>12} {'vs 10k':>7} "
        f"{'steady jobs/s':>14} {'vs 10k':>7} {'claim ms':>9}  claim plan"
    )
    for c in scale["cases"]:
        print(
            f"{c['name']:<24} {c['backlog']:>10,} {c['drained']:>8,} {_fmt(c['drain']):>12} "
            f"{c['vs_10k_wall']:>7.0%} {_fmt(c['drain_steady']):>14} {c['vs_10k']:>7.0%} "
            f"{c['claim_ms']:>9.2f}  {c['plan_summary'].split('; Execution')[0]}"
        )
    target = next((c for c in scale["cases"] if c["backlog"] >= 1_000_000), None)
    if target:
        state = "met" if target["vs_10k"] >= 0.8 else "MISSED"
        print(
            f"target: 1M backlog drains at ≥ 80% of the 10k rate: {target['vs_10k']:.0%} "
            f"(steady; wall {target['vs_10k_wall']:.0%}), {state}"
        )
    if full_plans:
        for c in scale["cases"]:
            plan = c.get("plan", {})
            print(f"\nEXPLAIN (ANALYZE, BUFFERS) claim of {plan.get('limit', '?')}, {c['name']}:")
            for line in plan.get("plan", []):
                print(f"    {line}")
            scans = [g.strip(" ->").split("  (")[0] for g in plan.get("generic", []) if "Scan" in g]
            if scans:
                print(f"  generic plan (prepared statement): {'; '.join(scans)}")


def write_plot(payload: dict[str, Any], path: Path, script: str = "plot.py") -> None:
    """docs/benchmarks.png by benchmarks/plot.py (or another ``script`` of benchmarks/ that takes
    the same two arguments), with whichever python has matplotlib (this one, else the
    comparison venv's); skipped with a message if neither has it."""
    candidates = [Path(sys.executable), PEER_VENV / "bin" / "python"]
    python = next(
        (
            c
            for c in candidates
            if c.exists()
            and subprocess.run([str(c), "-c", "import matplotlib"], capture_output=True).returncode
            == 0
        ),
        None,
    )
    if python is None:
        print(
            "plot skipped: matplotlib is missing (pip install matplotlib, or run --compare "
            "once: its venv has it)",
            file=sys.stderr,
        )
        return
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(payload, f, default=str)
    try:
        proc = subprocess.run(
            [str(python), str(BENCH_DIR / script), f.name, str(path)],
            capture_output=True,
            text=True,
        )
    finally:
        os.unlink(f.name)
    if proc.returncode != 0:
        print(f"plot failed:\n{proc.stderr[-2000:]}", file=sys.stderr)
    else:
        print(f"wrote {path}", file=sys.stderr)


#: ``./dev bench FLAG``: the sustained-load benchmarks, each in its own module.
SUSTAINED = {
    "--soak": "soak",
    "--io": "io_bound",
    "--fleet": "fleet",
    "--flow": "flow",
    "--pooler": "pooler",
    "--dispatch": "dispatch",
    "--admin": "admin_pages",
}


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args[:1] == ["--baseline"] or any(a.startswith("--baseline=") for a in args[:1]):
        # ./dev bench --baseline REV [...]: this tree against an earlier commit, in one run.
        from benchmarks import baseline

        rest = args[1:] if args[0] == "--baseline" else [args[0].split("=", 1)[1], *args[1:]]
        return baseline.main(rest)
    for flag, module in SUSTAINED.items():
        if flag in args:
            # ./dev bench --soak | --io | --fleet [...]: the sustained-load benchmarks, each a
            # module of its own with its own options.
            import importlib

            rest = [a for a in args if a != flag]
            return int(importlib.import_module(f"benchmarks.{module}").main(rest))
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--jobs", type=int, default=2000, help="enqueue_single: jobs (default 2000)"
    )
    parser.add_argument(
        "--drain-jobs",
        type=int,
        default=DRAIN_JOBS,
        help=f"drain_*: queued jobs to drain (default {DRAIN_JOBS})",
    )
    parser.add_argument(
        "--latency-jobs",
        type=int,
        default=LATENCY_JOBS,
        help=f"latency: jobs enqueued one at a time (default {LATENCY_JOBS})",
    )
    parser.add_argument(
        "--repeat",
        type=int,
        default=3,
        help="runs of each drain (and compare rounds), the median reported (default 3)",
    )
    parser.add_argument(
        "--only",
        default="",
        help="comma-separated subset of: "
        + ", ".join(BENCHMARKS)
        + " ('drain' for every drain_*; 'none' for none, e.g. with --scale)",
    )
    parser.add_argument(
        "--compare",
        action="store_true",
        help="also run procrastinate and pgqueuer on the same workload (a venv of "
        "their own under benchmarks/.venvs/, made once) and report ratios",
    )
    parser.add_argument(
        "--scale",
        action="store_true",
        help="also drain 20,000 of a 100k and a 1M backlog and 10,000 next to 1M "
        "finished jobs, with EXPLAIN ANALYZE of the claim (a few minutes)",
    )
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    parser.add_argument(
        "--plot",
        metavar="PATH",
        nargs="?",
        const=str(DEFAULT_PLOT),
        help="also draw throughput against concurrency and backlog (matplotlib) to "
        f"PATH (default {DEFAULT_PLOT.relative_to(REPO_ROOT)})",
    )
    parser.add_argument(
        "--force",
        action="store_true",
        help="use DATABASE_URL even if its database name lacks 'bench' "
        "(its task engine tables are emptied)",
    )
    parser.add_argument(
        "--private-cluster",
        action="store_true",
        help="run on a PostgreSQL cluster this run creates (initdb in a temporary folder, "
        "production-like settings: benchmarks/cluster.py) instead of DATABASE_URL",
    )
    parser.add_argument(
        "--analyze",
        action="store_true",
        help="drain_*: ANALYZE the job table after enqueueing (default: no, as after "
        "a sudden burst of jobs before autovacuum runs)",
    )
    opts = parser.parse_args(argv)
    names: list[str] = []
    for n in (n.strip() for n in opts.only.split(",") if n.strip()):
        if n == "none":
            continue
        names.extend([b for b in BENCHMARKS if b.startswith("drain_")] if n == "drain" else [n])
    if not opts.only:
        names = list(BENCHMARKS)
    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown:
        parser.error(
            f"unknown benchmark(s) {', '.join(unknown)}; choose from {', '.join(BENCHMARKS)}"
        )
    if opts.jobs < 1 or opts.drain_jobs < 1 or opts.latency_jobs < 2 or opts.repeat < 1:
        parser.error(
            "--jobs, --drain-jobs and --repeat must be at least 1, --latency-jobs at least 2"
        )

    started = time.perf_counter()
    if opts.private_cluster:
        from benchmarks.cluster import start_private_cluster

        start_private_cluster()
    precompile()
    run_lock = setup_django(force=opts.force)  # noqa: F841 - held until the process exits
    machine = machine_info()
    rows: list[Row] = []
    failures: dict[str, str] = {}
    sections: list[dict[str, Any]] = []
    for name in names:
        load = loadavg()
        print(f"running {name} (load {load}) ...", file=sys.stderr, flush=True)
        truncate()
        t0 = time.perf_counter()
        try:
            rows.extend(BENCHMARKS[name](opts))
        except Exception as exc:  # noqa: BLE001 - report it and go on with the others
            detail = str(exc) if isinstance(exc, BenchmarkFailed) else traceback.format_exc()
            failures[name] = detail
            rows.append(Row(name, None, "", "FAILED: " + detail.strip().splitlines()[0][:100]))
            print(f"\n*** {name} FAILED ***\n{detail}\n", file=sys.stderr, flush=True)
        sections.append(
            {
                "name": name,
                "seconds": time.perf_counter() - t0,
                "loadavg_start": load,
                "loadavg_end": loadavg(),
            }
        )
        print(f"  {name}: {time.perf_counter() - t0:.1f} s", file=sys.stderr, flush=True)
    drains = [r for r in rows if r.name.startswith("drain_") and r.value is not None]
    if drains:
        rss = max(r.extra["worker_peak_rss_mb"] for r in drains)
        rows.append(
            Row(
                "worker_drain_rss",
                rss,
                "MB",
                "highest peak RSS (VmHWM) of any worker process in the drains above",
            )
        )

    extras: dict[str, Any] = {}
    for flag, label, fn in (("compare", "compare", run_compare), ("scale", "scale", run_scale)):
        if not getattr(opts, flag):
            continue
        load = loadavg()
        print(f"running {label} (load {load}) ...", file=sys.stderr, flush=True)
        t0 = time.perf_counter()
        try:
            truncate()
            extras[label] = fn(opts, rows)
        except Exception as exc:  # noqa: BLE001 - report it and go on
            detail = str(exc) if isinstance(exc, BenchmarkFailed) else traceback.format_exc()
            failures[label] = detail
            print(f"\n*** {label} FAILED ***\n{detail}\n", file=sys.stderr, flush=True)
        sections.append(
            {
                "name": label,
                "seconds": time.perf_counter() - t0,
                "loadavg_start": load,
                "loadavg_end": loadavg(),
            }
        )
        print(f"  {label}: {time.perf_counter() - t0:.1f} s", file=sys.stderr, flush=True)
    truncate()
    machine["loadavg_end"] = loadavg()
    elapsed = time.perf_counter() - started

    print_machine(machine)
    print_table(rows)
    if "compare" in extras:
        print_compare(extras["compare"])
    if "scale" in extras:
        print_scale(extras["scale"])
    print(f"\n(total {elapsed:.1f} s)")
    payload = {
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": machine,
        "results": [asdict(r) for r in rows],
        **extras,
        "sections": sections,
        "failures": failures,
        "total_seconds": elapsed,
    }
    if opts.json:
        Path(opts.json).write_text(json.dumps(payload, indent=2, default=str) + "\n")
        print(f"wrote {opts.json}", file=sys.stderr)
    if opts.plot:
        write_plot(payload, Path(opts.plot))
    if failures:
        print(f"\nFAILED: {', '.join(failures)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
