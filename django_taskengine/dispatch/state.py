"""What an operator sees of Redis Streams dispatch (``taskengine status``, the metrics view):
per queue's stream its length, entries not yet delivered, entries delivered and not yet
acknowledged (pending) and how long the oldest of those has waited; the relay's leader, last
round and lag (how long the jobs it last published had been due)."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any

from .options import RedisDispatch, redis_dispatch


@dataclass
class StreamState:
    queue: str
    length: int
    #: Entries no consumer has read yet (the group's lag).
    undelivered: int
    #: Entries delivered and not acknowledged.
    pending: int
    #: Seconds since the oldest pending entry was delivered; None when none is pending.
    oldest_pending_age: float | None


@dataclass
class DispatchState:
    backend: str
    url: str = ""
    prefix: str = ""
    #: Why Redis could not be read ("" if it was).
    error: str = ""
    streams: list[StreamState] = field(default_factory=list)
    #: The relay's worker id, seconds since its last round, its lag in seconds, and how many
    #: jobs it has published in all ("" / None until a relay has run).
    relay_leader: str = ""
    relay_round_age: float | None = None
    relay_lag: float | None = None
    published: int = 0

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


def dispatch_state(using: str) -> DispatchState:
    """The dispatch backend's state for the job table on ``using``, read now."""
    options = redis_dispatch()
    if options is None:
        return DispatchState(backend="postgres")
    from .streams import REDIS_ERRORS, client, prefix

    base = prefix(options, using)
    state = DispatchState(backend="redis-streams", url=redacted(options), prefix=base)
    redis = client(options)
    try:
        _read(redis, base, state)
    except REDIS_ERRORS as exc:
        state.error = str(exc) or type(exc).__name__
    finally:
        redis.close()
    return state


def _read(redis: Any, base: str, state: DispatchState) -> None:
    from .streams import STREAMS

    relay = redis.hgetall(f"{base}:relay")
    if relay:
        state.relay_leader = relay.get("leader", "")
        if "round_at" in relay:
            state.relay_round_age = max(0.0, time.time() - float(relay["round_at"]))
        if "lag" in relay:
            state.relay_lag = float(relay["lag"])
        state.published = int(relay.get("published", 0))
    for queue in sorted(redis.smembers(f"{base}:queues")):
        item = StreamState(queue, 0, 0, 0, None)
        for key in STREAMS:  # the queue's stream, and its stream of jobs that sort first
            _add_stream(redis, key(base, queue), item)
        state.streams.append(item)


def _add_stream(redis: Any, stream: str, item: StreamState) -> None:
    from .streams import GROUP, workers_group

    if not redis.exists(stream):
        return
    item.length += redis.xlen(stream)
    group = workers_group(redis.xinfo_groups(stream))
    if group is None:
        return
    item.undelivered += int(group.get("lag") or 0)
    item.pending += int(group["pending"])
    if group["pending"]:
        first = redis.xpending_range(stream, GROUP, min="-", max="+", count=1)
        if first:
            age = first[0]["time_since_delivered"] / 1000
            item.oldest_pending_age = max(item.oldest_pending_age or 0.0, age)


def redacted(options: RedisDispatch) -> str:
    """The URL without its password."""
    scheme, sep, rest = options.url.partition("://")
    credentials, at, host = rest.rpartition("@")
    if not at:
        return options.url
    user = credentials.split(":", 1)[0]
    return f"{scheme}{sep}{user}:***@{host}" if ":" in credentials else options.url
