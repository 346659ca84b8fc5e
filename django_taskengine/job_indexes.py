"""Conditions on a job's status written the way the job table's indexes can serve them.

Every index on ``status`` is partial, so that a job a worker moves from queued to running to
finished gets, in each state, entries only in the indexes that state needs (each row version
of a job that changes status is indexed anew in every index whose condition it meets):

* ``taskengine_job_claimable_idx``: queued, no worker has reserved it, not under flow control
  (the claim's);
* ``taskengine_job_flow_idx``: the same, under flow control (a lane in ``flow_key``: the flow
  claim's);
* ``taskengine_job_reserved_idx``: queued, reserved by a worker (rescue's);
* ``taskengine_job_running_idx``: running (rescue's, the running view's);
* ``taskengine_job_rest_status_idx`` and ``taskengine_job_rest_task_idx``: jobs at rest —
  paused or finished, which no worker touches — by status and queue, and by task.

PostgreSQL uses a partial index only for a condition that implies the index's own, so "queued
jobs" must be asked as "queued and not reserved, or queued and reserved": :func:`status_in`
writes a set of statuses as an OR of conditions that each match one of these indexes.
"""

from __future__ import annotations

from functools import reduce
from operator import or_

from django.db import models
from django.db.models import Q

from .core.dedup import WHILE_ACTIVE
from .core.statuses import ACTIVE_STATUSES, TERMINAL_STATUSES, JobStatus

#: The statuses of jobs at rest (paused or finished): the condition of the two ``rest`` indexes.
AT_REST = (JobStatus.PAUSED, *TERMINAL_STATUSES)

#: The job that holds its dedup key, at most one per key (the unique index
#: taskengine_job_active_dedup_key): an active one, unless its mode holds the key only until it
#: starts (core/dedup.py) and it has started. SQL that names the index as an arbiter
#: (``ON CONFLICT … WHERE``) repeats this condition.
DEDUP_HOLDER = Q(dedup_key__isnull=False, status__in=list(ACTIVE_STATUSES)) & (
    Q(dedup_mode__in=list(WHILE_ACTIVE)) | Q(started_at__isnull=True)
)


def status_in(*statuses: str) -> Q:
    """``status IN statuses``, as conditions each served by one partial index."""
    wanted = set(statuses)
    unknown = wanted - set(JobStatus.values)
    if unknown or not wanted:
        raise ValueError(f"not job statuses: {sorted(unknown) or 'none given'}")
    arms = []
    if JobStatus.QUEUED in wanted:
        arms += [
            Q(status=JobStatus.QUEUED, token__isnull=True, flow_key__isnull=True),
            Q(status=JobStatus.QUEUED, token__isnull=True, flow_key__isnull=False),
            Q(status=JobStatus.QUEUED, token__isnull=False),
        ]
    if JobStatus.RUNNING in wanted:
        arms.append(Q(status=JobStatus.RUNNING))
    resting = [status for status in AT_REST if status in wanted]
    if resting:
        arms.append(Q(status__in=resting))
    return reduce(or_, arms)


#: Any status: for a query by task name, which has an index only among jobs at rest.
ANY_STATUS = status_in(*JobStatus.values)


#: The job table's indexes for flow control and for waits (part of ``Job.Meta.indexes``).
LANE_AND_WAIT_INDEXES = [
    # Serves the flow claim: as the claim index (models.py), lane by lane.
    models.Index(
        "flow_key",
        models.F("priority").desc(),
        "run_after",
        "id",
        name="taskengine_job_flow_idx",
        condition=Q(status="queued", token__isnull=True, flow_key__isnull=False),
    ),
    # What the flow limits count: jobs under flow control a worker owns (a token: started
    # or claimed ahead). Not by status, so that no status index serves the count too.
    models.Index(
        fields=["flow_key"],
        name="taskengine_job_flow_active_idx",
        condition=Q(flow_key__isnull=False, token__isnull=False),
    ),
    # A sequence's next job: its first one not finished, in enqueue order.
    models.Index(
        fields=["sequence_key", "id"],
        name="taskengine_job_sequence_idx",
        condition=Q(sequence_key__isnull=False, status__in=["queued", "running", "paused"]),
    ),
    # A workflow's steps.
    models.Index(
        fields=["workflow_id"],
        name="taskengine_job_workflow_idx",
        condition=Q(workflow_id__isnull=False),
    ),
    # The sweep of jobs waiting for dependencies (store/orm_dependencies.py).
    models.Index(fields=["id"], name="taskengine_job_blocked_idx", condition=Q(blocked=True)),
    # send_event's lookup: the jobs parked waiting for an event (ctx.wait_for_event).
    models.Index(
        fields=["waiting_for"],
        name="taskengine_job_waiting_idx",
        condition=Q(waiting_for__isnull=False),
    ),
]
