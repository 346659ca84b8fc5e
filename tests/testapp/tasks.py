"""Tasks used by the test suite (autodiscovered like any app's tasks.py)."""

from __future__ import annotations

import asyncio
import gc
import os
import threading
import time
from importlib.util import find_spec

from django_taskengine import task

from . import (
    bad_tasks,  # noqa: F401 - task code that misbehaves, for the worker's tests
    flow_tasks,  # noqa: F401 - tasks under flow control
    periodic_tasks,  # noqa: F401 - autodiscovery finds the test schedules
    sleep_tasks,  # noqa: F401 - tasks that sleep durably
    snooze_tasks,  # noqa: F401 - tasks that raise Snooze
)
from .models import LedgerEntry


@task
def add(a, b):
    return a + b


@task
def noop():
    return None


@task(takes_context=True)
def record(ctx, label="", sleep=0.0):
    """Writes a ledger row for each run (outside any task transaction)."""
    LedgerEntry.objects.create(job_id=ctx.job_id, attempt=ctx.attempt, label=label, pid=os.getpid())
    if sleep:
        time.sleep(sleep)
    return {"job": ctx.job_id, "attempt": ctx.attempt}


@task(takes_context=True, atomic=True)
def record_atomic(ctx, label="", sleep=0.0):
    LedgerEntry.objects.create(job_id=ctx.job_id, attempt=ctx.attempt, label=label, pid=os.getpid())
    if sleep:
        time.sleep(sleep)
    return ctx.attempt


@task(takes_context=True, max_attempts=3, retry_backoff=0.05)
def fail_then_succeed(ctx, failures=2):
    if ctx.attempt <= failures:
        raise RuntimeError(f"planned failure on attempt {ctx.attempt}")
    return f"succeeded on attempt {ctx.attempt}"


@task(max_attempts=2, retry_backoff=0.05)
def always_fail():
    raise ValueError("this task always fails")


@task(takes_context=True, max_attempts=5)
def sleep_and_record(ctx, seconds=30.0, label="sleeper"):
    """Records its start, then sleeps: a job to kill a worker under."""
    LedgerEntry.objects.create(job_id=ctx.job_id, attempt=ctx.attempt, label=label, pid=os.getpid())
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        time.sleep(0.05)
    return "slept"


@task
def returns_object():
    return object()


@task(queue="other")
def in_other_queue(n):
    return n


@task(timeout=0.5, max_attempts=1)
def overruns():
    time.sleep(3)


@task(takes_context=True, timeout=1.0, max_attempts=2, retry_backoff=0.0)
def overruns_and_records(ctx, seconds=3.0):
    """Records when it starts, sleeps past its 1 s timeout, and records when it finishes (if its
    process lets it): the ledger shows whether two attempts ever ran at once."""
    LedgerEntry.objects.create(
        job_id=ctx.job_id, attempt=ctx.attempt, label=f"start {time.time():.6f}", pid=os.getpid()
    )
    time.sleep(seconds)
    LedgerEntry.objects.create(
        job_id=ctx.job_id, attempt=ctx.attempt, label=f"finish {time.time():.6f}", pid=os.getpid()
    )


@task(takes_context=True, max_attempts=10)
def steps(ctx, total=200, step_sleep=0.01, label="steps"):
    """A long task that checkpoints after every step; each step writes one ledger row."""
    state = ctx.checkpoint_state or {"next": 0}
    for step in range(state["next"], total):
        LedgerEntry.objects.create(
            job_id=ctx.job_id, attempt=ctx.attempt, label=f"{label}-{step}", pid=os.getpid()
        )
        if step_sleep:
            time.sleep(step_sleep)
        ctx.progress(step + 1, total)
        ctx.checkpoint({"next": step + 1})
    return {"steps": total}


@task(takes_context=True, atomic=True)
def checkpoint_in_atomic(ctx):
    ctx.checkpoint({"never": True})


@task(takes_context=True, on_orphan="park")
def charge_card(ctx, seconds=30.0):
    """Must never run twice: a worker death parks it for an operator."""
    LedgerEntry.objects.create(
        job_id=ctx.job_id, attempt=ctx.attempt, label="charge", pid=os.getpid()
    )
    time.sleep(seconds)


@task(takes_context=True, max_attempts=3, retry_backoff=0.0)
def keep_idempotency_key(ctx, failures=1):
    """Writes each attempt's ctx.idempotency_key in a ledger row; fails the first attempts."""
    key = ctx.idempotency_key
    LedgerEntry.objects.create(job_id=ctx.job_id, attempt=ctx.attempt, label=key, pid=os.getpid())
    if ctx.attempt <= failures:
        raise RuntimeError(f"planned failure on attempt {ctx.attempt}")
    return key


@task
async def async_add(a, b):
    await asyncio.sleep(0.01)
    return a + b


#: Every event loop the async tasks below ran on, kept alive so that no two share an id().
_loops_seen: list[asyncio.AbstractEventLoop] = []


def _where() -> dict[str, int]:
    """The running event loop and the thread, as ids a test can compare across jobs."""
    loop = asyncio.get_running_loop()
    if loop not in _loops_seen:
        _loops_seen.append(loop)
    return {"loop": id(loop), "thread": threading.get_ident()}


@task
async def async_where():
    """Returns the ids of the event loop and the thread it ran on."""
    await asyncio.sleep(0)
    return _where()


#: What the background task of ``async_leave_running`` did: its ticks, its cancellations.
_left_running = {"ticks": 0, "cancelled": 0}


@task
async def async_leave_running():
    """Starts a background task that ticks every 5 ms, and returns without waiting for it."""

    async def tick():
        try:
            while True:
                await asyncio.sleep(0.005)
                _left_running["ticks"] += 1
        except asyncio.CancelledError:
            _left_running["cancelled"] += 1
            raise

    asyncio.get_running_loop().create_task(tick())
    await asyncio.sleep(0.02)
    return _where()


@task
async def async_watch_left_running():
    """Returns what ran beside it on its loop: other tasks, ticks of a task left running."""
    ticks = _left_running["ticks"]
    others = len(asyncio.all_tasks()) - 1
    await asyncio.sleep(0.05)
    return {
        **_where(),
        "others": others,
        "ticked_meanwhile": _left_running["ticks"] - ticks,
        "cancelled": _left_running["cancelled"],
    }


@task(takes_context=True)
async def async_record_through_sync_to_async(ctx, label):
    """Writes a ledger row and counts the label's rows through ``sync_to_async``; the sync code
    calls back into async code with ``async_to_sync``, which runs on the job's own loop."""
    from asgiref.sync import async_to_sync, sync_to_async

    async def loop_id():
        return id(asyncio.get_running_loop())

    def write_and_count():
        LedgerEntry.objects.create(
            job_id=ctx.job_id, attempt=ctx.attempt, label=label, pid=os.getpid()
        )
        return LedgerEntry.objects.filter(label=label).count(), async_to_sync(loop_id)()

    count, called_back_on = await sync_to_async(write_and_count)()
    return {**_where(), "count": count, "called_back_on": called_back_on}


@task(max_attempts=1)
async def async_query_without_sync_to_async():
    """Uses the ORM straight from async code: Django refuses (SynchronousOnlyOperation)."""
    return LedgerEntry.objects.count()


@task(timeout=1, max_attempts=2, retry_backoff=0.0)
async def async_overruns(seconds):
    """Awaits past its timeout."""
    await asyncio.sleep(seconds)


@task(takes_context=True, max_attempts=3)
async def async_returns_when_stopped(ctx, seconds=60.0):
    """Records its start, then returns early once ``ctx.should_stop`` says so."""
    from asgiref.sync import sync_to_async

    await sync_to_async(LedgerEntry.objects.create)(
        job_id=ctx.job_id, attempt=ctx.attempt, label="start", pid=os.getpid()
    )
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and not ctx.should_stop:
        await asyncio.sleep(0.02)
    return {"stopped_early": ctx.should_stop}


@task(max_attempts=1)
async def async_fail(message):
    await asyncio.sleep(0)
    raise ValueError(message)


@task(max_attempts=1)
async def async_system_exit():
    await asyncio.sleep(0)
    raise SystemExit("planned exit from an async task")


# Tasks written with Django's own @task (tests/test_backend.py), where Django has a Tasks
# framework (Django ≥ 6.0, or the django-tasks backport on Django 5.2).
if find_spec("django.tasks") or find_spec("django_tasks"):
    from . import django_api_tasks  # noqa: E402, F401


def _told(job_id: int, label: str, seconds: float) -> bool:
    """Wait (at most ``seconds``) for the test to write a ledger row ``label`` for the job."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if LedgerEntry.objects.filter(job_id=job_id, label=label).exists():
            return True
        time.sleep(0.02)
    return False


@task(takes_context=True, max_attempts=3, retry_backoff=0.05)
def fail_when_told(ctx, seconds=60.0):
    """Records its start, runs without checkpoints until the test writes "go", then fails."""
    LedgerEntry.objects.create(
        job_id=ctx.job_id, attempt=ctx.attempt, label="start", pid=os.getpid()
    )
    _told(ctx.job_id, "go", seconds)
    raise RuntimeError(f"planned failure on attempt {ctx.attempt}")


@task(takes_context=True, max_attempts=3)
def returns_when_stopped(ctx, seconds=60.0):
    """Records its start, then returns early once ``ctx.should_stop`` says so."""
    LedgerEntry.objects.create(
        job_id=ctx.job_id, attempt=ctx.attempt, label="start", pid=os.getpid()
    )
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and not ctx.should_stop:
        time.sleep(0.02)
    return {"stopped_early": ctx.should_stop}


@task(takes_context=True, max_attempts=3)
def beats_into_file(ctx, path, seconds=120.0):
    """Records its start, then appends "<attempt> <time.time()>" to the file ``path`` every
    20 ms, with no checkpoint and no look at ``ctx.should_stop``: only the end of its thread
    stops it, and the file shows when its code last ran."""
    LedgerEntry.objects.create(
        job_id=ctx.job_id, attempt=ctx.attempt, label="start", pid=os.getpid()
    )
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        with open(path, "a") as beats:
            beats.write(f"{ctx.attempt} {time.time():.6f}\n")
        time.sleep(0.02)
    return "beat to the end"


@task(takes_context=True)
def stops_itself(ctx, hard=True):
    """Asks for its own cancel (hard or not), then checkpoints: where no process can be replaced
    (run in-process), a hard cancel is carried out at the checkpoint, as a cooperative one."""
    from django_taskengine.operations import cancel_job

    cancel_job(ctx.job_id, hard=hard)
    ctx.checkpoint({"asked": True})
    return "went on"


@task(takes_context=True)
def results_of_dependencies(ctx):
    """Return what the jobs this one waited for returned (``.using(after=…)``)."""
    return ctx.dependency_results


@task
def batch_done(batch, label=""):
    """A batch's callback: returns the counts it was given."""
    return batch


@task(takes_context=True, atomic=True)
def record_backend(ctx, label=""):
    """Records its run; returns the server process its transaction ran in (behind a pooler,
    one of the pool's)."""
    from django.db import connection

    LedgerEntry.objects.create(job_id=ctx.job_id, attempt=ctx.attempt, label=label, pid=os.getpid())
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        return cursor.fetchone()[0]


# -- the console's screenshots (tests/browser/test_console_screenshots.py) -------------------

_SCREENSHOT_ERRORS = {"timeout": TimeoutError, "key": KeyError, "value": ValueError}


@task(max_attempts=1)
def fails_with(kind, message):
    """Fails at once with ``TimeoutError``, ``KeyError`` or ``ValueError`` (``kind``: "timeout",
    "key", "value") and ``message``: failures of a few classes for the failures page."""
    raise _SCREENSHOT_ERRORS[kind](message)


@task(takes_context=True, max_attempts=1)
def reports_progress_until_told(ctx, done=96, total=240, seconds=120.0):
    """Reports ``done`` of ``total``, then runs on until the test writes a "go" ledger row (at
    most ``seconds``), and finishes at ``total`` of ``total``: a running job with progress."""
    ctx.progress(done, total)
    _told(ctx.job_id, "go", seconds)
    ctx.progress(total, total)
    return {"rows": total}


@task
def objects_frozen():
    """How many objects the worker process's garbage collector leaves alone
    (``gc.freeze()``): what the supervisor had loaded when it started the process."""
    return gc.get_freeze_count()
