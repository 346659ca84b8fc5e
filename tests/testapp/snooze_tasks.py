"""Tasks that raise ``Snooze``, for tests/worker/test_snooze.py (imported by this app's
tasks.py, so worker processes know them).

Most count their snoozes in the job's attempts history: a snoozed attempt does not grow
``ctx.attempt``, so the attempt number cannot tell a first run from a later one.
"""

from __future__ import annotations

import os
import time
from importlib.util import find_spec

from django_taskengine import Snooze, task
from django_taskengine.models import Attempt, AttemptOutcome

from .models import LedgerEntry


def _snoozes_so_far(job_id: int) -> int:
    return Attempt.objects.filter(job_id=job_id, outcome=AttemptOutcome.SNOOZED).count()


def _record(job_id: int, attempt: int, label: str) -> None:
    LedgerEntry.objects.create(job_id=job_id, attempt=attempt, label=label, pid=os.getpid())


@task(takes_context=True, max_attempts=1)
def snooze_then_succeed(ctx, snoozes=2, seconds=0.2):
    """Snoozes ``snoozes`` times, counting them in its checkpoint (which a snooze keeps), then
    returns. One attempt only: were a snooze to use it up, no run would follow."""
    _record(ctx.job_id, ctx.attempt, "run")
    done = (ctx.checkpoint_state or {}).get("snoozed", 0)
    if done < snoozes:
        ctx.checkpoint({"snoozed": done + 1})
        raise Snooze(seconds)
    return {"snoozed": done, "attempt": ctx.attempt}


@task(takes_context=True, atomic=True, max_attempts=1)
def snooze_atomic(ctx, snoozes=1, seconds=0.2):
    """Writes a ledger row in its transaction, then snoozes (the first ``snoozes`` runs): the
    snooze must roll the row back."""
    _record(ctx.job_id, ctx.attempt, "written in the task's transaction")
    if _snoozes_so_far(ctx.job_id) < snoozes:
        raise Snooze(seconds)
    return "committed"


@task(takes_context=True, max_attempts=1)
async def snooze_async(ctx, snoozes=1, seconds=0.2):
    """An ``async def`` task that snoozes its first ``snoozes`` runs."""
    from asgiref.sync import sync_to_async

    if await sync_to_async(_snoozes_so_far)(ctx.job_id) < snoozes:
        raise Snooze(seconds)
    return "awaited"


@task(takes_context=True, max_attempts=3)
def snooze_when_told(ctx, seconds=60.0):
    """Records its start and waits (without a checkpoint) for the test's "go" row, then snoozes
    — on its first run only: a later run returns."""
    if _snoozes_so_far(ctx.job_id):
        return "ran after its snooze"
    _record(ctx.job_id, ctx.attempt, "start")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if LedgerEntry.objects.filter(job_id=ctx.job_id, label="go").exists():
            break
        time.sleep(0.02)
    raise Snooze(seconds)


@task(max_attempts=1)
def snooze_for(seconds):
    """Raises ``Snooze(seconds)`` with what it was given, good or bad."""
    raise Snooze(seconds)


# The same, written with Django's own @task (django.tasks, or the django-tasks backport).
if find_spec("django.tasks") or find_spec("django_tasks"):
    try:
        from django.tasks import task as django_task
    except ImportError:
        from django_tasks import task as django_task

    @django_task(takes_context=True)
    def django_snooze_once(context, seconds=60.0):
        """Snoozes its first run; returns on the next."""
        if not _snoozes_so_far(int(context.task_result.id)):
            raise Snooze(seconds)
        return {"attempt": context.attempt}
