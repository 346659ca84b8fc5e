"""Redis Streams dispatch against PostgreSQL dispatch, in the same run: how fast a fleet drains a
backlog and how soon a job starts after its enqueue, at 2 and 8 worker processes, connected
directly and behind PgBouncer.

    ./dev bench --dispatch [--cases drain,latency] [--processes 2,8] [--routes direct,pgbouncer]
                           [--jobs 10000] [--latency-jobs 100] [--latency-gap S]
                           [--concurrency 4] [--analyze]
                           [--task noop|atomic_write] [--rounds 3] [--pool-size 4]
                           [--redis-url URL] [--redis-option KEY=VALUE ...] [--profile DIR]
                           [--json PATH] [--database-url]

Cases (``--cases``), each measured under both backends in every round (the two back to back,
which first alternating from round to round), each from empty tables, every job verified
succeeded with one attempt:

- ``drain``: a running fleet (``run_workers --processes P --concurrency C``, registered and
  warmed up by a few jobs) is handed ``--jobs`` jobs in one transaction. Rates from the first
  start to the last finish ("steady") and from the commit to the last finish. What a fleet that
  is up meets when a burst of work comes: under Redis the relay publishes it and the workers
  claim what is delivered; under PostgreSQL the notification wakes them and they scan.
- ``burst``: ``run_workers --burst`` over the same backlog, as the suite's other drains (start-up
  included in the worker CPU). A burst worker under Redis also scans whenever a claim gets fewer
  deliveries than it has room for, to see the queue empty before it exits.
- ``latency``: an idle running fleet; ``--latency-jobs`` jobs one at a time; ``started_at -
  created_at`` (database clock) percentiles. Under Redis each job's time is split at its stream
  entry's id (the Redis clock, the same machine's): enqueue → published (the relay), published →
  started (the reader and the claim). ``--latency-gap S`` waits S seconds before each enqueue:
  sparse work, where a worker that had no delivery for a poll interval scans too.

Routes (``--routes``): ``direct``, and ``pgbouncer``: ``DATABASES`` through a PgBouncer this run
starts (transaction mode, ``--pool-size`` server connections), the engine's own connections
(claims, the relay, LISTEN) to the server by ``DIRECT_DATABASE_URL``, as ``--pooler`` does.

With every drain: CPU milliseconds per job of the workers, of the PostgreSQL server and of Redis
(``resources.py``; Redis's are the whole server's, other clients included), and from
``pg_stat_statements`` which statement claimed the jobs: ``claim_ids`` (delivered by Redis) or
``claim_jobs`` (a scan), and the relay's rounds (``relay_candidates``) with their mean time.

The job table is analyzed while the queue is idle (after the warm-up), then the backlog comes
all at once: the statistics say that no job is queued, as autovacuum leaves a quiet queue before
a burst, in every measurement alike. ``--analyze`` analyzes the table again with the backlog
(in its transaction). The claim statements' plans depend on it: ``--profile`` shows both.

Figures are quoted as redis ÷ postgres of the same round: the median over the rounds and their
range. This machine is small and shared: only ratios of one invocation count.

Redis: ``--redis-url`` (default ``redis://127.0.0.1:6379/0``). Each measurement writes under a key
prefix of its own, ``te_bench:<run>:<n>``, whose keys are deleted when it ends, and all of the
run's at exit; no other key is read or written.

``--profile DIR``: after the rounds, one more drain per backend at the most processes, direct,
untimed, with py-spy attached to the workers (``pyspy.py``; ``pip install py-spy``): the share of
CPU samples by thread, package and function, and the statements that took the server's time.
The raw profiles go to DIR.
"""

from __future__ import annotations

import argparse
import atexit
import json
import os
import resource
import statistics
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any
from unittest import mock

from psycopg.conninfo import conninfo_to_dict

from benchmarks import dispatch_plans, pyspy, resources
from benchmarks import run as bench
from benchmarks import session as sess
from benchmarks.peers.common import percentiles

BACKENDS = ("postgres", "redis")
ROUTES = ("direct", "pgbouncer")
CASES = ("drain", "burst", "latency")
DATABASE = "te_bench_dispatch"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
#: A running fleet is warmed up by this many jobs per process before it is measured, then left
#: idle this long (seconds): every reader has found the queue's stream, every relay is elected.
WARM_JOBS_PER_PROCESS = 4
SETTLE = 1.5
#: Latency: jobs not counted, first.
LATENCY_WARMUP = 5

#: pg_stat_statements rows by statement, matched in this order (claim_jobs' text also has the
#: tail it shares with claim_ids, claim_take's ``ranked``).
STATEMENTS = (
    ("claim_jobs", "%lower_priorities%"),
    ("relay_candidates", "%named AS%CROSS JOIN LATERAL%"),
    ("claim_ids", "%ranked AS (%"),
    # This benchmark's own polls (Django's exists(), _wait_done): not counted in the server's
    # statement time per job.
    ("benchmark", '%AS "a" FROM "taskengine_job"%'),
    ("benchmark", "SELECT EXISTS (SELECT % FROM taskengine_job WHERE status%"),
)


class RedisKeys:
    """The run's Redis keys: a prefix per measurement under ``te_bench:<run>``, deleted by
    :meth:`clear` (SCAN and UNLINK of that prefix's keys only)."""

    def __init__(self, url: str) -> None:
        import redis

        self.client: Any = redis.Redis.from_url(url, decode_responses=True)
        self.client.ping()
        self.run = f"te_bench:{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self._count = 0

    def new_prefix(self) -> str:
        self._count += 1
        return f"{self.run}:{self._count}"

    def clear(self, prefix: str | None = None) -> int:
        """Delete the keys under ``prefix`` (default: all of the run's); how many there were."""
        deleted = 0
        batch: list[str] = []
        for key in self.client.scan_iter(match=f"{prefix or self.run}:*", count=1000):
            batch.append(key)
            if len(batch) >= 500:
                deleted += self.client.unlink(*batch)
                batch = []
        if batch:
            deleted += self.client.unlink(*batch)
        return deleted


class Measure:
    """What every measurement of a run needs: options, the pooler, Redis, the server's pid."""

    def __init__(
        self, opts: argparse.Namespace, session: sess.Session, keys: RedisKeys, pooler: Any
    ) -> None:
        self.opts = opts
        self.pgss = session.pg_stat_statements
        self.keys = keys
        self.pooler = pooler
        self.direct = os.environ.get("DATABASE_URL", sess_default_url())
        self.server = resources.postmaster_pid(bench.query)
        self.redis_options = dict(opts.redis_option)

    def env(self, backend: str, route: str, prefix: str) -> dict[str, str]:
        """The environment of the worker commands of one measurement."""
        env = {"TASKENGINE_BENCH_DISPATCH": "", "TASKENGINE_BENCH_DIRECT_URL": ""}
        if route == "pgbouncer":
            env["DATABASE_URL"] = self.pooler.url(conninfo_to_dict(self.direct)["dbname"])
            env["TASKENGINE_BENCH_DIRECT_URL"] = self.direct
        if backend == "redis":
            options = {"BACKEND": "redis-streams", "URL": self.opts.redis_url, "PREFIX": prefix}
            env["TASKENGINE_BENCH_DISPATCH"] = json.dumps({**options, **self.redis_options})
        return env

    def one(self, case: str, backend: str, route: str, processes: int, **kw: Any) -> dict[str, Any]:
        """One measurement of ``case``, from empty tables, its Redis keys deleted afterwards."""
        bench.truncate()
        prefix = self.keys.new_prefix()
        redis = self.keys.client if backend == "redis" else None
        load = bench.loadavg()
        try:
            with mock.patch.dict(os.environ, self.env(backend, route, prefix)):
                fn: Callable[..., dict[str, Any]] = {
                    "drain": self.running_drain,
                    "burst": self.burst_drain,
                    "latency": self.latency,
                }[case]
                result = fn(processes, redis=redis, prefix=prefix, **kw)
        finally:
            self.keys.clear(prefix)
        result["loadavg_before"] = load
        return result

    # -- the cases ----------------------------------------------------------------------------

    def running_drain(
        self, processes: int, *, redis: Any, prefix: str, profile: Path | None = None
    ) -> dict[str, Any]:
        opts = self.opts
        jobs = opts.jobs
        with bench.Workers(*self._fleet_args(processes)) as workers:
            self._wait_for_fleet(workers, processes, redis, prefix)
            warm = WARM_JOBS_PER_PROCESS * processes
            enqueue(opts.task, warm)
            self._wait_done(workers, warm, min_id=0)
            # Statistics of the idle queue, as autovacuum leaves a quiet one: the same plans
            # in every measurement, whatever autovacuum did during the previous ones.
            bench.execute("ANALYZE taskengine_job")
            time.sleep(SETTLE)
            min_id = int(bench.query("SELECT coalesce(max(id), 0) FROM taskengine_job")[0][0])
            if self.pgss:
                sess.reset_statements()
            profiler = None
            if profile is not None:
                profiler = pyspy.Profiler(workers.proc.pid, profile)
                profiler.start()
                time.sleep(1.0)  # py-spy attaches to every process before the work starts
            before = resources.snapshot(workers.proc.pid, self.server, redis)
            from django.db import transaction

            with transaction.atomic():
                enqueue(opts.task, jobs)
                if opts.analyze:
                    # In the enqueue's transaction: the statistics come with the jobs.
                    bench.execute("ANALYZE taskengine_job")
            committed = bench.query("SELECT now()")[0][0]
            self._wait_done(workers, jobs, min_id=min_id)
            after = resources.snapshot(workers.proc.pid, self.server, redis)
            if profiler is not None:
                profiler.stop()
            result = self._drain_figures(jobs, min_id, committed)
            result["cpu"] = resources.spent(before, after, jobs)
            result |= self._statements(jobs, top=profile is not None)
            if redis is not None:
                result["relay"] = redis.hgetall(f"{prefix}:relay")
            result["supervisor_pid"] = workers.proc.pid
            code = workers.stop(timeout=60)
            if code != 0:
                raise bench.BenchmarkFailed(f"run_workers exited {code}\n{workers.output()}")
            bench.verify_drained(jobs, workers, min_id=min_id)
        return result

    def burst_drain(self, processes: int, *, redis: Any, prefix: str) -> dict[str, Any]:
        jobs = self.opts.jobs
        bench.execute("ANALYZE taskengine_job")  # the empty queue's statistics (see above)
        enqueue(self.opts.task, jobs)
        if self.opts.analyze:
            bench.execute("ANALYZE taskengine_job")
        if self.pgss:
            sess.reset_statements()
        children = resource.getrusage(resource.RUSAGE_CHILDREN)
        server = resources.tree_cpu(self.server) if self.server else None
        before_redis = resources.redis_counters(redis) if redis is not None else None
        run = bench.drain_once(processes, self.opts.concurrency, expect=jobs)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        worker_cpu = (after.ru_utime + after.ru_stime) - (children.ru_utime + children.ru_stime)
        before = resources.CpuSnapshot(0.0, server, before_redis)
        now = resources.CpuSnapshot(
            worker_cpu,
            resources.tree_cpu(self.server) if self.server else None,
            resources.redis_counters(redis) if redis is not None else None,
        )
        committed = bench.query("SELECT min(created_at) FROM taskengine_job")[0][0]
        result = self._drain_figures(jobs, 0, committed)
        # No commit to start from: the second rate of a burst is run_workers' start → exit.
        result["from_commit"] = run["drain"]
        result["cpu"] = resources.spent(before, now, jobs)
        result |= self._statements(jobs)
        return result

    def latency(self, processes: int, *, redis: Any, prefix: str) -> dict[str, Any]:
        from benchmarks.benchapp import tasks
        from django_taskengine.models import Job

        task = getattr(tasks, self.opts.task)

        def one() -> int:
            time.sleep(self.opts.latency_gap)
            job = task.enqueue()
            bench.wait_until(
                lambda pk=job.pk: Job.objects.filter(pk=pk, status="succeeded").exists(),
                timeout=10,
                # The figure is of database timestamps: the poll only says when to enqueue the
                # next job, and a tighter one would take a CPU from the fleet measured.
                interval=0.005,
                what=f"job {job.pk} to finish",
            )
            return int(job.pk)

        with bench.Workers(*self._fleet_args(processes)) as workers:
            self._wait_for_fleet(workers, processes, redis, prefix)
            for _ in range(LATENCY_WARMUP):
                one()
            time.sleep(SETTLE)
            if self.pgss:
                sess.reset_statements()
            ids = [one() for _ in range(self.opts.latency_jobs)]
            paths = self._statements(len(ids))
            code = workers.stop(timeout=60)
            if code != 0:
                raise bench.BenchmarkFailed(f"run_workers exited {code}\n{workers.output()}")
        times = {
            pk: (float(created), float(started))
            for pk, created, started in bench.query(
                "SELECT id, extract(epoch FROM created_at) * 1000, "
                "extract(epoch FROM started_at) * 1000 FROM taskengine_job WHERE id = ANY(%s)",
                [ids],
            )
        }
        result: dict[str, Any] = percentiles([s - c for c, s in times.values()])
        result |= paths
        if redis is not None:
            result["hops"] = stream_hops(redis, prefix, times)
        return result

    # -- helpers ------------------------------------------------------------------------------

    def _fleet_args(self, processes: int) -> list[str]:
        return [
            "--processes",
            str(processes),
            "--concurrency",
            str(self.opts.concurrency),
            "--shutdown-timeout",
            "10",
        ]

    def _wait_for_fleet(
        self, workers: bench.Workers, processes: int, redis: Any, prefix: str
    ) -> None:
        from django_taskengine.models import Worker

        def up() -> bool:
            if workers.proc.poll() is not None:
                raise bench.BenchmarkFailed(f"run_workers exited early\n{workers.output()}")
            return Worker.objects.filter(stopped_at__isnull=True).count() >= processes

        bench.wait_until(up, timeout=90, interval=0.05, what=f"{processes} workers to register")
        if redis is not None:
            bench.wait_until(
                lambda: redis.hget(f"{prefix}:relay", "leader"),
                timeout=30,
                interval=0.05,
                what="a relay to lead",
            )

    def _wait_done(self, workers: bench.Workers, jobs: int, *, min_id: int) -> None:
        def done() -> bool:
            if workers.proc.poll() is not None:
                raise bench.BenchmarkFailed(f"run_workers exited early\n{workers.output()}")
            # Probes of the partial indexes of queued and of running jobs: a count of the
            # succeeded ones, 20 times a second, would take a share of the CPUs measured.
            (left,) = bench.query(
                "SELECT EXISTS (SELECT 1 FROM taskengine_job WHERE status = 'queued' "
                "AND id > %s) OR EXISTS (SELECT 1 FROM taskengine_job WHERE status = 'running' "
                "AND id > %s)",
                [min_id, min_id],
            )[0]
            return not left

        bench.wait_until(done, timeout=max(120.0, jobs / 50), interval=0.05, what="the drain")

    def _drain_figures(self, jobs: int, min_id: int, committed: Any) -> dict[str, Any]:
        first, last, claims = bench.query(
            "SELECT min(started_at), max(finished_at), count(DISTINCT started_at) "
            "FROM taskengine_job WHERE id > %s AND status = 'succeeded'",
            [min_id],
        )[0]
        steady = (last - first).total_seconds()
        from_commit = (last - committed).total_seconds()
        return {
            "jobs": jobs,
            "steady": jobs / steady,
            "from_commit": jobs / from_commit,
            "first_start_after_commit_ms": (first - committed).total_seconds() * 1000,
            "jobs_per_claim": jobs / max(1, claims),
        }

    def _statements(self, jobs: int, *, top: bool = False) -> dict[str, Any]:
        """The claim statements' and the relay's figures since the last reset."""
        if not self.pgss:
            return {}
        cases = " ".join(f"WHEN query LIKE %s THEN '{name}'" for name, _ in STATEMENTS)
        rows = bench.query(
            f"SELECT CASE {cases} ELSE 'other' END, sum(calls), sum(rows), "
            "sum(total_exec_time) FROM pg_stat_statements WHERE dbid = "
            "(SELECT oid FROM pg_database WHERE datname = current_database()) GROUP BY 1",
            [pattern for _, pattern in STATEMENTS],
        )
        stats = {
            kind: {"calls": int(calls), "rows": int(n), "total_ms": float(ms)}
            for kind, calls, n, ms in rows
        }
        claimed = {k: stats.get(k, {}).get("rows", 0) for k in ("claim_ids", "claim_jobs")}
        out: dict[str, Any] = {
            "statements": stats,
            "delivered_share": claimed["claim_ids"] / max(1, sum(claimed.values())),
            "server_ms_per_job": sum(
                s["total_ms"] for kind, s in stats.items() if kind != "benchmark"
            )
            / jobs,
        }
        if top:
            out["top_statements"] = sess.statement_summary(8)
        return out


def sess_default_url() -> str:
    from benchmarks.settings import DEFAULT_DATABASE_URL

    return DEFAULT_DATABASE_URL


def enqueue(task_name: str, jobs: int) -> None:
    """``jobs`` jobs of the benchmark app's task ``task_name``, in batches."""
    from benchmarks.benchapp import tasks

    task = getattr(tasks, task_name)
    left = jobs
    while left > 0:
        batch = min(bench.BULK_BATCH, left)
        task.bulk_enqueue([((), {})] * batch)
        left -= batch


def stream_hops(redis: Any, prefix: str, times: dict[int, tuple[float, float]]) -> dict[str, Any]:
    """Each job's enqueue → first stream entry (the relay) and entry → start (the reader and the
    claim), in ms; jobs started before the relay published them (a scan took them)."""
    published: dict[int, float] = {}
    # Every stream under the prefix: each queue's, and its stream of jobs that sort first.
    for stream in redis.scan_iter(match=f"{prefix}:*", _type="STREAM"):
        for entry, fields in redis.xrange(stream):
            job = int(fields["id"])
            at = float(entry.split("-")[0])
            published[job] = min(at, published.get(job, at))
    relay, pickup, scanned = [], [], 0
    for job, (created, started) in times.items():
        at = published.get(job)
        if at is None or at > started:
            scanned += 1
            continue
        relay.append(at - created)
        pickup.append(started - at)

    def median(values: list[float]) -> float | None:
        return statistics.median(values) if values else None

    return {
        "relay_p50_ms": median(relay),
        "pickup_p50_ms": median(pickup),
        "relay_p95_ms": _p95(relay),
        "pickup_p95_ms": _p95(pickup),
        "started_before_published": scanned,
    }


def _p95(values: list[float]) -> float | None:
    if len(values) < 2:
        return values[0] if values else None
    return statistics.quantiles(values, n=20, method="inclusive")[18]


# -- the tables -----------------------------------------------------------------------------------


def _ratios(pairs: list[tuple[float | None, float | None]]) -> list[float]:
    return [r / p for p, r in pairs if p and r is not None]


def _shown(ratios: list[float]) -> str:
    if not ratios:
        return "—"
    med = statistics.median(ratios)
    if len(ratios) == 1:
        return f"×{med:.2f}"
    return f"×{med:.2f} ({min(ratios):.2f}–{max(ratios):.2f})"


def _med(values: list[Any]) -> float | None:
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def _g(value: float | None, spec: str) -> str:
    return "—" if value is None else format(value, spec)


def _pair(a: float | None, b: float | None) -> str:
    return f"{_g(a, '.2f')} | {_g(b, '.2f')}"


def _values(runs: list[dict[str, Any] | None], metric: str) -> list[Any]:
    return [r.get(metric) if r else None for r in runs]


def _backend_figures(runs: list[dict[str, Any] | None]) -> dict[str, Any]:
    done = [r for r in runs if r]

    def med(get: Callable[[dict[str, Any]], Any]) -> float | None:
        return _med([get(r) for r in done])

    return {
        "delivered_share": med(lambda r: r.get("delivered_share")),
        "server_stmt_ms_per_job": med(lambda r: r.get("server_ms_per_job")),
        "worker_cpu_ms": med(lambda r: r.get("cpu", {}).get("worker_ms_per_job")),
        "server_cpu_ms": med(lambda r: r.get("cpu", {}).get("server_ms_per_job")),
        "redis_cpu_ms": med(lambda r: r.get("cpu", {}).get("redis_ms_per_job")),
        "jobs_per_claim": med(lambda r: r.get("jobs_per_claim")),
        "relay_rounds": med(
            lambda r: r.get("statements", {}).get("relay_candidates", {}).get("calls")
        ),
        "relay_ms_mean": med(lambda r: _mean_ms(r, "relay_candidates")),
        "claim_ids_ms_mean": med(lambda r: _mean_ms(r, "claim_ids")),
        "claim_jobs_ms_mean": med(lambda r: _mean_ms(r, "claim_jobs")),
        "published_per_job": med(_published),
        "claims_per_job": med(_claims_per_job),
        "hops": [r["hops"] for r in done if "hops" in r],
        "load": [r.get("loadavg_before") for r in done],
    }


def figures(runs: dict[tuple[str, str, int, str], list[dict[str, Any] | None]]) -> dict:
    """Per (case, route, processes): medians of each backend and redis ÷ postgres per round."""
    out: dict[str, Any] = {}
    keys = sorted({k[:3] for k in runs}, key=lambda k: (CASES.index(k[0]), k[1], k[2]))
    for case, route, p in keys:
        pg = runs.get((case, route, p, "postgres"), [])
        rd = runs.get((case, route, p, "redis"), [])
        for r in (*pg, *rd):
            if r and "cpu" in r:
                r["cpu_total"] = _cpu_total(r["cpu"])
        metrics = (
            ("p50", "p95", "p99") if case == "latency" else ("steady", "from_commit", "cpu_total")
        )
        entry: dict[str, Any] = {
            m: {
                "postgres": _med(_values(pg, m)),
                "redis": _med(_values(rd, m)),
                "ratios": _ratios(list(zip(_values(pg, m), _values(rd, m), strict=False))),
            }
            for m in metrics
        }
        entry["postgres"] = _backend_figures(pg)
        entry["redis"] = _backend_figures(rd)
        out[f"{case}/{route}/p{p}"] = {"case": case, "route": route, "processes": p, **entry}
    return out


def _mean_ms(run: dict[str, Any], kind: str) -> float | None:
    s = run.get("statements", {}).get(kind)
    return s["total_ms"] / s["calls"] if s and s["calls"] else None


def _cpu_total(cpu: dict[str, Any]) -> float | None:
    """CPU ms per job of the workers, the server and Redis together (None if one is unknown):
    on a machine whose CPUs they share, what a drain's rate is bounded by."""
    parts = [cpu.get("worker_ms_per_job"), cpu.get("server_ms_per_job")]
    if None in parts:
        return None
    return float(sum(parts)) + float(cpu.get("redis_ms_per_job") or 0.0)


def _claims_per_job(run: dict[str, Any]) -> float | None:
    """Claim statements (scans and claims of delivered ids) per job claimed."""
    statements = run.get("statements")
    if not statements:
        return None
    calls = sum(statements.get(k, {}).get("calls", 0) for k in ("claim_jobs", "claim_ids"))
    rows = sum(statements.get(k, {}).get("rows", 0) for k in ("claim_jobs", "claim_ids"))
    return calls / rows if rows else None


def _published(run: dict[str, Any]) -> float | None:
    relay = run.get("relay")
    if not relay or "published" not in relay:
        return None
    return int(relay["published"]) / run["jobs"]


def print_figures(table: dict[str, Any], opts: argparse.Namespace) -> None:
    drains = [f for f in table.values() if f["case"] != "latency"]
    if drains:
        print(
            f"\ndrains of {opts.jobs:,} {opts.task} jobs, --concurrency {opts.concurrency}: "
            f"jobs/s, medians of {opts.rounds} rounds; × = redis ÷ postgres per round, median "
            "(range); higher is better; CPU ms/job: the workers', the server's and Redis's "
            "together (lower is better: the figure a busy machine's noise moves least)"
        )
        print(
            f"{'case':<6} {'route':<9} {'P':>2} {'pg steady':>10} {'redis':>8} "
            f"{'× steady':>19} {'pg commit→end':>14} {'redis':>8} {'× commit→end':>19} "
            f"{'CPU ms/job pg':>14} {'redis':>6} {'× CPU/job':>19}"
        )
        if any(f["case"] == "burst" for f in drains):
            print("(burst: start → exit of run_workers in the commit→end columns)")
        for f in drains:
            s, c, u = f["steady"], f["from_commit"], f["cpu_total"]
            print(
                f"{f['case']:<6} {f['route']:<9} {f['processes']:>2} "
                f"{_g(s['postgres'], ',.0f'):>10} {_g(s['redis'], ',.0f'):>8} "
                f"{_shown(s['ratios']):>19} {_g(c['postgres'], ',.0f'):>14} "
                f"{_g(c['redis'], ',.0f'):>8} {_shown(c['ratios']):>19} "
                f"{_g(u['postgres'], '.2f'):>14} {_g(u['redis'], '.2f'):>6} "
                f"{_shown(u['ratios']):>19}"
            )
        print(
            "\n  where the time goes (medians): CPU ms per job of the workers, the server and "
            "Redis (all its clients); server statement ms per job (pg_stat_statements); share "
            "of jobs claimed by claim_ids (delivered) rather than claim_jobs (scans); mean ms of "
            "claim_ids / claim_jobs; relay rounds (mean ms); entries published per job"
        )
        print(
            f"  {'case':<6} {'route':<9} {'P':>2} {'backend':<8} {'worker':>7} {'server':>7} "
            f"{'redis':>6} {'stmt':>6} {'deliv.':>6} {'ids ms':>7} {'scan ms':>8} "
            f"{'jobs/cl':>7} {'relay rounds':>13} {'pub/job':>7}"
        )
        for f in drains:
            for backend in BACKENDS:
                b = f[backend]
                rounds = (
                    f"{_g(b['relay_rounds'], '.0f')} ({_g(b['relay_ms_mean'], '.1f')})"
                    if b["relay_rounds"]
                    else "—"
                )
                print(
                    f"  {f['case']:<6} {f['route']:<9} {f['processes']:>2} {backend:<8} "
                    f"{_g(b['worker_cpu_ms'], '.2f'):>7} {_g(b['server_cpu_ms'], '.2f'):>7} "
                    f"{_g(b['redis_cpu_ms'], '.3f'):>6} "
                    f"{_g(b['server_stmt_ms_per_job'], '.2f'):>6} "
                    f"{_g(b['delivered_share'], '.0%'):>6} "
                    f"{_g(b['claim_ids_ms_mean'], '.2f'):>7} "
                    f"{_g(b['claim_jobs_ms_mean'], '.2f'):>8} "
                    f"{_g(b['jobs_per_claim'], '.1f'):>7} {rounds:>13} "
                    f"{_g(b['published_per_job'], '.2f'):>7}"
                )
    latencies = [f for f in table.values() if f["case"] == "latency"]
    if latencies:
        print(
            f"\nenqueue → start latency, idle fleet, {opts.latency_jobs} jobs one at a time: ms, "
            f"medians of {opts.rounds} rounds; × = redis ÷ postgres per round (lower is better)"
        )
        print(
            "  claims/job: claim statements per job (every idle worker a notification wakes "
            "scans under PostgreSQL); stmt: server statement ms per job; redis: share "
            "delivered | enqueue → published p50 | published → started p50 | jobs a scan took"
        )
        print(
            f"{'route':<9} {'P':>2} {'pg p50':>7} {'redis':>6} {'× p50':>19} {'pg p95':>7} "
            f"{'redis':>6} {'× p95':>19}  {'claims/job pg|redis':>19} {'stmt pg|redis':>13}  "
            "redis: deliv. | relay | pickup | scanned"
        )
        for f in latencies:
            p50, p95 = f["p50"], f["p95"]
            pg, rd = f["postgres"], f["redis"]
            hops = rd["hops"]
            relay = _med([h["relay_p50_ms"] for h in hops])
            pickup = _med([h["pickup_p50_ms"] for h in hops])
            scanned = [h["started_before_published"] for h in hops]
            print(
                f"{f['route']:<9} {f['processes']:>2} {_g(p50['postgres'], '.1f'):>7} "
                f"{_g(p50['redis'], '.1f'):>6} {_shown(p50['ratios']):>19} "
                f"{_g(p95['postgres'], '.1f'):>7} {_g(p95['redis'], '.1f'):>6} "
                f"{_shown(p95['ratios']):>19}  "
                f"{_g(pg['claims_per_job'], '.1f') + ' | ' + _g(rd['claims_per_job'], '.1f'):>19} "
                f"{_pair(pg['server_stmt_ms_per_job'], rd['server_stmt_ms_per_job']):>13}  "
                f"{_g(f['redis']['delivered_share'], '.0%')} | "
                f"{_g(relay, '.1f')} | {_g(pickup, '.1f')} | {scanned}"
            )


# -- the command ----------------------------------------------------------------------------------


def _option(text: str) -> tuple[str, Any]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE (e.g. WINDOW=1000), not {text!r}")
    try:
        return key.upper(), json.loads(value)
    except json.JSONDecodeError:
        return key.upper(), value


def _list(
    text: str, known: tuple[str, ...], what: str, parser: argparse.ArgumentParser
) -> list[str]:
    items = [t.strip() for t in text.split(",") if t.strip()]
    unknown = sorted(set(items) - set(known))
    if unknown or not items:
        parser.error(f"unknown {what} {', '.join(unknown)}; choose from {', '.join(known)}")
    return items


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="./dev bench --dispatch", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument(
        "--cases",
        default="drain,latency",
        help=f"a subset of {', '.join(CASES)} (default drain,latency)",
    )
    parser.add_argument("--processes", default="2,8", help="worker processes (default 2,8)")
    parser.add_argument(
        "--routes", default=",".join(ROUTES), help=f"a subset of {', '.join(ROUTES)} (default all)"
    )
    parser.add_argument("--jobs", type=int, default=10_000, help="drain backlog (default 10,000)")
    parser.add_argument(
        "--latency-jobs", type=int, default=100, help="latency: jobs one at a time (default 100)"
    )
    parser.add_argument(
        "--latency-gap",
        type=float,
        default=0.0,
        help="latency: seconds between a job's end and the next enqueue (default 0; over "
        "POLL_INTERVAL, workers with no recent delivery scan at each enqueue under Redis)",
    )
    parser.add_argument("--concurrency", type=int, default=4, help="threads each (default 4)")
    parser.add_argument(
        "--analyze",
        action="store_true",
        help="ANALYZE the job table with each backlog (default: no, as after a sudden burst "
        "of jobs before autovacuum runs; the claim statements' plans depend on it)",
    )
    parser.add_argument(
        "--task",
        default="noop",
        choices=("noop", "atomic_write"),
        help="the jobs' task: noop, or atomic_write (a query in its own transaction, through "
        "the pooler on the pgbouncer route) (default noop)",
    )
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (default 3)")
    parser.add_argument(
        "--pool-size", type=int, default=4, help="the pooler's server connections (default 4)"
    )
    parser.add_argument(
        "--redis-url",
        default=DEFAULT_REDIS_URL,
        help=f"the Redis the workers dispatch through (default {DEFAULT_REDIS_URL})",
    )
    parser.add_argument(
        "--redis-option",
        type=_option,
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="another key of the redis-streams DISPATCH setting (WINDOW, RELAY_INTERVAL, ...), "
        "repeatable",
    )
    parser.add_argument(
        "--profile", metavar="DIR", help="also profile one drain per backend (py-spy) into DIR"
    )
    sess.add_arguments(parser)
    opts = parser.parse_args(argv)
    cases = _list(opts.cases, CASES, "case(s)", parser)
    routes = _list(opts.routes, ROUTES, "route(s)", parser)
    processes = [int(p) for p in opts.processes.split(",") if p.strip()]
    if opts.jobs < 1 or opts.latency_jobs < 2 or opts.rounds < 1 or not processes:
        parser.error("--jobs and --rounds must be at least 1, --latency-jobs at least 2")
    if opts.profile and pyspy.binary() is None:
        parser.error("--profile needs py-spy: pip install py-spy")
    if "pgbouncer" in routes:
        from devsupport.pgbouncer import Bouncer

        reason = Bouncer.unavailable_reason()
        if reason:
            print(f"cannot run the pgbouncer route: {reason} (or pass --routes direct)")
            return 2
    try:
        keys = RedisKeys(opts.redis_url)
    except Exception as exc:  # noqa: BLE001 - any failure to reach Redis ends the run here
        print(f"cannot reach Redis at {opts.redis_url}: {exc} (pass --redis-url)", file=sys.stderr)
        return 2
    atexit.register(keys.clear)
    session = sess.Session(opts, database=DATABASE)
    pooler = None
    if "pgbouncer" in routes:
        from devsupport.pgbouncer import Bouncer

        params = conninfo_to_dict(os.environ.get("DATABASE_URL", sess_default_url()))
        pooler = Bouncer(
            str(params.get("host") or "127.0.0.1"),
            int(params.get("port") or 5432),
            pool_size=opts.pool_size,
        )
        pooler.start()
    session.print_header("dispatch: Redis Streams against PostgreSQL, same run")
    print(f"redis:   {opts.redis_url}, keys under {keys.run}:* (deleted at the end)")
    measure = Measure(opts, session, keys, pooler)
    runs: dict[tuple[str, str, int, str], list[dict[str, Any] | None]] = {}
    failures: dict[str, str] = {}
    profiles: dict[str, Any] = {}
    try:
        for rnd in range(opts.rounds):
            order = BACKENDS if rnd % 2 == 0 else BACKENDS[::-1]
            for route in routes:
                for case in cases:
                    for p in processes:
                        for backend in order:
                            label = f"{case}, {route}, {p} processes, {backend}"
                            print(
                                f"  round {rnd + 1}: {label} (load {bench.loadavg()})",
                                file=sys.stderr,
                                flush=True,
                            )
                            result: dict[str, Any] | None = None
                            try:
                                result = measure.one(case, backend, route, p)
                            except Exception as exc:  # noqa: BLE001 - report it and go on
                                failures[f"round {rnd + 1}: {label}"] = str(exc)
                                print(f"*** {label} FAILED ***\n{exc}", file=sys.stderr)
                            runs.setdefault((case, route, p, backend), []).append(result)
        if opts.profile:
            try:
                profiles = profile(measure, max(processes), Path(opts.profile))
            except Exception as exc:  # noqa: BLE001 - the figures above still stand
                failures["profile"] = str(exc)
                print(f"*** profile FAILED ***\n{exc}", file=sys.stderr)
    finally:
        if pooler is not None:
            pooler.stop()
        bench.truncate()
        keys.clear()
    table = figures(runs)
    print_figures(table, opts)
    for backend in BACKENDS:
        summary = profiles.get(backend)
        if summary is None:
            continue
        pyspy.print_summary(
            f"py-spy, drain under {backend} dispatch, {max(processes)} processes", summary
        )
        print("  statements that took the server's time (pg_stat_statements):")
        for s in summary.get("top_statements", []):
            print(
                f"    {s['total_ms']:8.0f} ms {s['calls']:6} calls {s['mean_ms']:7.2f} ms/call "
                f"{s['rows']:7} rows  {s['query'][:70]}"
            )
    if "plans" in profiles:
        dispatch_plans.print_plans(profiles["plans"])
    for label, detail in failures.items():
        print(f"FAILED {label}: {detail.strip().splitlines()[0][:160]}")
    session.finish(
        opts,
        "dispatch",
        {
            "options": {**vars(opts), "redis_option": dict(opts.redis_option)},
            "redis_prefix": keys.run,
            "figures": table,
            "runs": {"/".join(map(str, k)): v for k, v in runs.items()},
            "profiles": profiles,
            "failures": failures,
        },
    )
    return 1 if failures else 0


def profile(measure: Measure, processes: int, folder: Path) -> dict[str, Any]:
    """One drain per backend, direct, with py-spy on the workers: its summary, the drain's
    figures and the server's top statements."""
    folder.mkdir(parents=True, exist_ok=True)
    out: dict[str, Any] = {}
    for backend in BACKENDS:
        path = folder / f"drain-{backend}-p{processes}.txt"
        print(f"  profile: drain, {processes} processes, {backend}", file=sys.stderr, flush=True)
        run = measure.one("drain", backend, "direct", processes, profile=path)
        summary = pyspy.summarize(path, supervisor=run.get("supervisor_pid"))
        summary["drain"] = {k: run.get(k) for k in ("steady", "from_commit", "cpu")}
        summary["top_statements"] = run.get("top_statements", [])
        out[backend] = summary
        print(f"  wrote {path}", file=sys.stderr)
    print("  profile: the statements' plans", file=sys.stderr, flush=True)
    out["plans"] = dispatch_plans.claim_plans(measure.opts.jobs)
    return out
