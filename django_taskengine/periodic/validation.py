"""What makes a schedule definition valid, and the messages that say why one is not.

Both ways of defining a schedule (``@periodic`` on a task, an entry of ``TASKENGINE["PERIODIC"]``)
end in :func:`validate`; each refusal is a :class:`Problem` whose kind the system checks map to
an id (``taskengine.E023``–``E027``).
"""

from __future__ import annotations

import zoneinfo
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.utils import timezone as django_timezone

from ..core.limits import check_queue_name, is_int32
from ..registry import origin as function_origin
from ..serialization import find_problem
from ..task import Task
from .cron import Cron, parsed_cron

#: Keys of an entry of ``TASKENGINE["PERIODIC"]``.
SETTING_KEYS = ("task", "cron", "args", "kwargs", "timezone", "queue", "priority", "catch_up")
CATCH_UP_CHOICES = ("once", "all")


@dataclass(frozen=True)
class ScheduleDefinition:
    """One schedule as code or settings define it (validated)."""

    name: str
    task_name: str
    cron: str
    timezone: str
    args: list[Any] = field(default_factory=list)
    kwargs: dict[str, Any] = field(default_factory=dict)
    queue: str = ""
    priority: int | None = None
    catch_up: str = "once"
    #: Where it is defined, for messages.
    origin: str = ""

    def row_fields(self) -> dict[str, Any]:
        """The columns of its :class:`~django_taskengine.models.Schedule` row it determines."""
        return {
            "task_name": self.task_name,
            "cron": self.cron,
            "timezone": self.timezone,
            "args": list(self.args),
            "kwargs": dict(self.kwargs),
            "queue": self.queue,
            "priority": self.priority,
            "catch_up": self.catch_up,
        }

    def parsed_cron(self) -> Cron:
        """Its expression, read in its time zone."""
        return parsed_cron(self.cron, self.timezone)


@dataclass(frozen=True)
class Problem:
    """Why a definition is refused. ``kind`` maps to a system check id in
    :mod:`django_taskengine.checks`: ``definition``, ``cron``, ``task``, ``arguments`` or
    ``timezone``."""

    kind: str
    message: str
    hint: str = ""


def from_setting(
    schedule_name: Any, entry: Any, tasks: dict[str, Task]
) -> tuple[ScheduleDefinition | None, list[Problem]]:
    """The definition of ``TASKENGINE["PERIODIC"][schedule_name]``, or why it is refused."""
    origin = f"TASKENGINE['PERIODIC'][{schedule_name!r}]"
    example = '{"task": "myapp.tasks.report", "cron": "0 3 * * *", "kwargs": {"days": 1}}'
    if not isinstance(entry, dict):
        return None, [
            Problem(
                "definition",
                f"{origin} must be a dict, not {type(entry).__name__}.",
                f"Use {example}.",
            )
        ]
    problems = []
    unknown = sorted(set(entry) - set(SETTING_KEYS), key=str)
    if unknown:
        problems.append(
            Problem(
                "definition",
                f"{origin} has unknown key(s): {', '.join(map(repr, unknown))}.",
                f"Known keys: {', '.join(SETTING_KEYS)}.",
            )
        )
    missing = [key for key in ("task", "cron") if key not in entry]
    if missing:
        problems.append(
            Problem(
                "definition",
                f"{origin} lacks {' and '.join(map(repr, missing))}.",
                f"Use {example}.",
            )
        )
    if problems:
        return None, problems
    task_name = entry["task"]
    task = tasks.get(task_name) if isinstance(task_name, str) else None
    if task is None:
        close = [n for n in tasks if isinstance(task_name, str) and n.endswith(f".{task_name}")]
        return None, [
            Problem(
                "task",
                f"{origin} names the task {task_name!r}, which no @task registers.",
                f"Did you mean {close[0]!r}?"
                if close
                else "Use the task's full name (module.function, or its @task(name=...)), and "
                "check that its app is in INSTALLED_APPS.",
            )
        ]
    options = {
        "args": entry.get("args", ()),
        "kwargs": {} if entry.get("kwargs") is None else entry.get("kwargs"),
        "timezone": entry.get("timezone"),
        "catch_up": entry.get("catch_up", "once"),
        "queue": entry.get("queue"),
        "priority": entry.get("priority"),
    }
    return validate(
        name=schedule_name,
        task=task,
        task_name=task_name,
        cron=entry["cron"],
        options=options,
        origin=origin,
    )


def validate(
    *,
    name: Any,
    task: Task,
    task_name: str,
    cron: Any,
    options: Mapping[str, Any],
    origin: str,
) -> tuple[ScheduleDefinition | None, list[Problem]]:
    """A definition from the options of a schedule of ``task`` (however declared), or every
    problem of them; ``origin`` says where they come from, for the messages."""
    problems: list[Problem] = []
    if not isinstance(name, str) or not name or len(name) > 200:
        problems.append(
            Problem(
                "definition",
                f"{origin}: a schedule name is a non-empty string of at most "
                f"200 characters, not {name!r}.",
            )
        )
    zone = options["timezone"] if options["timezone"] is not None else settings.TIME_ZONE
    zone_ok = True
    try:
        zoneinfo.ZoneInfo(zone)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, TypeError):
        zone_ok = False
        problems.append(
            Problem(
                "timezone",
                f"{origin}: {zone!r} is not a time zone this system knows.",
                "Use an IANA name such as 'Europe/Paris' or 'UTC' (pip install tzdata where the "
                "system has no time zone database).",
            )
        )
    if not isinstance(cron, str):
        problems.append(
            Problem(
                "cron", f"{origin}: the cron expression must be a string, not {cron!r}.", _CRON_HINT
            )
        )
    elif zone_ok:
        try:
            parsed = parsed_cron(cron, zone)
        except ValueError as exc:
            problems.append(
                Problem("cron", f"{origin}: {cron!r} is not a cron expression: {exc}.", _CRON_HINT)
            )
        else:
            if parsed.next_after(django_timezone.now()) is None:
                problems.append(
                    Problem("cron", f"{origin}: {cron!r} never fires again.", _CRON_HINT)
                )
    catch_up = options["catch_up"]
    if catch_up not in CATCH_UP_CHOICES:
        problems.append(
            Problem("definition", f"{origin}: catch_up must be 'once' or 'all', not {catch_up!r}.")
        )
    queue = options["queue"]
    if queue is not None:
        try:
            check_queue_name(queue, f"{origin}: queue")
        except ValueError as exc:
            problems.append(Problem("definition", f"{exc}."))
    priority = options["priority"]
    if priority is not None and not is_int32(priority):
        problems.append(
            Problem("definition", f"{origin}: priority must be a 32-bit integer, not {priority!r}.")
        )
    problems.extend(argument_problems(task, options["args"], options["kwargs"], origin))
    if problems:
        return None, problems
    return (
        ScheduleDefinition(
            name=name,
            task_name=task_name,
            cron=cron,
            timezone=zone,
            args=list(options["args"]),
            kwargs=dict(options["kwargs"]),
            queue=queue or "",
            priority=priority,
            catch_up=catch_up,
            origin=origin,
        ),
        [],
    )


_CRON_HINT = (
    "Five fields, minute hour day-of-month month day-of-week (e.g. '*/5 * * * *', "
    "'0 9 * * mon-fri'), or six with seconds first ('*/10 * * * * *'); or @hourly, @daily…"
)


def argument_problems(task: Task, args: Any, kwargs: Any, origin: str) -> list[Problem]:
    """Why ``args``/``kwargs`` cannot be a job's arguments: not JSON, or not the task's
    signature (at most one problem: the first)."""
    if not isinstance(args, (list, tuple)) or not isinstance(kwargs, dict):
        return [
            Problem(
                "arguments",
                f"{origin}: args must be a list and kwargs a dict, not {type(args).__name__} "
                f"and {type(kwargs).__name__}.",
            )
        ]
    for index, value in enumerate(args):
        problem = find_problem(value, f"positional argument {index}")
        if problem:
            return [Problem("arguments", f"{origin}: {problem}, which is not JSON.", _JSON_HINT)]
    for key, value in kwargs.items():
        problem = find_problem(value, f"argument {key!r}")
        if problem:
            return [Problem("arguments", f"{origin}: {problem}, which is not JSON.", _JSON_HINT)]
    try:
        task.signature.bind(*args, **kwargs)
    except TypeError as exc:
        return [
            Problem(
                "arguments",
                f"{origin}: the arguments do not fit {task.name}{task.signature}: {exc}.",
            )
        ]
    return []


_JSON_HINT = "Arguments are stored as JSON: use dicts, lists, strings, numbers, booleans and None."


def origin_of(target: Any) -> str:
    """What ``@periodic`` was put on, for messages: a task's name, or a function's
    ``module.qualname``."""
    if isinstance(target, Task):
        return target.name
    if hasattr(target, "__module__"):
        return function_origin(target)
    return f"?.{target!s}"
