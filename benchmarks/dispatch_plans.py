"""The statements of the two dispatch backends, timed against a backlog half drained:
``EXPLAIN (ANALYZE, BUFFERS)`` of ``claim_ids`` (a claim of delivered ids), ``claim_jobs`` (a
scan) and ``relay_candidates`` (a relay round), each under the generic plan a worker's
prepared statement uses (``plan_settings``), in rolled-back transactions (``benchmarks/dispatch.py
--profile``).

The backlog is left as a drain leaves it: the first half of the jobs succeeded (their entries
still in the claim index until vacuum). The table's statistics are those of a quiet queue (100
finished jobs, analyzed) that a burst of jobs then filled before autovacuum came, and then those
of the backlog (analyzed again): both shown.
"""

from __future__ import annotations

import re
from typing import Any

from benchmarks import run as bench

#: (label, how many delivered ids, how far behind the head of the queue they start): a claim
#: that gets all it has room for, and one that gets fewer (its reader had fewer ready).
CLAIM_IDS_CASES = (
    ("claim_ids, 100 delivered, limit 100", 100, 0),
    ("claim_ids, 30 delivered, limit 100", 30, 0),
    ("claim_ids, 30 delivered 400 back, limit 100", 30, 400),
)
LIMIT = 100
#: The finished jobs of the quiet queue whose statistics the burst finds.
QUIET = 100


def _prepare(conn: Any, name: str, text: str) -> list[str]:
    """PREPARE ``text`` (psycopg's named placeholders made positional) as ``name``; the
    parameter names in order."""
    names: list[str] = []

    def placeholder(match: re.Match[str]) -> str:
        if match.group(1) not in names:
            names.append(match.group(1))
        return f"${names.index(match.group(1)) + 1}"

    body = re.sub(r"%\((\w+)\)s", placeholder, text)
    conn.execute(f"PREPARE {name} AS {body}")
    return names


def _explain(conn: Any, name: str, names: list[str], params: dict[str, Any]) -> dict[str, Any]:
    from psycopg import sql

    statement = sql.SQL("EXPLAIN (ANALYZE, BUFFERS) EXECUTE {}({})").format(
        sql.Identifier(name), sql.SQL(", ").join(sql.Literal(params[n]) for n in names)
    )
    with conn.transaction(force_rollback=True):
        plan = [row[0] for row in conn.execute(statement)]
    took = next(float(line.split()[2]) for line in plan if line.startswith("Execution Time"))
    scans = [
        line.strip(" ->").split("  (")[0]
        for line in plan
        if "Scan" in line and "taskengine_job" in line
    ]
    buffers = next((line.strip() for line in plan if line.strip().startswith("Buffers")), "")
    return {"ms": took, "scans": scans, "buffers": buffers, "plan": plan}


def claim_plans(jobs: int) -> dict[str, Any]:
    """The statements' plans and times on a backlog of ``jobs`` no-op jobs, half succeeded;
    before and after ANALYZE. Empties the tables before and after."""
    import psycopg

    from django_taskengine.conf import taskengine_settings
    from django_taskengine.store.sql import query

    finish = (
        "UPDATE taskengine_job SET status = 'succeeded', token = gen_random_uuid(), "
        "attempts = 1, started_at = now(), finished_at = now() WHERE id <= %s"
    )
    bench.truncate()
    bench.bulk_enqueue_noops(QUIET)
    bench.execute(finish, [QUIET])
    bench.execute("ANALYZE taskengine_job")
    bench.bulk_enqueue_noops(jobs)
    params = bench.claim_statement_params(taskengine_settings.ADVISORY_LOCK_NAMESPACE, LIMIT)
    out: dict[str, Any] = {"jobs": jobs, "stats": {}}
    with psycopg.connect(**bench.db_params(), autocommit=True) as conn:
        conn.execute(finish, [QUIET + jobs // 2])
        queued = [
            row[0]
            for row in conn.execute(
                "SELECT id FROM taskengine_job WHERE status = 'queued' ORDER BY id"
            )
        ]
        conn.execute(query("plan_settings"))
        statements = {
            name: _prepare(conn, name, query(name))
            for name in ("claim_ids", "claim_jobs", "relay_candidates")
        }
        relay = {
            "fence": params["fence"],
            "window": 500,
            "all_queues": True,
            "queues": [],
            "flow_tasks": [],
        }
        for stats in ("analyzed while quiet, before the burst", "analyzed with the backlog"):
            if stats == "analyzed with the backlog":
                conn.execute("ANALYZE taskengine_job")
            timed: dict[str, Any] = {}
            for label, count, back in CLAIM_IDS_CASES:
                ids = queued[back : back + count]
                timed[label] = _explain(
                    conn, "claim_ids", statements["claim_ids"], params | {"ids": ids}
                )
            timed["claim_jobs, from the head, limit 100"] = _explain(
                conn, "claim_jobs", statements["claim_jobs"], params
            )
            timed["relay_candidates, window 500"] = _explain(
                conn, "relay_candidates", statements["relay_candidates"], relay
            )
            out["stats"][stats] = timed
    bench.truncate()
    return out


def print_plans(plans: dict[str, Any]) -> None:
    print(
        f"\nstatements on {plans['jobs']:,} jobs, the first half succeeded (EXPLAIN ANALYZE, "
        "generic plans as the workers' prepared statements, rolled back):"
    )
    for stats, timed in plans["stats"].items():
        print(f"  table {stats}:")
        for label, t in timed.items():
            scan = t["scans"][0] if t["scans"] else "?"
            print(f"    {t['ms']:8.2f} ms  {label:<44} {scan}; {t['buffers']}")
