"""Jobs get ``notify_finish``: set by ``job.wait()`` on PostgreSQL, so that the worker that
ends the job's attempt sends a notification the waiter listens for. A default in the database
too: the enqueue statements and functions of earlier migrations do not name the column."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("django_taskengine", "0018_job_waits"),
    ]

    operations = [
        migrations.AddField(
            model_name="job",
            name="notify_finish",
            field=models.BooleanField(db_default=False, default=False),
        ),
    ]
