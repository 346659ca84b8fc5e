"""Receivers connected in worker processes started with TASKENGINE_TEST_SIGNAL_RECEIVERS=1."""

from __future__ import annotations

import json

from django.dispatch import receiver

from django_taskengine.signals import job_finished, job_started

from .models import LedgerEntry


@receiver(job_started)
def on_started(sender, job_id, attempt, **kwargs):
    label = json.dumps({"signal": "started", "job": job_id, "attempt": attempt})
    LedgerEntry.objects.create(job_id=job_id, attempt=attempt, label=label)


@receiver(job_finished)
def on_finished(sender, job_id, attempt, outcome, status, **kwargs):
    label = json.dumps(
        {
            "signal": "finished",
            "job": job_id,
            "attempt": attempt,
            "outcome": outcome,
            "status": status,
        }
    )
    LedgerEntry.objects.create(job_id=job_id, attempt=attempt, label=label)
