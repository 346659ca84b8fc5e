"""Bad rows and bad set-ups: clear errors, the worker keeps going, nothing lost."""

from __future__ import annotations

import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from django.db import connection
from django.utils import timezone

from django_taskengine.models import Job, JobStatus
from tests.helpers import REPO_ROOT, worker_env
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
        proc = subprocess.run(
            [sys.executable, "-m", "django", "run_workers", "--burst"],
            cwd=REPO_ROOT,
            env=worker_env(TASKENGINE_TEST_DB_NAME=name),
            capture_output=True,
            text=True,
            timeout=60,
        )
    finally:
        drop()
    assert proc.returncode == 1
    assert "Run `python manage.py migrate` first" in proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    assert proc.stderr.count("\n") <= 3, proc.stderr


def test_bad_command_line_values_are_clear_errors():
    proc = subprocess.run(
        [sys.executable, "-m", "django", "run_workers", "--processes", "0"],
        cwd=REPO_ROOT,
        env=worker_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 1
    assert "--processes must be at least 1" in proc.stderr


def test_rows_finished_long_ago_are_left_alone(start_workers):
    done = _raw_job(status=JobStatus.SUCCEEDED, finished_at=timezone.now(), result=3)
    workers = start_workers("--burst")
    assert workers.wait() == 0
    done.refresh_from_db()
    assert done.status == JobStatus.SUCCEEDED and done.attempts == 0
