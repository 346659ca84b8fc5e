"""The job list's search by argument values and error text."""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("django_taskengine", "0027_dependencies_finished_by_status"),
    ]

    operations = []
