"""Operator actions: pause and resume queues, task types, the engine, jobs and periodic
schedules; retry, cancel and run jobs now.

The admin, the ``taskengine`` command and Python code all call these functions; none of them
writes job or queue rows on its own. Every change is one conditional ``UPDATE``: an action on an
object that changed state meanwhile is refused with :class:`ActionRefused`, never applied twice.

- :mod:`.pauses`: queues, task types and the engine.
- :mod:`.jobs`: one job at a time (or many, :func:`apply_to_jobs`).
- :mod:`.job_edits`: run a finished job again, change a waiting job's priority or due time,
  delete a finished job, discard one that never ran.
- :mod:`.schedules`: periodic schedules.
- :mod:`.limits`: queue limits (flow control).
- :mod:`.workers`: requests to worker processes (drain, resume, stop, hard stop).
- :mod:`.audit`: the audit trail every change above is recorded in.

Every change takes ``by`` (who), ``reason`` (why) and ``source`` ("admin", "cli"; Python callers
default to "python").
"""

from __future__ import annotations

from .audit import Actor, audit_entries
from .common import ActionRefused, NotFound
from .job_edits import (
    delete_job,
    discard_job,
    run_job_again,
    set_job_priority,
    set_job_run_after,
)
from .jobs import (
    JOB_ACTION_FUNCTIONS,
    JOB_ACTIONS,
    Expected,
    actions_for,
    apply_to_jobs,
    cancel_job,
    pause_job,
    resume_job,
    retry_job,
    run_job_now,
    stop_running_jobs,
)
from .limits import SETTING, adopt_strays, set_queue_limits, sync_settings
from .pauses import (
    active_pauses,
    engine_pause,
    get_queue,
    pause_all,
    pause_queue,
    pause_task,
    paused_queues,
    release_ended_pauses,
    resume_all,
    resume_queue,
    resume_task,
    task_pause,
)
from .schedules import get_schedule, pause_schedule, resume_schedule, run_schedule_now
from .workers import drain_worker, get_worker, hard_stop_worker, resume_worker, stop_worker
from .workflows import (
    WorkflowResult,
    cancel_workflow,
    get_workflow,
    pause_workflow,
    resume_workflow,
    retry_workflow,
    workflow_steps,
)

__all__ = [
    "JOB_ACTIONS",
    "SETTING",
    "JOB_ACTION_FUNCTIONS",
    "ActionRefused",
    "Actor",
    "Expected",
    "WorkflowResult",
    "cancel_workflow",
    "get_workflow",
    "pause_workflow",
    "resume_workflow",
    "retry_workflow",
    "workflow_steps",
    "NotFound",
    "actions_for",
    "adopt_strays",
    "active_pauses",
    "apply_to_jobs",
    "audit_entries",
    "cancel_job",
    "delete_job",
    "discard_job",
    "drain_worker",
    "get_worker",
    "hard_stop_worker",
    "resume_worker",
    "stop_worker",
    "engine_pause",
    "get_queue",
    "get_schedule",
    "pause_all",
    "pause_job",
    "pause_queue",
    "pause_schedule",
    "pause_task",
    "paused_queues",
    "release_ended_pauses",
    "resume_all",
    "resume_job",
    "resume_queue",
    "resume_schedule",
    "resume_task",
    "retry_job",
    "run_job_again",
    "run_job_now",
    "run_schedule_now",
    "set_job_priority",
    "set_job_run_after",
    "set_queue_limits",
    "stop_running_jobs",
    "sync_settings",
    "task_pause",
]
