"""A pause's promise, that no job starts after it returns, against a worker statement that is
starting jobs at the moment it commits (its snapshot taken just before): the pause returns only
once every such statement has committed, and a statement that starts jobs after that sees it.

The statements that start jobs hold the shared start fence for their transaction (the function
taskengine_pauses_in_force takes it); here a connection of the test holds it in their place, so
that the order is certain."""

from __future__ import annotations

import threading
import uuid

import pytest
from django.db import connection, connections

from django_taskengine import operations
from django_taskengine.models import Job, JobStatus, Queue
from django_taskengine.store import WorkerInfo, get_store
from django_taskengine.store.postgres_session import START_FENCE_LOCK_ID, engine_lock_key
from django_taskengine.store.sql import query
from tests.helpers import direct_connection, wait_for
from tests.testapp.tasks import record

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(connection.vendor != "postgresql", reason="PostgreSQL's advisory locks"),
]

FENCE = {"fence": engine_lock_key(START_FENCE_LOCK_ID)}


def _waiting_for_an_advisory_lock() -> bool:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted "
            "AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
        )
        return cursor.fetchone()[0] > 0


def _pause_in_a_thread(pause: object, *args: str) -> threading.Event:
    returned = threading.Event()

    def run() -> None:
        try:
            pause(*args)  # type: ignore[operator]
        finally:
            connections.close_all()
        returned.set()

    threading.Thread(target=run, daemon=True).start()
    return returned


@pytest.mark.parametrize(
    ("pause", "args"),
    [
        (operations.pause_queue, ("default",)),
        (operations.pause_task, (record.name,)),
        (operations.pause_all, ()),
    ],
    ids=["queue", "task", "all"],
)
def test_a_pause_returns_only_once_the_starts_in_flight_have_committed(pause, args):
    with direct_connection() as starting, starting.transaction():
        # What a claim or start statement does first: read the pauses, holding the fence.
        starting.execute("SELECT * FROM taskengine_pauses_in_force(%(fence)s::bigint)", FENCE)
        returned = _pause_in_a_thread(pause, *args)
        wait_for(_waiting_for_an_advisory_lock, message="the pause to wait for the start")
        assert not returned.is_set()
    wait_for(returned.is_set, message="the pause to return once the start committed")


def test_a_claim_that_waits_for_a_pause_in_progress_sees_it():
    # The fence is held as a pause holds it once committed: a claim arriving then waits, and
    # reads the jobs only after the wait, so a pause committed meanwhile is seen. (Claimed in
    # one statement with the pause read at its start, the job would be taken.)
    job = record.enqueue(label="fenced")
    session = get_store().open_session(WorkerInfo(uuid.uuid4(), "test", 1, [], 1))
    claimed: list[object] = []
    try:
        session.register()
        with direct_connection() as pausing, pausing.transaction():
            pausing.execute(query("pause_fence"), FENCE)
            thread = threading.Thread(target=lambda: claimed.extend(session.claim(10)))
            thread.start()
            wait_for(_waiting_for_an_advisory_lock, message="the claim to wait for the pause")
            Queue.objects.update_or_create(name="default", defaults={"paused": True})
        thread.join(timeout=30)
        assert not thread.is_alive()
        assert claimed == []
        assert Job.objects.get(pk=job.pk).status == JobStatus.QUEUED
    finally:
        session.unregister()
        session.close()
