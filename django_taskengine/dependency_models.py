"""Dependencies between jobs (``.using(after=[…])``, django_taskengine/core/dependencies.py), one
row per edge, and workflows (django_taskengine/workflows.py), whose steps are jobs. Importable
from :mod:`django_taskengine.models`."""

from __future__ import annotations

from django.db import models
from django.utils import timezone

from .core.dependencies import POLICY_MAX
from .core.limits import WORKFLOW_NAME_MAX


class Dependency(models.Model):
    """Job ``job_id`` runs only after job ``after_id`` is finished, by ``policy``.

    Plain ids, no foreign keys: retention deletes finished jobs by the batch, without the ORM,
    and a dependency that is gone counts as not succeeded. A job's rows go with it (retention).
    """

    id = models.BigAutoField(primary_key=True)
    #: The job that waits.
    job_id = models.BigIntegerField()
    #: The job it waits for.
    after_id = models.BigIntegerField()
    #: "cancel", "run" or "failure" (core/dependencies.py).
    policy = models.CharField(max_length=POLICY_MAX, default="cancel")
    #: The run_after the waiting job was enqueued with (None: at once): it is due then at the
    #: earliest, once its dependencies allow.
    run_after = models.DateTimeField(null=True, blank=True)

    class Meta:
        db_table = "taskengine_dependency"
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(fields=["job_id", "after_id"], name="taskengine_dep_unique")
        ]
        indexes = [
            # What waits for a job that just finished.
            models.Index(fields=["after_id"], name="taskengine_dep_after_idx"),
        ]

    def __str__(self) -> str:
        return f"job {self.job_id} after job {self.after_id}"


class Workflow(models.Model):
    """Jobs enqueued together by ``Workflow(name).enqueue()``: its steps are the jobs whose
    ``workflow_id`` is its id, each with its ``step`` name."""

    id = models.BigAutoField(primary_key=True)
    name = models.CharField(max_length=WORKFLOW_NAME_MAX)
    #: "workflow", or "batch" (a Batch: its jobs and its callbacks).
    kind = models.CharField(max_length=8, default="workflow", db_default="workflow")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        db_table = "taskengine_workflow"
        ordering = ["-id"]

    def __str__(self) -> str:
        return f"{self.name} ({self.id})"
