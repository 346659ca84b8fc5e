"""Bad rows and bad set-ups: clear errors, the worker keeps going, nothing lost."""

from __future__ import annotations

import pkgutil
import uuid
from pathlib import Path

import pytest
from django.db import connection
from django.utils import timezone

import django_taskengine.migrations
from django_taskengine.models import Job, JobStatus
from tests.helpers import manage, worker_env
from tests.testapp.tasks import add

pytestmark = pytest.mark.django_db(transaction=True)


def _raw_job(**fields) -> Job:
    defaults = {"task_name": "tests.testapp.tasks.add", "args": [1, 2], "kwargs": {}}
    defaults.update(fields)
    return Job.objects.create(**defaults)


def test_unknown_task_fails_clearly_and_the_worker_keeps_running(start_workers):
    unknown = _raw_job(task_name="billing.tasks.removed_last_year")
    good = add.enqueue(2, 3)
    workers = start_workers("--burst")
    assert workers.wait() == 0
    unknown.refresh_from_db()
    assert unknown.status == JobStatus.FAILED
    assert unknown.attempts == 1
    assert "No task named 'billing.tasks.removed_last_year' is registered" in unknown.error
    assert Job.objects.get(pk=good.pk).result == 5


@pytest.mark.parametrize(
    ("args", "kwargs", "message"),
    [
        ({"not": "a list"}, {}, "corrupted arguments"),
        ([1, 2], ["not", "a dict"], "corrupted arguments"),
        ([1, 2, 3, 4], {}, "arguments do not match"),
        ([], {"a": 1, "c": 2}, "arguments do not match"),
    ],
)
def test_corrupted_arguments_fail_the_job_without_retrying(start_workers, args, kwargs, message):
    bad = _raw_job(args=args, kwargs=kwargs)
    good = add.enqueue(1, 1)
    workers = start_workers("--burst")
    assert workers.wait() == 0
    bad.refresh_from_db()
    assert bad.status == JobStatus.FAILED
    assert bad.attempts == 1
    assert message in bad.error
    assert Job.objects.get(pk=good.pk).status == JobStatus.SUCCEEDED


def _empty_database() -> tuple[str, callable]:
    if connection.vendor == "postgresql":
        import psycopg

        name = f"taskengine_empty_{uuid.uuid4().hex[:8]}"
        params = connection.get_connection_params()
        admin = psycopg.connect(
            host=params.get("host"),
            port=params.get("port"),
            user=params.get("user"),
            dbname="postgres",
            autocommit=True,
        )
        admin.execute(f'CREATE DATABASE "{name}"')

        def drop() -> None:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            admin.close()

        return name, drop
    path = Path(connection.settings_dict["NAME"]).with_name(f"empty-{uuid.uuid4().hex[:8]}.sqlite3")
    return str(path), lambda: path.unlink(missing_ok=True)


def test_worker_on_a_database_without_migrations_exits_1_with_one_clear_error():
    name, drop = _empty_database()
    try:
        proc = manage(worker_env(TASKENGINE_TEST_DB_NAME=name), "run_workers", "--burst")
    finally:
        drop()
    assert proc.returncode == 1
    assert "Run `python manage.py migrate` first" in proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    assert proc.stderr.count("\n") <= 3, proc.stderr


def test_bad_command_line_values_are_clear_errors():
    proc = manage(worker_env(), "run_workers", "--processes", "0")
    assert proc.returncode == 1
    assert "--processes must be at least 1" in proc.stderr


def test_rows_finished_long_ago_are_left_alone(start_workers):
    done = _raw_job(status=JobStatus.SUCCEEDED, finished_at=timezone.now(), result=3)
    workers = start_workers("--burst")
    assert workers.wait() == 0
    done.refresh_from_db()
    assert done.status == JobStatus.SUCCEEDED and done.attempts == 0


def _poison(job: Job, column: str, text: str) -> None:
    """Store JSON text the database accepts but Python's ``json`` cannot load."""
    cast = "::jsonb" if connection.vendor == "postgresql" else ""
    with connection.cursor() as cursor:
        try:
            cursor.execute(
                f"UPDATE taskengine_job SET {column} = %s{cast} WHERE id = %s", [text, job.pk]
            )
        except Exception as exc:  # noqa: BLE001 - SQLite's own JSON depth limit
            pytest.skip(f"this database does not store it either: {exc}")


def _deep_nesting() -> str:
    # Deeper than Python's json loads (Python 3.11 and 3.12 stop before 3,000 levels, 3.13's C
    # decoder before 10,000); PostgreSQL's jsonb takes 14,000 (max_stack_depth 2 MB), SQLite's
    # json_valid() 2,000.
    depth = 12_000 if connection.vendor == "postgresql" else 1990
    return "[" * depth + "]" * depth


def _state(job: Job) -> tuple[str, int, str]:
    """Status, attempts and error of a job whose JSON columns this process cannot load."""
    return Job.objects.values_list("status", "attempts", "error").get(pk=job.pk)


POISON = {
    "deep nesting": (_deep_nesting, "nested too deeply"),
    "huge integer": (lambda: "[" + "1" * 5001 + "]", "5001 digits"),
}


@pytest.mark.parametrize("poison", sorted(POISON))
@pytest.mark.parametrize("column", ["args", "kwargs"])
def test_arguments_python_cannot_load_fail_only_their_job(start_workers, poison, column):
    make_text, what = POISON[poison]
    good_before = [add.enqueue(i, 1) for i in range(3)]
    bad = add.enqueue(1, 2)
    good_after = [add.enqueue(i, 2) for i in range(3)]
    text = make_text() if column == "args" else '{"a": ' + make_text() + "}"
    _poison(bad, column, text)
    workers = start_workers("--burst", "--concurrency", "2")
    assert workers.wait() == 0
    status, attempts, error = _state(bad)
    assert (status, attempts) == (JobStatus.FAILED, 1), error
    assert f"corrupted arguments: job {bad.pk}'s {column}" in error
    assert what in error
    for job in good_before + good_after:
        job.refresh_from_db()
        assert (job.status, job.attempts, job.error) == (JobStatus.SUCCEEDED, 1, "")
    log = workers.log()
    assert "Traceback" not in log and "died" not in log, log[-3000:]


def test_a_checkpoint_python_cannot_load_fails_only_its_job(start_workers):
    bad = add.enqueue(1, 2)
    good = [add.enqueue(i, 1) for i in range(3)]
    _poison(bad, "checkpoint", '{"next": ' + "1" * 5001 + "}")
    workers = start_workers("--burst")
    assert workers.wait() == 0
    status, attempts, error = _state(bad)
    assert (status, attempts) == (JobStatus.FAILED, 1), error
    assert f"corrupted checkpoint: job {bad.pk}'s checkpoint" in error
    assert all(Job.objects.get(pk=job.pk).status == JobStatus.SUCCEEDED for job in good)
    assert "Traceback" not in workers.log()


def test_a_worker_names_the_one_migration_not_applied_and_starts_once_it_is():
    """The start-up's quick look (every migration file recorded as applied) must not pass a
    database where one is missing: the full plan names it."""
    name, drop = _empty_database()
    env = worker_env(TASKENGINE_TEST_DB_NAME=name)
    files = sorted(
        m.name
        for m in pkgutil.iter_modules(django_taskengine.migrations.__path__)
        if not m.name.startswith("_")
    )
    try:
        manage(env, "migrate", "-v0", check=True)
        # The last migration recorded as not applied (its schema stays: --fake).
        manage(env, "migrate", "django_taskengine", files[-2], "--fake", "-v0", check=True)
        refused = manage(env, "run_workers", "--burst")
        manage(env, "migrate", "django_taskengine", "--fake", "-v0", check=True)
        started = manage(env, "run_workers", "--burst")
    finally:
        drop()
    assert refused.returncode == 1
    assert f"unapplied migrations: django_taskengine.{files[-1]})" in refused.stderr
    assert started.returncode == 0, started.stderr[-2000:]
