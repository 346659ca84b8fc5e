"""Tasks written with Django's own ``@task`` (``django.tasks``; on Django 5.2 the django-tasks
backport), run by the engine through ``TaskEngineBackend``: see tests/test_backend.py.

Imported by this app's tasks.py, as a project's tasks would be, so worker processes know them.
The engine's options are given with ``engine_options``, which every Django takes (6.0's
``@task`` refuses them as keywords; tests/integration/test_backend.py checks that form).
With ``TASKENGINE_TEST_DJANGO_SIGNALS=1`` in the environment, receivers of Django's task
signals write a ledger row for each signal.
"""

from __future__ import annotations

import asyncio
import json
import os
import time

try:
    from django.tasks import task
    from django.tasks.signals import task_enqueued, task_finished, task_started
except ImportError:
    from django_tasks import task
    from django_tasks.signals import task_enqueued, task_finished, task_started

from django_taskengine.backends import engine_options

from .models import LedgerEntry


class Boom(Exception):
    """The planned failure of a test task."""


def _ledger(context, label):
    LedgerEntry.objects.create(
        job_id=int(context.task_result.id), attempt=context.attempt, label=label, pid=os.getpid()
    )


@task
def add(a, b):
    return a + b


@task
def echo(*args, **kwargs):
    return {"args": args, "kwargs": kwargs}


@task(priority=10, queue_name="emails")
def send_mail(to, subject):
    return f"sent {subject!r} to {to}"


@task(takes_context=True)
def record_attempt(context, label=""):
    result = context.task_result
    LedgerEntry.objects.create(
        job_id=int(result.id), attempt=context.attempt, label=label, pid=os.getpid()
    )
    return {
        "attempt": context.attempt,
        "status": str(result.status),
        "worker_ids": result.worker_ids,
        "job_id": context.engine.job_id,
    }


@engine_options(max_attempts=3, retry_backoff=0.05)
@task(takes_context=True)
def flaky(context, failures=2):
    if context.attempt <= failures:
        raise Boom(f"planned failure on attempt {context.attempt}")
    return context.attempt


@engine_options(max_attempts=2, retry_backoff=0.05)
@task
def always_fails():
    raise Boom("this task always fails")


@task
async def async_add(a, b):
    await asyncio.sleep(0.01)
    return a + b


@task(takes_context=True)
async def async_attempt(context):
    await asyncio.sleep(0.01)
    return context.attempt


@engine_options(atomic=True, max_attempts=1)
@task(takes_context=True)
def atomic_write(context, label, fail=False):
    _ledger(context, label)
    if fail:
        raise Boom("roll the ledger row back")
    return label


@engine_options(timeout=0.5, max_attempts=1)
@task
def overruns():
    time.sleep(3)


@engine_options(max_attempts=1)
@task
def returns_bytes():
    return {"data": b"bytes", "pair": (1, 2)}


@engine_options(max_attempts=1)
@task
def returns_object():
    return object()


@engine_options(dedup_key="nightly-report")
@task
def nightly_report():
    return "report"


@engine_options(max_attempts=5)
@task(takes_context=True)
def sleeps(context, seconds=30.0):
    _ledger(context, "sleeps")
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        time.sleep(0.05)
    return "slept"


if os.environ.get("TASKENGINE_TEST_DJANGO_SIGNALS"):

    def _record(signal_name):
        def receiver(sender, task_result, **kwargs):
            label = json.dumps(
                {
                    "signal": signal_name,
                    "sender": sender.__name__,
                    "status": str(task_result.status),
                    "attempts": task_result.attempts,
                    "errors": len(task_result.errors),
                },
                separators=(",", ":"),
            )
            LedgerEntry.objects.create(
                job_id=int(task_result.id), attempt=task_result.attempts, label=label
            )

        return receiver

    _receivers = {name: _record(name) for name in ("enqueued", "started", "finished")}
    task_enqueued.connect(_receivers["enqueued"])
    task_started.connect(_receivers["started"])
    task_finished.connect(_receivers["finished"])
