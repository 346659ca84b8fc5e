"""The periodic schedules' tables (``@periodic`` and ``TASKENGINE["PERIODIC"]``): their shared
state, and the ticks already enqueued. Importable from :mod:`django_taskengine.models`."""

from __future__ import annotations

from django.db import models
from django.utils import timezone

from .core.limits import ACTOR_MAX, QUEUE_NAME_MAX, TASK_NAME_MAX


class CatchUp(models.TextChoices):
    """What a periodic schedule does with ticks that no worker enqueued in time (downtime)."""

    ONCE = "once", "once: one job for the latest missed tick"
    ALL = "all", "all: one job per missed tick (the latest 100 at most)"


#: ``Schedule`` has a field called ``timezone``, which hides the module inside its class body.
_now = timezone.now


class Schedule(models.Model):
    """A periodic schedule (``@periodic`` or ``TASKENGINE["PERIODIC"]``) and its shared state.

    Workers create and update these rows from the definitions in their code and settings; the
    definition columns are a copy for the admin and for "Run now". The state columns (pause,
    last and next tick) are what every worker on every host agrees on.
    """

    name = models.CharField(max_length=200, unique=True)
    task_name = models.CharField(max_length=TASK_NAME_MAX)
    cron = models.CharField(max_length=255)
    #: IANA time zone the cron expression is read in, e.g. "Europe/Paris".
    timezone = models.CharField(max_length=64)
    args = models.JSONField(default=list, blank=True)
    kwargs = models.JSONField(default=dict, blank=True)
    #: Empty: the task's own queue.
    queue = models.CharField(max_length=QUEUE_NAME_MAX, blank=True, default="")
    #: None: the task's own priority.
    priority = models.IntegerField(null=True, blank=True)
    catch_up = models.CharField(max_length=8, choices=CatchUp.choices, default=CatchUp.ONCE)
    paused = models.BooleanField(default=False)
    paused_at = models.DateTimeField(null=True, blank=True)
    paused_by = models.CharField(max_length=ACTOR_MAX, blank=True, default="")
    #: The latest tick a job was enqueued for, and that job (which retention may have deleted).
    last_tick_at = models.DateTimeField(null=True, blank=True)
    last_job_id = models.BigIntegerField(null=True, blank=True)
    #: The earliest tick not yet handled; None when the expression has no further date.
    next_tick_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=_now)
    updated_at = models.DateTimeField(default=_now)

    class Meta:
        db_table = "taskengine_schedule"
        ordering = ["name"]
        permissions = [
            ("pause_schedule", "Can pause and resume periodic schedules"),
            ("run_schedule", "Can run a periodic schedule's task now"),
        ]

    def __str__(self) -> str:
        return self.name


class PeriodicTick(models.Model):
    """One tick of a schedule that has been enqueued. The unique constraint on (schedule, tick)
    is what makes it exactly one job per tick, however many workers race to enqueue it."""

    id = models.BigAutoField(primary_key=True)
    # The unique constraint's index, (schedule, tick), serves lookups by schedule too.
    schedule = models.ForeignKey(
        Schedule, on_delete=models.CASCADE, related_name="ticks", db_index=False
    )
    #: The moment the cron expression named (not when the job was enqueued).
    tick = models.DateTimeField()
    #: Not a foreign key: retention deletes jobs without touching this table.
    job_id = models.BigIntegerField(null=True, blank=True)
    enqueued_at = models.DateTimeField(default=timezone.now)

    class Meta:
        db_table = "taskengine_periodic_tick"
        ordering = ["schedule", "-tick"]
        constraints = [
            models.UniqueConstraint(fields=["schedule", "tick"], name="taskengine_tick_once")
        ]

    def __str__(self) -> str:
        return f"{self.schedule_id} @ {self.tick.isoformat()}"
