"""``TASKENGINE["DISPATCH"]``, read and checked."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.core.checks import Error

from ..conf import taskengine_settings

POSTGRES = "postgres"
REDIS_STREAMS = "redis-streams"
BACKENDS = (POSTGRES, REDIS_STREAMS)

#: The keys of a redis-streams DISPATCH and their defaults (URL has none).
REDIS_DEFAULTS: dict[str, Any] = {
    # Prefix of every Redis key the engine writes; None: "taskengine:<database name>", so that
    # projects (and test databases) sharing one Redis never read each other's streams.
    "PREFIX": None,
    # Jobs of one queue published and not yet claimed, at most: how far ahead of the claims
    # the relay publishes. A job of higher priority enqueued later waits behind at most this
    # many published ones.
    "WINDOW": 500,
    # A published job still claimable this many seconds later is published again (its entry
    # was lost, or read by a worker that could not take it then).
    "REPUBLISH_AFTER": 5.0,
    # An entry delivered to a worker that has not acknowledged it for this many seconds (the
    # worker died) is taken over by another worker.
    "STALE_AFTER": 10.0,
    # Streams are trimmed to about this many entries (acknowledged ones are of no more use).
    "MAXLEN": 10_000,
    # While a queue has more claimable jobs than WINDOW, the relay looks again this often
    # (seconds); otherwise when an enqueue notifies it, or every POLL_INTERVAL.
    "RELAY_INTERVAL": 0.01,
}


@dataclass(frozen=True)
class RedisDispatch:
    url: str
    prefix: str | None
    window: int
    republish_after: float
    stale_after: float
    maxlen: int
    relay_interval: float


def redis_dispatch() -> RedisDispatch | None:
    """The redis-streams options, or None under PostgreSQL dispatch."""
    value = taskengine_settings.DISPATCH
    if value.get("BACKEND", POSTGRES) != REDIS_STREAMS:
        return None
    options = {**REDIS_DEFAULTS, **value}
    return RedisDispatch(
        url=str(options["URL"]),
        prefix=options["PREFIX"],
        window=int(options["WINDOW"]),
        republish_after=float(options["REPUBLISH_AFTER"]),
        stale_after=float(options["STALE_AFTER"]),
        maxlen=int(options["MAXLEN"]),
        relay_interval=float(options["RELAY_INTERVAL"]),
    )


def check_dispatch(value: Any, engine: str) -> list[Error]:
    """E030: DISPATCH is {"BACKEND": "postgres"} or a complete redis-streams dict, on
    PostgreSQL, with the ``redis`` package installed."""
    example = "{'BACKEND': 'redis-streams', 'URL': 'redis://127.0.0.1:6379/0'}"

    def error(message: str, hint: str = f"Use {{'BACKEND': 'postgres'}} or {example}.") -> list:
        return [Error(f"TASKENGINE['DISPATCH'] {message}", hint=hint, id="taskengine.E030")]

    if not isinstance(value, dict) or value.get("BACKEND") not in BACKENDS:
        return error(f"must be a dict whose BACKEND is one of {', '.join(BACKENDS)}: {value!r}.")
    if value["BACKEND"] == POSTGRES:
        extra = sorted(set(value) - {"BACKEND"})
        return error(f"has keys the postgres backend does not use: {extra}.") if extra else []
    unknown = sorted(set(value) - {"BACKEND", "URL", *REDIS_DEFAULTS})
    if unknown:
        return error(
            f"has unknown keys {unknown}.", f"Known keys: URL, {', '.join(REDIS_DEFAULTS)}."
        )
    url = value.get("URL")
    if not isinstance(url, str) or not url.startswith(("redis://", "rediss://", "unix://")):
        return error(f"needs a URL (redis://, rediss:// or unix://), not {url!r}.")
    for key in ("WINDOW", "MAXLEN"):
        number = value.get(key, REDIS_DEFAULTS[key])
        if isinstance(number, bool) or not isinstance(number, int) or number < 1:
            return error(f"{key} must be a positive integer, not {number!r}.")
    for key in ("REPUBLISH_AFTER", "STALE_AFTER", "RELAY_INTERVAL"):
        number = value.get(key, REDIS_DEFAULTS[key])
        if isinstance(number, bool) or not isinstance(number, (int, float)) or number <= 0:
            return error(f"{key} must be a positive number of seconds, not {number!r}.")
    prefix = value.get("PREFIX")
    if prefix is not None and (not isinstance(prefix, str) or not prefix):
        return error(f"PREFIX must be a non-empty string or None, not {prefix!r}.")
    if "postgresql" not in engine:
        return error(
            "is redis-streams, but the engine's database is not PostgreSQL.",
            "Redis Streams dispatch relays jobs from PostgreSQL: use the postgres backend.",
        )
    try:
        import redis  # noqa: F401
    except ImportError:
        return error(
            "is redis-streams, but the redis package is not installed.",
            "pip install 'django-taskengine[redis]'.",
        )
    return []
