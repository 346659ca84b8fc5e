"""The procrastinate app of the comparison: one no-op ``async def`` task (procrastinate runs
those on its event loop; sync tasks would go to threads), and the I/O-bound pair of the ``io``
phase (``io_async`` awaits ``asyncio.sleep``, ``io_sync`` calls ``time.sleep`` and runs in a
thread). ``procrastinate --app=procrastinate_app.app worker`` loads it; BENCH_DSN,
BENCH_POOL_SIZE and BENCH_IO_SECONDS come from ``procrastinate_bench.py``."""

from __future__ import annotations

import asyncio
import os
import time

import procrastinate


def make_app(dsn: str, pool_size: int) -> procrastinate.App:
    # Every one of a worker's concurrent jobs takes a pool connection to fetch and to finish,
    # and the listener holds one: psycopg_pool's default of 4 would make them queue.
    connector = procrastinate.PsycopgConnector(conninfo=dsn, min_size=pool_size, max_size=pool_size)
    app = procrastinate.App(connector=connector)

    @app.task(name="noop")
    async def noop() -> None:
        return None

    io_seconds = float(os.environ.get("BENCH_IO_SECONDS", "0.02"))

    @app.task(name="io_async")
    async def io_async() -> None:
        await asyncio.sleep(io_seconds)

    @app.task(name="io_sync")
    def io_sync() -> None:
        time.sleep(io_seconds)

    return app


app = make_app(os.environ.get("BENCH_DSN", ""), int(os.environ.get("BENCH_POOL_SIZE", "4")))
