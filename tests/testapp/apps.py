from django.apps import AppConfig


class TestAppConfig(AppConfig):
    name = "tests.testapp"
    label = "testapp"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        import os

        if os.environ.get("TASKENGINE_TEST_SIGNAL_RECEIVERS"):
            from . import signal_receivers  # noqa: F401
