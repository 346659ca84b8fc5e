"""Settings for django-taskengine, read lazily from ``settings.TASKENGINE``.

Every setting has a default; each is read on access so ``override_settings`` works in tests.
Bad values are reported by the system checks in :mod:`django_taskengine.checks`.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings as django_settings
from django.core.signals import setting_changed

DEFAULTS: dict[str, Any] = {
    # Database alias that holds the job table (jobs are enqueued and claimed on it).
    "DATABASE": "default",
    # Queue used by tasks that do not name one.
    "DEFAULT_QUEUE": "default",
    # Defaults for @task options.
    "DEFAULT_PRIORITY": 0,
    "DEFAULT_MAX_ATTEMPTS": 3,
    "DEFAULT_RETRY_BACKOFF": 1.0,
    # Upper bound for one retry delay, in seconds.
    "RETRY_BACKOFF_MAX": 3600.0,
    # How often an idle worker scans for jobs without a notification (seconds): jobs that fall
    # due (run_after, a retry's backoff) start within it. On PostgreSQL every job made due now
    # wakes workers at once (NOTIFY); an idle worker scans no more often than this otherwise.
    "POLL_INTERVAL": 1.0,
    # How often a worker writes its heartbeat (seconds).
    "HEARTBEAT_INTERVAL": 1.0,
    # PostgreSQL: a running job whose advisory lock is free is rescued once its worker's
    # heartbeat is older than this (seconds).
    "RESCUE_GRACE": 3.0,
    # How often a worker looks for orphaned jobs (seconds).
    "RESCUE_INTERVAL": 1.0,
    # SQLite and other databases without advisory locks: a running job whose lease is not
    # renewed for this long is rescued (seconds).
    "LEASE_SECONDS": 30.0,
    # First key of the two-key advisory locks that mark running jobs (PostgreSQL).
    "ADVISORY_LOCK_NAMESPACE": 0x7A5E,
    # NOTIFY channel used for wake-ups (PostgreSQL).
    "NOTIFY_CHANNEL": "taskengine",
    # PostgreSQL behind a transaction-mode pooler (PgBouncer): a URL that reaches the same
    # database directly, e.g. "postgres://app@db.internal:5432/app". The engine's own
    # connections (a worker's claims, advisory locks and LISTEN; job.wait()) use it; task code
    # and enqueues use DATABASES, through the pooler. None: DATABASES is direct.
    "DIRECT_DATABASE_URL": None,
    # How workers learn which jobs to claim: {"BACKEND": "postgres"} (scans of the job table),
    # or {"BACKEND": "redis-streams", "URL": "redis://host:6379/0", ...} (a relay publishes
    # job ids to Redis streams; see django_taskengine.dispatch).
    "DISPATCH": {"BACKEND": "postgres"},
    # Seconds run_workers waits for running jobs on SIGTERM before requeueing them.
    "SHUTDOWN_TIMEOUT": 30.0,
    # Periodic schedules with arguments: name -> {"task", "cron", "args", "kwargs", "timezone",
    # "queue", "priority", "catch_up"}. See django_taskengine.periodic.
    "PERIODIC": {},
    # A tick not enqueued this many seconds after its time counts as missed (every worker was
    # down); with catch_up "once", missed ticks collapse into one job.
    "PERIODIC_MISSED_AFTER": 60.0,
    # Fleet-wide limits per queue: name -> {"concurrency": N, "rate_limit": "N/s|N/m|N/h"}.
    # A runtime value (operations.set_queue_limits, manage.py taskengine limit) overrides a
    # knob until cleared. See django_taskengine.core.flow.
    "QUEUES": {},
    # Module name looked up in every installed app for @task definitions.
    "AUTODISCOVER_MODULE": "tasks",
    # Packages outside INSTALLED_APPS whose modules a worker may import to find a task a job
    # names (those of installed apps always may): e.g. ["myproject.jobs"].
    "TASK_MODULES": [],
    # How long finished jobs are kept, per status, before workers delete them (with their
    # attempts): seconds, a timedelta, or "90s", "15m", "12h", "7d", "2w"; None keeps them
    # forever. Statuses left out keep these defaults. "audit": how long the operators' audit
    # trail is kept. See django_taskengine.retention.
    "RETENTION": {
        "succeeded": "1d",
        "failed": "14d",
        "cancelled": "7d",
        "audit": "90d",
        "events": "7d",
    },
    # Tests: enqueue() runs the job at once, in-process (see django_taskengine.testing).
    "EAGER": False,
    # With EAGER: a job that ends failed raises testing.JobFailed from enqueue().
    "EAGER_PROPAGATE": False,
    # The metrics view also admits requests with "Authorization: Bearer <this token>".
    "METRICS_TOKEN": None,
    # The metrics view admits anyone (put it behind your own network rules).
    "METRICS_ALLOW_ANONYMOUS": False,
}


class Settings:
    """Typed, lazily read view of ``settings.TASKENGINE`` merged over :data:`DEFAULTS`.

    The merged values are kept until Django reports that ``TASKENGINE`` changed (as
    ``override_settings`` does), so a read costs a dictionary lookup: enqueue reads several.
    """

    def __init__(self) -> None:
        self._merged: dict[str, Any] | None = None

    def _get(self, name: str) -> Any:
        merged = self._merged
        if merged is None:
            merged = self._merged = {
                **DEFAULTS,
                **(getattr(django_settings, "TASKENGINE", None) or {}),
            }
        return merged[name]

    def reload(self) -> None:
        """Forget the merged values; the next read takes them from the settings again."""
        self._merged = None

    @property
    def user_settings(self) -> dict[str, Any]:
        return dict(getattr(django_settings, "TASKENGINE", None) or {})

    @property
    def DATABASE(self) -> str:
        return str(self._get("DATABASE"))

    @property
    def DEFAULT_QUEUE(self) -> str:
        return str(self._get("DEFAULT_QUEUE"))

    @property
    def DEFAULT_PRIORITY(self) -> int:
        return int(self._get("DEFAULT_PRIORITY"))

    @property
    def DEFAULT_MAX_ATTEMPTS(self) -> int:
        return int(self._get("DEFAULT_MAX_ATTEMPTS"))

    @property
    def DEFAULT_RETRY_BACKOFF(self) -> float:
        return float(self._get("DEFAULT_RETRY_BACKOFF"))

    @property
    def RETRY_BACKOFF_MAX(self) -> float:
        return float(self._get("RETRY_BACKOFF_MAX"))

    @property
    def POLL_INTERVAL(self) -> float:
        return float(self._get("POLL_INTERVAL"))

    @property
    def HEARTBEAT_INTERVAL(self) -> float:
        return float(self._get("HEARTBEAT_INTERVAL"))

    @property
    def RESCUE_GRACE(self) -> float:
        return float(self._get("RESCUE_GRACE"))

    @property
    def RESCUE_INTERVAL(self) -> float:
        return float(self._get("RESCUE_INTERVAL"))

    @property
    def LEASE_SECONDS(self) -> float:
        return float(self._get("LEASE_SECONDS"))

    @property
    def ADVISORY_LOCK_NAMESPACE(self) -> int:
        return int(self._get("ADVISORY_LOCK_NAMESPACE"))

    @property
    def NOTIFY_CHANNEL(self) -> str:
        return str(self._get("NOTIFY_CHANNEL"))

    @property
    def DIRECT_DATABASE_URL(self) -> str | None:
        value = self._get("DIRECT_DATABASE_URL")
        return str(value) if value else None

    @property
    def DISPATCH(self) -> dict[str, Any]:
        value = self._get("DISPATCH")
        return dict(value) if isinstance(value, dict) else {"BACKEND": value}

    @property
    def SHUTDOWN_TIMEOUT(self) -> float:
        return float(self._get("SHUTDOWN_TIMEOUT"))

    @property
    def PERIODIC(self) -> dict[str, Any]:
        """As configured: the system checks report a value that is not a dict."""
        return self._get("PERIODIC") or {}

    @property
    def QUEUES(self) -> dict[str, Any]:
        """As configured: the system checks report a bad value."""
        return self._get("QUEUES") or {}

    @property
    def PERIODIC_MISSED_AFTER(self) -> float:
        return float(self._get("PERIODIC_MISSED_AFTER"))

    @property
    def AUTODISCOVER_MODULE(self) -> str:
        return str(self._get("AUTODISCOVER_MODULE"))

    @property
    def TASK_MODULES(self) -> list[str]:
        value = self._get("TASK_MODULES")
        if not isinstance(value, (list, tuple)):
            return []  # check E029 reports it
        return [item for item in value if isinstance(item, str) and item]

    @property
    def RETENTION(self) -> dict[str, Any]:
        """Per-status retention as configured, merged over the defaults (values not parsed).

        ``RETENTION = None`` keeps every finished job forever.
        """
        configured = self._get("RETENTION")
        if configured is None:
            return dict.fromkeys(DEFAULTS["RETENTION"])
        return {**DEFAULTS["RETENTION"], **configured}

    @property
    def EAGER(self) -> bool:
        return bool(self._get("EAGER"))

    @property
    def EAGER_PROPAGATE(self) -> bool:
        return bool(self._get("EAGER_PROPAGATE"))

    @property
    def METRICS_TOKEN(self) -> str | None:
        token = self._get("METRICS_TOKEN")
        return str(token) if token else None

    @property
    def METRICS_ALLOW_ANONYMOUS(self) -> bool:
        return bool(self._get("METRICS_ALLOW_ANONYMOUS"))


taskengine_settings = Settings()


def _reload_on_change(*, setting: str, **kwargs: Any) -> None:
    if setting == "TASKENGINE":
        taskengine_settings.reload()


setting_changed.connect(_reload_on_change)
