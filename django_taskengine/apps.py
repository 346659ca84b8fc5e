from __future__ import annotations

from django.apps import AppConfig


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

        autodiscover_modules(taskengine_settings.AUTODISCOVER_MODULE)
