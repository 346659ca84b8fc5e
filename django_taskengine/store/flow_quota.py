"""The quota a worker session holds (docs/guide/flow-control.md, "Quotas"): starts in one
queue's lane, granted by a flow claim in one statement while the queue's limits are far from
binding, that its next claims make without the flow lock (:meth:`.flow_source.FlowSource.
quota_claim`) until the quota ends or its starts are made."""

from __future__ import annotations

import time
from collections.abc import Collection

from ..core.attempts import ClaimedJob
from .flow_source import Fast, FlowSource, Quota, task_limits


class HeldQuota:
    """A session's quota, if it holds one: the starts left in it and when it ends by this
    process's clock (time.monotonic(); the database checks the end, by its own)."""

    def __init__(self) -> None:
        self.held: Quota | None = None
        self.left = 0
        self.ends = 0.0
        self._limited_tasks: list[str] | None = None

    def granted(self, fast: Fast) -> None:
        """Hold the quota ``fast`` granted, if it granted one. By this process's clock it ends
        a little later than by the database's (the reply came after the database read its
        clock): a claim made in between starts nothing, since the database checks the end."""
        if fast.quota is not None:
            self.held, self.left = fast.quota, fast.quota.starts
            self.ends = time.monotonic() + fast.quota.until - fast.read.now

    def claim(
        self, source: FlowSource, *, free: int, start: int, park: Collection[str]
    ) -> list[ClaimedJob]:
        """Up to ``start`` jobs started through the quota, while it lasts and has starts left:
        jobs of its lane only, none of a task type with limits, nor of one in ``park`` beyond
        the ``free`` threads. The quota is dropped once a claim starts fewer than it asked
        for (its lane had no more jobs due, or it ended): the next claim reads every lane."""
        quota = self.held
        if quota is None:
            return []
        limit = min(start, self.left)
        if limit <= 0 or time.monotonic() >= self.ends:
            self.held = None
            return []
        if self._limited_tasks is None:
            self._limited_tasks = sorted(task_limits())
        tasks = self._limited_tasks + (sorted(park) if limit > free else [])
        # Counted before the claim: a claim whose end is not known may have made them.
        self.left -= limit
        started = source.quota_claim(quota, limit=limit, tasks=tasks)
        if len(started) < limit:
            self.held = None
        return started
