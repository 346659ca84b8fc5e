"""Jobs claimed ahead are reserved: still queued, owned by a worker (its token), not started.

The claim's index leaves them out (a claim must skip them without reading them), and rescue
finds a dead worker's reservations by their own small index. The new claim index is built
before the old one is dropped, so claims never run without one.
"""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("django_taskengine", "0009_job_uid_audit_entry"),
    ]

    operations = [
        migrations.AddIndex(
            model_name="job",
            index=models.Index(
                models.OrderBy(models.F("priority"), descending=True),
                models.F("run_after"),
                models.F("id"),
                condition=models.Q(("status", "queued"), ("token__isnull", True)),
                name="taskengine_job_claimable_idx",
            ),
        ),
        migrations.RemoveIndex(
            model_name="job",
            name="taskengine_job_claim_idx",
        ),
        migrations.AddIndex(
            model_name="job",
            index=models.Index(
                condition=models.Q(("status", "queued"), ("token__isnull", False)),
                fields=["worker_id"],
                name="taskengine_job_reserved_idx",
            ),
        ),
    ]
