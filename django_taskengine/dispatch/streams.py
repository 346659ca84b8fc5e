"""Redis Streams dispatch: the keys, the client, and a worker's reader of its queues' streams.

Keys, under the prefix (``DISPATCH["PREFIX"]``, by default ``taskengine:<database name>``):

* ``<prefix>:q:<queue>``: a queue's stream; an entry is ``{"id": job id, "p": priority,
  "t": run_after}`` (epoch seconds); consumer group ``workers``, one consumer per worker process
  (its id);
* ``<prefix>:first:<queue>``: the queue's jobs that sort before entries still unread in its
  stream (a higher priority; a rescued job keeps its place), read first;
* ``<prefix>:queues``: the set of queues the relay has published to (a worker of every queue
  reads all of them);
* ``<prefix>:relay``: the relay's state: leader, time of its last round, lag, jobs published;
* ``<prefix>:epoch``: set by the relay; a relay that finds it gone knows Redis lost its data
  (restarted without persistence, flushed, failed over) and publishes its window again.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import redis
from django.db import connections

from ..conf import taskengine_settings
from .options import RedisDispatch

logger = logging.getLogger("django_taskengine.worker")

GROUP = "workers"
#: What a failing Redis raises: a worker falls back to PostgreSQL scans, a relay waits.
REDIS_ERRORS: tuple[type[BaseException], ...] = (redis.RedisError, OSError)
#: How long one read of a reader blocks in Redis (milliseconds).
BLOCK_MS = 1000
#: A reader that failed waits this long before it tries Redis again, doubling up to the max.
RETRY_FIRST, RETRY_MAX = 0.2, 2.0


def prefix(options: RedisDispatch, alias: str) -> str:
    """The prefix of the engine's keys for database ``alias``."""
    if options.prefix:
        return options.prefix
    return f"taskengine:{connections[alias].settings_dict['NAME']}"


def stream_key(base: str, queue: str) -> str:
    return f"{base}:q:{queue}"


def first_key(base: str, queue: str) -> str:
    """The queue's stream of jobs that sort before entries already published (see
    relay.Relay._stream_for): read before the queue's own."""
    return f"{base}:first:{queue}"


#: A queue's streams, in the order readers read them.
STREAMS = (first_key, stream_key)


def workers_group(groups: Any) -> dict[str, Any] | None:
    """The workers' group among a stream's XINFO GROUPS, or None (no such stream or group)."""
    if isinstance(groups, Exception):
        return None
    return next((group for group in groups if group["name"] == GROUP), None)


def client(options: RedisDispatch) -> redis.Redis:
    """A client for ``options.url``: reads that block longer than a read's BLOCK_MS, or a
    connection that does not answer, raise instead of hanging (a cut connection)."""
    return redis.Redis.from_url(
        options.url,
        socket_connect_timeout=2.0,
        socket_timeout=BLOCK_MS / 1000 + 3.0,
        decode_responses=True,
    )


@dataclass(order=True)
class Delivery:
    """A stream entry delivered to this worker: sorted best first, in claim order (priority,
    then run_after, then id)."""

    sort_key: tuple[int, float, int]
    stream: str
    entry: str
    job_id: int


class StreamReader:
    """A worker's consumer of its queues' streams.

    A thread keeps up to ``want`` (what the worker's last claim had room for) deliveries ready,
    blocking in XREADGROUP while it has none, and takes over entries other consumers left
    unacknowledged for ``stale_after`` seconds. The claim (main thread) takes them with
    :meth:`take`, claims their jobs in PostgreSQL, then hands them back with :meth:`done`; the
    thread acknowledges them with its next read. While Redis fails, :attr:`healthy` is False
    and the worker claims by scanning.
    """

    def __init__(
        self,
        options: RedisDispatch,
        alias: str,
        queues: list[str],
        consumer: str,
        *,
        scan_when_idle: bool = False,
    ) -> None:
        self.options = options
        #: Every claim that gets no delivery scans too (a burst run must see that nothing is
        #: left before it ends).
        self.scan_when_idle = scan_when_idle
        self._scan_due = 0.0
        self.base = prefix(options, alias)
        self.queues = list(queues)
        self.consumer = consumer
        #: Redis answered the last request (None: not asked yet).
        self.healthy: bool | None = None
        # redis-py types its replies as "sync or async": read as Any.
        self._client: Any = None
        self._lock = threading.Condition()
        self._ready: list[Delivery] = []
        #: Deliveries whose jobs were locked when claimed (see held): taken with the next.
        self._held: list[Delivery] = []
        self._acks: list[Delivery] = []
        self._want = 0
        self._stopping = False
        #: The thread is (about to be) blocked in XREADGROUP.
        self._reading = False
        self._streams = [key(self.base, q) for q in queues for key in STREAMS]
        self._streams_read_at = 0.0
        self._next_stale_check = 0.0
        self._read_fd, self._write_fd = os.pipe()
        os.set_blocking(self._read_fd, False)
        os.set_blocking(self._write_fd, False)
        self._thread = threading.Thread(target=self._run, name="taskengine-streams", daemon=True)

    # The worker's main thread.

    def start(self) -> None:
        self._thread.start()

    def fileno(self) -> int:
        """Readable when deliveries are ready."""
        return self._read_fd

    def ready(self) -> bool:
        with self._lock:
            return bool(self._ready)

    def take(self, limit: int) -> list[Delivery]:
        """Up to ``limit`` deliveries, best first; the reader keeps ``limit`` ready from now."""
        self._drain_pipe()
        with self._lock:
            if self._held:
                self._ready += self._held
                self._held = []
            self._ready.sort()
            taken, self._ready = self._ready[:limit], self._ready[limit:]
            self._want = limit
            self._lock.notify_all()
        if taken:
            self._scan_due = time.monotonic() + taskengine_settings.POLL_INTERVAL
        return taken

    def should_scan(self) -> bool:
        """Scan the job table when Redis fails, in a burst run, or once nothing was delivered
        for a poll interval (what no relay published: none runs, or it lags)."""
        now = time.monotonic()
        if self.healthy and not self.scan_when_idle and now < self._scan_due:
            return False
        self._scan_due = now + taskengine_settings.POLL_INTERVAL
        return True

    def keep(self, deliveries: list[Delivery]) -> None:
        """Their claim failed (a database error): they are taken again first."""
        with self._lock:
            self._ready[:0] = deliveries

    def held(self, deliveries: list[Delivery]) -> None:
        """Their jobs were locked when claimed (store/base.py): taken again with the next
        claim's deliveries. Not ready: a worker waits for a reason to claim (a notification, a
        delivery, its poll) rather than spin while a row stays locked."""
        with self._lock:
            self._held += deliveries

    def done(self, deliveries: list[Delivery]) -> None:
        """Their jobs were claimed, or could not be: acknowledge them."""
        if deliveries:
            with self._lock:
                self._acks.extend(deliveries)
                self._lock.notify_all()

    def stop(self) -> None:
        """Stop reading; deliveries not taken are published again for other workers."""
        with self._lock:
            self._stopping = True
            self._lock.notify_all()
            reading = self._reading
        if reading and self._client is not None:
            # End a read blocked in Redis (up to BLOCK_MS) now: a stopping worker does not wait
            # for it. What it may have delivered stays pending until another worker takes it
            # over (STALE_AFTER), or the relay publishes it again.
            self._client.connection_pool.disconnect()
        self._thread.join(timeout=5.0)
        with self._lock:
            left, self._ready = self._ready + self._held, []
            self._held = []
            acks, self._acks = self._acks, []
        try:
            if acks or left:
                if self._client is None:
                    self._client = client(self.options)
                self._acknowledge(acks, republish=left)
        except REDIS_ERRORS:
            pass  # the relay republishes them
        finally:
            for fd in (self._read_fd, self._write_fd):
                os.close(fd)
            if self._client is not None:
                self._client.close()

    def _drain_pipe(self) -> None:
        try:
            while os.read(self._read_fd, 4096):
                pass
        except (BlockingIOError, OSError):
            pass

    # The reader's thread.

    def _run(self) -> None:
        delay = RETRY_FIRST
        try:
            # Healthy before the first claim asks for deliveries: until then a worker scans.
            self._client = client(self.options)
            self._create_groups(self._current_streams())
            self.healthy = True
        except REDIS_ERRORS as exc:
            self._failed(exc, [])
        while True:
            with self._lock:
                while not self._stopping and not self._acks and (self._ready or self._want <= 0):
                    self._lock.wait()
                if self._stopping:
                    return
                want = max(0, self._want - len(self._ready))
                acks, self._acks = self._acks, []
            try:
                if self._client is None:
                    self._client = client(self.options)
                self._acknowledge(acks)
                found = self._read(want) if want else []
            except Exception as exc:  # a reader must outlive whatever one read raises
                if self._stopping:
                    return  # its connection was closed under it (see stop)
                if not isinstance(exc, REDIS_ERRORS):
                    logger.exception("worker %s: reading Redis streams failed", self.consumer)
                self._failed(exc, acks)
                time.sleep(delay)
                delay = min(delay * 2, RETRY_MAX)
                continue
            delay = RETRY_FIRST
            if not self.healthy:
                logger.info("worker %s: reading Redis streams again", self.consumer)
            self.healthy = True
            if found:
                with self._lock:
                    self._ready.extend(found)
                try:
                    os.write(self._write_fd, b"x")
                except (BlockingIOError, OSError):
                    pass

    def _failed(self, exc: BaseException, acks: list[Delivery]) -> None:
        if self.healthy is not False:  # healthy, or not yet known: say it once
            logger.warning(
                "worker %s: Redis unavailable (%s); claiming from PostgreSQL", self.consumer, exc
            )
        self.healthy = False
        with self._lock:
            # Acknowledgements are of entries Redis may have lost; kept, they are retried.
            self._acks[:0] = acks
        if self._client is not None:
            self._client.close()
            self._client = None

    def _acknowledge(self, acks: list[Delivery], republish: Sequence[Delivery] = ()) -> None:
        if not acks and not republish:
            return
        assert self._client is not None
        pipe = self._client.pipeline(transaction=False)
        for delivery in republish:
            pipe.xadd(
                delivery.stream,
                {"id": delivery.job_id, "p": -delivery.sort_key[0], "t": delivery.sort_key[1]},
                maxlen=self.options.maxlen,
                approximate=True,
            )
        entries: dict[str, list[str]] = {}
        for delivery in [*acks, *republish]:
            entries.setdefault(delivery.stream, []).append(delivery.entry)
        # One XACK per stream for the whole batch, not one per entry: a command to pack and a
        # reply to parse per job were a large part of the reader's CPU in a drain.
        for stream, ids in entries.items():
            pipe.xack(stream, GROUP, *ids)
        pipe.execute()

    def _read(self, want: int) -> list[Delivery]:
        streams = self._current_streams()
        if not streams:
            time.sleep(BLOCK_MS / 1000)
            return []
        now = time.monotonic()
        found: list[Delivery] = []
        if now >= self._next_stale_check:
            self._next_stale_check = now + self.options.stale_after / 2
            found = self._take_over_stale(streams, want)
            if found:
                return found
        with self._lock:
            if self._stopping:
                return []
            self._reading = True
        try:
            reply = self._client.xreadgroup(
                GROUP, self.consumer, dict.fromkeys(streams, ">"), count=want, block=BLOCK_MS
            )
        except redis.ResponseError as exc:
            if "NOGROUP" not in str(exc):
                raise
            self._create_groups(streams)
            return []
        finally:
            self._reading = False
        for stream, entries in reply or ():
            found.extend(delivery(stream, entry, fields) for entry, fields in entries)
        return found

    def _take_over_stale(self, streams: list[str], want: int) -> list[Delivery]:
        """Entries delivered to consumers that did not acknowledge them in ``stale_after``."""
        found: list[Delivery] = []
        idle = int(self.options.stale_after * 1000)
        for stream in streams:
            try:
                reply = self._client.xautoclaim(stream, GROUP, self.consumer, idle, count=want)
            except redis.ResponseError as exc:
                if "NOGROUP" not in str(exc):
                    raise
                continue
            found.extend(
                delivery(stream, entry, fields) for entry, fields in reply[1] if fields is not None
            )
        return found

    def _create_groups(self, streams: list[str]) -> None:
        """Every stream's group, created from the stream's start: entries published before it
        existed (by a relay, after Redis lost its data) are delivered too."""
        assert self._client is not None
        for stream in streams:
            try:
                self._client.xgroup_create(stream, GROUP, id="0", mkstream=True)
            except redis.ResponseError as exc:
                if "BUSYGROUP" not in str(exc):
                    raise

    def _current_streams(self) -> list[str]:
        if self.queues:
            return self._streams
        now = time.monotonic()
        if now - self._streams_read_at > 1.0:
            assert self._client is not None
            names = sorted(self._client.smembers(f"{self.base}:queues"))
            self._streams = [key(self.base, name) for name in names for key in STREAMS]
            self._streams_read_at = now
        return self._streams


def delivery(stream: str, entry: str, fields: dict[str, str]) -> Delivery:
    job_id = int(fields["id"])
    return Delivery(
        # Claim order: priority, then run_after, then id.
        sort_key=(-int(fields.get("p", 0)), float(fields.get("t", 0.0)), job_id),
        stream=stream,
        entry=entry,
        job_id=job_id,
    )
