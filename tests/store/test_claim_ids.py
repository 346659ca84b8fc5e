"""PostgreSQL claims of the ids a dispatch backend delivers (Redis Streams dispatch): what
becomes of deliveries whose claim fails. (What such a claim may take: the store contract, store
"postgres-ids".)"""

from __future__ import annotations

import os
import uuid
from types import SimpleNamespace
from typing import Any

import psycopg
import pytest
from django.db import connection

from django_taskengine.conf import taskengine_settings
from django_taskengine.store import WorkerInfo, get_store
from django_taskengine.store.sql import query
from tests.factories import JobFactory
from tests.helpers import direct_connection

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif("connection.vendor != 'postgresql'"),
]


class Deliveries:
    """Delivers the ids it was given once, and again those held or kept; records what the
    claim acknowledged."""

    def __init__(self, ids: list[int]) -> None:
        self.ready = [SimpleNamespace(job_id=job_id) for job_id in ids]
        self.acknowledged: list[int] = []

    def take(self, limit: int) -> list[Any]:
        taken, self.ready = self.ready[:limit], self.ready[limit:]
        return taken

    def done(self, deliveries: list[Any]) -> None:
        self.acknowledged += [d.job_id for d in deliveries]

    def keep(self, deliveries: list[Any]) -> None:
        self.ready[:0] = deliveries

    def held(self, deliveries: list[Any]) -> None:
        self.ready += deliveries

    def should_scan(self) -> bool:
        return False


def test_deliveries_whose_claim_fails_are_neither_acknowledged_nor_dropped():
    jobs = JobFactory.create_batch(3)
    info = WorkerInfo(uuid.uuid4(), "test-host", os.getpid(), [], 1)
    deliveries = Deliveries([job.pk for job in jobs])
    session = get_store().open_session(info)
    session.deliveries = deliveries
    session.register()
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_terminate_backend(%s)", [session.conn.info.backend_pid])
    with pytest.raises(psycopg.OperationalError):
        session.claim(10)
    session.close()
    assert deliveries.acknowledged == []
    assert [d.job_id for d in deliveries.ready] == [job.pk for job in jobs]

    again = get_store().open_session(info)
    again.deliveries = deliveries
    try:
        again.register()
        again.relock([])
        assert sorted(job.id for job in again.claim(10)) == sorted(job.pk for job in jobs)
    finally:
        again.close()
    assert sorted(deliveries.acknowledged) == sorted(job.pk for job in jobs)


def test_a_delivered_job_whose_row_is_locked_is_held_for_the_next_claim():
    """A claim that meets a job's row locked by another transaction (here a job.wait()'s
    mark, not yet committed) passes it by; its delivery is used up, so the job is held for the
    next claim, which takes it once the lock is gone. A job that is not claimable is not
    held."""
    locked, cancelled = JobFactory.create_batch(2)
    cancelled.status = "cancelled"
    cancelled.save()
    info = WorkerInfo(uuid.uuid4(), "test-host", os.getpid(), [], 1)
    deliveries = Deliveries([locked.pk, cancelled.pk])
    session = get_store().open_session(info)
    session.deliveries = deliveries
    mark = direct_connection()
    mark.autocommit = False
    try:
        session.register()
        params = {"id": locked.pk, "channel": taskengine_settings.NOTIFY_CHANNEL}
        assert mark.execute(query("watch_finish"), params).fetchone() is not None
        assert session.claim(10) == []
        assert sorted(deliveries.acknowledged) == sorted([locked.pk, cancelled.pk])
        assert [d.job_id for d in deliveries.ready] == [locked.pk]
        assert session.claim(10) == []  # locked still: held again
        mark.commit()
        assert [job.id for job in session.claim(10)] == [locked.pk]
        assert deliveries.ready == []
    finally:
        mark.close()
        session.close()
