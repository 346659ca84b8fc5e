"""What happens to a job when an attempt ends: one function per way an attempt can end.

Each returns an :class:`Outcome`: the job's next status and everything a store writes with it
(the attempt record, the result or error, when the job is due again). The rules live here once:
whether a failure is retried or final, the backoff, which outcomes give their attempt back,
which statuses finish a job. Stores write an outcome as they are handed it, fenced by the
attempt's token (``… WHERE id = … AND token = … AND status = 'running'``).

:class:`ClaimedJob` and :class:`Outcome` live in :mod:`.attempts` and are importable from here.
"""

from __future__ import annotations

import datetime as dt
import random
import traceback as traceback_module
import uuid
from typing import Any

from django.utils import timezone

from ..conf import taskengine_settings
from .actions import HARD_STOP_REQUESTS
from .attempts import ClaimedJob as ClaimedJob
from .attempts import Outcome as Outcome
from .durations import seconds_text
from .statuses import AttemptOutcome, JobStatus

#: The error of an attempt whose worker died, as the rescuer records it.
ORPHAN_ERROR = (
    "worker died mid-run: the worker process running this attempt stopped (killed, crashed or "
    "lost its database connection) before the attempt finished"
)
SHUTDOWN_ERROR = "interrupted: the worker shut down before the attempt finished"
NOT_STARTED_ERROR = "the worker stopped before the attempt started"


def retry_delay(attempt: int, backoff: float) -> float:
    """Seconds before retrying after failed attempt number ``attempt`` (1-based).

    Exponential (``backoff * 2**(attempt-1)``), capped by ``RETRY_BACKOFF_MAX``, with "equal
    jitter": a random point in the upper half, so retries of many jobs that failed together
    spread out, and no retry comes sooner than half its nominal delay.
    """
    # The exponent is capped so that a job with thousands of attempts cannot overflow.
    exponent = min(max(0, attempt - 1), 62)
    nominal = min(taskengine_settings.RETRY_BACKOFF_MAX, backoff * (2.0**exponent))
    return nominal / 2 + random.uniform(0, nominal / 2)


def has_attempts_left(job: ClaimedJob) -> bool:
    return job.attempt < job.max_attempts


def _outcome(job: ClaimedJob, status: str, outcome: str, **fields: Any) -> Outcome:
    fields.setdefault("finished_at", timezone.now())
    return Outcome(
        job_id=job.id,
        token=job.token,
        attempt=job.attempt,
        status=status,
        outcome=outcome,
        started_at=job.attempt_started_at(),
        **fields,
    )


def succeeded(job: ClaimedJob, result_json: str) -> Outcome:
    """The task returned ``result_json`` (its JSON-encoded return value)."""
    return _outcome(job, JobStatus.SUCCEEDED, AttemptOutcome.SUCCEEDED, result_json=result_json)


def failed(
    job: ClaimedJob,
    error: str,
    traceback: str = "",
    *,
    retryable: bool = True,
    outcome: str = AttemptOutcome.FAILED,
) -> Outcome:
    """The attempt failed: retried after the backoff while attempts remain and it is
    ``retryable``; otherwise the job is ``failed`` for good."""
    if retryable and has_attempts_left(job):
        return _outcome(
            job,
            JobStatus.QUEUED,
            outcome,
            error=error,
            traceback=traceback,
            retry_delay=retry_delay(job.attempt, job.retry_backoff),
        )
    return _outcome(job, JobStatus.FAILED, outcome, error=error, traceback=traceback)


def raised(
    job: ClaimedJob, exc: BaseException, *, retryable: bool = True, with_traceback: bool = True
) -> Outcome:
    """The task (or the engine, preparing it) raised ``exc``."""
    tb = "".join(traceback_module.format_exception(exc)) if with_traceback else ""
    return failed(job, f"{type(exc).__name__}: {exc}", tb, retryable=retryable)


def timed_out(job: ClaimedJob) -> Outcome:
    """The attempt ran past its timeout; counted like an exception."""
    return failed(
        job,
        f"TimeoutError: the attempt ran longer than its timeout of {job.timeout} s",
        outcome=AttemptOutcome.TIMED_OUT,
    )


def snoozed(job: ClaimedJob, seconds: float) -> Outcome:
    """The task raised ``Snooze(seconds)``: the job is due again ``seconds`` after the write (by
    the database's clock), and the attempt does not count — snoozing is not failing, so neither
    ``max_attempts`` nor the retry backoff has a say. A pending cancel or pause is carried out
    as for any requeue (:func:`apply_stop_request`)."""
    return _outcome(
        job,
        JobStatus.QUEUED,
        AttemptOutcome.SNOOZED,
        error=f"snoozed for {seconds_text(seconds)} s",
        retry_delay=seconds,
        refund_attempt=True,
    )


def slept(job: ClaimedJob, seconds: float, waits_json: str) -> Outcome:
    """The task called ``ctx.sleep(seconds)``: the job is due again ``seconds`` after the write,
    as for a snooze (the attempt does not count), and its durable waits become ``waits_json``
    (this sleep added), so that the same call returns at once when the task runs again."""
    outcome = snoozed(job, seconds)
    outcome.error = f"asleep for {seconds_text(seconds)} s (ctx.sleep)"
    outcome.waits_json = waits_json
    return outcome


def parked(job: ClaimedJob, seconds: float, waits_json: str, event: str) -> Outcome:
    """The task called ``ctx.wait_for_event(event)`` and no such event was sent: the job is
    parked, due again when its wait times out (``seconds`` after the write) unless
    ``send_event(event)`` makes it due first; as for a sleep, the attempt does not count."""
    outcome = slept(job, seconds, waits_json)
    outcome.error = (
        f"waiting for event {event!r} (ctx.wait_for_event), {seconds_text(seconds)} s at most"
    )
    outcome.waiting_for = event
    return outcome


#: A stop request carried out at a checkpoint: the job's status, the attempt's outcome, the note.
_STOPS = {
    "pause": (JobStatus.PAUSED, AttemptOutcome.PAUSED, "paused by an operator at a checkpoint"),
    "cancel": (
        JobStatus.CANCELLED,
        AttemptOutcome.CANCELLED,
        "cancelled by an operator at a checkpoint",
    ),
}
_SHUTDOWN_STOP = (
    JobStatus.QUEUED,
    AttemptOutcome.INTERRUPTED,
    "stopped at a checkpoint for a worker shutdown",
)


def stop_kind(request: str) -> str:
    """What a stop request asks for: "pause" or "cancel" ("" for none).

    A pause that stops running jobs for a queue, task or engine pause is recorded with its
    origin ("pause:queue", "pause:task", "pause:engine"): the paused job keeps it, so that the
    end of that pause requeues the job (and an operator's own pause, plain "pause", does not).
    """
    return request.partition(":")[0]


def is_hard_stop(request: str) -> bool:
    """Whether a stop request ends the attempt ("cancel:hard", "pause:hard") rather than asking
    the task to stop at its next checkpoint."""
    return request in HARD_STOP_REQUESTS


def hard_stopped(job: ClaimedJob, request: str) -> Outcome:
    """The attempt was ended by an operator's hard stop (``request``), its code stopped with its
    worker process (or its thread ended first): a hard cancel makes the job ``cancelled``, a
    hard pause ``paused`` with its attempt not counted (a resume runs it again, from its last
    checkpoint if it has one)."""
    if stop_kind(request) == "cancel":
        return _outcome(
            job,
            JobStatus.CANCELLED,
            AttemptOutcome.CANCELLED,
            error="cancelled by an operator's hard stop: the attempt was ended with its worker "
            "process",
        )
    return _outcome(
        job,
        JobStatus.PAUSED,
        AttemptOutcome.PAUSED,
        error="paused by an operator's hard stop: the attempt was ended with its worker process",
        refund_attempt=True,
    )


def overran(job: ClaimedJob, ended: Outcome) -> Outcome:
    """The outcome of an attempt its worker kept until its code stopped, which came to
    ``ended``: timed out, or hard-stopped if an operator asked (the job's pending request) —
    unless it succeeded meanwhile: the work is done, a finished job has nothing left to stop."""
    if not is_hard_stop(job.stop_requested):
        return timed_out(job)
    return ended if ended.status == JobStatus.SUCCEEDED else hard_stopped(job, job.stop_requested)


def stopped(job: ClaimedJob, reason: str) -> Outcome:
    """The task stopped at a checkpoint for a pause, a cancel or a shutdown (``reason``).

    Stopping on request is not a failure: a paused or requeued job gets its attempt back.
    """
    status, outcome, note = _STOPS.get(stop_kind(reason), _SHUTDOWN_STOP)
    return _outcome(
        job,
        status,
        outcome,
        error=note,
        refund_attempt=status != JobStatus.CANCELLED,
        # Requeued for a shutdown, it goes back where it stood, ahead of later work.
        keeps_place=True,
    )


def returned_on_request(job: ClaimedJob, reason: str, result_json: str) -> Outcome:
    """The task returned after ``ctx.should_stop`` told it of a pause or cancel (``reason``).

    It stopped early on request, so the request is carried out: a cancel makes the job
    ``cancelled``, its return value kept as the result; a pause makes it ``paused`` (its
    checkpoint kept, its return value discarded: a resume runs it again from its checkpoint),
    its attempt not counted. For any other reason (a shutdown) the task simply succeeded.
    """
    kind = stop_kind(reason)
    if kind == "cancel":
        return _outcome(
            job,
            JobStatus.CANCELLED,
            AttemptOutcome.CANCELLED,
            result_json=result_json,
            error="cancelled by an operator: the task returned early on request",
        )
    if kind == "pause":
        return _outcome(
            job,
            JobStatus.PAUSED,
            AttemptOutcome.PAUSED,
            error="paused by an operator: the task returned early on request",
            refund_attempt=True,
        )
    return succeeded(job, result_json)


def apply_stop_request(outcome: Outcome, request: str) -> Outcome:
    """``outcome`` as it stands with the job's pending stop ``request`` ("" for none).

    A stop request belongs to the job, not the attempt: it lasts until it is carried out. An
    attempt that ends in a way that would requeue its job (a retryable failure, a timeout, a
    snooze, a dead worker, a shutdown) carries out a pending cancel (the job is ``cancelled``)
    or pause (the job is ``paused``; the attempt counts as its own ending says, the pause adds
    nothing). An attempt stopped at a checkpoint for a pause while a cancel was asked is
    cancelled (a cancel overrides a pause). Every other outcome stands: a finished job has
    nothing left to stop.

    The returned outcome carries ``request``: the store writes it only if the job's request
    is still that one (see :attr:`Outcome.stop_request`).
    """
    kind = stop_kind(request)
    decided = outcome.copy()
    decided.stop_request, decided.stop_request_now = request, None
    if outcome.outcome == AttemptOutcome.SUPERSEDED:
        return decided
    if kind == "cancel" and outcome.status in (JobStatus.QUEUED, JobStatus.PAUSED):
        decided.status = JobStatus.CANCELLED
        decided.error = _with_note(outcome.error, "cancelled by an operator")
    elif kind == "pause" and outcome.status == JobStatus.QUEUED:
        decided.status = JobStatus.PAUSED
        decided.error = _with_note(outcome.error, "paused by an operator")
    return decided


def _with_note(error: str, note: str) -> str:
    """The job's error after a stop request was carried out as its attempt ended."""
    return f"{note} as its attempt ended ({error})" if error else note


def interrupted(job: ClaimedJob, error: str = SHUTDOWN_ERROR) -> Outcome:
    """The worker shut down (or gave back a job it had not started): back to the queue where it
    stood (its ``run_after`` kept, ahead of later work), its attempt not counted."""
    return _outcome(
        job,
        JobStatus.QUEUED,
        AttemptOutcome.INTERRUPTED,
        error=error,
        refund_attempt=True,
        keeps_place=True,
    )


def superseded(job: ClaimedJob, reason: str) -> Outcome:
    """The attempt learned that it no longer owns its job (rescued and run elsewhere, or changed
    by an operator): its result is discarded, and ``reason`` says what was lost.

    Its write is fenced out by construction (the token lost the job), so stores record only
    its attempt, as superseded. Were it ever applied, the job would run again, never be lost.
    """
    return _outcome(
        job, JobStatus.QUEUED, AttemptOutcome.SUPERSEDED, error=reason, refund_attempt=True
    )


def orphaned(
    job: ClaimedJob, *, worker_id: uuid.UUID | None, park: bool, now: dt.datetime
) -> Outcome:
    """The worker running the attempt died. The job runs again while attempts remain, keeping
    its place in the queue, unless its task is declared ``on_orphan="park"``: then it fails,
    for an operator to decide."""
    retry = has_attempts_left(job) and not park
    return _outcome(
        job,
        JobStatus.QUEUED if retry else JobStatus.FAILED,
        AttemptOutcome.ORPHANED,
        error=ORPHAN_ERROR,
        finished_at=now,
        worker_id=worker_id,
        keeps_place=True,
    )


def rescued(
    job: ClaimedJob, *, worker_id: uuid.UUID | None, park: bool, now: dt.datetime
) -> Outcome:
    """The outcome of an attempt the rescuer found without a live worker.

    An attempt an operator hard-stopped was ended with its worker process:
    :func:`hard_stopped`. An attempt whose timeout had elapsed timed out: a worker that sees
    one of its attempts overrun keeps the job until the attempt's thread ends or its process
    exits (a thread cannot be stopped), so the rescue is how such an attempt ends. It is counted
    like an exception (retried while attempts remain) and never parked: it did not die mid-run,
    it overran. Any other attempt is :func:`orphaned`.
    """
    if is_hard_stop(job.stop_requested):
        outcome = hard_stopped(job, job.stop_requested)
    elif job.timeout and job.attempt_started_at() + dt.timedelta(seconds=job.timeout) <= now:
        outcome = timed_out(job)
    else:
        return orphaned(job, worker_id=worker_id, park=park, now=now)
    outcome.finished_at = now
    outcome.worker_id = worker_id
    return outcome
