"""Tasks that sleep durably (``ctx.sleep``), for tests/worker/test_durable_sleep.py (imported
by this app's tasks.py, so worker processes know them). Each writes a ledger row per line it
reaches, so a test can tell which lines ran on which run."""

from __future__ import annotations

import os

from django_taskengine import task

from .models import LedgerEntry


def _record(job_id: int, attempt: int, label: str) -> None:
    LedgerEntry.objects.create(job_id=job_id, attempt=attempt, label=label, pid=os.getpid())


@task(takes_context=True, max_attempts=1)
def sleep_twice(ctx, seconds=0.2):
    """Sleeps twice between three steps; the checkpoint says which steps are done."""
    done = (ctx.checkpoint_state or {}).get("done", [])
    _record(ctx.job_id, ctx.attempt, "start")
    if "one" not in done:
        _record(ctx.job_id, ctx.attempt, "one")
        ctx.checkpoint({"done": ["one"]})
    ctx.sleep(seconds)
    if "two" not in done:
        _record(ctx.job_id, ctx.attempt, "two")
        ctx.checkpoint({"done": ["one", "two"]})
    ctx.sleep(seconds)
    _record(ctx.job_id, ctx.attempt, "three")
    return {"attempt": ctx.attempt}


@task(takes_context=True, max_attempts=1)
def sleep_inside_except_exception(ctx, seconds=0.2):
    """A broad ``except Exception`` around the sleep must not swallow it."""
    try:
        ctx.sleep(seconds)
    except Exception:  # noqa: BLE001 - what the test is about
        return "swallowed"
    return "woke up"


@task(takes_context=True, max_attempts=1)
def sleep_for(ctx, seconds):
    ctx.sleep(seconds)
    return "woke up"


@task(takes_context=True, atomic=True, max_attempts=1)
def sleep_atomic(ctx):
    ctx.sleep(1)


@task(takes_context=True, max_attempts=2, retry_backoff=0)
def sleep_then_fail_once(ctx, seconds=0.2):
    """Sleeps, then fails on its first attempt: the retry finds the sleep done."""
    _record(ctx.job_id, ctx.attempt, "start")
    ctx.sleep(seconds)
    if ctx.attempt == 1:
        raise RuntimeError("fails after its sleep")
    return "retried"


@task(takes_context=True, max_attempts=1)
async def sleep_async(ctx, seconds=0):
    """An ``async def`` task that sleeps once."""
    ctx.sleep(seconds)
    return "awaited"


@task(takes_context=True, max_attempts=1)
def wait_for_payment(ctx, order, timeout=None):
    """Records its start, waits for ``paid:<order>``, records what it got."""
    _record(ctx.job_id, ctx.attempt, "start")
    payload = ctx.wait_for_event(f"paid:{order}", timeout=timeout)
    _record(ctx.job_id, ctx.attempt, f"got {payload!r}")
    return payload


@task(takes_context=True, max_attempts=1)
def wait_then_sleep(ctx, order):
    """An event wait, then a sleep: the wait's record comes first on every run."""
    payload = ctx.wait_for_event(f"paid:{order}", timeout=60)
    ctx.sleep(0.2)
    return payload


@task(takes_context=True, max_attempts=1)
def wait_after_a_moment(ctx, name, delay):
    """Records its start, works ``delay`` seconds, then waits a minute for ``name``: a test
    sends the event while it works or parks."""
    import time

    _record(ctx.job_id, ctx.attempt, "start")
    time.sleep(delay)
    return ctx.wait_for_event(name, timeout=60)
