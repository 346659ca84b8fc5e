"""The decision for waiting jobs (``.using(after=…)``) in a PostgreSQL worker, after each write
of outcomes: the statements take and return arrays, so that a fan-out of thousands is decided
in a few statements, where the ORM's lists of ids would be re-parsed per element. The rule is
the core's (django_taskengine/core/dependencies.py), as in :mod:`.orm_dependencies`."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import psycopg
from django.utils import timezone

from ..conf import taskengine_settings
from ..core.dependencies import BATCH_CALLBACKS, Required, Waiting, decide_all
from ..core.statuses import ACTIVE_STATUSES
from .sql import query

#: Waiting jobs decided per statement: the first steps of a fan-out of thousands are due (and
#: their workers woken, at that statement's commit) while the next ones are decided.
DECIDE_CHUNK = 500


def decide_ready(conn: psycopg.Connection[Any], waiting: list[int]) -> int:
    """Of ``waiting`` (jobs that wait for jobs a committed write finished), decide for those
    with none left unfinished; then for those that wait for the jobs it cancels, in turn. How
    many were decided. On the worker's own connection, in autocommit: each statement stands
    alone, and the decision's write is one statement that writes only jobs still waiting."""
    decided = 0
    todo = dict.fromkeys(sorted(waiting))
    while todo:
        chunk = list(todo)[:DECIDE_CHUNK]
        for job_id in chunk:
            del todo[job_id]
        count, following = _decide_chunk(conn, chunk)
        decided += count
        # What waits for the jobs it cancelled is decided after.
        todo.update(dict.fromkeys(following))
    return decided


def _decide_chunk(conn: psycopg.Connection[Any], waiting: list[int]) -> tuple[int, list[int]]:
    """Decide for ``waiting`` (at most DECIDE_CHUNK jobs): how many were decided, and the jobs
    that wait for those it cancelled."""
    rows = conn.execute(
        query("waiting_jobs"),
        {"ids": waiting, "callbacks": list(BATCH_CALLBACKS), "active": list(ACTIVE_STATUSES)},
    ).fetchall()
    if not rows:
        return 0, []
    decisions = decide_all([_waiting(row) for row in rows], timezone.now())
    writes: list[tuple[int, str, dt.datetime | None, str | None, str | None]] = [
        (job_id, "run", due, None, None if counts is None else json.dumps(counts))
        for job_id, (due, counts) in decisions.run.items()
    ]
    writes += [(job_id, "cancel", None, e, None) for job_id, e in decisions.cancel.items()]
    writes += [(job_id, "end", None, None, None) for job_id in decisions.ended]
    if not writes:
        return 0, []
    columns = ("ids", "actions", "dues", "errors", "batches")
    params: dict[str, Any] = dict(zip(columns, map(list, zip(*writes, strict=True)), strict=True))
    params["channel"] = taskengine_settings.NOTIFY_CHANNEL
    row = conn.execute(query("decide_waiting_jobs"), params).fetchone()
    return len(decisions.run) + len(decisions.cancel), list(row[0] or ()) if row else []


def _waiting(row: tuple[Any, ...]) -> Waiting:
    job_id, status, queue, batch_id, after_ids, statuses, policies, run_after = row
    required = [
        Required(after, status_now or None, policy)
        for after, status_now, policy in zip(after_ids, statuses, policies, strict=True)
    ]
    return Waiting(job_id, status, queue, required, run_after=run_after, batch_id=batch_id)
