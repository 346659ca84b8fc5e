"""The per-minute statistics the console's charts read: one row per queue and minute.

The charts must not aggregate over the job table per page view (10 million rows); they read
this roll-up instead, which the worker processes write (:mod:`.worker.stats`): each process
counts in memory what its attempts did and adds its counts to the rows with one upsert every few
seconds. A day of one queue is 1,440 rows, whatever the number of jobs. Rows older than
:data:`~.worker.stats.KEEP_FOR` are deleted by a worker duty. Importable from
:mod:`django_taskengine.models`.
"""

from __future__ import annotations

from django.db import models

from .core.limits import QUEUE_NAME_MAX
from .core.wait_histogram import BUCKETS

#: The ``queue`` of the rows that sum every queue (no queue is named ""): the overall charts read
#: one row per minute, not one per queue and minute (a day of 20 queues: 1,440 rows, not 28,800).
ALL_QUEUES = ""
#: The columns of the wait histogram, bucket by bucket (see :mod:`.core.wait_histogram`).
WAIT_COLUMNS: tuple[str, ...] = tuple(f"wait_{bucket}" for bucket in range(BUCKETS))


class MinuteStats(models.Model):
    """What the attempts of one queue did in one minute (UTC), summed over worker processes;
    the rows of queue :data:`ALL_QUEUES` sum every queue."""

    id = models.BigAutoField(primary_key=True)
    queue = models.CharField(max_length=QUEUE_NAME_MAX)
    #: Whole minutes since 1970-01-01 00:00 UTC: 15-minute slots are ``minute / 15`` on every
    #: database, and no time zone is involved.
    minute = models.IntegerField()
    #: Jobs that succeeded in this minute.
    succeeded = models.IntegerField(default=0)
    #: Jobs that failed for good in this minute (no attempts left, or not retryable).
    failed = models.IntegerField(default=0)
    #: Attempts that failed (or timed out) in this minute and will be retried.
    retried = models.IntegerField(default=0)
    #: Seconds of running jobs in this minute, summed over jobs: 60 is one job running all
    #: minute long. Each worker process samples its own running jobs every few seconds.
    running_seconds = models.FloatField(default=0.0)

    class Meta:
        db_table = "taskengine_minute_stats"
        constraints = [
            # The upsert's conflict target; it also serves a queue's charts.
            models.UniqueConstraint(fields=["queue", "minute"], name="taskengine_minute_uniq"),
        ]
        indexes = [
            # The overall charts (every queue) and the pruning.
            models.Index(fields=["minute"], name="taskengine_minute_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.queue} @ minute {self.minute}"


# The wait histogram: one count per bucket of the fixed log scale, so that percentiles over
# several minutes or queues come from the summed buckets. Added in a loop: 28 columns written
# out by hand would only hide a typo.
for _column in WAIT_COLUMNS:
    MinuteStats.add_to_class(_column, models.IntegerField(default=0))
del _column
