"""The vocabulary of the audit trail: where an operator action came from, and what kind of
object it applied to."""

from __future__ import annotations

from django.db import models


class AuditSource(models.TextChoices):
    ADMIN = "admin", "admin"
    CLI = "cli", "command line"
    PYTHON = "python", "Python"


class AuditObject(models.TextChoices):
    QUEUE = "queue", "queue"
    TASK = "task", "task type"
    ENGINE = "engine", "engine"
    JOB = "job", "job"
    SCHEDULE = "schedule", "schedule"
    WORKER = "worker", "worker process"
