"""What the attempt table's foreign key costs the completion statement (``write_outcomes``).

    python benchmarks/attempt_fk.py [--finished 1000000] [--batch 100] [--batches 40]
                                    [--rounds 3] [--database-url]

On a private cluster (``benchmarks/cluster.py``; ``--database-url``: ``DATABASE_URL``): the
tables are filled with ``--finished`` succeeded jobs and one attempt each, analyzed and
vacuumed; then, in interleaved rounds with the constraint and without it (dropped, and added
back ``NOT VALID`` for the next round), ``--batches`` batches of ``--batch`` running jobs are
finished by the completion statement the workers send, each its own transaction:

- in half the batches as the workers run it (the check deferred to the commit), timed from the
  client: statement + commit, and the WAL each batch wrote;
- in the other half under ``EXPLAIN (ANALYZE, BUFFERS)`` with the constraint made immediate,
  which reports the trigger's own time and calls (rolled back).

Each batch leaves dead rows behind, so the statement slows from round to round: compare the
two cases within a round. Results and the decision they led to: the documentation's performance
page, ``docs/explanation/benchmarks.md`` ("The attempt table's foreign key is kept").
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import statistics
import sys
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ["DJANGO_SETTINGS_MODULE"] = "benchmarks.settings"

FILL_JOBS = """
INSERT INTO taskengine_job (task_name, queue, args, kwargs, status, priority, run_after,
    attempts, max_attempts, retry_backoff, result, error, traceback, created_at, started_at,
    finished_at, stop_requested, uid)
SELECT 'noop', 'default', '[]', '{}', 'succeeded', 0, now(), 1, 3, 1.0, 'null', '', '',
    now(), now(), now(), '', gen_random_uuid()
FROM generate_series(1, %s)
"""
FILL_ATTEMPTS = """
INSERT INTO taskengine_attempt (job_id, number, worker_id, started_at, finished_at, outcome,
    error, traceback)
SELECT id, 1, gen_random_uuid(), now(), now(), 'succeeded', '', '' FROM taskengine_job
"""
RUNNING = """
INSERT INTO taskengine_job (task_name, queue, args, kwargs, status, priority, run_after,
    attempts, max_attempts, retry_backoff, error, traceback, created_at, started_at,
    stop_requested, uid, worker_id, token)
SELECT 'noop', 'default', '[]', '{}', 'running', 0, now(), 1, 3, 1.0, '', '', now(), now(), '',
    gen_random_uuid(), %s, gen_random_uuid()
FROM generate_series(1, %s)
RETURNING id, token
"""
FK_NAME = """
SELECT conname FROM pg_constraint
WHERE conrelid = 'taskengine_attempt'::regclass AND contype = 'f'
"""
ADD_FK = """
ALTER TABLE taskengine_attempt ADD CONSTRAINT {name} FOREIGN KEY (job_id)
REFERENCES taskengine_job (id) DEFERRABLE INITIALLY DEFERRED NOT VALID
"""


def params(rows: list[tuple[int, uuid.UUID]], worker: uuid.UUID) -> dict[str, Any]:
    n = len(rows)
    at = dt.datetime.now(dt.UTC)
    return {
        "ids": [r[0] for r in rows],
        "tokens": [r[1] for r in rows],
        "statuses": ["succeeded"] * n,
        "outcomes": ["succeeded"] * n,
        "results": ["null"] * n,
        "errors": [""] * n,
        "tracebacks": [""] * n,
        "due_in": [None] * n,
        "refunds": [False] * n,
        "numbers": [1] * n,
        "started": [at] * n,
        "finished": [at] * n,
        "terminal": [True] * n,
        "workers": [],
        "stops": [""] * n,
        "stops_after": [""] * n,
        "worker": worker,
        "ns": 0,
        "unlock": [],
    }


def trigger_time(plan: Any) -> tuple[float, int]:
    """The foreign key trigger's time (ms) and calls in an EXPLAIN ANALYZE JSON plan."""
    for trigger in plan[0].get("Triggers", []):
        if trigger.get("Constraint Name", "").startswith("taskengine_attempt_job_id"):
            return float(trigger["Time"]), int(trigger["Calls"])
    return 0.0, 0


def run_round(conn: Any, sql: str, worker: uuid.UUID, batch: int, batches: int) -> dict:
    timed, wal, trig, explained = [], [], [], []
    for i in range(batches):
        rows = conn.execute(RUNNING, [worker, batch]).fetchall()
        conn.commit()
        if i % 2 == 0:
            lsn = conn.execute("SELECT pg_current_wal_insert_lsn()").fetchone()[0]
            conn.commit()
            started = time.perf_counter()
            conn.execute(sql, params(rows, worker))
            conn.commit()
            timed.append((time.perf_counter() - started) * 1000)
            wal.append(
                conn.execute(
                    "SELECT pg_wal_lsn_diff(pg_current_wal_insert_lsn(), %s)", [lsn]
                ).fetchone()[0]
            )
            conn.commit()
        else:
            conn.execute("SET CONSTRAINTS ALL IMMEDIATE")
            plan = conn.execute(
                "EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) " + sql, params(rows, worker)
            ).fetchone()[0]
            conn.rollback()
            ms, calls = trigger_time(plan)
            trig.append((ms, calls))
            explained.append(float(plan[0]["Execution Time"]))
    return {
        "statement+commit ms (median)": statistics.median(timed),
        "WAL bytes per batch (median)": statistics.median(float(w) for w in wal),
        "EXPLAIN execution ms (median)": statistics.median(explained),
        "FK trigger ms (median)": statistics.median(t[0] for t in trig),
        "FK trigger calls (median)": statistics.median(t[1] for t in trig),
    }


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--finished", type=int, default=1_000_000)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--batches", type=int, default=40)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--database-url", action="store_true")
    args = parser.parse_args(argv)
    if not args.database_url:
        from benchmarks.cluster import start_private_cluster

        start_private_cluster()
    from benchmarks import run as bench

    bench.setup_django(force=False)
    bench.truncate()
    import psycopg

    from django_taskengine.store.sql import query

    sql = query("write_outcomes")
    url = os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/taskengine_bench")
    with psycopg.connect(url) as conn:
        conn.execute(FILL_JOBS, [args.finished])
        conn.execute(FILL_ATTEMPTS)
        conn.commit()
        conn.autocommit = True
        conn.execute("VACUUM ANALYZE taskengine_job")
        conn.execute("VACUUM ANALYZE taskengine_attempt")
        conn.autocommit = False
        name = conn.execute(FK_NAME).fetchone()[0]
        conn.commit()
        worker = uuid.uuid4()
        results: dict[str, list[dict]] = {"with FK": [], "without FK": []}
        print(f"load at start {os.getloadavg()}", file=sys.stderr)
        for r in range(args.rounds):
            for case in ("with FK", "without FK"):
                has = conn.execute(FK_NAME).fetchone() is not None
                if case == "with FK" and not has:
                    conn.execute(ADD_FK.format(name=name))
                if case == "without FK" and has:
                    conn.execute(f"ALTER TABLE taskengine_attempt DROP CONSTRAINT {name}")
                conn.commit()
                got = run_round(conn, sql, worker, args.batch, args.batches)
                got["load"] = os.getloadavg()[0]
                results[case].append(got)
                print(f"round {r + 1} {case}: {json.dumps(got)}", file=sys.stderr)
    print(f"\n{args.finished:,} finished jobs + attempts; batches of {args.batch}:")
    for case, rounds in results.items():
        keys = [k for k in rounds[0] if k != "load"]
        medians = {k: statistics.median(r[k] for r in rounds) for k in keys}
        loads = [round(r["load"], 2) for r in rounds]
        print(f"  {case}: {json.dumps(medians)} (loads {loads})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
