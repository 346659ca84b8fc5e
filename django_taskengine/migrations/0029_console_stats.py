"""Per-minute statistics the console's charts read."""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("django_taskengine", "0028_job_search"),
    ]

    operations = []
