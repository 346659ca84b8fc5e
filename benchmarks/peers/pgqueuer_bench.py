"""The benchmark workload through pgqueuer's public API and its own worker (``pgq run``).

Run with the comparison venv's python (``benchmarks/.venvs/peers``), by ``run.py --compare``::

    python pgqueuer_bench.py --dsn postgresql://.../taskengine_bench_pgqueuer PHASE [options]

Phases (each prints one ``RESULT {json}`` line):

- ``enqueue``  a fresh database; N single ``Queries.enqueue("noop", None)`` awaited one after
  the other, then 10 × ``Queries.enqueue`` of 1,000 jobs (its list form, one statement).
- ``drain``    a fresh database; N jobs enqueued in lists of 1,000, then P worker processes,
  each ``pgqueuer.run(factory, batch_size=B, mode=drain)`` (what ``pgq run`` calls; asyncpg
  and uvloop, pgqueuer's defaults when installed), timed from their start until every one has
  exited. The log table gives the steady-state span (first ``picked`` to last ``successful``).
- ``latency``  a fresh database; one idle worker (continuous mode); N jobs enqueued one at a time,
  each waited for; enqueue→start is the ``picked`` log row's time minus the ``queued`` one's
  (both database ``now()``), as ours is ``started_at - created_at``.

- ``io``       a fresh database; N jobs of an I/O-bound entrypoint (``--kind async``: ``await
  asyncio.sleep(S)``; ``--kind sync``: ``time.sleep(S)`` through ``asyncio.to_thread``, the way
  pgqueuer's docs give for blocking code, on a default executor of as many threads as the
  worker's concurrency) drained by P worker processes, each with ``max_concurrent_tasks`` C
  and ``batch_size`` C // 2; timed as ``drain``.

- ``worker``   one worker process, as above (``pgq run pgqueuer_bench:create_manager``).
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import os
import sys
import time
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import asyncpg
from pgqueuer import AsyncpgDriver, Job, Queries, QueueManager

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from common import Proc, RssSampler, emit, fresh_database, percentiles, run_drain, uvloop_run  # noqa: E402

ENTRYPOINT = "noop"
#: The I/O-bound entrypoints of the ``io`` phase, by ``--kind``.
IO_ENTRYPOINTS = {"async": "io_async", "sync": "io_sync"}


@asynccontextmanager
async def create_manager() -> Any:
    """``pgq run`` factory: a QueueManager on one asyncpg connection with a no-op entrypoint."""
    threads = int(os.environ.get("BENCH_THREADS", "0"))
    if threads:
        # asyncio.to_thread runs on the loop's default executor: min(32, CPUs + 4) threads
        # unless it is given as many as the jobs that may run at once.
        asyncio.get_running_loop().set_default_executor(
            concurrent.futures.ThreadPoolExecutor(max_workers=threads)
        )
    io_seconds = float(os.environ.get("BENCH_IO_SECONDS", "0.02"))
    connection = await asyncpg.connect(os.environ["BENCH_DSN"])
    try:
        manager = QueueManager(Queries(AsyncpgDriver(connection)))

        @manager.entrypoint(ENTRYPOINT)
        async def noop(job: Job) -> None:
            return None

        @manager.entrypoint(IO_ENTRYPOINTS["async"])
        async def io_async(job: Job) -> None:
            await asyncio.sleep(io_seconds)

        @manager.entrypoint(IO_ENTRYPOINTS["sync"])
        async def io_sync(job: Job) -> None:
            await asyncio.to_thread(time.sleep, io_seconds)

        yield manager
    finally:
        await connection.close()


async def _install(dsn: str) -> None:
    fresh_database(dsn)
    connection = await asyncpg.connect(dsn)
    try:
        await Queries(AsyncpgDriver(connection)).install()
    finally:
        await connection.close()


async def _bulk(
    queries: Queries, count: int, batch: int = 1000, entrypoint: str = ENTRYPOINT
) -> None:
    left = count
    while left > 0:
        n = min(batch, left)
        await queries.enqueue([entrypoint] * n, [None] * n, [0] * n)
        left -= n


async def phase_enqueue(opts: argparse.Namespace) -> dict[str, Any]:
    await _install(opts.dsn)
    connection = await asyncpg.connect(opts.dsn)
    try:
        queries = Queries(AsyncpgDriver(connection))
        for _ in range(20):  # warm up
            await queries.enqueue(ENTRYPOINT, None)
        start = time.perf_counter()
        for _ in range(opts.jobs):
            await queries.enqueue(ENTRYPOINT, None)
        single = time.perf_counter() - start
        await _bulk(queries, 10)  # warm up the list form
        start = time.perf_counter()
        await _bulk(queries, opts.bulk_jobs, opts.bulk_batch)
        bulk = time.perf_counter() - start
    finally:
        await connection.close()
    return {
        "enqueue_single": opts.jobs / single,
        "single_jobs": opts.jobs,
        "single_seconds": single,
        "enqueue_bulk": opts.bulk_jobs / bulk,
        "bulk_jobs": opts.bulk_jobs,
        "bulk_batch": opts.bulk_batch,
        "bulk_seconds": bulk,
        "api": "await Queries.enqueue(...) (asyncpg); bulk: its list form",
    }


def _worker_cmd(opts: argparse.Namespace, mode: str, max_concurrent_tasks: int = 0) -> list[str]:
    # `pgq run pgqueuer_bench:create_manager --batch-size B --mode M` does exactly this, but its
    # option parsing fails with the typer release that pip resolves today ("'str' object has no
    # attribute 'name'" for --log-level), so the worker phase calls pgqueuer.run, the function
    # `pgq run` calls, with the same arguments.
    return [
        sys.executable,
        str(HERE / "pgqueuer_bench.py"),
        "--dsn",
        opts.dsn,
        "worker",
        "--batch-size",
        str(opts.batch_size),
        "--mode",
        mode,
        "--max-concurrent-tasks",
        str(max_concurrent_tasks),
    ]


def phase_worker(opts: argparse.Namespace) -> None:
    import pgqueuer
    from pgqueuer.types import QueueExecutionMode

    uvloop_run(
        pgqueuer.run(
            create_manager,
            batch_size=opts.batch_size,
            mode=QueueExecutionMode[opts.mode],
            max_concurrent_tasks=opts.max_concurrent_tasks or None,
        )
    )


def _env(opts: argparse.Namespace) -> dict[str, str]:
    env = dict(os.environ)
    env["BENCH_DSN"] = opts.dsn
    env["PYTHONPATH"] = str(HERE)
    return env


async def _counts(dsn: str) -> tuple[int, int, Any]:
    connection = await asyncpg.connect(dsn)
    try:
        left = await connection.fetchval("SELECT count(*) FROM pgqueuer")
        row = await connection.fetchrow(
            "SELECT count(*) FILTER (WHERE status = 'successful') AS ok, "
            "extract(epoch FROM max(created) FILTER (WHERE status = 'successful') "
            "  - min(created) FILTER (WHERE status = 'picked')) AS span "
            "FROM pgqueuer_log"
        )
        return left, row["ok"], row["span"]
    finally:
        await connection.close()


def phase_drain(opts: argparse.Namespace) -> dict[str, Any]:
    async def prepare() -> None:
        await _install(opts.dsn)
        connection = await asyncpg.connect(opts.dsn)
        try:
            await _bulk(Queries(AsyncpgDriver(connection)), opts.jobs)
        finally:
            await connection.close()

    uvloop_run(prepare())
    result = run_drain(
        [_worker_cmd(opts, "drain")] * opts.processes,
        _env(opts),
        timeout=max(120.0, opts.jobs / 50),
        cwd=str(HERE),
    )
    left, ok, span = uvloop_run(_counts(opts.dsn))
    if left or ok != opts.jobs:
        raise SystemExit(
            f"pgqueuer drain: {left} jobs left in the queue, {ok} successful of {opts.jobs}"
        )
    result.update(
        drain=opts.jobs / result["wall_seconds"],
        jobs=opts.jobs,
        processes=opts.processes,
        batch_size=opts.batch_size,
        steady_seconds=float(span),
        drain_steady=opts.jobs / float(span),
        config=(
            f"{opts.processes} × pgqueuer worker, batch_size {opts.batch_size} (asyncpg, uvloop)"
        ),
    )
    return result


def phase_io(opts: argparse.Namespace) -> dict[str, Any]:
    entrypoint = IO_ENTRYPOINTS[opts.kind]

    async def prepare() -> None:
        await _install(opts.dsn)
        connection = await asyncpg.connect(opts.dsn)
        try:
            await _bulk(Queries(AsyncpgDriver(connection)), opts.jobs, entrypoint=entrypoint)
        finally:
            await connection.close()

    uvloop_run(prepare())
    opts.batch_size = max(1, opts.concurrency // 2)
    env = _env(opts)
    env["BENCH_IO_SECONDS"] = str(opts.seconds)
    env["BENCH_THREADS"] = str(opts.concurrency if opts.kind == "sync" else 0)
    result = run_drain(
        [_worker_cmd(opts, "drain", opts.concurrency)] * opts.processes,
        env,
        timeout=max(120.0, opts.jobs * opts.seconds / opts.concurrency * 20),
        cwd=str(HERE),
    )
    left, ok, span = uvloop_run(_counts(opts.dsn))
    if left or ok != opts.jobs:
        raise SystemExit(
            f"pgqueuer io: {left} jobs left in the queue, {ok} successful of {opts.jobs}"
        )
    result.update(
        drain=opts.jobs / result["wall_seconds"],
        jobs=opts.jobs,
        processes=opts.processes,
        concurrency=opts.concurrency,
        kind=opts.kind,
        steady_seconds=float(span),
        drain_steady=opts.jobs / float(span),
        config=(
            f"{opts.processes} × pgqueuer worker, max_concurrent_tasks {opts.concurrency}, "
            f"batch_size {opts.batch_size}"
            + (f", {opts.concurrency} executor threads" if opts.kind == "sync" else "")
        ),
    )
    return result


def phase_latency(opts: argparse.Namespace) -> dict[str, Any]:
    uvloop_run(_install(opts.dsn))
    worker = Proc(_worker_cmd(opts, "continuous"), env=_env(opts), cwd=str(HERE))
    sampler = RssSampler(worker.proc.pid)
    try:
        latencies = uvloop_run(_latencies(opts, worker))
        sampler.sample()
        if worker.proc.poll() is not None:
            raise SystemExit(f"pgq run exited early\n{worker.output()}")
        worker.terminate()
    finally:
        peaks = sampler.stop()
        worker.close()
    return {
        "latency": percentiles(latencies),
        "worker_peak_rss_mb": max(peaks.values()),
        "config": f"1 × pgqueuer worker, batch_size {opts.batch_size}, idle",
    }


async def _latencies(opts: argparse.Namespace, worker: Proc) -> list[float]:
    connection = await asyncpg.connect(opts.dsn)
    try:
        queries = Queries(AsyncpgDriver(connection))

        async def one() -> float:
            (job_id,) = await queries.enqueue(ENTRYPOINT, None)
            deadline = time.monotonic() + 10
            while True:
                row = await connection.fetchrow(
                    "SELECT extract(epoch FROM max(created) FILTER (WHERE status = 'picked') "
                    "  - max(created) FILTER (WHERE status = 'queued')) * 1000 AS ms, "
                    "  bool_or(status = 'successful') AS done "
                    "FROM pgqueuer_log WHERE job_id = $1",
                    job_id,
                )
                if row["done"]:
                    return float(row["ms"])
                if time.monotonic() > deadline or worker.proc.poll() is not None:
                    raise SystemExit(f"pgqueuer job {job_id} did not finish\n{worker.output()}")
                await asyncio.sleep(0.001)

        for _ in range(5):  # the worker is up and listening once these ran
            await one()
        await asyncio.sleep(0.5)
        return [await one() for _ in range(opts.jobs)]
    finally:
        await connection.close()


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
    p.add_argument("--batch-size", type=int, default=100)
    p = sub.add_parser("latency")
    p.add_argument("--jobs", type=int, default=200)
    p.add_argument("--batch-size", type=int, default=100)
    p = sub.add_parser("io")
    p.add_argument("--jobs", type=int, default=10_000)
    p.add_argument("--processes", type=int, default=2)
    p.add_argument("--concurrency", type=int, default=5, help="jobs at once per process")
    p.add_argument("--kind", choices=sorted(IO_ENTRYPOINTS), default="async")
    p.add_argument("--seconds", type=float, default=0.02, help="each job's wait")
    p = sub.add_parser("worker", help="one worker process (what `pgq run` starts)")
    p.add_argument("--batch-size", type=int, default=100)
    p.add_argument("--mode", choices=["continuous", "drain"], default="continuous")
    p.add_argument("--max-concurrent-tasks", type=int, default=0, help="0: unlimited")
    opts = parser.parse_args()
    if opts.phase == "worker":
        os.environ["BENCH_DSN"] = opts.dsn
        phase_worker(opts)
        return
    if opts.phase == "enqueue":
        result = uvloop_run(phase_enqueue(opts))
    elif opts.phase == "drain":
        result = phase_drain(opts)
    elif opts.phase == "io":
        result = phase_io(opts)
    else:
        result = phase_latency(opts)
    import pgqueuer

    result["version"] = pgqueuer.__version__
    emit(result)


if __name__ == "__main__":
    main()
