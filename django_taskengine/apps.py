from __future__ import annotations

from django.apps import AppConfig
from django.conf import settings


class TaskEngineConfig(AppConfig):
    name = "django_taskengine"
    label = "django_taskengine"
    verbose_name = "Task engine"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django.utils.module_loading import autodiscover_modules

        from . import (
            checks,  # noqa: F401 - registers the system checks
            operations,  # noqa: F401 - registers the workers' duty that ends timed pauses' stops
            retention,  # noqa: F401 - registers the workers' pruning duty
        )
        from .conf import taskengine_settings
        from .store import get_store

        autodiscover_modules(taskengine_settings.AUTODISCOVER_MODULE)
        if taskengine_settings.DATABASE in settings.DATABASES:
            # The store of the engine's database now (no connection is made): on PostgreSQL,
            # job.wait() is told when a job finishes from the first call on.
            get_store()
