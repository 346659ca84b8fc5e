"""Periodic tasks: ``@periodic("*/5 * * * *")`` on a task, and ``TASKENGINE["PERIODIC"]``.

How a tick becomes exactly one job, however many workers on however many hosts:

* Every worker process (not ``--burst``) runs :func:`enqueue_due_ticks` about once a second
  (a duty of :mod:`django_taskengine.worker.maintenance`). It enqueues the schedules defined in
  its own code and settings; the :class:`~django_taskengine.models.Schedule` rows hold the state
  all workers share — paused or not, the last tick and the next one — and a copy of the
  definition for the admin. Rows are created and updated from the definitions
  (:func:`sync_schedules`), never deleted by a worker: a worker with other code or settings
  must not erase what others run.
* One transaction per due schedule: a conditional ``UPDATE`` advances ``next_tick_at`` from
  the value this worker read (and only while the schedule is not paused); a worker that loses
  that race enqueues nothing. Then, for each due tick, ``INSERT … ON CONFLICT (schedule, tick)
  DO NOTHING RETURNING id`` into :class:`~django_taskengine.models.PeriodicTick`, and the job is
  enqueued only if that row was inserted. The unique constraint is the guarantee; the
  conditional update only spares the database needless conflicts. Whatever moves
  ``next_tick_at`` back — a host whose clock lags, a resume, a changed definition — cannot
  enqueue a tick twice.
* Ticks are computed by croniter with aware datetimes in the schedule's time zone, and stored in
  UTC. A tick that no worker enqueued within ``TASKENGINE["PERIODIC_MISSED_AFTER"]`` seconds
  (every worker was down) is *missed*: with ``catch_up="once"`` (the default) the missed ticks
  collapse into one job, for the latest of them; with ``catch_up="all"`` each gets a job, the
  latest :data:`CATCH_UP_LIMIT` at most.
* The tick rows of each schedule are pruned to the latest :data:`TICKS_KEPT`.

Definitions are validated by the system checks (``taskengine.E023``–``E027``), which
``run_workers`` runs before it starts; a worker skips a definition that does not validate.
Operators pause, resume and run schedules through :mod:`django_taskengine.operations`.

The modules: :mod:`.cron` (expressions, time zones, due ticks), :mod:`.declarations` (the
decorator and the setting), :mod:`.validation` (what a valid definition is), :mod:`.scheduler`
(the rows and the worker duties).
"""

from __future__ import annotations

from .cron import CATCH_UP_LIMIT, Cron, due_ticks, parsed_cron
from .declarations import (
    Declaration,
    collect_definitions,
    definitions,
    periodic,
    restore_declarations,
    snapshot_declarations,
)
from .scheduler import (
    CHECK_INTERVAL,
    PRUNE_INTERVAL,
    TICKS_KEPT,
    enqueue_due_ticks,
    enqueue_schedule_ticks,
    enqueue_tick,
    prune_ticks,
    sync_schedules,
)
from .validation import CATCH_UP_CHOICES, SETTING_KEYS, Problem, ScheduleDefinition

__all__ = [
    "CATCH_UP_CHOICES",
    "CATCH_UP_LIMIT",
    "CHECK_INTERVAL",
    "PRUNE_INTERVAL",
    "SETTING_KEYS",
    "TICKS_KEPT",
    "Cron",
    "Declaration",
    "Problem",
    "ScheduleDefinition",
    "collect_definitions",
    "snapshot_declarations",
    "definitions",
    "due_ticks",
    "enqueue_due_ticks",
    "enqueue_schedule_ticks",
    "enqueue_tick",
    "parsed_cron",
    "periodic",
    "prune_ticks",
    "restore_declarations",
    "sync_schedules",
]
