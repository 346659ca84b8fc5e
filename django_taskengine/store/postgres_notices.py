"""What PostgreSQL connections tell one another besides the claims: the end of a job a
``job.wait()`` watches (:data:`FINISHED_CHANNEL`, see postgres_waiter.py), and events
(``send_event``, ``ctx.wait_for_event``: see django_taskengine/events.py); and the parameters
of the engine's own connections."""

from __future__ import annotations

from typing import Any

import psycopg
from django.db import connections
from psycopg.conninfo import conninfo_to_dict

from ..conf import taskengine_settings
from .sql import query

#: The channel on which the end of a job a job.wait() watches is told (write_outcomes,
#: finish_atomic: the job ids, comma separated); see postgres_waiter.py.
FINISHED_CHANNEL = "taskengine_finished"


def own_connection_params(alias: str) -> dict[str, Any]:
    """psycopg.connect() parameters for a connection of the engine's own to Django's database
    ``alias``: autocommit, not pooled, psycopg's own adapters (Django's context leaves jsonb
    undecoded). For the engine's database, ``DIRECT_DATABASE_URL`` (when set) says where:
    session features (advisory locks, LISTEN, prepared statements) need a server session of
    their own, which a transaction-mode pooler does not keep."""
    params = dict(connections[alias].get_connection_params())
    for django_only in ("cursor_factory", "pool", "context"):
        params.pop(django_only, None)
    direct = taskengine_settings.DIRECT_DATABASE_URL
    if direct and alias == taskengine_settings.DATABASE:
        params.update(conninfo_to_dict(direct))
    params["autocommit"] = True
    return params


def send_event(cursor: Any, name: str, payload_json: str) -> tuple[int, list[str]]:
    """Send an event on ``cursor`` (Django's, in the caller's transaction): under the event's
    lock (event_lock), kept, and the jobs parked waiting for it made due. Its id, and the
    queues of the jobs made due."""
    cursor.execute(
        query("event_lock"), {"ns": taskengine_settings.ADVISORY_LOCK_NAMESPACE, "names": [name]}
    )
    cursor.execute(query("send_event"), {"name": name, "payload": payload_json})
    event_id, queues = cursor.fetchone()
    return int(event_id), list(queues or ())


def wake_if_sent(conn: psycopg.Connection[Any], ns: int, parked: list[tuple[int, str]]) -> None:
    """Jobs just parked waiting for events (see :func:`.base.parked_jobs`): those whose event
    was sent meanwhile are made due, under the events' locks (see event_lock), and idle
    workers woken for them."""
    if not parked:
        return
    with conn.transaction():
        names = sorted({name for _, name in parked})
        conn.execute(query("event_lock"), {"ns": ns, "names": names})
        rows = conn.execute(
            query("wake_if_sent"), {"ids": [job_id for job_id, _ in parked]}
        ).fetchall()
        if rows:
            conn.execute(
                query("notify_queues"),
                {
                    "channel": taskengine_settings.NOTIFY_CHANNEL,
                    "queues": sorted({row[0] for row in rows}),
                },
            )
