"""The benchmark workload through procrastinate's public API and its own worker.

Run with the comparison venv's python (``benchmarks/.venvs/peers``), by ``run.py --compare``::

    python procrastinate_bench.py --dsn postgresql://.../taskengine_bench_procrastinate PHASE ...

Phases (each prints one ``RESULT {json}`` line):

- ``enqueue``  a fresh database (``procrastinate schema --apply``); N ``await
  noop.defer_async()`` one after the other on the app's psycopg pool, then 10 ×
  ``noop.batch_defer_async`` of 1,000 jobs.
- ``drain``    a fresh database; N jobs deferred in batches of 1,000, then P ``procrastinate
  worker --concurrency C --one-shot`` processes (an ``async def`` task: the concurrency its
  docs recommend for I/O-bound work), timed from their start until every one has exited. The
  events table gives the steady-state span (first ``started`` to last ``succeeded``).
- ``latency``  a fresh database; one idle ``procrastinate worker --concurrency C``; N jobs
  deferred one at a time, each waited for; enqueue→start is the ``started`` event's time minus
  the ``deferred`` one's (both database ``now()``), as ours is ``started_at - created_at``.

- ``io``       a fresh database; N jobs of ``io_async`` or ``io_sync`` (``--kind``) drained by P
  worker processes with ``--concurrency C``, each started as ``io-worker``: what ``procrastinate
  worker --one-shot`` runs (``App.run_worker_async(wait=False)``), after giving the event loop's
  default executor, where procrastinate runs sync tasks, as many threads as the concurrency (it
  has min(32, CPUs + 4) otherwise). Timed as ``drain``.

The app and its tasks are in ``procrastinate_app.py``.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import os
import sys
import time
from pathlib import Path
from typing import Any

import procrastinate

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from common import Proc, RssSampler, emit, fresh_database, percentiles, run_drain  # noqa: E402
from procrastinate_app import make_app  # noqa: E402

app: procrastinate.App


def noop_task() -> Any:
    return app.tasks["noop"]


async def _install() -> None:
    async with app.open_async():
        await app.schema_manager.apply_schema_async()


async def _bulk(count: int, batch: int = 1000, task: str = "noop") -> None:
    left = count
    while left > 0:
        n = min(batch, left)
        await app.tasks[task].batch_defer_async(*([{}] * n))
        left -= n


async def phase_enqueue(opts: argparse.Namespace) -> dict[str, Any]:
    fresh_database(opts.dsn)
    await _install()
    async with app.open_async():
        for _ in range(20):  # warm up: the pool's connections, the statements
            await noop_task().defer_async()
        start = time.perf_counter()
        for _ in range(opts.jobs):
            await noop_task().defer_async()
        single = time.perf_counter() - start
        await _bulk(10)
        start = time.perf_counter()
        await _bulk(opts.bulk_jobs, opts.bulk_batch)
        bulk = time.perf_counter() - start
    return {
        "enqueue_single": opts.jobs / single,
        "single_jobs": opts.jobs,
        "single_seconds": single,
        "enqueue_bulk": opts.bulk_jobs / bulk,
        "bulk_jobs": opts.bulk_jobs,
        "bulk_batch": opts.bulk_batch,
        "bulk_seconds": bulk,
        "api": "await noop_task().defer_async() (psycopg pool); bulk: batch_defer_async",
    }


def _worker_cmd(opts: argparse.Namespace, one_shot: bool) -> list[str]:
    cmd = [
        str(Path(sys.executable).with_name("procrastinate")),
        "--app=procrastinate_app.app",
        "--log-level=warning",
        "worker",
        f"--concurrency={opts.concurrency}",
    ]
    return cmd + (["--one-shot"] if one_shot else [])


def _env(opts: argparse.Namespace) -> dict[str, str]:
    env = dict(os.environ)
    env["BENCH_DSN"] = opts.dsn
    env["BENCH_POOL_SIZE"] = str(opts.pool_size)
    env["PYTHONPATH"] = str(HERE)
    return env


async def _counts() -> tuple[int, int, Any]:
    async with app.open_async():
        async with app.connector.pool.connection() as conn:  # type: ignore[attr-defined]
            cur = await conn.execute(
                "SELECT count(*), count(*) FILTER (WHERE status = 'succeeded'), "
                "(SELECT extract(epoch FROM max(at) FILTER (WHERE type = 'succeeded') "
                "        - min(at) FILTER (WHERE type = 'started')) FROM procrastinate_events) "
                "FROM procrastinate_jobs"
            )
            return await cur.fetchone()


def phase_drain(opts: argparse.Namespace) -> dict[str, Any]:
    async def prepare() -> None:
        fresh_database(opts.dsn)
        await _install()
        async with app.open_async():
            await _bulk(opts.jobs)

    asyncio.run(prepare())
    result = run_drain(
        [_worker_cmd(opts, one_shot=True)] * opts.processes,
        _env(opts),
        timeout=max(300.0, opts.jobs / 20),
        cwd=str(HERE),
    )
    total, ok, span = asyncio.run(_counts())
    if total != opts.jobs or ok != opts.jobs:
        raise SystemExit(
            f"procrastinate drain: {ok} of {total} jobs succeeded, expected {opts.jobs}"
        )
    result.update(
        drain=opts.jobs / result["wall_seconds"],
        jobs=opts.jobs,
        processes=opts.processes,
        concurrency=opts.concurrency,
        steady_seconds=float(span),
        drain_steady=opts.jobs / float(span),
        config=f"{opts.processes} × procrastinate worker --concurrency {opts.concurrency}",
    )
    return result


def phase_io(opts: argparse.Namespace) -> dict[str, Any]:
    task = f"io_{opts.kind}"

    async def prepare() -> None:
        fresh_database(opts.dsn)
        await _install()
        async with app.open_async():
            await _bulk(opts.jobs, task=task)

    asyncio.run(prepare())
    env = _env(opts)
    env["BENCH_IO_SECONDS"] = str(opts.seconds)
    worker = [
        sys.executable,
        str(HERE / "procrastinate_bench.py"),
        "--dsn",
        opts.dsn,
        "io-worker",
        "--concurrency",
        str(opts.concurrency),
    ]
    result = run_drain(
        [worker] * opts.processes,
        env,
        timeout=max(300.0, opts.jobs * opts.seconds / opts.concurrency * 20),
        cwd=str(HERE),
    )
    total, ok, span = asyncio.run(_counts())
    if total != opts.jobs or ok != opts.jobs:
        raise SystemExit(f"procrastinate io: {ok} of {total} jobs succeeded, expected {opts.jobs}")
    result.update(
        drain=opts.jobs / result["wall_seconds"],
        jobs=opts.jobs,
        processes=opts.processes,
        concurrency=opts.concurrency,
        kind=opts.kind,
        steady_seconds=float(span),
        drain_steady=opts.jobs / float(span),
        config=f"{opts.processes} × procrastinate worker --concurrency {opts.concurrency}"
        + (f", {opts.concurrency} executor threads" if opts.kind == "sync" else ""),
    )
    return result


async def io_worker(opts: argparse.Namespace) -> None:
    asyncio.get_running_loop().set_default_executor(
        concurrent.futures.ThreadPoolExecutor(max_workers=opts.concurrency)
    )
    async with app.open_async():
        await app.run_worker_async(concurrency=opts.concurrency, wait=False)


def phase_latency(opts: argparse.Namespace) -> dict[str, Any]:
    asyncio.run(_fresh())
    worker = Proc(_worker_cmd(opts, one_shot=False), env=_env(opts), cwd=str(HERE))
    sampler = RssSampler(worker.proc.pid)
    try:
        latencies = asyncio.run(_latencies(opts, worker))
        sampler.sample()
        if worker.proc.poll() is not None:
            raise SystemExit(f"procrastinate worker exited early\n{worker.output()}")
        worker.terminate()
    finally:
        peaks = sampler.stop()
        worker.close()
    return {
        "latency": percentiles(latencies),
        "worker_peak_rss_mb": max(peaks.values()),
        "config": f"1 × procrastinate worker --concurrency {opts.concurrency}, idle",
    }


async def _fresh() -> None:
    fresh_database(os.environ["BENCH_DSN"])
    await _install()


async def _latencies(opts: argparse.Namespace, worker: Proc) -> list[float]:
    async with app.open_async():
        async with app.connector.pool.connection() as conn:  # type: ignore[attr-defined]
            await conn.set_autocommit(True)

            async def one() -> float:
                job_id = await noop_task().defer_async()
                deadline = time.monotonic() + 10
                while True:
                    cur = await conn.execute(
                        "SELECT extract(epoch FROM max(at) FILTER (WHERE type = 'started') "
                        "  - max(at) FILTER (WHERE type = 'deferred')) * 1000, "
                        "  bool_or(type = 'succeeded') "
                        "FROM procrastinate_events WHERE job_id = %s",
                        [job_id],
                    )
                    ms, done = await cur.fetchone()
                    if done:
                        return float(ms)
                    if time.monotonic() > deadline or worker.proc.poll() is not None:
                        raise SystemExit(
                            f"procrastinate job {job_id} did not finish\n{worker.output()}"
                        )
                    await asyncio.sleep(0.001)

            for _ in range(5):  # the worker is up and listening once these ran
                await one()
            await asyncio.sleep(0.5)
            return [await one() for _ in range(opts.jobs)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dsn", required=True)
    sub = parser.add_subparsers(dest="phase", required=True)
    p = sub.add_parser("enqueue")
    p.add_argument("--jobs", type=int, default=2000)
    p.add_argument("--bulk-jobs", type=int, default=10_000)
    p.add_argument("--bulk-batch", type=int, default=1000)
    p = sub.add_parser("drain")
    p.add_argument("--jobs", type=int, default=10_000)
    p.add_argument("--processes", type=int, default=2)
    p.add_argument("--concurrency", type=int, default=10)
    p.add_argument("--pool-size", type=int, help="connections per worker (default concurrency + 2)")
    p = sub.add_parser("latency")
    p.add_argument("--jobs", type=int, default=200)
    p.add_argument("--concurrency", type=int, default=10)
    p.add_argument("--pool-size", type=int, help="connections per worker (default concurrency + 2)")
    p = sub.add_parser("io")
    p.add_argument("--jobs", type=int, default=10_000)
    p.add_argument("--processes", type=int, default=2)
    p.add_argument("--concurrency", type=int, default=5, help="jobs at once per process")
    p.add_argument("--kind", choices=["async", "sync"], default="async")
    p.add_argument("--seconds", type=float, default=0.02, help="each job's wait")
    p.add_argument("--pool-size", type=int, help="connections per worker (default concurrency + 2)")
    p = sub.add_parser("io-worker", help="one worker process of the io phase")
    p.add_argument("--concurrency", type=int, default=5)
    p.add_argument("--pool-size", type=int, help="connections per worker (default concurrency + 2)")
    opts = parser.parse_args()
    os.environ["BENCH_DSN"] = opts.dsn
    if getattr(opts, "pool_size", None) is None:
        opts.pool_size = getattr(opts, "concurrency", 1) + 2
    global app
    app = make_app(opts.dsn, opts.pool_size)
    if opts.phase == "io-worker":
        asyncio.run(io_worker(opts))
        return
    if opts.phase == "enqueue":
        result = asyncio.run(phase_enqueue(opts))
    elif opts.phase == "drain":
        result = phase_drain(opts)
    elif opts.phase == "io":
        result = phase_io(opts)
    else:
        result = phase_latency(opts)
    result["version"] = procrastinate.__version__
    emit(result)


if __name__ == "__main__":
    main()
