"""``job.wait()`` on PostgreSQL: told when the job finishes instead of polling.

The waiter opens a connection of its own (autocommit, closed when the wait ends), LISTENs on
:data:`FINISHED_CHANNEL`, then marks the job (``notify_finish``, statement watch_finish): the
worker that writes the end of the job's attempt reads the mark with the row it locks and sends
the job's id at its commit (write_outcomes, finish_atomic). A job the mark finds claimable wakes
the workers again: the mark's lock may have made a claim pass it by. Marked before the waiter's
first look at the job, so an end written in between is seen by that look or told. A connection
that fails leaves the waiter polling: being told is a speed-up, never what the wait depends on.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg

from ..conf import taskengine_settings
from ..finish_waiters import Wake
from .postgres_notices import FINISHED_CHANNEL, own_connection_params
from .sql import query

logger = logging.getLogger("django_taskengine.wait")


class PostgresFinishWatch:
    """A :data:`~django_taskengine.finish_waiters.Watch` for one database alias."""

    def __init__(self, alias: str) -> None:
        self.alias = alias

    @contextmanager
    def __call__(self, job_id: int) -> Iterator[Wake | None]:
        try:
            conn = self._connect()
        except psycopg.Error as exc:
            logger.debug("job.wait(%s): polling, no listening connection: %s", job_id, exc)
            yield None
            return
        with conn:
            try:
                watched = (
                    conn.execute(
                        query("watch_finish"),
                        {"id": job_id, "channel": taskengine_settings.NOTIFY_CHANNEL},
                    ).fetchone()
                    is not None
                )
            except psycopg.Error as exc:
                logger.debug("job.wait(%s): polling, the job could not be marked: %s", job_id, exc)
                watched = False
            yield _waker(conn, job_id) if watched else None

    def _connect(self) -> psycopg.Connection[Any]:
        conn: psycopg.Connection[Any] = psycopg.connect(**own_connection_params(self.alias))
        try:
            conn.execute(
                psycopg.sql.SQL(query("listen")).format(
                    channel=psycopg.sql.Identifier(FINISHED_CHANNEL)
                )
            )
        except BaseException:
            conn.close()
            raise
        return conn


def _waker(conn: psycopg.Connection[Any], job_id: int) -> Wake:
    wanted = str(job_id)

    def wake(seconds: float) -> None:
        """Until ``job_id`` is told of, or ``seconds`` have passed (or the connection fails)."""
        if conn.closed:
            time.sleep(seconds)  # the connection failed: the waiter polls
            return
        try:
            for notice in conn.notifies(timeout=seconds):
                if wanted in notice.payload.split(","):
                    return
        except psycopg.Error as exc:
            logger.debug("job.wait(%s): polling, the listening connection failed: %s", job_id, exc)
            conn.close()

    return wake
