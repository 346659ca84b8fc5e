from django.db import models


class LedgerEntry(models.Model):
    """One row per run of a test task: lets tests count how often each job really ran."""

    job_id = models.BigIntegerField(db_index=True)
    attempt = models.IntegerField(default=0)
    label = models.CharField(max_length=100, blank=True, default="")
    pid = models.IntegerField(default=0)

    def __str__(self) -> str:
        return f"job {self.job_id}, attempt {self.attempt}"
