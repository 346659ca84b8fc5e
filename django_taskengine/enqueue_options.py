"""Per-call enqueue options (``Task.using``): what they hold, and the checks that refuse a bad
one before anything is written."""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass, replace
from typing import Any

from django.utils import timezone

from .core.dedup import SKIP, check_mode
from .core.dependencies import CANCEL, MOST_DEPENDENCIES, PUBLIC_POLICIES
from .core.limits import (
    DEDUP_KEY_MAX,
    GROUP_KEY_MAX,
    JOB_ID_MAX,
    QUEUE_NAME_MAX,
    SEQUENCE_KEY_MAX,
    check_int32,
    check_name,
    check_number,
)


@dataclass(frozen=True)
class EnqueueOptions:
    """Per-call options set with :meth:`Task.using`."""

    queue: str | None = None
    priority: int | None = None
    run_after: dt.datetime | None = None
    dedup_key: str | None = None
    max_attempts: int | None = None
    timeout: float | None = None
    database: str | None = None
    group: str | None = None
    sequence: str | None = None
    dedup: str | None = None
    #: Seconds (core/dedup.py).
    dedup_window: float | None = None
    #: The ids of the jobs these wait for, and what a failed one means (core/dependencies.py).
    after: tuple[int, ...] | None = None
    on_dependency_failure: str | None = None


def updated(options: EnqueueOptions, changes: dict[str, Any], name: str) -> EnqueueOptions:
    """``options`` with ``changes`` (those not None), each checked; ``name``: the task's."""
    updates = {key: value for key, value in changes.items() if value is not None}
    if "run_after" in updates:
        updates["run_after"] = absolute_time(updates["run_after"], name)
    check_option("priority", updates.get("priority"), int, name=name)
    check_option("max_attempts", updates.get("max_attempts"), int, minimum=1, name=name)
    if "timeout" in updates:
        check_timeout(updates["timeout"], name)
    for key, longest in (
        ("queue", QUEUE_NAME_MAX),
        ("dedup_key", DEDUP_KEY_MAX),
        ("group", GROUP_KEY_MAX),
        ("sequence", SEQUENCE_KEY_MAX),
    ):
        if key in updates:
            check_name(updates[key], f"{name}: {key}", max_length=longest)
    if "after" in updates:
        updates["after"] = job_ids(updates["after"], name)
    if updates.get("on_dependency_failure", CANCEL) not in PUBLIC_POLICIES:
        raise ValueError(
            f"{name}: on_dependency_failure must be 'cancel' or 'run', not "
            f"{updates['on_dependency_failure']!r}"
        )
    options = replace(options, **updates)
    if options.dedup is not None or options.dedup_window is not None:
        window = check_mode(
            options.dedup or SKIP,
            options.dedup_window,
            dedup_key=options.dedup_key,
            run_after=options.run_after,
            what=name,
        )
        options = replace(options, dedup_window=window)
    return options


def absolute_time(value: Any, name: str) -> dt.datetime:
    if isinstance(value, dt.datetime):
        if timezone.is_naive(value):
            raise ValueError(
                f"{name}: run_after={value!r} is a naive datetime; pass an aware one "
                "(e.g. timezone.now() + timedelta(minutes=5))"
            )
        return value
    if isinstance(value, dt.timedelta):
        return timezone.now() + value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return timezone.now() + dt.timedelta(seconds=value)
    raise TypeError(
        f"{name}: run_after must be an aware datetime, a timedelta or seconds, not {value!r}"
    )


def check_option(
    option: str,
    value: Any,
    kind: type | tuple[type, ...],
    *,
    name: str,
    minimum: float | None = None,
) -> None:
    if value is None:
        return
    if kind is int:
        check_int32(value, f"{name}: {option}", minimum=None if minimum is None else int(minimum))
    else:
        check_number(value, f"{name}: {option}", minimum=minimum)


def check_timeout(value: Any, name: str) -> None:
    """A per-call timeout: seconds, more than 0 (``None`` is "not given", so 0 cannot mean
    "no timeout" here)."""
    check_number(value, f"{name}: timeout", minimum=0)
    if not 0 < value < math.inf:
        raise ValueError(f"{name}: timeout must be a number of seconds above 0, not {value!r}")


def job_ids(jobs: Any, name: str) -> tuple[int, ...]:
    """``after=``: jobs or job ids, as ids in the order given, each once."""
    if isinstance(jobs, (str, bytes)) or not hasattr(jobs, "__iter__"):
        raise TypeError(f"{name}: after must be a list of jobs or job ids, not {jobs!r}")
    ids: dict[int, None] = {}
    for job in jobs:
        job_id = getattr(job, "pk", job)
        if isinstance(job_id, bool) or not isinstance(job_id, int) or not 0 < job_id <= JOB_ID_MAX:
            raise TypeError(f"{name}: after takes jobs and job ids, not {job!r}")
        ids[job_id] = None
    if len(ids) > MOST_DEPENDENCIES:
        raise ValueError(f"{name}: after may name {MOST_DEPENDENCIES} jobs at most, not {len(ids)}")
    return tuple(ids)
