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

from django.db.models import Q

from .core.statuses import TERMINAL_STATUSES, JobStatus

#: The statuses of jobs at rest (paused or finished): the condition of the two ``rest`` indexes.
AT_REST = (JobStatus.PAUSED, *TERMINAL_STATUSES)


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
