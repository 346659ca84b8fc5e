"""A job table as a busy day leaves it, for the admin page timings (``admin_pages.py``): set-based
SQL (``INSERT ... SELECT generate_series``), a million jobs in well under two minutes.

The mix, by share of ``jobs`` (the newest ids are the newest jobs, one day of them):

- succeeded ~93 %, one attempt row each (5 % took two: a failed attempt first);
- failed 3 %, three failed attempts each, with errors of a few exception classes whose messages
  carry ids (e-mail addresses, order ids, SKUs, URLs), and a traceback;
- queued: the newest 2 % due now (the backlog), 0.5 % scheduled up to a week ahead;
- cancelled 1 %, paused 0.2 %;
- running: ``RUNNING`` jobs (300 at a million) held by the live workers, half reporting
  progress; 8 live workers with fresh heartbeats, 40 stopped ones;
- one failed job with 20 attempts (:data:`MANY_ATTEMPTS`).

Five task types in five queues (e-mails, payments, inventory, reports, webhooks), with
arguments an operator would search for: ``customer<N>@example.com``, ``ORD-<8 digits>``,
``SKU-<N>``, webhook URLs. The queue ``reports`` is paused.
"""

from __future__ import annotations

import sys
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from benchmarks import run as bench

#: (task name, queue, priority) by ``g % 10`` of the series: what kind of job row ``g`` is.
KINDS = [
    ("shop.tasks.send_receipt", "emails", 0),
    ("shop.tasks.send_receipt", "emails", 0),
    ("shop.tasks.send_receipt", "emails", 0),
    ("payments.tasks.charge_card", "payments", 10),
    ("payments.tasks.charge_card", "payments", 10),
    ("inventory.tasks.sync_sku", "default", 0),
    ("inventory.tasks.sync_sku", "default", -5),
    ("reports.tasks.build_report", "reports", 0),
    ("webhooks.tasks.deliver", "webhooks", 5),
    ("webhooks.tasks.deliver", "webhooks", 5),
]
QUEUES = sorted({queue for _, queue, _ in KINDS})
PAUSED_QUEUE = "reports"
LIVE_WORKERS = 8
STOPPED_WORKERS = 40
#: Attempts of the one failed job that was retried many times (its page lists them all).
MANY_ATTEMPTS = 20


@dataclass
class Scene:
    """What the fill made that the timings look up: ids of particular jobs, search terms."""

    jobs: int
    seconds: float = 0.0
    counts: dict[str, int] = field(default_factory=dict)
    running_job: int = 0
    many_attempts_job: int = 0
    live_worker: str = ""
    search: dict[str, str] = field(default_factory=dict)


def _case(expr: str, values: list[str]) -> str:
    """``CASE expr WHEN 0 THEN values[0] ... END``."""
    whens = " ".join(f"WHEN {i} THEN {v}" for i, v in enumerate(values))
    return f"CASE {expr} {whens} END"


def _lit(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


ORDER = "'ORD-' || lpad(s.g::text, 8, '0')"
EMAIL = "'customer' || s.g || '@example.com'"
ERRORS = [
    "format('smtplib.SMTPRecipientsRefused: {''%s'': (550, b''5.1.1 mailbox unavailable'')}', "
    + EMAIL
    + ")",
    "CASE WHEN s.r3 < 0.5 THEN 'payments.errors.CardDeclined: card declined for order ' || "
    + ORDER
    + " || ' (code 51)' ELSE 'TimeoutError: payment gateway did not answer within 30 s' END",
    "format('KeyError: ''SKU-%s''', s.g % 5000)",
    "'django.db.utils.OperationalError: canceling statement due to statement timeout'",
    "format('requests.exceptions.ConnectionError: HTTPSConnectionPool(host=''hooks.example.com'', "
    "port=443): Max retries exceeded with url: /hooks/%s', s.g % 300)",
]
ARGS = [
    "'[]'::jsonb",
    f"jsonb_build_array({ORDER})",
    "jsonb_build_array('SKU-' || (s.g % 5000))",
    "'[]'::jsonb",
    "jsonb_build_array('https://hooks.example.com/hooks/' || (s.g % 300))",
]
KWARGS = [
    f"jsonb_build_object('email', {EMAIL}, 'order_id', {ORDER}, 'template', 'receipt')",
    "jsonb_build_object('amount_cents', 100 + s.g % 50000, 'currency', 'EUR')",
    "jsonb_build_object('warehouse', CASE WHEN s.g % 2 = 0 THEN 'ams-1' ELSE 'fra-2' END)",
    "jsonb_build_object('account_id', s.g % 2000, 'month', '2026-11', 'format', 'pdf')",
    "jsonb_build_object('event_id', 'evt_' || substr(md5(s.g::text), 1, 16), 'attempt_limit', 5)",
]
#: Which of ERRORS/ARGS/KWARGS a kind (g % 10) uses.
FAMILY = [0, 0, 0, 1, 1, 2, 2, 3, 4, 4]


def _family(column: list[str]) -> str:
    return _case("s.g % 10", [column[f] for f in FAMILY])


def fill(jobs: int) -> Scene:
    """Empty the engine's tables and fill them as described above; VACUUM ANALYZE."""
    scene = Scene(jobs)
    started = time.perf_counter()
    bench.truncate()
    live = [uuid.uuid4() for _ in range(LIVE_WORKERS)]
    stopped = [uuid.uuid4() for _ in range(STOPPED_WORKERS)]
    _fill_queues_and_workers(live, stopped)
    running = max(1, min(300, jobs * 3 // 10_000))
    due = jobs * 2 // 100
    scheduled = jobs * 5 // 1000
    _fill_jobs(jobs, running, due, scheduled / max(jobs - due - running, 1), live, live + stopped)
    bench.execute("SELECT setval(pg_get_serial_sequence('taskengine_job', 'id'), %s)", [jobs])
    scene.many_attempts_job = _one_with_many_attempts()
    _fill_attempts()
    print("  VACUUM ANALYZE ...", flush=True)
    for table in ("taskengine_job", "taskengine_attempt", "taskengine_worker", "taskengine_queue"):
        bench.execute(f"VACUUM ANALYZE {table}")
    scene.seconds = time.perf_counter() - started
    scene.counts = dict(
        bench.query("SELECT status, count(*) FROM taskengine_job GROUP BY status ORDER BY 1")
    )
    scene.counts["attempts"] = bench.query("SELECT count(*) FROM taskengine_attempt")[0][0]
    scene.running_job = bench.query(
        "SELECT id FROM taskengine_job WHERE status = 'running' AND progress_total IS NOT NULL "
        "ORDER BY id LIMIT 1"
    )[0][0]
    scene.live_worker = str(live[0])
    scene.search = _search_terms(jobs)
    return scene


def scene_of_existing(jobs: int) -> Scene:
    """The scene of jobs an earlier :func:`fill` left (``--no-fill``)."""
    scene = Scene(jobs)
    scene.counts = dict(
        bench.query("SELECT status, count(*) FROM taskengine_job GROUP BY status ORDER BY 1")
    )
    scene.counts["attempts"] = bench.query("SELECT count(*) FROM taskengine_attempt")[0][0]
    if not scene.counts.get("running"):
        raise SystemExit("--no-fill: no running job in the database; fill it first")
    scene.running_job = bench.query(
        "SELECT id FROM taskengine_job WHERE status = 'running' AND progress_total IS NOT NULL "
        "ORDER BY id LIMIT 1"
    )[0][0]
    scene.many_attempts_job = bench.query(
        "SELECT id FROM taskengine_job WHERE status = 'failed' AND attempts = %s LIMIT 1",
        [MANY_ATTEMPTS],
    )[0][0]
    scene.live_worker = str(
        bench.query("SELECT id FROM taskengine_worker WHERE stopped_at IS NULL LIMIT 1")[0][0]
    )
    scene.search = _search_terms(bench.query("SELECT max(id) FROM taskengine_job")[0][0])
    return scene


def refresh_heartbeats() -> None:
    """The live workers beat again (a timing run outlasts the staleness threshold)."""
    bench.execute("UPDATE taskengine_worker SET last_heartbeat_at = now() WHERE stopped_at IS NULL")


def _fill_queues_and_workers(live: list[uuid.UUID], stopped: list[uuid.UUID]) -> None:
    """Through the ORM (a few rows): columns added later get their model defaults."""
    import datetime as dt

    from django.utils import timezone

    from django_taskengine.models import Queue, Worker

    now = timezone.now()
    hour = dt.timedelta(hours=1)
    Queue.objects.bulk_create(
        Queue(
            name=name,
            paused=name == PAUSED_QUEUE,
            paused_at=now - 2 * hour if name == PAUSED_QUEUE else None,
            paused_by="alice" if name == PAUSED_QUEUE else "",
            pause_reason="month-end reports moved to Friday" if name == PAUSED_QUEUE else "",
            created_at=now - 720 * hour,
            concurrency=20 if name == "payments" else None,
            rate_limit="50/s" if name == "webhooks" else "",
        )
        for name in QUEUES
    )
    workers = []
    for i, wid in enumerate(live + stopped):
        alive = i < len(live)
        workers.append(
            Worker(
                id=wid,
                hostname=f"worker-{i % 4 + 1}.prod.example.com",
                pid=1000 + i,
                queues=[] if i % 2 else ["emails", "webhooks"],
                concurrency=8,
                started_at=now - (30 if alive else 70 - i) * hour,
                last_heartbeat_at=now if alive else now - (69 - i) * hour,
                stopped_at=None if alive else now - (69 - i) * hour,
                jobs_succeeded=100_000 + 997 * i,
                jobs_failed=3_000 + 31 * i,
            )
        )
    Worker.objects.bulk_create(workers)


def _fill_jobs(
    jobs: int,
    running: int,
    due: int,
    scheduled_share: float,
    live: list[uuid.UUID],
    everyone: list[uuid.UUID],
) -> None:
    """The job rows: one INSERT ... SELECT over generate_series, every column set."""
    n = jobs
    status = (
        f"CASE WHEN g > {n - due} THEN 'queued' WHEN g > {n - due - running} THEN 'running' "
        f"WHEN r < {scheduled_share} THEN 'queued' WHEN r < {scheduled_share + 0.03} THEN 'failed' "
        f"WHEN r < {scheduled_share + 0.04} THEN 'cancelled' "
        f"WHEN r < {scheduled_share + 0.042} THEN 'paused' ELSE 'succeeded' END"
    )
    inner = (
        f"SELECT g, r, r2, r3, {status} AS status, "
        f"now() - interval '24 hours' * (({n} - g)::float8 / {n}) AS created_at "
        f"FROM (SELECT g, random() AS r, random() AS r2, random() AS r3 "
        f"FROM generate_series(1, {n}) g) x"
    )
    live_ids = "ARRAY[" + ", ".join(_lit(str(w)) for w in live) + "]::uuid[]"
    all_ids = "ARRAY[" + ", ".join(_lit(str(w)) for w in everyone) + "]::uuid[]"
    started = (
        "CASE WHEN s.status = 'queued' OR (s.status = 'cancelled' AND s.g % 2 = 0) THEN NULL "
        "WHEN s.status = 'running' THEN now() - s.r2 * interval '10 minutes' "
        "ELSE s.created_at + s.r2 * interval '2 seconds' END"
    )
    duration = (
        "CASE WHEN s.g % 10 = 7 THEN interval '90 seconds' ELSE interval '1 second' END "
        "* (0.05 + 2 * s.r3)"
    )
    error = _family(ERRORS)
    columns: dict[str, str] = {
        "task_name": _case("s.g % 10", [_lit(t) for t, _, _ in KINDS]),
        "queue": _case("s.g % 10", [_lit(q) for _, q, _ in KINDS]),
        "args": _family(ARGS),
        "kwargs": _family(KWARGS),
        "status": "s.status",
        "priority": _case("s.g % 10", [str(p) for _, _, p in KINDS]),
        "run_after": f"CASE WHEN s.status = 'queued' AND s.g <= {n - due} "
        "THEN now() + s.r2 * interval '7 days' ELSE s.created_at END",
        "dedup_key": "NULL",
        "dedup_mode": "'skip'",
        "attempts": "CASE s.status WHEN 'queued' THEN 0 WHEN 'failed' THEN 3 "
        "WHEN 'cancelled' THEN (s.g % 2) WHEN 'succeeded' THEN 1 + (s.r3 < 0.05)::int ELSE 1 END",
        "max_attempts": "3",
        "retry_backoff": "1.0",
        "timeout": "CASE WHEN s.g % 10 = 7 THEN 600 END",
        "result": "CASE s.status WHEN 'succeeded' THEN "
        + _family(
            [
                "jsonb_build_object('sent', true)",
                "jsonb_build_object('charge', 'ch_' || substr(md5(s.g::text), 1, 20))",
                "jsonb_build_object('updated', s.g % 40)",
                "jsonb_build_object('pages', 12 + s.g % 30)",
                "jsonb_build_object('status', 200)",
            ]
        )
        + " END",
        "error": f"CASE WHEN s.status = 'failed' THEN {error} ELSE '' END",
        "traceback": "CASE WHEN s.status = 'failed' THEN 'Traceback (most recent call last):' "
        "|| chr(10) || '  File \"/app/tasks.py\", line 42, in run' || chr(10) "
        f"|| '    return handler(*args, **kwargs)' || chr(10) || {error} ELSE '' END",
        "created_at": "s.created_at",
        "started_at": started,
        "finished_at": "CASE WHEN s.status IN ('succeeded', 'failed', 'cancelled') "
        f"THEN s.created_at + s.r2 * interval '2 seconds' + {duration} END",
        "worker_id": f"CASE s.status WHEN 'queued' THEN NULL WHEN 'running' THEN "
        f"({live_ids})[1 + s.g % {len(live)}] ELSE ({all_ids})[1 + s.g % {len(everyone)}] END",
        "token": "CASE WHEN s.status = 'running' THEN gen_random_uuid() END",
        "lease_expires_at": "NULL",
        "checkpoint": "CASE WHEN s.status = 'running' AND s.g % 2 = 0 "
        "THEN jsonb_build_object('next', (s.r * 240)::int) END",
        "waits": "'[]'::jsonb",
        "notify_finish": "false",
        "blocked": "false",
        "workflow_id": "NULL",
        "step": "NULL",
        "waiting_for": "NULL",
        "progress_current": "CASE WHEN s.status = 'running' AND s.g % 2 = 0 "
        "THEN (s.r3 * 240)::bigint END",
        "progress_total": "CASE WHEN s.status = 'running' AND s.g % 2 = 0 THEN 240 END",
        "stop_requested": "''",
        "uid": "gen_random_uuid()",
        "group_key": "NULL",
        "sequence_key": "NULL",
        "flow_key": "NULL",
    }
    have = [
        r[0]
        for r in bench.query(
            "SELECT attname FROM pg_attribute WHERE attrelid = 'taskengine_job'::regclass "
            "AND attnum > 0 AND NOT attisdropped AND attname <> 'id' ORDER BY attnum"
        )
    ]
    # Columns added after this was written are copied from a job made through the ORM.
    from django_taskengine.models import Job

    proto = Job.objects.create(task_name="prototype", id=jobs + 1)
    print(f"  inserting {jobs:,} jobs ...", flush=True)
    bench.execute("SELECT setseed(0.15)")
    bench.execute(
        f"INSERT INTO taskengine_job (id, {', '.join(have)}) "
        f"SELECT s.g, {', '.join(columns.get(c, 'p.' + c) for c in have)} "
        f"FROM ({inner}) s CROSS JOIN taskengine_job p WHERE p.id = {int(proto.pk)}"
    )
    Job.objects.filter(pk=proto.pk).delete()


def _one_with_many_attempts() -> int:
    """A failed payment job becomes one retried MANY_ATTEMPTS times."""
    job_id = bench.query(
        "SELECT id FROM taskengine_job WHERE status = 'failed' AND queue = 'payments' "
        "ORDER BY id DESC LIMIT 1"
    )[0][0]
    bench.execute(
        "UPDATE taskengine_job SET attempts = %s, max_attempts = %s WHERE id = %s",
        [MANY_ATTEMPTS, MANY_ATTEMPTS, job_id],
    )
    return int(job_id)


def _fill_attempts() -> None:
    """An attempt row per attempt of every job at rest (a running attempt has none yet): the
    earlier ones failed, the last one ended as the job did."""
    print("  inserting attempts ...", flush=True)
    bench.execute(
        "INSERT INTO taskengine_attempt (job_id, number, worker_id, started_at, finished_at, "
        "outcome, error, traceback) "
        "SELECT j.id, a.n, j.worker_id, "
        "j.started_at - (j.attempts - a.n) * interval '45 seconds', "
        "coalesce(j.finished_at, j.started_at + interval '1 second') "
        "  - (j.attempts - a.n) * interval '45 seconds', "
        "CASE WHEN a.n < j.attempts THEN 'failed' WHEN j.status = 'paused' THEN 'paused' "
        "ELSE j.status END, "
        "CASE WHEN a.n < j.attempts OR j.status = 'failed' THEN coalesce(nullif(j.error, ''), "
        "'ConnectionResetError: [Errno 104] Connection reset by peer') ELSE '' END, "
        "CASE WHEN a.n < j.attempts OR j.status = 'failed' THEN coalesce(nullif(j.traceback, ''), "
        "'Traceback (most recent call last):' || chr(10) || "
        "'ConnectionResetError: [Errno 104] Connection reset by peer') ELSE '' END "
        "FROM taskengine_job j CROSS JOIN LATERAL generate_series(1, j.attempts) a(n) "
        "WHERE j.status IN ('succeeded', 'failed', 'cancelled', 'paused')"
    )


def _search_terms(jobs: int) -> dict[str, str]:
    """Terms an operator types, each matching known rows: an id, an argument value (an e-mail
    address, an order id), words of error messages."""
    middle = (jobs // 2) // 10 * 10  # g % 10 == 0: a receipt e-mail job
    failed_payment = bench.query(
        "SELECT id FROM taskengine_job WHERE status = 'failed' AND queue = 'payments' "
        "AND error LIKE 'payments.errors.CardDeclined%%' ORDER BY id LIMIT 1"
    )
    order = f"ORD-{failed_payment[0][0]:08d}" if failed_payment else f"ORD-{middle + 3:08d}"
    return {
        "id": str(middle + 1),
        "email": f"customer{middle}@example.com",
        "order id": order,
        "error word": "CardDeclined",
        "error phrase": "mailbox unavailable",
    }


def describe(scene: Scene) -> dict[str, Any]:
    return {
        "jobs": scene.jobs,
        "fill_seconds": round(scene.seconds, 1),
        "counts": scene.counts,
        "running_job": scene.running_job,
        "many_attempts_job": scene.many_attempts_job,
        "live_worker": scene.live_worker,
        "search": scene.search,
    }


#: Share of the jobs in each queue (KINDS), and a job's typical run time there (seconds).
QUEUE_SHARE = {"emails": 0.3, "payments": 0.2, "default": 0.2, "reports": 0.1, "webhooks": 0.2}
RUN_SECONDS = {"emails": 1.0, "payments": 1.0, "default": 1.0, "reports": 90.0, "webhooks": 1.0}
MEAN_RUN_SECONDS = sum(RUN_SECONDS[q] * share for q, share in QUEUE_SHARE.items())
#: How the waits spread over the histogram's buckets (bucket: share): mostly 64 ms to 1 s.
WAIT_SPREAD = {6: 0.05, 7: 0.15, 8: 0.3, 9: 0.3, 10: 0.15, 11: 0.04, 12: 0.01}


def minute_stats_model() -> Any:
    """The charts' per-minute roll-up model (migration 0029_console_stats), None without it."""
    from django.apps import apps

    try:
        return apps.get_model("django_taskengine", "MinuteStats")
    except LookupError:
        return None


def fill_minute_stats(jobs_per_day: int, minutes: int = 1440) -> int:
    """Replace the charts' roll-up with what ``jobs_per_day`` jobs, spread over the queues with
    a day's rise and fall, leave over the last ``minutes`` minutes: one row per queue and minute
    (and one per minute for all queues together, where the roll-up has those).
    Returns the rows written (0 without the roll-up table)."""
    import math

    model = minute_stats_model()
    if model is None:
        return 0
    fields = {f.name for f in model._meta.get_fields()}
    # The rows that sum every queue, when the roll-up keeps them (one key per minute).
    everyone = getattr(sys.modules[model.__module__], "ALL_QUEUES", None)
    model.objects.all().delete()
    now_minute = int(time.time() // 60)
    rows = []
    for offset in range(minutes):
        minute = now_minute - offset
        # Busier by day than by night: 0.4 to 1.6 times the mean, one cycle a day.
        shape = 1.0 + 0.6 * math.sin(2 * math.pi * (minute % 1440) / 1440)
        shares = list(QUEUE_SHARE.items())
        if everyone is not None:
            shares.append((everyone, 1.0))
        for queue, share in shares:
            finished = round(jobs_per_day * share / 1440 * shape)
            seconds = RUN_SECONDS.get(queue, MEAN_RUN_SECONDS)
            values: dict[str, Any] = {
                "queue": queue,
                "minute": minute,
                "succeeded": finished - finished * 3 // 100,
                "failed": finished * 3 // 100,
                "retried": finished * 2 // 100,
                "running_seconds": finished * seconds,
            }
            for bucket, part in WAIT_SPREAD.items():
                values[f"wait_{bucket}"] = round(finished * part)
            rows.append(model(**{k: v for k, v in values.items() if k in fields}))
    model.objects.bulk_create(rows, batch_size=2000)
    bench.execute(f"VACUUM ANALYZE {model._meta.db_table}")
    return len(rows)
