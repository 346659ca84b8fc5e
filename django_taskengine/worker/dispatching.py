"""A worker process's part in the dispatch backend (django_taskengine/dispatch): under Redis
Streams, the reader of its queues' streams and its relay thread (one relay of the fleet's
relays at a time); under PostgreSQL dispatch, nothing."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..dispatch.options import redis_dispatch
from ..store import Store, WorkerInfo

if TYPE_CHECKING:
    from ..dispatch.relay import Relay
    from ..dispatch.streams import StreamReader


class Dispatch:
    def __init__(self, store: Store, info: WorkerInfo, *, burst: bool) -> None:
        self.reader: StreamReader | None = None
        self.relay: Relay | None = None
        options = redis_dispatch() if store.vendor == "postgresql" else None
        if options is None:
            return
        # Imported only here: the redis package is needed only by those who choose it.
        from ..dispatch.relay import Relay
        from ..dispatch.streams import StreamReader

        self.reader = StreamReader(
            options, store.alias, info.queues, str(info.id), scan_when_idle=burst
        )
        self.relay = Relay(options, store.alias, info.id)

    def start(self) -> None:
        if self.reader is not None:
            self.reader.start()
        if self.relay is not None:
            self.relay.start()

    def stop(self) -> None:
        """Stop reading (what was delivered and not claimed goes back to the streams) and
        relaying (another worker's relay takes over)."""
        if self.relay is not None:
            self.relay.stop()
        if self.reader is not None:
            self.reader.stop()
