"""Jobs get ``waits``: the durable waits (``ctx.sleep``) of their current run, so that a task
called again after one finds it done. A default in the database too: the enqueue statements
and functions of earlier migrations do not name the column."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("django_taskengine", "0017_flow_usage_function"),
    ]

    operations = [
        migrations.AddField(
            model_name="job",
            name="waits",
            field=models.JSONField(blank=True, db_default=[], default=list),
        ),
    ]
