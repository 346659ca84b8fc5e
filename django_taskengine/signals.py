"""Django signals for user hooks.

- ``job_enqueued(sender=Task, job=Job, created=bool)``: sent by ``enqueue``/``bulk_enqueue``
  in the enqueuing process, right after the insert (inside the caller's transaction, like
  ``post_save``); ``created`` is False when a dedup key returned an existing job.
- ``job_started(sender=Task, job_id, task_name, queue, attempt)``: sent in the worker thread just
  before the task function runs.
- ``job_finished(sender=Task or None, job_id, task_name, queue, attempt, outcome, status,
  duration, error)``: sent by the worker once the attempt's outcome is written; ``outcome`` is
  the attempt outcome (succeeded, failed, timed_out, interrupted, paused, cancelled,
  superseded, snoozed), ``status`` the job's new status.

Receivers run in the worker process; an exception in one is logged and does not affect the job.
"""

from __future__ import annotations

from django.dispatch import Signal

job_enqueued = Signal()
job_started = Signal()
job_finished = Signal()


def listened(signal: Signal) -> bool:
    """Whether ``signal`` has a live receiver. Sent once or twice per job: the receivers' list
    is looked at first, which costs nothing when it is empty (the usual case);
    ``has_listeners`` takes the signal's lock and resolves weak references."""
    return bool(signal.receivers) and signal.has_listeners()
