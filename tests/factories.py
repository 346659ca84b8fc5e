"""factory-boy factories for the engine's models.

They write rows directly, the way a test sets up state that the engine itself would reach
only through workers (a running job with a token, a worker with an old heartbeat…).
Enqueueing through the public API is what ``test_enqueue`` tests; use these for the rest.
"""

from __future__ import annotations

import datetime as dt
import os
import uuid

import factory
from django.utils import timezone

from django_taskengine.core.attempts import ClaimedJob
from django_taskengine.models import Attempt, AttemptOutcome, Job, JobStatus, Queue, Worker


class QueueFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Queue
        django_get_or_create = ("name",)

    name = factory.Sequence(lambda n: f"queue-{n}")
    paused = False

    class Params:
        #: ``QueueFactory(on_pause=True)``: paused by an operator, with no end time.
        on_pause = factory.Trait(
            paused=True,
            paused_at=factory.LazyFunction(timezone.now),
            paused_by="tests",
            pause_reason="paused by a factory",
        )


class JobFactory(factory.django.DjangoModelFactory):
    """A queued, due job of the test app's ``add`` task."""

    class Meta:
        model = Job

    task_name = "tests.testapp.tasks.add"
    queue = "default"
    args = factory.LazyFunction(lambda: [1, 2])
    kwargs = factory.LazyFunction(dict)
    status = JobStatus.QUEUED
    priority = 0
    run_after = factory.LazyFunction(timezone.now)
    max_attempts = 3
    retry_backoff = 1.0
    created_at = factory.LazyFunction(timezone.now)

    class Params:
        #: ``JobFactory(running=True)``: claimed by a worker, attempt 1, with a fencing token.
        running = factory.Trait(
            status=JobStatus.RUNNING,
            attempts=1,
            started_at=factory.LazyFunction(timezone.now),
            worker_id=factory.LazyFunction(uuid.uuid4),
            token=factory.LazyFunction(uuid.uuid4),
            lease_expires_at=factory.LazyFunction(
                lambda: timezone.now() + dt.timedelta(seconds=30)
            ),
        )
        succeeded = factory.Trait(
            status=JobStatus.SUCCEEDED,
            attempts=1,
            started_at=factory.LazyFunction(timezone.now),
            finished_at=factory.LazyFunction(timezone.now),
            result=3,
        )


class AttemptFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Attempt

    job = factory.SubFactory(JobFactory, succeeded=True)
    number = 1
    worker_id = factory.LazyFunction(uuid.uuid4)
    started_at = factory.LazyFunction(timezone.now)
    finished_at = factory.LazyFunction(timezone.now)
    outcome = AttemptOutcome.SUCCEEDED


class WorkerFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Worker

    id = factory.LazyFunction(uuid.uuid4)
    hostname = "test-host"
    pid = factory.LazyFunction(os.getpid)
    queues = factory.LazyFunction(list)
    concurrency = 1
    started_at = factory.LazyFunction(timezone.now)
    last_heartbeat_at = factory.LazyFunction(timezone.now)


def claimed_job(**fields: object) -> ClaimedJob:
    """A job as a worker holds it for one attempt, made by hand (started now, one attempt of
    one, no uid unless given): ``fields`` override any of these."""
    values: dict[str, object] = {
        "id": 1,
        "task_name": "t",
        "queue": "default",
        "args": [],
        "kwargs": {},
        "attempt": 1,
        "max_attempts": 1,
        "retry_backoff": 1.0,
        "timeout": None,
        "token": uuid.uuid4(),
        "started_at": timezone.now(),
    }
    values.update(fields)
    return ClaimedJob(**values)  # type: ignore[arg-type]
