"""The Django admin for operators of the engine.

* :mod:`.queues` — queues with their counts, Pause / Resume (row buttons, bulk actions, timed
  pauses on the queue's page); :mod:`.pauses` — Pause all / Resume all and task-type pauses;
* :mod:`.jobs` — the job list (fast on millions of rows: :mod:`.job_list`, :mod:`.paginator`)
  and the job page (:mod:`.job_fields`) with its actions and "Why is this job not running?";
* :mod:`.workers` — worker processes and their heartbeats;
* :mod:`.overview` — the whole engine on one page; :mod:`.failures` — failed jobs grouped by
  exception and message, with "Retry all in this group";
* :mod:`.workflows` — workflows and batches: their steps, graph (:mod:`.workflow_graph`) and
  actions on them all;
* :mod:`.audit` — the audit trail of operator actions (read-only), and each queue's, job's and
  schedule's latest entries on its page.

Every state change is a POST to a view that calls :mod:`django_taskengine.operations`; the admin
never writes job or queue rows itself.
"""

from __future__ import annotations

from .audit import AuditEntryAdmin
from .failures import FailuresAdmin
from .jobs import JobAdmin
from .overview import OverviewAdmin
from .queues import QueueAdmin
from .schedules import ScheduleAdmin
from .workers import WorkerAdmin
from .workflows import WorkflowAdmin

__all__ = [
    "AuditEntryAdmin",
    "FailuresAdmin",
    "JobAdmin",
    "OverviewAdmin",
    "QueueAdmin",
    "ScheduleAdmin",
    "WorkerAdmin",
    "WorkflowAdmin",
]
