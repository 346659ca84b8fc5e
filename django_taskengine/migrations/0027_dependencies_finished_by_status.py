"""A dependency is finished when its job's status says so: the rows are no longer marked, so
a job's end writes nothing to the dependency table."""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("django_taskengine", "0026_dependency_marks_in_place"),
    ]

    operations = [
        migrations.RemoveField(
            model_name="dependency",
            name="done",
        ),
    ]
