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

from django_taskengine.store import WorkerInfo, get_store
from tests.factories import JobFactory

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif("connection.vendor != 'postgresql'"),
]


class Deliveries:
    """Delivers the ids it was given once; records what the claim acknowledged or kept."""

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
