"""The flow claim through the Django ORM (see :mod:`.flow_claim`), and what the generic
session's claims share with it: the pauses in force, and claimed jobs read back by token.

Flow claims take turns through the database's write lock (SQLite's is one per database file):
each begins with a write, so it holds the lock before it reads what the limits count. The
limits therefore hold for the processes of one host, not across hosts (SQLite is one host).
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import Count, F, Q, Subquery, TextField
from django.db.models.functions import Cast, Greatest
from django.utils import timezone

from ..conf import taskengine_settings
from ..core.attempts import ClaimedJob
from ..core.flow import SEQUENCE, FlowJob, Window, lane_room
from ..models import Job, JobStatus, Pause, PauseScope, Queue, RateWindow
from .decoding import load_column
from .flow_source import MAX_LANES, Ask, Fast, FlowRead, Quota

#: The plain columns a claim reads back (the JSON ones are read as text).
_CLAIMED_FIELDS = (
    "id",
    "task_name",
    "queue",
    "attempts",
    "max_attempts",
    "retry_backoff",
    "timeout",
    "started_at",
    "uid",
)
#: The rate window row every flow claim writes first, to hold the write lock from the start.
_TURN = "~flow-claim"
_LIMITED = Q(concurrency__isnull=False) | ~Q(rate_limit="")


def limited_queues(alias: str) -> Any:
    """The names of the queues that have a limit in force, as a query."""
    return Queue.objects.using(alias).filter(_LIMITED).values("name")


def queue_limited(alias: str, queue: str) -> bool:
    """Whether ``queue`` has a limit in force (its new jobs are under flow control)."""
    return Queue.objects.using(alias).filter(_LIMITED, name=queue).exists()


def unpaused(alias: str, jobs: Any, now: dt.datetime) -> Any:
    """``jobs`` without those of paused queues and task types; None if the engine is paused."""
    in_force = Q(paused_until__isnull=True) | Q(paused_until__gt=now)
    pauses = Pause.objects.using(alias).filter(in_force)
    if pauses.filter(scope=PauseScope.ENGINE).exists():
        return None
    paused = Queue.objects.using(alias).filter(in_force, paused=True)
    return jobs.exclude(queue__in=Subquery(paused.values("name"))).exclude(
        task_name__in=Subquery(pauses.filter(scope=PauseScope.TASK).values("target"))
    )


def claimed_jobs(jobs: Any, token: uuid.UUID, started_at: dt.datetime | None) -> list[ClaimedJob]:
    """The jobs of ``jobs`` claimed with ``token``, in claim order, their JSON columns loaded
    one by one (a row Python cannot load fails its own job, not the batch: see .decoding)."""
    rows = (
        jobs.filter(token=token)
        .order_by("-priority", "run_after", "id")
        .annotate(
            args_text=Cast("args", TextField()),
            kwargs_text=Cast("kwargs", TextField()),
            checkpoint_text=Cast("checkpoint", TextField()),
            waits_text=Cast("waits", TextField()),
            due_at=Greatest("created_at", "run_after"),
        )
        .values(
            *_CLAIMED_FIELDS, "args_text", "kwargs_text", "checkpoint_text", "waits_text", "due_at"
        )
    )
    return [
        ClaimedJob(
            id=job["id"],
            task_name=job["task_name"],
            queue=job["queue"],
            args=load_column("args", job["args_text"]),
            kwargs=load_column("kwargs", job["kwargs_text"]),
            attempt=job["attempts"],
            max_attempts=job["max_attempts"],
            retry_backoff=job["retry_backoff"],
            timeout=job["timeout"],
            token=token,
            started_at=started_at,
            checkpoint=load_column("checkpoint", job["checkpoint_text"]),
            uid=job["uid"],
            waits=load_column("waits", job["waits_text"]),
            due_at=job["due_at"],
        )
        for job in rows
    ]


class GenericFlowSource:
    """A :class:`~.flow_claim.FlowSource` through the ORM."""

    def __init__(self, alias: str, *, worker: uuid.UUID, queues: list[str]) -> None:
        self.alias = alias
        self.worker = worker
        self.queues = queues

    def _jobs(self) -> Any:
        return Job.objects.using(self.alias)

    @contextmanager
    def locked(self) -> Iterator[None]:
        with transaction.atomic(using=self.alias):
            yield

    def fast(
        self, ask: Ask, *, start: int, park: list[str], policy: str, quota: int = 0
    ) -> Fast | None:
        # None: the claim is made job by job here, under the write lock it takes.
        return None

    def quota_claim(self, quota: Quota, *, limit: int, tasks: list[str]) -> list[ClaimedJob]:
        raise NotImplementedError("this store grants no quotas (its fast() is None)")

    def peek(self, ask: Ask) -> tuple[FlowRead, list[tuple[FlowJob, str]]]:
        # Reads only (autocommit): on SQLite they wait for no writer and stop none.
        return self.usage(), self.candidates(ask)

    def read(self, ask: Ask) -> tuple[FlowRead, list[tuple[FlowJob, str]]]:
        # The lock first: a write, so this transaction holds the database's write lock before
        # it reads anything (on SQLite, a read first could see a state older than the lock).
        turn = RateWindow.objects.using(self.alias).filter(scope=_TURN)
        if not turn.update(starts=[]):
            try:
                with transaction.atomic(using=self.alias):
                    turn.create(scope=_TURN, starts=[])
            except IntegrityError:  # another claim made it first: wait for its turn
                turn.update(starts=[])
        return self.usage(), self.candidates(ask)

    def usage(self) -> FlowRead:
        running = (
            self._jobs()
            .filter(
                flow_key__isnull=False,
                token__isnull=False,
                status__in=(JobStatus.RUNNING, JobStatus.QUEUED),
            )
            .values("queue", "task_name", "group_key", "sequence_key")
            .annotate(n=Count("id"))
            .order_by()
        )
        return FlowRead(
            now=timezone.now().timestamp(),
            running=[
                (FlowJob(0, r["queue"], r["task_name"], r["group_key"], r["sequence_key"]), r["n"])
                for r in running
            ],
            queues=list(
                Queue.objects.using(self.alias)
                .filter(_LIMITED)
                .values_list("name", "concurrency", "rate_limit")
            ),
            windows=dict(
                RateWindow.objects.using(self.alias)
                .exclude(scope=_TURN)
                .values_list("scope", "starts")
            ),
        )

    def candidates(self, ask: Ask) -> list[tuple[FlowJob, str]]:
        after, cap = ask.after, ask.cap
        now = timezone.now()
        waiting = self._jobs().filter(
            status=JobStatus.QUEUED, token__isnull=True, flow_key__isnull=False
        )
        onward = waiting.filter(flow_key__gt=after).order_by("flow_key")
        first = waiting.filter(flow_key__lte=after).order_by("flow_key")
        lanes = [
            *onward.values_list("flow_key", flat=True).distinct()[:MAX_LANES],
            *first.values_list("flow_key", flat=True).distinct()[:MAX_LANES],
        ]
        due = waiting.filter(run_after__lte=now)
        if self.queues:
            due = due.filter(queue__in=self.queues)
        due = unpaused(self.alias, due, now)
        if due is None:
            return []
        found: list[tuple[FlowJob, str]] = []
        for lane in dict.fromkeys(lanes):
            if len(found) >= cap:
                break
            if lane.startswith(SEQUENCE):
                head = (
                    self._jobs()
                    .filter(
                        sequence_key=lane[len(SEQUENCE) :],
                        status__in=(JobStatus.QUEUED, JobStatus.RUNNING, JobStatus.PAUSED),
                    )
                    .order_by("id")
                    .values_list("id", flat=True)
                    .first()
                )
                rows = due.filter(id=head)
            else:
                rows = due.filter(flow_key=lane).order_by("-priority", "run_after", "id")
            wanted = lane_room(lane, ask.rooms, ask.prefixes, ask.per_lane)
            for row in rows.values("id", "queue", "task_name", "group_key", "sequence_key")[
                :wanted
            ]:
                job = FlowJob(
                    row["id"], row["queue"], row["task_name"], row["group_key"], row["sequence_key"]
                )
                found.append((job, lane))
        return found[:cap]

    def start(
        self, jobs: list[FlowJob], now: float, windows: dict[str, Window]
    ) -> Callable[[], list[ClaimedJob]]:
        if not jobs:
            return list
        started_at = dt.datetime.fromtimestamp(now, dt.UTC)
        token = uuid.uuid4()
        self._jobs().filter(
            id__in=[job.id for job in jobs], status=JobStatus.QUEUED, token__isnull=True
        ).update(
            status=JobStatus.RUNNING,
            attempts=F("attempts") + 1,
            started_at=started_at,
            finished_at=None,
            worker_id=self.worker,
            token=token,
            lease_expires_at=started_at + dt.timedelta(seconds=taskengine_settings.LEASE_SECONDS),
        )
        for scope, starts in windows.items():
            RateWindow.objects.using(self.alias).update_or_create(
                scope=scope, defaults={"starts": starts}
            )
        order = {job.id: n for n, job in enumerate(jobs)}
        claimed = claimed_jobs(self._jobs(), token, started_at)
        claimed.sort(key=lambda job: order[job.id])
        return lambda: claimed
