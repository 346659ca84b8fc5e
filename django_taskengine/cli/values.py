"""Reading the ``taskengine`` command line's values: targets, durations, moments, job ids,
limits.

Every refusal is a :class:`~django.core.management.base.CommandError` that ends with "Nothing
was changed.": the command checks every value before it acts.
"""

from __future__ import annotations

import datetime as dt
import math
import os
from collections.abc import Callable
from typing import Any

from django.core.management.base import CommandError
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from ..core import durations
from ..core.flow import check_concurrency, parse_rate
from ..core.limits import ACTOR_MAX, JOB_ID_MAX, QUEUE_NAME_MAX, TASK_NAME_MAX, check_name
from ..operations import SETTING
from .report import when

#: A longer timed pause is almost certainly a slip of the finger; an open pause needs no --for.
LONGEST_TIMED_PAUSE = dt.timedelta(days=366)


def targets(options: dict[str, Any], verb: str) -> tuple[list[str], bool, list[str]]:
    """``(queue names, --all, task names)`` of ``pause``/``resume``: exactly one kind given,
    each name one the job table can store."""
    queues, everything, tasks = options["queues"], options["all"], options["task"]
    given = sum([bool(queues), everything, bool(tasks)])
    if given != 1:
        problem = "Nothing to" if given == 0 else "Too much to"
        raise CommandError(
            f"{problem} {verb}: give queue names, --all, or --task TASK_NAME (one kind at a time)."
        )
    for kind, names, longest in (("queue", queues, QUEUE_NAME_MAX), ("task", tasks, TASK_NAME_MAX)):
        for name in names:
            check_target_name(kind, name, longest)
    return queues, everything, tasks


def check_target_name(kind: str, name: str, longest: int = QUEUE_NAME_MAX) -> str:
    """``name`` if the job table can store it as a ``kind`` name (core.limits decides)."""
    try:
        if not name.strip():
            raise ValueError(name)
        check_name(name, "name", max_length=longest)
    except ValueError:
        raise CommandError(
            f"{name[:40]!r} is not a {kind} name (1 to {longest} characters). Nothing was changed."
        ) from None
    return name


#: What ``--concurrency`` and ``--rate`` of ``limit`` take besides a value.
NO_LIMIT_WORD, SETTING_WORD = "none", "setting"
_LIMIT_WORDS = (
    f"{NO_LIMIT_WORD} (no limit) or {SETTING_WORD} (clear the runtime value: "
    "TASKENGINE['QUEUES'] applies again)"
)


def parse_concurrency(text: str) -> Any:
    """``--concurrency``: a number of jobs (at least 1), None for ``none``, or
    :data:`~django_taskengine.operations.SETTING` for ``setting``."""
    word = text.strip().lower()
    if word == SETTING_WORD:
        return SETTING
    if word == NO_LIMIT_WORD:
        return None
    try:
        return check_concurrency(int(word))
    except ValueError:
        raise CommandError(
            f"--concurrency {text!r} is not a number of jobs: give N (at least 1), "
            f"{_LIMIT_WORDS}. Nothing was changed."
        ) from None


def parse_rate_limit(text: str) -> Any:
    """``--rate``: ``"14/s"``, ``"100/m"``, ``"5000/h"``, None for ``none``, or
    :data:`~django_taskengine.operations.SETTING` for ``setting``."""
    if text.strip().lower() == SETTING_WORD:
        return SETTING
    try:
        rate = parse_rate(text.strip(), "--rate")
    except ValueError as exc:
        raise CommandError(f"{exc}; or {_LIMIT_WORDS}. Nothing was changed.") from None
    return None if rate is None else str(rate)


def actor(options: dict[str, Any]) -> str:
    """Who acts (``--by``; default ``$USER``, or ``cli``), recorded on the pause."""
    by = options.get("by")
    if by is None:
        by = os.environ.get("USER") or "cli"
    if len(by) > ACTOR_MAX:
        raise CommandError(f"--by is at most {ACTOR_MAX} characters. Nothing was changed.")
    return by


def parse_duration(text: str) -> dt.timedelta:
    """``90s``, ``15m``, ``1h30m``, ``2d``, ``1w`` → a timedelta; :class:`CommandError`
    otherwise."""
    try:
        seconds = durations.parse_duration(text).total_seconds()
    except ValueError as exc:
        raise CommandError(f"--for {exc}. Nothing was changed.") from None
    except OverflowError:
        seconds = math.inf  # more days than a timedelta holds: refused as too long below
    if seconds <= 0:
        raise CommandError(f"--for {text!r} is no time at all. Nothing was changed.")
    if seconds > LONGEST_TIMED_PAUSE.total_seconds():
        raise CommandError(
            f"--for {text!r} is longer than {LONGEST_TIMED_PAUSE.days} days: leave out --for "
            "for a pause that lasts until resumed. Nothing was changed."
        )
    return dt.timedelta(seconds=seconds)


def parse_until(text: str) -> dt.datetime:
    """An ISO 8601 datetime in the future; naive ones are in the current time zone."""
    try:
        moment = parse_datetime(text.strip())
    except ValueError:
        moment = None
    if moment is None:
        raise CommandError(
            f"--until {text!r} is not a date and time: write it like 2025-06-01T14:30 or "
            "2025-06-01T14:30+02:00. Nothing was changed."
        )
    if timezone.is_naive(moment):
        moment = timezone.make_aware(moment)
    if moment <= timezone.now():
        raise CommandError(
            f"--until {text!r} is in the past ({when(moment)}); the pause would end at once. "
            "Nothing was changed."
        )
    return moment


def pause_end(duration: str | None, until: str | None) -> dt.datetime | dt.timedelta | None:
    """When the pause asked for ends: ``--for``, ``--until``, or None (when resumed)."""
    if duration is not None and until is not None:
        raise CommandError("Give --for or --until, not both. Nothing was changed.")
    if duration is not None:
        return parse_duration(duration)
    if until is not None:
        return parse_until(until)
    return None


def parse_job_id(text: str, noun: str = "job") -> int:
    """A job (or workflow) id as typed; :class:`CommandError` for anything that cannot be one."""
    try:
        job_id = int(text)
    except ValueError:
        job_id = 0
    if not 1 <= job_id <= JOB_ID_MAX:
        raise CommandError(
            f"{noun.capitalize()} id {text!r} is not a {noun} id (a positive whole number). "
            "Nothing was changed."
        )
    return job_id


def unique(items: list[Any]) -> list[Any]:
    """``items`` without repeats, in their order."""
    return list(dict.fromkeys(items))


def call_operation(function: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Call an operation whose arguments it may reject with ValueError, as a CommandError."""
    try:
        return function(*args, **kwargs)
    except ValueError as exc:
        raise CommandError(f"{exc}.") from None
