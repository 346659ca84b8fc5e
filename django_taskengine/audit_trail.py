"""The audit trail's table: one row per operator action that changed something.

Imported by :mod:`django_taskengine.models` (where Django finds it); written only by
:mod:`django_taskengine.operations`, read by the admin's "Audit trail" and ``taskengine audit``.
"""

from __future__ import annotations

from django.db import models
from django.utils import timezone

from .core.audit import AuditObject, AuditSource
from .core.limits import ACTOR_MAX

__all__ = ["AuditEntry", "AuditObject", "AuditSource"]


class AuditEntry(models.Model):
    """One operator action that changed something: who, what, on which object, when, why, from
    where. :mod:`django_taskengine.operations` writes it in the transaction of the change."""

    id = models.BigAutoField(primary_key=True)
    at = models.DateTimeField(default=timezone.now)
    actor = models.CharField(max_length=ACTOR_MAX, blank=True, default="")
    source = models.CharField(max_length=16, choices=AuditSource.choices)
    #: The operation, e.g. ``pause_queue``, ``retry_job``, ``run_schedule_now``.
    action = models.CharField(max_length=32)
    object_kind = models.CharField(max_length=16, choices=AuditObject.choices)
    #: The queue, task or schedule name, or the job id; empty for the engine.
    object_id = models.CharField(max_length=255, blank=True, default="")
    reason = models.TextField(blank=True, default="")
    #: What the action set, e.g. ``{"status": "queued"}``.
    detail = models.JSONField(default=dict, blank=True)

    class Meta:
        db_table = "taskengine_audit"
        ordering = ["-at", "-id"]
        verbose_name = "audit entry"
        verbose_name_plural = "audit trail"
        default_permissions = ("view",)  # entries are written by the operations only
        indexes = [
            models.Index(fields=["at"], name="taskengine_audit_at_idx"),  # latest first
            models.Index(
                fields=["object_kind", "object_id", "at"], name="taskengine_audit_obj_idx"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.action} {self.object_label} by {self.actor or 'unknown'} ({self.source})"

    @property
    def object_label(self) -> str:
        """``queue emails``, ``job 42``, ``all queues``."""
        if self.object_kind == AuditObject.ENGINE:
            return "all queues"
        return f"{self.get_object_kind_display()} {self.object_id}"
