"""Demo tasks: found by django-taskengine's autodiscovery because this module is `tasks.py`."""

from __future__ import annotations

import time

from django.db.models import F

from django_taskengine import task

from .models import DemoCounter


@task
def add(a: int, b: int) -> int:
    """A quick task: returns a + b."""
    return a + b


@task(max_attempts=4, retry_backoff=0.2)
def flaky(key: str, fail_times: int = 2) -> str:
    """Fails its first `fail_times` attempts, then succeeds: shows retries with backoff.

    Attempts are counted in a DemoCounter row for `key`, so each job needs a key of its own.
    """
    counter, _ = DemoCounter.objects.get_or_create(key=key)
    DemoCounter.objects.filter(pk=counter.pk).update(count=F("count") + 1)
    counter.refresh_from_db()
    if counter.count <= fail_times:
        raise RuntimeError(
            f"flaky task {key!r}: planned failure {counter.count} of {fail_times} (demo)"
        )
    return f"ok after {counter.count} attempts"


@task(queue="slow", timeout=30)
def slow(seconds: float = 2.0) -> dict[str, float]:
    """Sleeps for `seconds` on the "slow" queue."""
    time.sleep(seconds)
    return {"slept": seconds}


@task(max_attempts=2, retry_backoff=0.2)
def always_fails() -> None:
    """Raises every time: ends `failed` after its two attempts, with the error kept."""
    raise ValueError("this task always fails (demo)")


@task(takes_context=True)
def total(ctx) -> int:
    """A workflow's last step: adds up what the steps it waited for returned."""
    return sum(ctx.dependency_results.values())
