"""The admin's failures page, as a model only so that the admin index lists it."""

from __future__ import annotations

from .queue_models import Queue


class Failures(Queue):
    """Failed jobs grouped by exception and message (django_taskengine/admin/failures.py). A
    proxy model, no table of its own, like ``Overview``."""

    class Meta:
        proxy = True
        app_label = "django_taskengine"
        verbose_name = "failures"
        verbose_name_plural = "failures"
