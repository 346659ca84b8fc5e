"""The attempt table loses the index Django made for its foreign key to the job: the index on
(job, number) serves every lookup by job, and each attempt written updated both."""

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("django_taskengine", "0012_rest_status_indexes"),
    ]

    operations = [
        migrations.AlterField(
            model_name="attempt",
            name="job",
            field=models.ForeignKey(
                db_index=False,
                on_delete=django.db.models.deletion.CASCADE,
                related_name="attempt_set",
                to="django_taskengine.job",
            ),
        ),
    ]
