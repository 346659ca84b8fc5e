"""The lifecycle core, on its own: outcomes of every way an attempt ends, limits, durations."""

from __future__ import annotations

import datetime as dt
import uuid

import pytest
from django.utils import timezone

from django_taskengine.core import actions, durations, lifecycle, limits
from django_taskengine.core.ownership import OWNERSHIP_FIELDS, RELEASED
from django_taskengine.core.statuses import (
    ACTIVE_STATUSES,
    TERMINAL_STATUSES,
    AttemptOutcome,
    JobStatus,
)
from django_taskengine.models import Job


def attempt(number: int = 1, max_attempts: int = 3, **changes) -> lifecycle.ClaimedJob:
    values = {
        "id": 7,
        "task_name": "app.tasks.work",
        "queue": "default",
        "args": [],
        "kwargs": {},
        "attempt": number,
        "max_attempts": max_attempts,
        "retry_backoff": 1.0,
        "timeout": None,
        "token": uuid.uuid4(),
        "started_at": timezone.now(),
    }
    values.update(changes)
    return lifecycle.ClaimedJob(**values)


def test_every_status_is_either_active_or_terminal():
    assert set(ACTIVE_STATUSES) | set(TERMINAL_STATUSES) == set(JobStatus)
    assert not set(ACTIVE_STATUSES) & set(TERMINAL_STATUSES)


def test_a_success_finishes_the_job_with_its_result():
    job = attempt()
    outcome = lifecycle.succeeded(job, '{"ok": true}')
    assert (outcome.status, outcome.outcome) == (JobStatus.SUCCEEDED, AttemptOutcome.SUCCEEDED)
    assert outcome.result_json == '{"ok": true}'
    assert (outcome.job_id, outcome.token, outcome.attempt) == (job.id, job.token, 1)
    assert outcome.job_finished_at == outcome.finished_at
    assert outcome.due_in is None  # run_after is left as it is


def test_a_failure_with_attempts_left_is_retried_after_the_backoff():
    outcome = lifecycle.failed(attempt(number=2, max_attempts=3), "ValueError: no")
    assert (outcome.status, outcome.outcome) == (JobStatus.QUEUED, AttemptOutcome.FAILED)
    assert 1.0 <= outcome.due_in <= 2.0  # backoff 1 s doubled once, upper-half jitter
    assert outcome.job_finished_at is None
    assert not outcome.refund_attempt


def test_the_last_attempts_failure_fails_the_job_for_good():
    outcome = lifecycle.failed(attempt(number=3, max_attempts=3), "ValueError: no", "tb")
    assert outcome.status == JobStatus.FAILED
    assert (outcome.error, outcome.traceback) == ("ValueError: no", "tb")
    assert outcome.job_finished_at == outcome.finished_at


def test_a_failure_that_retrying_cannot_fix_fails_at_once():
    outcome = lifecycle.failed(attempt(number=1), "corrupted arguments", retryable=False)
    assert outcome.status == JobStatus.FAILED


def test_an_exception_is_named_with_its_class_and_traceback():
    try:
        raise KeyError("missing")
    except KeyError as exc:
        outcome = lifecycle.raised(attempt(), exc)
    assert outcome.error == "KeyError: 'missing'"
    assert "Traceback" in outcome.traceback and "KeyError" in outcome.traceback


def test_a_timeout_counts_like_a_failure_with_its_own_outcome():
    retried = lifecycle.timed_out(attempt(number=1, timeout=2.5))
    assert (retried.status, retried.outcome) == (JobStatus.QUEUED, AttemptOutcome.TIMED_OUT)
    assert "2.5 s" in retried.error
    assert lifecycle.timed_out(attempt(number=3, timeout=1)).status == JobStatus.FAILED


@pytest.mark.parametrize(
    ("reason", "status", "outcome", "refund"),
    [
        ("pause", JobStatus.PAUSED, AttemptOutcome.PAUSED, True),
        ("cancel", JobStatus.CANCELLED, AttemptOutcome.CANCELLED, False),
        ("shutdown", JobStatus.QUEUED, AttemptOutcome.INTERRUPTED, True),
    ],
)
def test_a_stop_at_a_checkpoint_is_not_a_failure(reason, status, outcome, refund):
    stopped = lifecycle.stopped(attempt(number=3, max_attempts=3), reason)
    assert (stopped.status, stopped.outcome, stopped.refund_attempt) == (status, outcome, refund)
    assert stopped.due_in is None  # a requeued job keeps its place


def test_an_interrupted_attempt_goes_back_where_it_stood_and_is_not_counted():
    outcome = lifecycle.interrupted(attempt(number=3, max_attempts=3))
    assert (outcome.status, outcome.due_in, outcome.refund_attempt) == (
        JobStatus.QUEUED,
        None,  # run_after kept: it goes back where it stood
        True,
    )
    assert outcome.error == lifecycle.SHUTDOWN_ERROR


@pytest.mark.parametrize(
    ("number", "park", "status"),
    [(1, False, JobStatus.QUEUED), (3, False, JobStatus.FAILED), (1, True, JobStatus.FAILED)],
)
def test_an_orphan_runs_again_unless_its_attempts_are_used_or_its_task_parks(number, park, status):
    dead_worker = uuid.uuid4()
    now = timezone.now()
    outcome = lifecycle.orphaned(
        attempt(number=number, max_attempts=3), worker_id=dead_worker, park=park, now=now
    )
    assert (outcome.status, outcome.outcome) == (status, AttemptOutcome.ORPHANED)
    assert outcome.error == lifecycle.ORPHAN_ERROR
    assert (outcome.worker_id, outcome.finished_at) == (dead_worker, now)


def _requeuing_endings(job: lifecycle.ClaimedJob) -> list[lifecycle.Outcome]:
    """Every way an attempt can end that would send its job back to the queue."""
    return [
        lifecycle.raised(job, RuntimeError("boom")),
        lifecycle.timed_out(job),
        lifecycle.snoozed(job, 30),
        lifecycle.orphaned(job, worker_id=None, park=False, now=timezone.now()),
        lifecycle.interrupted(job),
        lifecycle.stopped(job, "shutdown"),
    ]


@pytest.mark.parametrize("request_", ["cancel", "pause", "pause:queue"])
def test_a_pending_stop_request_is_carried_out_by_an_attempt_that_would_requeue(request_):
    for ended in _requeuing_endings(attempt(number=1, max_attempts=3)):
        assert ended.status == JobStatus.QUEUED
        decided = lifecycle.apply_stop_request(ended, request_)
        expected = JobStatus.CANCELLED if request_ == "cancel" else JobStatus.PAUSED
        assert decided.status == expected, ended.outcome
        # The attempt's own record and counting stand; only the job's next state changes.
        assert (decided.outcome, decided.refund_attempt) == (ended.outcome, ended.refund_attempt)
        assert decided.stop_request == request_
        assert decided.due_in is None
        assert (decided.job_finished_at is not None) is (request_ == "cancel")
        # A paused job keeps the request that paused it; a cancelled one is done with it.
        assert decided.stop_requested_after == ("" if request_ == "cancel" else request_)


def test_without_a_stop_request_an_outcome_stands():
    for ended in _requeuing_endings(attempt()):
        decided = lifecycle.apply_stop_request(ended, "")
        assert (decided.status, decided.error, decided.stop_request) == (
            ended.status,
            ended.error,
            "",
        )


@pytest.mark.parametrize("request_", ["cancel", "pause"])
def test_a_finished_job_has_nothing_left_to_stop(request_):
    job = attempt(number=3, max_attempts=3)
    for ended in (lifecycle.succeeded(job, "1"), lifecycle.raised(job, RuntimeError("x"))):
        decided = lifecycle.apply_stop_request(ended, request_)
        assert decided.status == ended.status
        assert decided.stop_requested_after == ""


def test_a_cancel_overrides_a_pause_carried_out_at_a_checkpoint():
    paused = lifecycle.stopped(attempt(), "pause")
    assert lifecycle.apply_stop_request(paused, "cancel").status == JobStatus.CANCELLED


def test_a_superseded_attempt_is_never_redecided():
    lost = lifecycle.superseded(attempt(), "lost")
    assert lifecycle.apply_stop_request(lost, "cancel").status == JobStatus.QUEUED


def test_released_ownership_names_every_ownership_column_of_the_job():
    columns = {field.attname for field in Job._meta.concrete_fields}
    assert set(OWNERSHIP_FIELDS) <= columns
    assert set(RELEASED) == set(OWNERSHIP_FIELDS)


def test_the_models_take_their_sizes_from_the_limits():
    assert Job._meta.get_field("queue").max_length == limits.QUEUE_NAME_MAX
    assert Job._meta.get_field("task_name").max_length == limits.TASK_NAME_MAX
    assert Job._meta.get_field("dedup_key").max_length == limits.DEDUP_KEY_MAX


@pytest.mark.parametrize("value", ["", 5, None, "q" * (limits.QUEUE_NAME_MAX + 1)])
def test_a_queue_name_must_fit_its_column(value):
    with pytest.raises(ValueError, match="at most 100 characters"):
        limits.check_queue_name(value, "queue")


def test_int32_bounds():
    assert limits.check_int32(2**31 - 1, "priority") == 2**31 - 1
    with pytest.raises(ValueError, match="32 bits"):
        limits.check_int32(2**31, "priority")
    with pytest.raises(TypeError, match="integer"):
        limits.check_int32(True, "priority")
    with pytest.raises(ValueError, match="at least 1"):
        limits.check_int32(0, "max_attempts", minimum=1)
    assert limits.is_int32(-(2**31)) and not limits.is_int32(2**31) and not limits.is_int32(1.0)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("90s", 90), ("15m", 900), ("1h30m", 5400), ("2d", 172800), ("1w", 604800), (" 1H ", 3600)],
)
def test_durations_people_write(text, seconds):
    assert durations.parse_duration(text) == dt.timedelta(seconds=seconds)


@pytest.mark.parametrize("text", ["", "5", "1x", "h", "-1s", "1.5.2h"])
def test_what_is_not_a_duration_is_refused_with_examples(text):
    with pytest.raises(ValueError, match="90s, 15m, 1h30m"):
        durations.parse_duration(text)


def test_bare_numbers_are_seconds_where_allowed():
    assert durations.parse_duration(30, allow_seconds=True) == dt.timedelta(seconds=30)
    assert durations.parse_duration("2.5", allow_seconds=True) == dt.timedelta(seconds=2.5)


@pytest.mark.parametrize("seconds", [0, 45, 3600, 5400, 90061, 8 * 86400 + 5])
def test_a_formatted_duration_reads_back_as_itself(seconds):
    text = durations.format_duration(dt.timedelta(seconds=seconds))
    assert durations.parse_duration(text) == dt.timedelta(seconds=seconds)


@pytest.mark.parametrize(
    ("status", "stop", "offered"),
    [
        ("queued", "", ["pause", "cancel", "run_now"]),
        ("running", "", ["pause", "cancel", "hard_pause", "hard_cancel"]),
        # a cancel overrides a pending pause; a hard stop a cooperative one of its kind
        ("running", "pause", ["cancel", "hard_pause", "hard_cancel"]),
        ("running", "pause:queue", ["cancel", "hard_pause", "hard_cancel"]),  # whatever pause
        ("running", "cancel", ["hard_cancel"]),  # only a hard cancel overrides a cancel
        ("running", "pause:hard", ["hard_cancel"]),  # no cooperative stop replaces a hard one
        ("running", "cancel:hard", []),  # nothing overrides a hard cancel
        ("paused", "", ["resume", "cancel"]),
        ("failed", "", ["retry"]),
        ("cancelled", "", ["retry"]),
        ("succeeded", "", []),
    ],
)
def test_the_operator_actions_that_fit_a_job(status, stop, offered):
    assert actions.actions_for(status, stop) == offered


def test_an_operator_action_sets_what_it_promises():
    now = timezone.now()
    retry = actions.JOB_ACTIONS["retry"].changes(now)
    assert isinstance(retry["uid"], uuid.UUID)  # a new run: a new idempotency key
    assert {name: value for name, value in retry.items() if name != "uid"} == {
        "status": JobStatus.QUEUED,
        "run_after": now,
        "finished_at": None,
        "result": None,
        "stop_requested": "",
        **RELEASED,
    }
    assert retry["uid"] != actions.JOB_ACTIONS["retry"].changes(now)["uid"]
    assert actions.JOB_ACTIONS["cancel"].changes(now) == {
        "status": JobStatus.CANCELLED,
        "finished_at": now,
        "stop_requested": "",
        # A reserved job is taken from its worker.
        **RELEASED,
    }
    assert actions.JOB_ACTIONS["run_now"].changes(now) == {"run_after": now}


def test_a_retry_extends_attempts_by_the_tasks_budget():
    assert actions.retry_budget(5, 3) == 5
    assert actions.retry_budget(None, 3) == 3  # an unknown task: the job's own
    assert actions.retry_budget(None, 0) == 1


def test_a_rescued_attempt_past_its_timeout_timed_out_and_is_retried_even_when_its_task_parks():
    now = timezone.now()
    dead_worker = uuid.uuid4()
    overran = attempt(number=1, timeout=1.0, started_at=now - dt.timedelta(seconds=1))
    outcome = lifecycle.rescued(overran, worker_id=dead_worker, park=True, now=now)
    assert (outcome.status, outcome.outcome) == (JobStatus.QUEUED, AttemptOutcome.TIMED_OUT)
    assert "timeout of 1.0 s" in outcome.error
    assert outcome.retry_delay > 0 and not outcome.refund_attempt
    assert (outcome.worker_id, outcome.finished_at) == (dead_worker, now)
    last = attempt(number=3, timeout=1.0, started_at=now - dt.timedelta(seconds=5))
    final = lifecycle.rescued(last, worker_id=dead_worker, park=False, now=now)
    assert (final.status, final.outcome) == (JobStatus.FAILED, AttemptOutcome.TIMED_OUT)


@pytest.mark.parametrize("timeout", [None, 10.0])
@pytest.mark.parametrize("park", [False, True])
def test_a_rescued_attempt_within_its_timeout_is_an_orphan(timeout, park):
    now = timezone.now()
    job = attempt(number=1, timeout=timeout, started_at=now - dt.timedelta(seconds=5))
    outcome = lifecycle.rescued(job, worker_id=uuid.uuid4(), park=park, now=now)
    assert outcome.outcome == AttemptOutcome.ORPHANED
    assert outcome.status == (JobStatus.FAILED if park else JobStatus.QUEUED)


def test_a_rescued_job_keeps_its_place_in_the_queue():
    # Its worker died, not the job: it goes back where it stood, ahead of later work.
    outcome = lifecycle.orphaned(
        attempt(number=1, max_attempts=3), worker_id=uuid.uuid4(), park=False, now=timezone.now()
    )
    assert outcome.status == JobStatus.QUEUED
    assert outcome.due_in is None  # run_after is left as it is


def test_a_retry_after_a_failure_is_due_after_its_backoff():
    assert lifecycle.failed(attempt(number=1), "ValueError: no").due_in > 0


@pytest.mark.parametrize(
    ("request_", "status", "outcome", "refund"),
    [
        ("cancel:hard", JobStatus.CANCELLED, AttemptOutcome.CANCELLED, False),
        ("pause:hard", JobStatus.PAUSED, AttemptOutcome.PAUSED, True),
    ],
)
@pytest.mark.parametrize("park", [False, True])
def test_a_rescued_hard_stopped_attempt_ends_as_the_operator_asked(
    request_, status, outcome, refund, park
):
    # Past its timeout, on its last attempt, of a task that parks: the operator's stop wins.
    now = timezone.now()
    job = attempt(
        number=3,
        max_attempts=3,
        timeout=1.0,
        started_at=now - dt.timedelta(seconds=5),
        stop_requested=request_,
    )
    rescued = lifecycle.rescued(job, worker_id=uuid.uuid4(), park=park, now=now)
    decided = lifecycle.apply_stop_request(rescued, request_)
    assert (decided.status, decided.outcome, decided.refund_attempt) == (status, outcome, refund)
    assert "hard stop" in decided.error and decided.finished_at == now
    assert decided.stop_requested_after == (request_ if status == JobStatus.PAUSED else "")


def test_an_attempt_kept_until_its_code_stopped_timed_out_unless_hard_stopped():
    job = attempt(timeout=1.0)
    success = lifecycle.succeeded(job, "1")
    assert lifecycle.overran(job, success).outcome == AttemptOutcome.TIMED_OUT
    hard = attempt(timeout=1.0, stop_requested="cancel:hard")
    failure = lifecycle.failed(hard, "RuntimeError: boom", retryable=False)
    assert lifecycle.overran(hard, failure).status == JobStatus.CANCELLED
    # A hard-stopped attempt that succeeded before its process went keeps its success.
    assert lifecycle.overran(hard, success).status == JobStatus.SUCCEEDED
    # Escalated to a hard cancel after a hard pause was decided: the cancel is carried out.
    paused = lifecycle.overran(attempt(stop_requested="pause:hard"), failure)
    assert paused.status == JobStatus.PAUSED and paused.refund_attempt
    assert lifecycle.apply_stop_request(paused, "cancel:hard").status == JobStatus.CANCELLED


def test_only_hard_requests_are_hard_stops():
    assert lifecycle.is_hard_stop("cancel:hard") and lifecycle.is_hard_stop("pause:hard")
    for request_ in ("", "cancel", "pause", "pause:queue", "pause:task", "pause:engine"):
        assert not lifecycle.is_hard_stop(request_)
    assert lifecycle.stop_kind("cancel:hard") == "cancel"
    assert lifecycle.stop_kind("pause:hard") == "pause"


@pytest.mark.parametrize("number", [1, 3])
def test_a_snooze_requeues_after_its_seconds_without_counting_the_attempt(number):
    job = attempt(number=number, max_attempts=3)
    outcome = lifecycle.snoozed(job, 30)
    assert (outcome.status, outcome.outcome) == (JobStatus.QUEUED, AttemptOutcome.SNOOZED)
    # Not the backoff's, and whether attempts remain does not matter: the last one snoozes too.
    assert outcome.due_in == 30
    assert outcome.refund_attempt
    assert not outcome.keeps_place
    assert outcome.error == "snoozed for 30 s"
    assert outcome.traceback == ""
    assert outcome.job_finished_at is None
    assert (outcome.job_id, outcome.token, outcome.attempt) == (job.id, job.token, number)


def test_a_snooze_of_no_time_is_due_at_once_and_its_note_reads_as_people_write():
    assert lifecycle.snoozed(attempt(), 0).due_in == 0
    assert lifecycle.snoozed(attempt(), 0.25).error == "snoozed for 0.25 s"
    assert durations.seconds_text(90.0) == "90"
    assert durations.seconds_text(1 / 3) == "0.333"


@pytest.mark.parametrize(
    ("request_", "status", "note"),
    [
        ("cancel", JobStatus.CANCELLED, "cancelled by an operator"),
        ("cancel:hard", JobStatus.CANCELLED, "cancelled by an operator"),
        ("pause", JobStatus.PAUSED, "paused by an operator"),
        ("pause:queue", JobStatus.PAUSED, "paused by an operator"),
    ],
)
def test_a_snooze_carries_out_a_pending_stop_request(request_, status, note):
    decided = lifecycle.apply_stop_request(lifecycle.snoozed(attempt(), 30), request_)
    assert (decided.status, decided.outcome) == (status, AttemptOutcome.SNOOZED)
    assert decided.error == f"{note} as its attempt ended (snoozed for 30 s)"
    assert decided.refund_attempt  # the attempt counts as a snooze: not at all
    assert decided.due_in is None  # a paused job waits for its resume, not for the snooze
