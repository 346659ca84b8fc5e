"""Requests an operator makes of a worker process (drain, stop, hard stop)."""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("django_taskengine", "0029_console_stats"),
    ]

    operations = []
