"""Events (``send_event``) and what waits for them (``ctx.wait_for_event``): the table of sent
events. Importable from :mod:`django_taskengine.models`."""

from __future__ import annotations

from django.db import models
from django.utils import timezone

from .core.limits import EVENT_NAME_MAX


class Event(models.Model):
    """An event sent by ``send_event(name, payload)``: kept (until retention's ``events`` age),
    so that a job that waits for it after it was sent still gets it."""

    id = models.BigAutoField(primary_key=True)
    name = models.CharField(max_length=EVENT_NAME_MAX)
    payload = models.JSONField(null=True, blank=True)
    #: The database's clock at the send (PostgreSQL), or the sender's.
    sent_at = models.DateTimeField(default=timezone.now)

    class Meta:
        db_table = "taskengine_event"
        ordering = ["-id"]
        indexes = [
            # A wait's lookup: the first event of a name sent in a time range.
            models.Index(fields=["name", "sent_at", "id"], name="taskengine_event_name_idx"),
            # Retention: the oldest first.
            models.Index(fields=["sent_at"], name="taskengine_event_sent_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.sent_at:%Y-%m-%d %H:%M:%S})"
