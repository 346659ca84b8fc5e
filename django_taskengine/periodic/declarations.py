"""Where schedules come from: the ``@periodic`` decorator and ``TASKENGINE["PERIODIC"]``.

:func:`periodic` only records a declaration; :func:`collect_definitions` turns the declarations
and the setting into validated :class:`~.validation.ScheduleDefinition` objects (and the problems
of the others, which the system checks report), and :func:`definitions` caches them until the
declarations, the setting, the time zone or the registered tasks change.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from django.conf import settings

from ..conf import taskengine_settings
from ..registry import tasks as registry
from ..task import Task
from .validation import (
    Problem,
    ScheduleDefinition,
    from_setting,
    origin_of,
    validate,
)

Decorated = TypeVar("Decorated")


@dataclass(frozen=True)
class Declaration:
    """One use of ``@periodic``, kept until the definitions are collected."""

    target: Any  # a Task, or a function that @task wraps (when @periodic is below @task)
    cron: Any
    options: Mapping[str, Any]


_declarations: list[Declaration] = []


def periodic(
    cron: str,
    *,
    args: list[Any] | tuple[Any, ...] = (),
    kwargs: dict[str, Any] | None = None,
    name: str | None = None,
    timezone: str | None = None,
    catch_up: str = "once",
    queue: str | None = None,
    priority: int | None = None,
) -> Callable[[Decorated], Decorated]:
    """Run a task on a cron schedule: one job per tick, whatever the number of workers.

    Put it above ``@task`` (below works too)::

        @periodic("0 3 * * *", timezone="Europe/Paris")
        @task
        def nightly_report(): ...

    ``cron``: five fields, or six with seconds first. ``args``/``kwargs``: JSON arguments of
    each job. ``name``: the schedule's name (default: the task's name; give one when a task has
    several schedules). ``timezone``: the zone the expression is read in (default
    ``settings.TIME_ZONE``). ``catch_up``: ``"once"`` (default) or ``"all"`` — what happens to
    ticks missed while no worker ran. ``queue``/``priority``: override the task's. The
    decorated object is returned unchanged; mistakes are reported by ``manage.py check``.
    """
    if not isinstance(cron, str):
        raise TypeError(
            f'@periodic needs a cron expression, as in @periodic("*/5 * * * *"), not {cron!r}'
        )
    options = {
        "args": args,
        "kwargs": {} if kwargs is None else kwargs,
        "name": name,
        "timezone": timezone,
        "catch_up": catch_up,
        "queue": queue,
        "priority": priority,
    }

    def declare(target: Decorated) -> Decorated:
        declaration = Declaration(target, cron, options)
        # A module imported twice must not declare its schedules twice.
        _declarations[:] = [
            d
            for d in _declarations
            if (origin_of(d.target), d.cron, d.options.get("name"))
            != (origin_of(target), cron, name)
        ]
        _declarations.append(declaration)
        return target

    return declare


def collect_definitions() -> tuple[dict[str, ScheduleDefinition], list[Problem]]:
    """Every schedule defined by ``@periodic`` and ``TASKENGINE["PERIODIC"]`` in this process:
    the valid ones by name, and the problems of the others."""
    candidates: list[tuple[ScheduleDefinition | None, list[Problem]]] = []
    tasks = registry.snapshot()
    for declaration in _declarations:
        candidates.append(from_declaration(declaration, tasks))
    configured = taskengine_settings.PERIODIC
    if not isinstance(configured, dict):
        candidates.append(
            (
                None,
                [
                    Problem(
                        "definition",
                        f"TASKENGINE['PERIODIC'] must be a dict of schedule name -> schedule, not "
                        f"{type(configured).__name__}.",
                        'Use {"nightly-report": {"task": "myapp.tasks.report", '
                        '"cron": "0 3 * * *"}}.',
                    )
                ],
            )
        )
        configured = {}
    for schedule_name, entry in configured.items():
        candidates.append(from_setting(schedule_name, entry, tasks))

    problems = [problem for _, found in candidates for problem in found]
    by_name: dict[str, list[ScheduleDefinition]] = {}
    for definition, _ in candidates:
        if definition is not None:
            by_name.setdefault(definition.name, []).append(definition)
    valid = {}
    for schedule_name, same in by_name.items():
        if len(same) == 1:
            valid[schedule_name] = same[0]
            continue
        problems.append(
            Problem(
                "definition",
                f"{len(same)} periodic schedules are named {schedule_name!r}: "
                f"{'; '.join(d.origin for d in same)}.",
                "Give each its own name: @periodic(..., name=...), or another key of "
                "TASKENGINE['PERIODIC'].",
            )
        )
    return valid, problems


def definitions() -> dict[str, ScheduleDefinition]:
    """The valid schedules of this process by name (cached until the inputs change)."""
    key = inputs_key()
    if _definitions_cache.get("key") != key:
        _definitions_cache["key"] = key
        _definitions_cache["value"] = collect_definitions()[0]
    return _definitions_cache["value"]  # type: ignore[no-any-return]


_definitions_cache: dict[str, Any] = {}


def inputs_key() -> tuple[Any, ...]:
    """What the definitions are computed from (the declarations themselves, not their ids: an
    id may be reused once a declaration is gone)."""
    return (
        tuple(_declarations),
        repr(taskengine_settings.PERIODIC),
        settings.TIME_ZONE,
        tuple(registry),
    )


def from_declaration(
    declaration: Declaration, tasks: dict[str, Task]
) -> tuple[ScheduleDefinition | None, list[Problem]]:
    """The definition of one ``@periodic``, or why it is refused."""
    target = declaration.target
    if isinstance(target, Task):
        found: Task | None = target
    else:
        found = next((t for t in tasks.values() if t.func is target), None)
    origin = f"@periodic({declaration.cron!r}) on {origin_of(target)}"
    if found is None:
        return None, [
            Problem(
                "definition",
                f"{origin}: {origin_of(target)} is not a task.",
                "Put @periodic(...) above @task (or right below it), on a function that @task "
                "registers.",
            )
        ]
    options = declaration.options
    return validate(
        name=options["name"] if options["name"] is not None else found.name,
        task=found,
        task_name=found.name,
        cron=declaration.cron,
        options=options,
        origin=origin,
    )


def snapshot_declarations() -> list[Declaration]:
    """A copy of this process's ``@periodic`` declarations (tests that declare their own)."""
    return list(_declarations)


def restore_declarations(saved: list[Declaration]) -> None:
    """Make the declarations exactly ``saved`` again (tests that declare their own)."""
    _declarations[:] = saved
