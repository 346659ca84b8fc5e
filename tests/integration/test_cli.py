"""``manage.py taskengine``: status, pause and resume, job actions and ``why``, in-process and as
a real subprocess (exit codes and stderr as a runbook sees them)."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import uuid
import zoneinfo
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from django_taskengine import operations
from django_taskengine.models import AuditEntry, Job, JobStatus, Pause, PauseScope, Queue
from django_taskengine.store import WorkerInfo, get_store
from tests.factories import JobFactory, WorkerFactory
from tests.helpers import REPO_ROOT, worker_env
from tests.testapp.tasks import add, noop

pytestmark = [pytest.mark.django_db, pytest.mark.timeout(120)]


def run(*args: str) -> tuple[str, str]:
    """Run the command; return (stdout, stderr). Fails the test if it raises."""
    out, err = StringIO(), StringIO()
    call_command("taskengine", *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def fails(*args: str) -> tuple[str, str, str]:
    """Run the command expecting exit code 1; return (error line, stdout, stderr)."""
    out, err = StringIO(), StringIO()
    with pytest.raises(CommandError) as info:
        call_command("taskengine", *args, stdout=out, stderr=err)
    assert info.value.returncode == 1
    return str(info.value), out.getvalue(), err.getvalue()


def table_row(output: str, queue: str) -> list[str]:
    """The cells of a queue's row in the status table (STATE, the last cell, may hold spaces)."""
    for line in output.splitlines():
        if line.split(" ", 1)[0] == queue:
            cells = line.split()
            return [*cells[:8], " ".join(cells[8:])]
    raise AssertionError(f"no row for queue {queue!r} in:\n{output}")


def nothing_paused() -> bool:
    return not Queue.objects.filter(paused=True).exists() and not Pause.objects.exists()


# -- status ---------------------------------------------------------------------------------


def test_status_without_queues_says_nothing_was_enqueued():
    out, _ = run("status")
    assert "No queues yet" in out
    assert "Engine and task pauses: none" in out
    assert "Live workers: 0" in out


def test_status_counts_jobs_of_each_queue():
    now = timezone.now()
    add.enqueue(1, 2)
    add.enqueue(1, 2)
    add.using(run_after=dt.timedelta(hours=1)).enqueue(1, 2)  # queued, not due
    old = add.enqueue(1, 2)
    Job.objects.filter(pk=old.pk).update(run_after=now - dt.timedelta(minutes=7))
    JobFactory(running=True)
    JobFactory(status=JobStatus.PAUSED)
    JobFactory(status=JobStatus.FAILED, attempts=3, finished_at=now)
    for _ in range(5):
        JobFactory(succeeded=True)
    noop.using(queue="emails").enqueue()
    WorkerFactory()

    out, _ = run("status")

    assert out.splitlines()[2].split() == [
        "QUEUE",
        "QUEUED",
        "DUE",
        "RUNNING",
        "PAUSED",
        "FAILED",
        "OLDEST",
        "DUE",
        "DONE/MIN",
        "STATE",
    ]
    # 6 finished in the 5-minute window: 1.2 per minute.
    assert table_row(out, "default") == ["default", "4", "3", "1", "1", "1", "7m", "1.2", "running"]
    assert table_row(out, "emails")[:6] == ["emails", "1", "1", "0", "0", "0"]
    assert "Live workers: 1" in out


def test_status_shows_who_paused_a_queue_why_and_until_when():
    add.enqueue(1, 2)
    noop.using(queue="emails").enqueue()
    operations.pause_queue(
        "emails", by="alice", reason="smtp outage", until=dt.timedelta(minutes=30)
    )
    operations.pause_task(noop.name, by="bob", reason="billing down")

    out, _ = run("status")

    state = table_row(out, "emails")[8]
    assert state.startswith("paused by alice since ")
    assert '"smtp outage", until ' in state
    assert state.endswith("(in 29m)")
    assert table_row(out, "default")[8] == "running"
    assert f"  task {noop.name}: paused by bob since " in out
    assert '"billing down"' in out
    assert "EVERY QUEUE IS PAUSED" not in out


def test_status_marks_every_queue_paused_during_an_engine_pause():
    add.enqueue(1, 2)
    operations.pause_all(by="carol", reason="deploy")

    out, _ = run("status")

    assert "EVERY QUEUE IS PAUSED by carol since " in out
    assert table_row(out, "default")[8] == "paused (all queues)"
    assert "  all queues: paused by carol since " in out


def test_status_json_is_the_same_for_scripts():
    add.enqueue(1, 2)
    noop.using(queue="emails").enqueue()
    JobFactory(status=JobStatus.FAILED, attempts=3)
    operations.pause_queue("emails", by="alice", reason="smtp outage")
    operations.pause_all(by="carol")
    WorkerFactory(queues=["emails"])

    out, _ = run("status", "--json")

    data = json.loads(out)
    queues = {q["name"]: q for q in data["queues"]}
    assert queues["default"]["paused"] is False
    assert queues["default"]["state"] == "paused (all queues)"
    assert queues["default"]["queued"] == 1
    assert queues["default"]["due"] == 1
    assert queues["default"]["failed"] == 1
    assert queues["default"]["oldest_due_age_seconds"] >= 0
    assert queues["emails"]["paused"] is True
    assert queues["emails"]["pause"]["paused_by"] == "alice"
    assert queues["emails"]["pause"]["reason"] == "smtp outage"
    assert queues["emails"]["state"].startswith("paused by alice since ")
    assert data["engine_paused"] is True
    assert [(p["scope"], p["paused_by"]) for p in data["pauses"]] == [("engine", "carol")]
    assert data["live_workers"] == 1
    assert data["workers"][0]["queues"] == ["emails"]


# -- pause ----------------------------------------------------------------------------------


def test_pause_a_queue_for_a_while_records_who_and_why():
    add.enqueue(1, 2)
    before = timezone.now()

    out, err = run("pause", "default", "--reason", "smtp outage", "--for", "15m", "--by", "alice")

    queue = Queue.objects.get(name="default")
    assert queue.is_paused
    assert (queue.paused_by, queue.pause_reason) == ("alice", "smtp outage")
    assert before + dt.timedelta(minutes=15) <= queue.paused_until
    assert queue.paused_until <= timezone.now() + dt.timedelta(minutes=15)
    assert out.startswith("queue default: running → paused by alice since ")
    assert err == ""


@pytest.mark.parametrize(
    ("duration", "seconds"),
    [("90s", 90), ("1h", 3600), ("1h30m", 5400), ("2d", 172800), ("1w", 604800)],
)
def test_pause_for_accepts_durations_with_units(duration, seconds):
    add.enqueue(1, 2)
    before = timezone.now()
    run("pause", "default", "--for", duration)
    left = Queue.objects.get(name="default").paused_until - before
    assert dt.timedelta(seconds=seconds) <= left <= dt.timedelta(seconds=seconds + 5)


def test_pause_until_a_time_without_offset_is_in_the_current_time_zone():
    add.enqueue(1, 2)
    with timezone.override(zoneinfo.ZoneInfo("Europe/Berlin")):
        run("pause", "default", "--until", "2099-06-01T14:30")
    assert Queue.objects.get(name="default").paused_until == dt.datetime(
        2099, 6, 1, 12, 30, tzinfo=dt.UTC
    )
    run("pause", "default", "--until", "2099-06-01T14:30+05:00")
    assert Queue.objects.get(name="default").paused_until == dt.datetime(
        2099, 6, 1, 9, 30, tzinfo=dt.UTC
    )


def test_pause_by_defaults_to_the_user_then_to_cli(monkeypatch):
    add.enqueue(1, 2)
    monkeypatch.setenv("USER", "dora")
    run("pause", "default")
    assert Queue.objects.get(name="default").paused_by == "dora"
    monkeypatch.delenv("USER")
    run("pause", "default")
    assert Queue.objects.get(name="default").paused_by == "cli"


def test_pausing_an_unknown_queue_is_refused_with_the_known_names():
    add.enqueue(1, 2)
    noop.using(queue="emails").enqueue()

    message, out, _ = fails("pause", "emials")

    assert message == (
        "No queue named 'emials'. Known queues: default, emails. Check the spelling, or pass "
        "--create to pause a queue that has no jobs yet."
    )
    assert out == ""
    assert not Queue.objects.filter(name="emials").exists()
    assert nothing_paused()


def test_pause_create_pauses_a_queue_before_its_first_job():
    out, _ = run("pause", "reports", "--create", "--by", "alice", "--reason", "ahead of outage")
    assert out.startswith("queue reports: new queue → paused by alice")
    queue = Queue.objects.get(name="reports")
    assert queue.is_paused and queue.pause_reason == "ahead of outage"


def test_pausing_several_queues_pauses_the_known_ones_and_reports_the_rest():
    add.enqueue(1, 2)
    noop.using(queue="emails").enqueue()

    message, out, err = fails("pause", "default", "nope", "emails")

    assert message == "1 of 3 names refused (above); the other 2 were paused."
    assert err.startswith("No queue named 'nope'.")
    assert "queue default: running → paused" in out
    assert "queue emails: running → paused" in out
    assert set(Queue.objects.filter(paused=True).values_list("name", flat=True)) == {
        "default",
        "emails",
    }


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["default", "--for", "15x"], "--for '15x' is not a duration: write it like 90s"),
        (["default", "--for", "15"], "--for '15' is not a duration"),
        (["default", "--for", "0m"], "--for '0m' is no time at all"),
        (["default", "--for", "400d"], "--for '400d' is longer than 366 days"),
        (["default", "--until", "tomorrow"], "--until 'tomorrow' is not a date and time"),
        (["default", "--until", "2001-01-01T00:00"], "--until '2001-01-01T00:00' is in the past"),
        (
            ["default", "--for", "1h", "--until", "2099-01-01T00:00"],
            "Give --for or --until, not both",
        ),
        ([], "Nothing to pause: give queue names, --all, or --task TASK_NAME"),
        (["default", "--all"], "Too much to pause: give queue names, --all, or --task"),
        (["x" * 101], "is not a queue name (1 to 100 characters)"),
        (["default", "--by", "b" * 151], "--by is at most 150 characters"),
    ],
)
def test_pause_with_a_bad_value_changes_nothing(args, expected):
    add.enqueue(1, 2)
    message, _, _ = fails("pause", *args)
    assert expected in message
    assert nothing_paused()


def test_pause_all_and_resume_all():
    add.enqueue(1, 2)
    out, _ = run("pause", "--all", "--reason", "deploy", "--for", "10m", "--by", "carol")
    pause = Pause.objects.get()
    assert (pause.scope, pause.paused_by) == (PauseScope.ENGINE, "carol")
    assert pause.pause_reason == "deploy"
    assert pause.paused_until is not None
    assert out.startswith("all queues: running → paused by carol")

    out, _ = run("resume", "--all")
    assert out == "all queues: engine-wide pause ended\n"
    assert not Pause.objects.exists()

    out, _ = run("resume", "--all")
    assert out == "all queues: there was no engine-wide pause; nothing to do\n"


def test_resume_all_leaves_queues_paused_on_their_own_and_says_so():
    add.enqueue(1, 2)
    operations.pause_queue("default", by="alice")
    operations.pause_all(by="carol")
    out, _ = run("resume", "--all")
    assert "Queues paused on their own stay paused: default (resume them by name)." in out
    assert Queue.objects.get(name="default").is_paused


def test_pause_and_resume_a_task_type():
    out, _ = run("pause", "--task", noop.name, "--reason", "billing down", "--by", "bob")
    pause = Pause.objects.get()
    assert (pause.scope, pause.target, pause.paused_by) == (PauseScope.TASK, noop.name, "bob")
    assert out.startswith(f"task {noop.name}: running → paused by bob")

    out, _ = run("resume", "--task", noop.name)
    assert out.startswith(f"task {noop.name}: paused by bob since ")
    assert out.rstrip().endswith("→ running")
    assert not Pause.objects.exists()


def test_pausing_an_unknown_task_type_is_refused_unless_created():
    message, _, _ = fails("pause", "--task", "billing.send_invoce")
    assert message.startswith("No task named 'billing.send_invoce' is registered or has jobs.")
    assert "pass --create to pause it anyway" in message
    assert not Pause.objects.exists()

    run("pause", "--task", "billing.send_invoce", "--create")
    assert Pause.objects.get().target == "billing.send_invoce"


def test_a_task_known_only_from_its_jobs_can_be_paused():
    JobFactory(task_name="retired.module.task")
    run("pause", "--task", "retired.module.task")
    assert Pause.objects.get().target == "retired.module.task"


def test_resuming_an_unknown_task_type_is_refused_with_the_paused_ones():
    operations.pause_task(noop.name)
    message, _, _ = fails("resume", "--task", "nope")
    assert message == (
        "Task type 'nope' is not paused and no task of that name is registered or has jobs. "
        f"Paused task types: {noop.name}."
    )
    assert Pause.objects.count() == 1


# -- resume ---------------------------------------------------------------------------------


def test_resume_a_queue():
    add.enqueue(1, 2)
    operations.pause_queue("default", by="alice", reason="smtp outage")

    out, err = run("resume", "default")

    assert out.startswith("queue default: paused by alice since ")
    assert out.rstrip().endswith('"smtp outage" → running')
    assert err == ""
    queue = Queue.objects.get(name="default")
    assert not queue.paused and queue.paused_by == ""


def test_resume_a_queue_that_is_not_paused_is_fine():
    add.enqueue(1, 2)
    out, _ = run("resume", "default")
    assert out == "queue default: was not paused; nothing to do\n"


def test_resuming_an_unknown_queue_is_refused():
    add.enqueue(1, 2)
    operations.pause_queue("default")
    message, _, _ = fails("resume", "defualt")
    assert message == "No queue named 'defualt'. Known queues: default."
    assert Queue.objects.get(name="default").is_paused


def test_resuming_a_queue_during_an_engine_pause_warns_that_nothing_runs_yet():
    add.enqueue(1, 2)
    operations.pause_queue("default")
    operations.pause_all(by="carol")
    _, err = run("resume", "default")
    assert "Every queue is still paused engine-wide (by carol since " in err
    assert "`taskengine resume --all` ends that." in err


# -- jobs -----------------------------------------------------------------------------------


def test_retry_a_failed_job():
    job = JobFactory(
        status=JobStatus.FAILED, attempts=3, max_attempts=3, finished_at=timezone.now()
    )
    out, _ = run("retry", str(job.pk))
    assert out == f"job {job.pk}: failed after 3 attempts → queued, due now\n"
    job.refresh_from_db()
    assert job.status == JobStatus.QUEUED
    assert job.max_attempts == 6


def test_cancel_queued_and_paused_jobs():
    queued = JobFactory()
    paused = JobFactory(status=JobStatus.PAUSED)
    out, _ = run("cancel", str(queued.pk), str(paused.pk))
    assert out.splitlines() == [
        f"job {queued.pk}: queued, due now → cancelled",
        f"job {paused.pk}: paused → cancelled",
    ]
    assert set(Job.objects.values_list("status", flat=True)) == {JobStatus.CANCELLED}


def test_pause_job_and_resume_job():
    job = JobFactory()
    out, _ = run("pause-job", str(job.pk))
    assert out == f"job {job.pk}: queued, due now → paused\n"
    job.refresh_from_db()
    assert job.status == JobStatus.PAUSED

    out, _ = run("resume-job", str(job.pk))
    assert out == f"job {job.pk}: paused → queued, due now\n"
    job.refresh_from_db()
    assert job.status == JobStatus.QUEUED


def test_a_job_action_that_does_not_fit_the_state_is_refused():
    job = JobFactory(succeeded=True)
    message, _, _ = fails("pause-job", str(job.pk))
    assert message.startswith(f"Job {job.pk} is succeeded: pause applies only to queued ")
    assert message.endswith("jobs. Nothing was changed.")
    job.refresh_from_db()
    assert job.status == JobStatus.SUCCEEDED


@pytest.mark.parametrize(("subcommand", "request_"), [("pause-job", "pause"), ("cancel", "cancel")])
def test_a_running_job_is_asked_to_stop_at_its_next_checkpoint(subcommand, request_):
    job = JobFactory(running=True)
    out, _ = run(subcommand, str(job.pk))
    assert out == (
        f"job {job.pk}: running → running, asked to {request_} at its next checkpoint (a task "
        "without checkpoints finishes this attempt)\n"
    )
    job.refresh_from_db()
    assert (job.status, job.stop_requested) == (JobStatus.RUNNING, request_)


def test_asking_a_running_job_twice_to_pause_is_refused():
    job = JobFactory(running=True)
    run("pause-job", str(job.pk))
    message, _, _ = fails("pause-job", str(job.pk))
    assert message == f"Job {job.pk} was already asked to pause at its next checkpoint."


def test_run_now_makes_a_delayed_job_due():
    job = JobFactory(run_after=timezone.now() + dt.timedelta(hours=2))
    out, _ = run("run-now", str(job.pk))
    assert out.startswith(f"job {job.pk}: queued, due in 1h 59m → queued, due now")
    job.refresh_from_db()
    assert job.run_after <= timezone.now()


def test_a_job_action_applies_to_the_valid_ids_and_reports_each_refusal():
    queued = JobFactory()
    done = JobFactory(succeeded=True)

    message, out, err = fails("cancel", str(queued.pk), "999999", str(done.pk))

    assert message == "2 of 3 jobs refused (above); the other 1 was cancelled."
    assert out == f"job {queued.pk}: queued, due now → cancelled\n"
    unknown, refused = err.splitlines()
    assert unknown == "No job with id 999999."
    assert refused.startswith(f"Job {done.pk} is succeeded: cancel applies only to queued or ")
    assert refused.endswith(" jobs. Nothing was changed.")
    queued.refresh_from_db()
    done.refresh_from_db()
    assert (queued.status, done.status) == (JobStatus.CANCELLED, JobStatus.SUCCEEDED)


def test_a_single_unknown_job_id_is_one_line():
    message, out, err = fails("retry", "999999")
    assert (message, out, err) == ("No job with id 999999.", "", "")


def test_when_every_job_is_refused_it_says_nothing_was_done():
    message, _, _ = fails("run-now", "999998", "999999")
    assert message == "All 2 jobs refused (above); nothing was made due now."


@pytest.mark.parametrize("bad_id", ["abc", "0", "-4", "1.5", str(2**63)])
def test_a_malformed_job_id_changes_nothing(bad_id):
    job = JobFactory()
    message, _, _ = fails("cancel", str(job.pk), bad_id)
    assert message == (
        f"Job id {bad_id!r} is not a job id (a positive whole number). Nothing was changed."
    )
    job.refresh_from_db()
    assert job.status == JobStatus.QUEUED


# -- why ------------------------------------------------------------------------------------


def test_why_explains_a_job_held_back_by_a_paused_queue():
    job = add.enqueue(1, 2)
    operations.pause_queue("default", by="alice", reason="smtp outage")

    out, _ = run("why", str(job.pk))

    lines = out.splitlines()
    assert lines[0] == f"Job {job.pk} ({add.name}) in queue 'default': queued, attempt 0 of 3."
    assert any(
        line.startswith("- Queue 'default' is paused by alice") and '("smtp outage")' in line
        for line in lines
    ), out
    assert any(
        line.startswith("- No live worker takes jobs from queue 'default'") for line in lines
    )


def test_why_json_gives_reason_codes():
    job = add.enqueue(1, 2)
    operations.pause_task(add.name)
    data = json.loads(run("why", str(job.pk), "--json")[0])
    assert data["job"] == job.pk
    assert {r["code"] for r in data["reasons"]} == {"task_paused", "no_worker"}


def test_why_an_unknown_job():
    message, _, _ = fails("why", "999999")
    assert message == "No job with id 999999."


# -- options --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "args", [["status"], ["pause", "default"], ["resume", "--all"], ["cancel", "1"], ["why", "1"]]
)
def test_an_unknown_database_alias_is_refused(args):
    message, _, _ = fails(*args, "--database", "nosuchdb")
    assert message == "--database 'nosuchdb' is not in settings.DATABASES (known: default)."


# -- the effect on workers ------------------------------------------------------------------


def claim_one_batch() -> list:
    """Claim as a fresh worker of every queue would (its own connection on PostgreSQL)."""
    info = WorkerInfo(
        id=uuid.uuid4(), hostname="cli-test", pid=os.getpid(), queues=[], concurrency=1
    )
    session = get_store().open_session(info)
    try:
        session.register()
        return session.claim(10)
    finally:
        session.close()


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    ("pause_args", "resume_args"),
    [
        (["pause", "default"], ["resume", "default"]),
        (["pause", "--all"], ["resume", "--all"]),
        (["pause", "--task", add.name], ["resume", "--task", add.name]),
    ],
)
def test_a_worker_claims_nothing_paused_from_the_command_line(pause_args, resume_args):
    job = add.enqueue(1, 2)
    run(*pause_args)
    assert claim_one_batch() == []
    Job.objects.get(pk=job.pk, status=JobStatus.QUEUED)

    run(*resume_args)
    assert [claimed.id for claimed in claim_one_batch()] == [job.pk]


# -- as a runbook runs it -------------------------------------------------------------------


def run_process(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "django", "taskengine", *args],
        cwd=REPO_ROOT,
        env=worker_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.django_db(transaction=True)
def test_process_exits_1_with_one_line_for_a_wrong_queue_name():
    add.enqueue(1, 2)
    result = run_process("pause", "defualt", "--reason", "typo")
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.splitlines() == [
        "CommandError: No queue named 'defualt'. Known queues: default. Check the spelling, or "
        "pass --create to pause a queue that has no jobs yet."
    ]
    assert nothing_paused()


@pytest.mark.django_db(transaction=True)
def test_process_exits_1_with_one_line_for_a_wrong_job_id():
    result = run_process("cancel", "999999")
    assert result.returncode == 1
    assert result.stderr.splitlines() == ["CommandError: No job with id 999999."]


@pytest.mark.django_db(transaction=True)
def test_process_exits_1_and_names_each_refused_job_after_applying_the_rest():
    job = add.enqueue(1, 2)
    result = run_process("cancel", str(job.pk), "999999")
    assert result.returncode == 1
    assert result.stdout == f"job {job.pk}: queued, due now → cancelled\n"
    assert result.stderr.splitlines() == [
        "No job with id 999999.",
        "CommandError: 1 of 2 jobs refused (above); the other 1 was cancelled.",
    ]
    job.refresh_from_db()
    assert job.status == JobStatus.CANCELLED


@pytest.mark.django_db(transaction=True)
def test_process_pause_status_resume_exit_0():
    add.enqueue(1, 2)
    paused = run_process("pause", "default", "--for", "15m", "--by", "runbook")
    assert paused.returncode == 0, paused.stderr
    assert Queue.objects.get(name="default").paused_by == "runbook"
    status = run_process("status", "--json")
    assert status.returncode == 0, status.stderr
    assert json.loads(status.stdout)["queues"][0]["paused"] is True
    resumed = run_process("resume", "default")
    assert resumed.returncode == 0, resumed.stderr
    assert not Queue.objects.get(name="default").is_paused


def test_process_exits_1_with_one_line_when_the_database_is_not_ready(tmp_path):
    from django.db import connection

    missing = (
        str(tmp_path / "never-migrated.sqlite3")
        if connection.vendor == "sqlite"
        else "taskengine_cli_no_such_database"
    )
    result = subprocess.run(
        [sys.executable, "-m", "django", "taskengine", "status"],
        cwd=REPO_ROOT,
        env=worker_env(TASKENGINE_TEST_DB_NAME=missing),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    [line] = result.stderr.splitlines()
    assert line.startswith("CommandError: Database 'default' failed: ")
    assert line.endswith("Is it reachable, and has `manage.py migrate` been run?")


def test_the_fast_exit_of_run_workers_waits_for_threads_and_runs_exit_hooks(tmp_path):
    """After a command-line run, run_workers ends the process itself: like a normal exit it
    stops idle thread pools, waits for other threads, runs atexit hooks and keeps the code."""
    marker = tmp_path / "exit-hook-ran"
    script = f"""
import atexit, concurrent.futures, pathlib, threading, time
import django
django.setup()
from django_taskengine.management.commands.run_workers import _exit_without_teardown
pool = concurrent.futures.ThreadPoolExecutor(2)
pool.submit(lambda: None).result()
done = []
threading.Thread(target=lambda: (time.sleep(0.3), done.append(1))).start()
atexit.register(lambda: pathlib.Path({str(marker)!r}).write_text(str(len(done))))
_exit_without_teardown(3)
"""
    proc = subprocess.run(
        [sys.executable, "-c", script],
        cwd=REPO_ROOT,
        env=worker_env(),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert proc.returncode == 3, proc.stderr
    assert marker.read_text() == "1"


# -- the cli package -------------------------------------------------------------------------


def test_every_subcommand_of_the_parser_has_a_handler():
    from django_taskengine.cli import HANDLERS
    from django_taskengine.management.commands.taskengine import Command

    parser = Command().create_parser("manage.py", "taskengine")
    [subparsers] = [a for a in parser._actions if a.dest == "subcommand"]
    assert set(subparsers.choices) == set(HANDLERS)


def test_for_reads_the_same_durations_as_the_retention_setting():
    from django_taskengine.cli.values import parse_duration

    assert parse_duration("1w") == dt.timedelta(weeks=1)
    assert parse_duration(" 1H 30M ") == dt.timedelta(hours=1, minutes=30)
    with pytest.raises(CommandError, match=r"--for '15x' is not a duration: write it like .*1w"):
        parse_duration("15x")


def test_a_duration_too_long_for_python_is_refused_as_too_long():
    message, _, _ = fails("pause", "default", "--create", "--for", "99999999999d")
    assert "longer than 366 days" in message
    assert nothing_paused()


def test_a_blank_queue_name_is_refused():
    message, _, _ = fails("pause", "  ")
    assert message == "'  ' is not a queue name (1 to 100 characters). Nothing was changed."


# -- the audit trail ----------------------------------------------------------------------------


def audited() -> list[tuple[str, str, str, str, str]]:
    """(action, object id, who, source, reason) of every entry, oldest first."""
    return [
        (e.action, e.object_id, e.actor, e.source, e.reason)
        for e in AuditEntry.objects.order_by("at", "id")
    ]


def test_every_changing_subcommand_records_who_why_and_cli(monkeypatch):
    monkeypatch.setenv("USER", "ops-oncall")
    job = JobFactory(status=JobStatus.FAILED)
    run("pause", "default", "--create", "--by", "alice", "--reason", "smtp outage")
    run("resume", "default", "--by", "bob", "--reason", "smtp back")
    run("pause", "--task", noop.name, "--create")
    run("resume", "--task", noop.name, "--by", "bob")
    run("pause", "--all", "--by", "carol")
    run("resume", "--all", "--by", "carol")
    run("retry", str(job.pk), "--by", "dave", "--reason", "upstream fixed")
    run("cancel", str(job.pk))
    assert audited() == [
        ("pause_queue", "default", "alice", "cli", "smtp outage"),
        ("resume_queue", "default", "bob", "cli", "smtp back"),
        ("pause_task", noop.name, "ops-oncall", "cli", ""),
        ("resume_task", noop.name, "bob", "cli", ""),
        ("pause_all", "", "carol", "cli", ""),
        ("resume_all", "", "carol", "cli", ""),
        ("retry_job", str(job.pk), "dave", "cli", "upstream fixed"),
        ("cancel_job", str(job.pk), "ops-oncall", "cli", ""),
    ]


def test_a_refused_or_empty_action_records_nothing():
    job = JobFactory(status=JobStatus.SUCCEEDED)
    fails("cancel", str(job.pk), "--by", "eve")
    run("resume", "--all", "--by", "eve")  # there was no engine-wide pause
    assert audited() == []


def test_audit_lists_the_latest_entries_with_who_what_and_why():
    job = JobFactory(status=JobStatus.FAILED)
    run("pause", "default", "--create", "--by", "alice", "--reason", "smtp outage")
    run("retry", str(job.pk), "--by", "dave")
    operations.pause_queue("reports", by="cron-script", reason="<b>nightly</b>")
    out, _ = run("audit")
    lines = out.splitlines()
    assert lines[0].split() == ["AT", "WHO", "FROM", "ACTION", "OBJECT", "DETAIL", "REASON"]
    assert [line.split()[2:5] for line in lines[1:]] == [
        ["cron-script", "python", "pause_queue"],
        ["dave", "cli", "retry_job"],
        ["alice", "cli", "pause_queue"],
    ]
    assert lines[1].endswith("<b>nightly</b>") and "status=queued" in lines[2]

    out, _ = run("audit", "--job", str(job.pk))
    assert [line.split()[4] for line in out.splitlines()[1:]] == ["retry_job"]
    out, _ = run("audit", "--queue", "default", "--limit", "5")
    assert [line.split()[4] for line in out.splitlines()[1:]] == ["pause_queue"]
    out, _ = run("audit", "--limit", "1")
    assert len(out.splitlines()) == 2
    out, _ = run("audit", "--task", noop.name)
    assert out.strip() == f"No operator actions recorded for task type {noop.name}."


def test_audit_json_for_scripts():
    run("pause", "default", "--create", "--by", "alice", "--reason", "smtp outage", "--for", "15m")
    out, _ = run("audit", "--json")
    (entry,) = json.loads(out)
    assert {k: entry[k] for k in ("by", "source", "action", "object_kind", "object_id")} == {
        "by": "alice",
        "source": "cli",
        "action": "pause_queue",
        "object_kind": "queue",
        "object_id": "default",
    }
    assert entry["reason"] == "smtp outage" and set(entry["detail"]) == {"until"}
    assert dt.datetime.fromisoformat(entry["at"]) <= timezone.now()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--limit", "0"], "--limit must be from 1"),
        (["--job", "abc"], "is not a job id"),
    ],
)
def test_audit_refuses_bad_values(args, message):
    error, _, _ = fails("audit", *args)
    assert message in error


@pytest.mark.parametrize(("subcommand", "request_"), [("pause-job", "pause"), ("cancel", "cancel")])
def test_hard_asks_a_running_jobs_worker_to_end_its_attempt(subcommand, request_):
    job = JobFactory(running=True)
    out, _ = run(subcommand, "--hard", str(job.pk), "--by", "bob", "--reason", "runaway")
    assert out == (
        f"job {job.pk}: running → running, hard {request_} asked (its worker ends the attempt "
        "with its process, replaced once its other jobs finish)\n"
    )
    job.refresh_from_db()
    assert (job.status, job.stop_requested) == (JobStatus.RUNNING, f"{request_}:hard")
    entry = AuditEntry.objects.get()
    assert (entry.action, entry.actor, entry.source, entry.reason) == (
        f"hard_{request_}_job",
        "bob",
        "cli",
        "runaway",
    )
    message, _, _ = fails(subcommand, "--hard", str(job.pk))
    assert message == (
        f"Job {job.pk} was already asked to {request_} at once (a hard stop: its attempt is "
        "ended with its worker process, which is replaced)."
    )


def test_hard_on_a_job_that_is_not_running_is_the_plain_action():
    job = JobFactory(status=JobStatus.QUEUED)
    out, _ = run("cancel", "--hard", str(job.pk))
    assert out == f"job {job.pk}: queued, due now → cancelled\n"
    assert AuditEntry.objects.get().action == "cancel_job"


def test_pause_a_task_type_with_stop_running_asks_its_running_jobs_to_pause():
    mine, other = JobFactory(running=True, task_name=noop.name), JobFactory(running=True)
    out, _ = run("pause", "--task", noop.name, "--stop-running", "--create")
    assert out.rstrip().endswith("; running jobs asked to pause at their next checkpoint")
    asked = dict(Job.objects.values_list("pk", "stop_requested"))
    assert (asked[mine.pk], asked[other.pk]) == ("pause:task", "")
    run("pause", "default", "--stop-running", "--create")
    assert Job.objects.get(pk=other.pk).stop_requested == "pause:queue"
