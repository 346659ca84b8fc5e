"""Queues and the pauses wider than one queue (a task type, the whole engine). Importable from
:mod:`django_taskengine.models`."""

from __future__ import annotations

from django.db import models
from django.utils import timezone

from .core.limits import ACTOR_MAX, QUEUE_NAME_MAX


class Queue(models.Model):
    """A named lane of jobs. Rows are created on first use; an operator pauses and resumes them."""

    name = models.CharField(max_length=QUEUE_NAME_MAX, primary_key=True)
    paused = models.BooleanField(default=False)
    paused_at = models.DateTimeField(null=True, blank=True)
    paused_by = models.CharField(max_length=ACTOR_MAX, blank=True, default="")
    pause_reason = models.TextField(blank=True, default="")
    #: A timed pause ends by itself at this moment; claims treat the queue as running after it.
    paused_until = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    #: The limits in force (django_taskengine/core/flow.py), fleet-wide: each knob's runtime
    #: value if one is set, else its setting. None and "" mean no limit.
    concurrency = models.IntegerField(null=True, blank=True)
    # Defaults in the database too: enqueue inserts queue rows with its own SQL, and so do
    # processes of the previous release during a deploy.
    rate_limit = models.CharField(max_length=32, blank=True, default="", db_default="")
    #: ``TASKENGINE["QUEUES"][name]`` as the last worker to start read it.
    settings_limits = models.JSONField(default=dict, blank=True, db_default={})
    #: The knobs set at runtime ("concurrency", "rate_limit"; a None value: no limit), which
    #: override the setting until cleared.
    runtime_limits = models.JSONField(default=dict, blank=True, db_default={})
    limits_changed_at = models.DateTimeField(null=True, blank=True)
    limits_changed_by = models.CharField(
        max_length=ACTOR_MAX, blank=True, default="", db_default=""
    )

    class Meta:
        db_table = "taskengine_queue"
        ordering = ["name"]
        permissions = [
            ("pause_queue", "Can pause and resume queues and task types"),
            ("limit_queue", "Can set queue limits"),
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def is_paused(self) -> bool:
        """Paused now: a timed pause whose end has passed no longer counts."""
        return self.paused and (self.paused_until is None or self.paused_until > timezone.now())


class PauseScope(models.TextChoices):
    ENGINE = "engine", "every queue"
    TASK = "task", "task type"


class Pause(models.Model):
    """A pause wider than one queue: the whole engine, or one task type across all queues.

    A row means "paused" (until ``paused_until``, if set); resuming deletes it. Queue pauses
    live on :class:`Queue` itself.
    """

    scope = models.CharField(max_length=16, choices=PauseScope.choices)
    #: The task name for a task pause; empty for the engine-wide pause.
    target = models.CharField(max_length=255, blank=True, default="")
    paused_at = models.DateTimeField(default=timezone.now)
    paused_by = models.CharField(max_length=ACTOR_MAX, blank=True, default="")
    pause_reason = models.TextField(blank=True, default="")
    paused_until = models.DateTimeField(null=True, blank=True)

    class Meta:
        db_table = "taskengine_pause"
        ordering = ["scope", "target"]
        constraints = [
            models.UniqueConstraint(fields=["scope", "target"], name="taskengine_pause_unique")
        ]

    def __str__(self) -> str:
        return "all queues" if self.scope == PauseScope.ENGINE else f"task {self.target}"

    @property
    def is_active(self) -> bool:
        return self.paused_until is None or self.paused_until > timezone.now()
