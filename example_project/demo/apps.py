from django.apps import AppConfig


class DemoConfig(AppConfig):
    """The example project's demo tasks and the commands that enqueue and report them."""

    name = "demo"
    default_auto_field = "django.db.models.BigAutoField"
