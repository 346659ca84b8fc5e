"""System checks for the ``TASKENGINE`` setting (ids ``taskengine.E001``…)."""

from __future__ import annotations

from typing import Any

import psycopg
from django.conf import settings
from django.core.checks import Error, Tags, Warning, register
from psycopg.conninfo import conninfo_to_dict

from .conf import DEFAULTS, taskengine_settings
from .core.flow import queue_limits
from .core.limits import QUEUE_NAME_MAX, check_name, is_int32
from .dispatch.options import check_dispatch
from .periodic import collect_definitions
from .registry import registered_tasks
from .retention import AUDIT_KEY, EVENTS_KEY, PRUNABLE_STATUSES, parse_age

_POSITIVE_NUMBERS = (
    "POLL_INTERVAL",
    "HEARTBEAT_INTERVAL",
    "RESCUE_GRACE",
    "RESCUE_INTERVAL",
    "LEASE_SECONDS",
    "RETRY_BACKOFF_MAX",
    "PERIODIC_MISSED_AFTER",
)
#: Longest value of each name setting: a queue name as the job table stores it; a PostgreSQL
#: identifier (the NOTIFY channel) has at most 63 bytes, and a module name is held to the same.
_NAME_LENGTHS = {"DEFAULT_QUEUE": QUEUE_NAME_MAX, "NOTIFY_CHANNEL": 63, "AUTODISCOVER_MODULE": 63}


@register(Tags.compatibility)
def check_settings(app_configs: Any = None, **kwargs: Any) -> list[Any]:
    errors: list[Any] = []
    user = getattr(settings, "TASKENGINE", None)
    if user is None:
        return errors
    if not isinstance(user, dict):
        return [
            Error(
                f"TASKENGINE must be a dict, not {type(user).__name__}.",
                hint="Set TASKENGINE = {...} with the keys listed in the README, or remove it.",
                id="taskengine.E001",
            )
        ]
    for key in sorted(set(user) - set(DEFAULTS)):
        errors.append(
            Error(
                f"TASKENGINE has an unknown key {key!r}.",
                hint=f"Known keys: {', '.join(sorted(DEFAULTS))}.",
                id="taskengine.E002",
            )
        )

    def number(key: str) -> Any:
        return user.get(key, DEFAULTS[key])

    for key in _POSITIVE_NUMBERS:
        value = number(key)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
            errors.append(
                Error(
                    f"TASKENGINE[{key!r}] must be a positive number of seconds, not {value!r}.",
                    id="taskengine.E003",
                )
            )
    for key in ("DEFAULT_MAX_ATTEMPTS",):
        value = number(key)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            errors.append(
                Error(
                    f"TASKENGINE[{key!r}] must be an integer of at least 1, not {value!r}.",
                    id="taskengine.E004",
                )
            )
    for key in ("DEFAULT_PRIORITY", "ADVISORY_LOCK_NAMESPACE"):
        value = number(key)
        if not is_int32(value):
            errors.append(
                Error(
                    f"TASKENGINE[{key!r}] must be a 32-bit integer, not {value!r}.",
                    id="taskengine.E005",
                )
            )
    for key in ("DEFAULT_RETRY_BACKOFF", "SHUTDOWN_TIMEOUT"):
        value = number(key)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
            errors.append(
                Error(
                    f"TASKENGINE[{key!r}] must be a number of seconds ≥ 0, not {value!r}.",
                    id="taskengine.E006",
                )
            )
    for key, longest in _NAME_LENGTHS.items():
        value = number(key)
        try:
            check_name(value, key, max_length=longest)
        except ValueError:
            errors.append(
                Error(
                    f"TASKENGINE[{key!r}] must be a non-empty string (≤ {longest} characters), "
                    f"not {value!r}.",
                    id="taskengine.E007",
                )
            )
    errors.extend(_check_retention(number("RETENTION")))
    errors.extend(_check_metrics_and_testing(user))
    errors.extend(_check_queues(number("QUEUES")))
    errors.extend(_check_direct_url(number("DIRECT_DATABASE_URL"), number("DATABASE")))
    errors.extend(check_dispatch(number("DISPATCH"), _engine(number("DATABASE"))))
    modules = number("TASK_MODULES")
    if not isinstance(modules, (list, tuple)) or not all(
        isinstance(name, str) and name and all(part.isidentifier() for part in name.split("."))
        for name in modules
    ):
        errors.append(
            Error(
                f"TASKENGINE['TASK_MODULES'] must be a list of package names, not {modules!r}.",
                hint="For example ['myproject.jobs']: a worker may import their modules to find "
                "a task a job names.",
                id="taskengine.E029",
            )
        )
    database = number("DATABASE")
    if not isinstance(database, str) or database not in settings.DATABASES:
        errors.append(
            Error(
                f"TASKENGINE['DATABASE'] is {database!r}, which is not in DATABASES.",
                hint=f"Use one of: {', '.join(settings.DATABASES)}.",
                id="taskengine.E008",
            )
        )
    elif (
        number("RESCUE_GRACE") is not None
        and isinstance(number("RESCUE_GRACE"), (int, float))
        and isinstance(number("HEARTBEAT_INTERVAL"), (int, float))
        and number("RESCUE_GRACE") < 2 * number("HEARTBEAT_INTERVAL")
    ):
        errors.append(
            Warning(
                "TASKENGINE['RESCUE_GRACE'] is less than twice HEARTBEAT_INTERVAL: a live worker "
                "that is a little late to heartbeat after a database restart could lose its jobs.",
                id="taskengine.W001",
            )
        )
    return errors


def _engine(database: Any) -> str:
    """The ENGINE of the database alias ``database`` ("" if it is not one)."""
    return (
        settings.DATABASES.get(database, {}).get("ENGINE", "") if isinstance(database, str) else ""
    )


def _check_direct_url(url: Any, database: Any) -> list[Any]:
    """E028: DIRECT_DATABASE_URL is None, or a PostgreSQL URL, for a PostgreSQL database."""
    if url is None:
        return []
    example = "e.g. 'postgres://app@db.internal:5432/app'"
    engine = _engine(database)
    try:
        if not isinstance(url, str) or not url.startswith(("postgres://", "postgresql://")):
            raise ValueError("it must be a postgres:// URL")
        conninfo_to_dict(url)
    except (ValueError, psycopg.ProgrammingError) as exc:
        return [
            Error(
                f"TASKENGINE['DIRECT_DATABASE_URL'] is {url!r}: {exc}.",
                hint=f"Use a URL that reaches the database itself, not a pooler; {example}.",
                id="taskengine.E028",
            )
        ]
    if "postgresql" not in engine:
        return [
            Error(
                "TASKENGINE['DIRECT_DATABASE_URL'] is set, but the engine's database "
                f"({database!r}) is not PostgreSQL.",
                hint="Remove it: only PostgreSQL connections go through a pooler.",
                id="taskengine.E028",
            )
        ]
    return []


def _check_retention(retention: Any) -> list[Any]:
    """E020: RETENTION is None, or a dict of finished status -> age (or None for forever)."""
    example = 'e.g. {"succeeded": "1d", "failed": "14d", "cancelled": "7d"}'
    if retention is None:
        return []
    if not isinstance(retention, dict):
        return [
            Error(
                f"TASKENGINE['RETENTION'] must be a dict of status to age, not "
                f"{type(retention).__name__}.",
                hint=f"Use {example}, or None to keep finished jobs forever.",
                id="taskengine.E020",
            )
        ]
    errors: list[Any] = []
    for status, value in retention.items():
        if status not in PRUNABLE_STATUSES and status not in (AUDIT_KEY, EVENTS_KEY):
            errors.append(
                Error(
                    f"TASKENGINE['RETENTION'] has a key {status!r}, which is not a finished "
                    "status: only finished jobs are pruned.",
                    hint=f"Keys: {', '.join(PRUNABLE_STATUSES)}, {AUDIT_KEY}, {EVENTS_KEY}.",
                    id="taskengine.E020",
                )
            )
            continue
        try:
            parse_age(value)
        except ValueError as exc:
            errors.append(
                Error(
                    f"TASKENGINE['RETENTION'][{status!r}]: {exc}.",
                    hint=f"Use seconds, a timedelta, text like '7d', or None; {example}.",
                    id="taskengine.E020",
                )
            )
    return errors


def _check_queues(queues: Any) -> list[Any]:
    """E027: QUEUES is a dict of queue name -> {"concurrency": N, "rate_limit": "N/s"}."""
    example = 'e.g. {"emails": {"concurrency": 5, "rate_limit": "14/s"}}'
    if not isinstance(queues, dict):
        return [
            Error(
                f"TASKENGINE['QUEUES'] must be a dict of queue name to limits, not "
                f"{type(queues).__name__}.",
                hint=f"Use {example}.",
                id="taskengine.E027",
            )
        ]
    errors: list[Any] = []
    for name, limits in queues.items():
        what = f"TASKENGINE['QUEUES'][{name!r}]"
        try:
            check_name(name, what, max_length=QUEUE_NAME_MAX)
            if not isinstance(limits, dict) or set(limits) - {"concurrency", "rate_limit"}:
                raise ValueError(
                    f"{what} must be a dict with the keys 'concurrency' and/or 'rate_limit'"
                )
            queue_limits(limits, {})
        except (TypeError, ValueError) as exc:
            errors.append(Error(f"{exc}.", hint=f"Use {example}.", id="taskengine.E027"))
    return errors


def _check_metrics_and_testing(user: dict[str, Any]) -> list[Any]:
    """E021: METRICS_TOKEN is None or a non-empty string; E022: the switches are booleans."""
    errors: list[Any] = []
    token = user.get("METRICS_TOKEN")
    if token is not None and (not isinstance(token, str) or not token.strip()):
        errors.append(
            Error(
                f"TASKENGINE['METRICS_TOKEN'] must be a non-empty string or None, not {token!r}.",
                hint="Read it from the environment, e.g. "
                "os.environ.get('TASKENGINE_METRICS_TOKEN').",
                id="taskengine.E021",
            )
        )
    for key in ("EAGER", "EAGER_PROPAGATE", "METRICS_ALLOW_ANONYMOUS"):
        value = user.get(key, DEFAULTS[key])
        if not isinstance(value, bool):
            errors.append(
                Error(
                    f"TASKENGINE[{key!r}] must be True or False, not {value!r}.",
                    id="taskengine.E022",
                )
            )
    return errors


#: Check ids of periodic schedules, by the kind of problem :mod:`.periodic` reports.
PERIODIC_CHECK_IDS = {
    "definition": "taskengine.E023",  # not a dict, missing or unknown keys, bad option, same name
    "cron": "taskengine.E024",  # not a cron expression, or one that never fires again
    "task": "taskengine.E025",  # TASKENGINE["PERIODIC"] names a task no @task registers
    "arguments": "taskengine.E026",  # args/kwargs not JSON, or not fitting the task's signature
    "timezone": "taskengine.E027",  # an unknown time zone
}


@register(Tags.compatibility)
def check_periodic(app_configs: Any = None, **kwargs: Any) -> list[Any]:
    """E023–E027: the schedules of ``@periodic`` and ``TASKENGINE["PERIODIC"]``."""
    if not isinstance(getattr(settings, "TASKENGINE", None) or {}, dict):
        return []  # E001 says so
    return [
        Error(problem.message, hint=problem.hint or None, id=PERIODIC_CHECK_IDS[problem.kind])
        for problem in collect_definitions()[1]
    ]


@register(Tags.compatibility)
def check_sqlite_atomic(app_configs: Any = None, **kwargs: Any) -> list[Any]:
    """W002: ``atomic`` tasks on SQLite hold its write lock for their whole run."""
    database = settings.DATABASES.get(taskengine_settings.DATABASE, {})
    return sqlite_atomic_warnings(
        database.get("ENGINE", ""), database.get("OPTIONS", {}), list(registered_tasks().values())
    )


def sqlite_atomic_warnings(engine: str, options: Any, tasks: list[Any]) -> list[Any]:
    """The W002 warning for ``tasks`` on a database of ``engine`` with these ``OPTIONS``."""
    if "sqlite" not in engine:
        return []
    timeout = options.get("timeout", 5) if isinstance(options, dict) else 5
    busy = float(timeout) if isinstance(timeout, (int, float)) else 5.0
    slow = sorted(
        task.name
        for task in tasks
        if getattr(task, "atomic", False)
        and (getattr(task, "timeout", None) is None or task.timeout >= busy)
    )
    if not slow:
        return []
    shown = ", ".join(slow[:3]) + (f" and {len(slow) - 3} more" if len(slow) > 3 else "")
    return [
        Warning(
            f"Atomic task(s) {shown} may run longer than SQLite's busy timeout ({busy:g} s). An "
            "atomic task holds SQLite's write lock for its whole run: enqueues and other writes "
            f"from other processes wait for it, and fail with 'database is locked' after "
            f"{busy:g} s.",
            hint="Give them @task(timeout=...) below the busy timeout, raise "
            "DATABASES[...]['OPTIONS']['timeout'], or use PostgreSQL, where an atomic task locks "
            "only the rows it writes.",
            id="taskengine.W002",
        )
    ]
