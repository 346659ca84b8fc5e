"""Periodic tasks: ``@periodic("*/5 * * * *")`` on a task, and ``TASKENGINE["PERIODIC"]``.

How a tick becomes exactly one job, however many workers on however many hosts:

* Every worker process (not ``--burst``) runs :func:`enqueue_due_ticks` about once a second
  (a duty of :mod:`.worker.maintenance`). It enqueues the schedules defined in its own code and
  settings; the :class:`~django_taskengine.models.Schedule` rows hold the state all workers
  share — paused or not, the last tick and the next one — and a copy of the definition for the
  admin. Rows are created and updated from the definitions (:func:`sync_schedules`), never
  deleted by a worker: a worker with other code or settings must not erase what others run.
* One transaction per due schedule: a conditional ``UPDATE`` advances ``next_tick_at`` from
  the value this worker read (and only while the schedule is not paused); a worker that loses
  that race enqueues nothing. Then, for each due tick, ``INSERT … ON CONFLICT (schedule, tick)
  DO NOTHING RETURNING id`` into :class:`~django_taskengine.models.PeriodicTick`, and the job is
  enqueued only if that row was inserted. The unique constraint is the guarantee; the
  conditional update only spares the database needless conflicts. Whatever moves
  ``next_tick_at`` back — a host whose clock lags, a resume, a changed definition — cannot
  enqueue a tick twice.
* Ticks are computed by croniter with aware datetimes in the schedule's time zone, and stored in
  UTC. A tick that no worker enqueued within ``TASKENGINE["PERIODIC_MISSED_AFTER"]`` seconds
  (every worker was down) is *missed*: with ``catch_up="once"`` (the default) the missed ticks
  collapse into one job, for the latest of them; with ``catch_up="all"`` each gets a job, the
  latest :data:`CATCH_UP_LIMIT` at most.
* The tick rows of each schedule are pruned to the latest :data:`TICKS_KEPT`.

Definitions are validated by the system checks (``taskengine.E023``–``E027``), which
``run_workers`` runs before it starts; a worker skips a definition that does not validate.
"""

from __future__ import annotations

import datetime as dt
import logging
import zoneinfo
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from django.conf import settings
from django.db import IntegrityError, connections, transaction
from django.utils import timezone as django_timezone

from .conf import taskengine_settings
from .serialization import _find_problem
from .task import Task, registered_tasks
from .worker.maintenance import register

if TYPE_CHECKING:
    from .models import Job, Schedule

logger = logging.getLogger("django_taskengine.periodic")

#: ``catch_up="all"`` enqueues at most this many missed ticks: the latest ones.
CATCH_UP_LIMIT = 100
#: Tick rows kept per schedule (older ones are deleted); far more than any race can reach back.
TICKS_KEPT = 100
#: Seconds between two looks at the schedules in one worker process.
CHECK_INTERVAL = 1.0
#: Seconds between two prunings of old tick rows in one worker process.
PRUNE_INTERVAL = 60.0
#: Keys of an entry of ``TASKENGINE["PERIODIC"]``.
SETTING_KEYS = ("task", "cron", "args", "kwargs", "timezone", "queue", "priority", "catch_up")
CATCH_UP_CHOICES = ("once", "all")

_UTC = dt.UTC
_JUST_AFTER = dt.timedelta(microseconds=1)

Decorated = TypeVar("Decorated")


# -- cron expressions in a time zone ------------------------------------------------------


class Cron:
    """A cron expression read in one time zone (raises ``ValueError`` for a bad expression and
    ``zoneinfo.ZoneInfoNotFoundError`` for an unknown zone).

    Five fields (minute hour day month weekday), or six with **seconds first**
    (``"*/10 * * * * *"``: every ten seconds); ``@daily``, ``@hourly``… work too. Returned
    ticks are in UTC.

    Daylight saving time: a wall-clock time that does not exist (02:30 on the night clocks go
    forward) fires at the first minute that does (03:00). On the night clocks go back, a time
    that happens twice fires twice only if the expression's hour field is ``*`` (so that
    "every 30 minutes" stays regular); an expression with fixed hours ("30 2 * * *") fires
    once, at the first occurrence — as Vixie cron does.
    """

    def __init__(self, expression: str, zone: str) -> None:
        # Imported here, not at module level: importing croniter runs the `file` command (for
        # platform.architecture()), a cost every process that merely imports this app would pay.
        from croniter import CroniterError, croniter

        self.expression = expression
        self.zone = zoneinfo.ZoneInfo(zone)
        try:
            expanded = croniter(expression, second_at_beginning=True).expanded
        except CroniterError as exc:
            raise ValueError(str(exc)) from None
        self._every_hour = expanded[1] == ["*"]

    def _iterator(self, start: dt.datetime) -> Any:
        from croniter import croniter

        return croniter(self.expression, start.astimezone(self.zone), second_at_beginning=True)

    def _is_repeat(self, tick: dt.datetime) -> bool:
        """Whether ``tick`` is the second occurrence of its wall-clock time and must be skipped."""
        if self._every_hour:
            return False
        later = tick.replace(fold=1)
        if tick.replace(fold=0).utcoffset() == later.utcoffset():
            return False  # not an ambiguous time
        return tick.utcoffset() == later.utcoffset()

    def next_after(self, moment: dt.datetime) -> dt.datetime | None:
        """The first tick strictly after ``moment``; None if the expression has no further date."""
        from croniter import CroniterBadDateError

        iterator = self._iterator(moment)
        try:
            while True:
                tick = iterator.get_next(dt.datetime)
                if not self._is_repeat(tick):
                    return tick.astimezone(_UTC)
        except CroniterBadDateError:
            return None

    def ticks_between(self, start: dt.datetime, end: dt.datetime, limit: int) -> list[dt.datetime]:
        """Ticks ``t`` with ``start <= t <= end``, oldest first: the latest ``limit`` of them.

        Walks back from ``end``, so a long stretch costs ``limit`` steps, not one per tick.
        """
        from croniter import CroniterBadDateError

        iterator = self._iterator(end + _JUST_AFTER)
        found: list[dt.datetime] = []
        try:
            while len(found) < limit:
                tick = iterator.get_prev(dt.datetime)
                if tick < start:
                    break
                if not self._is_repeat(tick):
                    found.append(tick.astimezone(_UTC))
        except CroniterBadDateError:
            pass
        found.reverse()
        return found


def due_ticks(
    cron: Cron,
    next_tick_at: dt.datetime | None,
    now: dt.datetime,
    *,
    catch_up: str = "once",
    missed_after: float | None = None,
) -> tuple[list[dt.datetime], dt.datetime | None]:
    """The ticks to enqueue at ``now`` (oldest first) and the schedule's next tick after them.

    ``next_tick_at`` is the earliest tick not yet handled. If it is more than ``missed_after``
    seconds (default ``TASKENGINE["PERIODIC_MISSED_AFTER"]``) in the past, every worker was down
    when it fell due: ``catch_up="once"`` returns only the latest due tick; ``"all"`` returns
    every due tick (the latest :data:`CATCH_UP_LIMIT`). Ticks that fell due between two looks
    of a running worker are all returned, whatever ``catch_up`` says.
    """
    if next_tick_at is None or next_tick_at > now:
        return [], next_tick_at
    if missed_after is None:
        missed_after = taskengine_settings.PERIODIC_MISSED_AFTER
    missed = (now - next_tick_at).total_seconds() > missed_after
    limit = 1 if catch_up == "once" and missed else CATCH_UP_LIMIT
    return cron.ticks_between(next_tick_at, now, limit), cron.next_after(now)


# -- definitions: the decorator and the setting ------------------------------------------


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
        return _cron(self.cron, self.timezone)


@dataclass(frozen=True)
class Problem:
    """Why a definition is refused. ``kind`` maps to a system check id in :mod:`.checks`:
    ``definition``, ``cron``, ``task``, ``arguments`` or ``timezone``."""

    kind: str
    message: str
    hint: str = ""


@dataclass(frozen=True)
class _Declaration:
    target: Any  # a Task, or a function that @task wraps (when @periodic is below @task)
    cron: Any
    options: Mapping[str, Any]


_declarations: list[_Declaration] = []


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
        declaration = _Declaration(target, cron, options)
        # A module imported twice must not declare its schedules twice.
        _declarations[:] = [
            d
            for d in _declarations
            if (_origin(d.target), d.cron, d.options.get("name")) != (_origin(target), cron, name)
        ]
        _declarations.append(declaration)
        return target

    return declare


def collect_definitions() -> tuple[dict[str, ScheduleDefinition], list[Problem]]:
    """Every schedule defined by ``@periodic`` and ``TASKENGINE["PERIODIC"]`` in this process:
    the valid ones by name, and the problems of the others."""
    candidates: list[tuple[ScheduleDefinition | None, list[Problem]]] = []
    tasks = registered_tasks()
    for declaration in _declarations:
        candidates.append(_from_declaration(declaration, tasks))
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
                        'Use {"nightly-report": {"task": "myapp.tasks.report", "cron": "0 3 * * *"}}.',
                    )
                ],
            )
        )
        configured = {}
    for schedule_name, entry in configured.items():
        candidates.append(_from_setting(schedule_name, entry, tasks))

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
    key = _inputs_key()
    if _definitions_cache.get("key") != key:
        _definitions_cache["key"] = key
        _definitions_cache["value"] = collect_definitions()[0]
    return _definitions_cache["value"]  # type: ignore[no-any-return]


_definitions_cache: dict[str, Any] = {}


def _inputs_key() -> tuple[Any, ...]:
    """What the definitions are computed from (the declarations themselves, not their ids: an
    id may be reused once a declaration is gone)."""
    return (
        tuple(_declarations),
        repr(taskengine_settings.PERIODIC),
        settings.TIME_ZONE,
        tuple(registered_tasks()),
    )


def _from_declaration(
    declaration: _Declaration, tasks: dict[str, Task]
) -> tuple[ScheduleDefinition | None, list[Problem]]:
    target = declaration.target
    if isinstance(target, Task):
        found: Task | None = target
    else:
        found = next((t for t in tasks.values() if t.func is target), None)
    origin = f"@periodic({declaration.cron!r}) on {_origin(target)}"
    if found is None:
        return None, [
            Problem(
                "definition",
                f"{origin}: {_origin(target)} is not a task.",
                "Put @periodic(...) above @task (or right below it), on a function that @task "
                "registers.",
            )
        ]
    options = declaration.options
    return _validate(
        name=options["name"] if options["name"] is not None else found.name,
        task=found,
        task_name=found.name,
        cron=declaration.cron,
        options=options,
        origin=origin,
    )


def _from_setting(
    schedule_name: Any, entry: Any, tasks: dict[str, Task]
) -> tuple[ScheduleDefinition | None, list[Problem]]:
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
    return _validate(
        name=schedule_name,
        task=task,
        task_name=task_name,
        cron=entry["cron"],
        options=options,
        origin=origin,
    )


def _validate(
    *,
    name: Any,
    task: Task,
    task_name: str,
    cron: Any,
    options: Mapping[str, Any],
    origin: str,
) -> tuple[ScheduleDefinition | None, list[Problem]]:
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
            parsed = _cron(cron, zone)
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
    if queue is not None and (not isinstance(queue, str) or not queue or len(queue) > 100):
        problems.append(
            Problem(
                "definition",
                f"{origin}: queue must be a non-empty string of at most 100 "
                f"characters, not {queue!r}.",
            )
        )
    priority = options["priority"]
    if priority is not None and (
        isinstance(priority, bool)
        or not isinstance(priority, int)
        or not -(2**31) <= priority < 2**31
    ):
        problems.append(
            Problem("definition", f"{origin}: priority must be a 32-bit integer, not {priority!r}.")
        )
    problems.extend(_argument_problems(task, options["args"], options["kwargs"], origin))
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


def _argument_problems(task: Task, args: Any, kwargs: Any, origin: str) -> list[Problem]:
    if not isinstance(args, (list, tuple)) or not isinstance(kwargs, dict):
        return [
            Problem(
                "arguments",
                f"{origin}: args must be a list and kwargs a dict, not {type(args).__name__} "
                f"and {type(kwargs).__name__}.",
            )
        ]
    for index, value in enumerate(args):
        problem = _find_problem(value, f"positional argument {index}")
        if problem:
            return [Problem("arguments", f"{origin}: {problem}, which is not JSON.", _JSON_HINT)]
    for key, value in kwargs.items():
        problem = _find_problem(value, f"argument {key!r}")
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

_crons: dict[tuple[str, str], Cron] = {}


def _cron(expression: str, zone: str) -> Cron:
    key = (expression, zone)
    if key not in _crons:
        _crons[key] = Cron(expression, zone)
    return _crons[key]


def _origin(target: Any) -> str:
    if isinstance(target, Task):
        return target.name
    return f"{getattr(target, '__module__', '?')}.{getattr(target, '__qualname__', target)!s}"


# -- the rows: sync, ticks, and operator actions ----------------------------------------


def _db(using: str | None) -> str:
    return using or taskengine_settings.DATABASE


def sync_schedules(using: str | None = None) -> dict[str, Schedule]:
    """Create or update the Schedule rows of this process's definitions; return them by name.

    A new schedule's first tick is the first one after now (nothing is caught up for the time
    before it existed); so is the next tick of a schedule whose expression or time zone changed.
    Pause state and the last tick are kept. Rows of schedules this process does not define are
    left alone.
    """
    from .models import Schedule

    db = _db(using)
    defined = definitions()
    now = django_timezone.now()
    rows = {row.name: row for row in Schedule.objects.using(db).filter(name__in=defined)}
    missing = [
        Schedule(
            name=definition.name,
            next_tick_at=definition.parsed_cron().next_after(now),
            created_at=now,
            updated_at=now,
            **definition.row_fields(),
        )
        for definition in defined.values()
        if definition.name not in rows
    ]
    if missing:
        # Workers starting together race to create the rows; the unique name settles it.
        Schedule.objects.using(db).bulk_create(missing, ignore_conflicts=True)
    for definition in defined.values():
        row = rows.get(definition.name)
        if row is None:
            continue
        wanted = definition.row_fields()
        if all(getattr(row, column) == value for column, value in wanted.items()):
            continue
        changes = {**wanted, "updated_at": now}
        if (row.cron, row.timezone) != (definition.cron, definition.timezone):
            changes["next_tick_at"] = definition.parsed_cron().next_after(now)
        Schedule.objects.using(db).filter(pk=row.pk, cron=row.cron, timezone=row.timezone).update(
            **changes
        )
        logger.info("periodic schedule %s changed: %s", definition.name, definition.origin)
    return {row.name: row for row in Schedule.objects.using(db).filter(name__in=defined)}


_INSERT_TICK_SQL = (
    "INSERT INTO taskengine_periodic_tick (schedule_id, tick, job_id, enqueued_at) "
    "VALUES (%s, %s, NULL, %s) ON CONFLICT (schedule_id, tick) DO NOTHING RETURNING id"
)


def enqueue_tick(
    schedule_id: int, definition: ScheduleDefinition, tick: dt.datetime, *, using: str | None = None
) -> Job | None:
    """Enqueue the job of one tick, unless a job was enqueued for it already: then None.

    The tick row and the job are written in one transaction (the caller's, if one is open), and
    the job only if the tick row was inserted: at most one job per (schedule, tick), enforced by
    the database's unique constraint.
    """
    from .models import PeriodicTick

    db = _db(using)
    task = registered_tasks()[definition.task_name]
    connection = connections[db]
    with transaction.atomic(using=db):
        tick_id = _insert_tick(connection, schedule_id, tick)
        if tick_id is None:
            return None
        job = task.using(
            queue=definition.queue or None,
            priority=definition.priority,
            run_after=tick,
            database=db,
        ).enqueue(*definition.args, **definition.kwargs)
        PeriodicTick.objects.using(db).filter(pk=tick_id).update(job_id=job.pk)
    return job


def _insert_tick(connection: Any, schedule_id: int, tick: dt.datetime) -> int | None:
    from .models import PeriodicTick

    now = django_timezone.now()
    if connection.vendor in ("postgresql", "sqlite"):
        adapt = connection.ops.adapt_datetimefield_value
        with connection.cursor() as cursor:
            cursor.execute(_INSERT_TICK_SQL, [schedule_id, adapt(tick), adapt(now)])
            row = cursor.fetchone()
        return None if row is None else int(row[0])
    # Databases without INSERT … ON CONFLICT … RETURNING: the constraint raises instead.
    try:
        with transaction.atomic(using=connection.alias):
            created = PeriodicTick.objects.using(connection.alias).create(
                schedule_id=schedule_id, tick=tick, enqueued_at=now
            )
    except IntegrityError:
        return None
    return int(created.pk)


def enqueue_schedule_ticks(
    definition: ScheduleDefinition, row: Schedule, now: dt.datetime, *, using: str | None = None
) -> list[Job]:
    """Enqueue the due ticks of one schedule, as read in ``row``; return the jobs enqueued.

    Nothing is enqueued if the row changed since it was read (another worker advanced it, or
    an operator paused it), or if it holds another expression or time zone than ``definition``
    (during a deploy that changes them, workers still running the old code must not move the
    row to their own next tick: that would skip the new definition's ticks).
    """
    from django.db.models import Q

    from .models import Schedule

    db = _db(using)
    ticks, following = due_ticks(
        definition.parsed_cron(), row.next_tick_at, now, catch_up=definition.catch_up
    )
    enqueued: list[tuple[dt.datetime, Job]] = []
    with transaction.atomic(using=db):
        advanced = (
            Schedule.objects.using(db)
            .filter(
                pk=row.pk,
                paused=False,
                next_tick_at=row.next_tick_at,
                cron=definition.cron,
                timezone=definition.timezone,
            )
            .update(next_tick_at=following)
        )
        if not advanced:
            return []
        for tick in ticks:
            job = enqueue_tick(row.pk, definition, tick, using=db)
            if job is not None:
                enqueued.append((tick, job))
        if enqueued:
            tick, job = enqueued[-1]
            Schedule.objects.using(db).filter(
                Q(last_tick_at__isnull=True) | Q(last_tick_at__lt=tick), pk=row.pk
            ).update(last_tick_at=tick, last_job_id=job.pk)
    late = (now - row.next_tick_at).total_seconds() if row.next_tick_at else 0.0
    if late > taskengine_settings.PERIODIC_MISSED_AFTER:
        logger.warning(
            "periodic schedule %s: ticks since %s were missed (no worker ran); with "
            "catch_up=%r, %s job(s) enqueued for them",
            definition.name,
            row.next_tick_at,
            definition.catch_up,
            len(enqueued),
        )
    return [job for _, job in enqueued]


_synced: dict[str, tuple[Any, ...]] = {}


@register("periodic schedules", interval=CHECK_INTERVAL)
def enqueue_due_ticks(database: str) -> int:
    """The worker duty: enqueue every due tick of this process's schedules; return how many.

    Syncs the Schedule rows first when this process has not yet (or its definitions changed,
    or a row is missing).
    """
    from .models import Schedule

    defined = definitions()
    if not defined:
        return 0
    rows = {
        row.name: row
        for row in Schedule.objects.using(database)
        .filter(name__in=defined)
        .only("id", "name", "paused", "next_tick_at")
    }
    key = _inputs_key()
    if _synced.get(database) != key or len(rows) < len(defined):
        rows = sync_schedules(database)
        _synced[database] = key
    now = django_timezone.now()
    count = 0
    for name, definition in defined.items():
        row = rows.get(name)
        if row is None or row.paused or row.next_tick_at is None or row.next_tick_at > now:
            continue
        count += len(enqueue_schedule_ticks(definition, row, now, using=database))
    return count


@register("prune periodic ticks", interval=PRUNE_INTERVAL)
def prune_ticks(database: str) -> int:
    """The worker duty: keep the latest :data:`TICKS_KEPT` tick rows of each schedule."""
    from django.db.models import Count

    from .models import PeriodicTick

    ticks = PeriodicTick.objects.using(database)
    crowded = (
        ticks.values("schedule_id")
        .annotate(count=Count("id"))
        .filter(count__gt=TICKS_KEPT)
        .values_list("schedule_id", flat=True)
    )
    deleted = 0
    for schedule_id in list(crowded):
        oldest_kept = (
            ticks.filter(schedule_id=schedule_id)
            .order_by("-tick")
            .values_list("tick", flat=True)[TICKS_KEPT - 1 : TICKS_KEPT]
            .first()
        )
        if oldest_kept is not None:
            deleted += ticks.filter(schedule_id=schedule_id, tick__lt=oldest_kept).delete()[0]
    return deleted


def get_schedule(name: str, *, using: str | None = None) -> Schedule:
    """The schedule called ``name``, or :class:`~django_taskengine.operations.NotFound`."""
    from .models import Schedule
    from .operations import NotFound

    db = _db(using)
    try:
        return Schedule.objects.using(db).get(name=name)
    except Schedule.DoesNotExist:
        known = list(Schedule.objects.using(db).values_list("name", flat=True)[:20])
        raise NotFound(
            f"No periodic schedule named {name!r}. Known schedules: "
            f"{', '.join(known) or 'none yet (a worker creates them when it starts)'}."
        ) from None


def pause_schedule(name: str, *, by: str = "", using: str | None = None) -> Schedule:
    """Stop enqueueing the schedule's ticks, on every worker, from its next tick on.

    Raises :class:`~django_taskengine.operations.ActionRefused` if it is paused already.
    """
    from .models import Schedule
    from .operations import ActionRefused

    db = _db(using)
    schedule = get_schedule(name, using=db)
    updated = (
        Schedule.objects.using(db)
        .filter(pk=schedule.pk, paused=False)
        .update(paused=True, paused_at=django_timezone.now(), paused_by=by)
    )
    if not updated:
        raise ActionRefused(f"Schedule {name!r} is paused already; nothing changed.")
    return get_schedule(name, using=db)


def resume_schedule(name: str, *, by: str = "", using: str | None = None) -> Schedule:
    """Resume a paused schedule. Ticks that fell while it was paused are skipped: the next job
    is for its first tick after now.

    Raises :class:`~django_taskengine.operations.ActionRefused` if it is not paused.
    """
    from .models import Schedule
    from .operations import ActionRefused

    db = _db(using)
    schedule = get_schedule(name, using=db)
    following = _cron(schedule.cron, schedule.timezone).next_after(django_timezone.now())
    updated = (
        Schedule.objects.using(db)
        .filter(pk=schedule.pk, paused=True, cron=schedule.cron, timezone=schedule.timezone)
        .update(paused=False, paused_at=None, paused_by="", next_tick_at=following)
    )
    if not updated:
        raise ActionRefused(
            f"Schedule {name!r} is not paused (or changed meanwhile); nothing changed."
        )
    return get_schedule(name, using=db)


def run_schedule_now(name: str, *, using: str | None = None) -> Job:
    """Enqueue one job of the schedule now, with its task, arguments, queue and priority as
    stored on its row. It is not a tick: the schedule's ticks go on as before."""
    from .operations import ActionRefused
    from .task import TaskNotRegistered, get_task

    db = _db(using)
    schedule = get_schedule(name, using=db)
    try:
        task = get_task(schedule.task_name)
        return task.using(
            queue=schedule.queue or None, priority=schedule.priority, database=db
        ).enqueue(*schedule.args, **schedule.kwargs)
    except (TaskNotRegistered, TypeError, ValueError) as exc:
        raise ActionRefused(f"Schedule {name!r} could not run: {exc}") from None
