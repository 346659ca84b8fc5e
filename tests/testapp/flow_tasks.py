"""Tasks under flow control, for the flow control tests: each records its run (ledger) and
sleeps; the attempts' start and finish times show what ran at once."""

from __future__ import annotations

import os
import time

from django_taskengine import task

from .models import LedgerEntry


def _run(ctx, seconds: float, label: str) -> str:
    LedgerEntry.objects.create(job_id=ctx.job_id, attempt=ctx.attempt, label=label, pid=os.getpid())
    if seconds:
        time.sleep(seconds)
    return label


@task(takes_context=True, queue="flow")
def flow_step(ctx, seconds=0.0, label=""):
    """No limit of its own: limited by its queue, group or sequence if any."""
    return _run(ctx, seconds, label)


@task(takes_context=True, queue="flow", max_attempts=1)
def flow_fails(ctx, label=""):
    """Fails for good on its first attempt (a sequence member that ends failed)."""
    _run(ctx, 0.0, label)
    raise RuntimeError("this member fails")


@task(takes_context=True, concurrency=2)
def two_at_a_time(ctx, seconds=0.0, label=""):
    return _run(ctx, seconds, label)


@task(takes_context=True, rate_limit="5/s")
def five_per_second(ctx, label=""):
    return _run(ctx, 0.0, label)


@task(takes_context=True, group_concurrency=1)
def per_tenant(ctx, seconds=0.0, label=""):
    return _run(ctx, seconds, label)


@task(takes_context=True, group_concurrency=2)
def per_tenant_two(ctx, seconds=0.0, label=""):
    return _run(ctx, seconds, label)
