"""Helpers for tests that start real worker processes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from django.db import connection

#: Commits for real, so other connections see the rows; flushes only the engine's tables after.
committed_db = pytest.mark.django_db(transaction=True, available_apps=["django_taskengine"])

REPO_ROOT = Path(__file__).resolve().parent.parent


def direct_connection() -> Any:
    """A psycopg connection of its own (autocommit) to the test database: PostgreSQL only."""
    import psycopg

    params = dict(connection.get_connection_params())
    for key in ("cursor_factory", "pool", "context"):
        params.pop(key, None)
    return psycopg.connect(**params, autocommit=True)


def wait_for(
    predicate: Callable[[], Any], timeout: float = 30.0, interval: float = 0.05, message: str = ""
) -> Any:
    """Poll ``predicate`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {message or predicate}")
        time.sleep(interval)


def worker_env(**extra: str) -> dict[str, str]:
    """Environment for a subprocess that uses this test run's database."""
    env = dict(os.environ)
    env.update(
        DJANGO_SETTINGS_MODULE="tests.settings",
        TASKENGINE_TEST_DB_NAME=str(connection.settings_dict["NAME"]),
        PYTHONPATH=str(REPO_ROOT) + os.pathsep + env.get("PYTHONPATH", ""),
        PYTHONUNBUFFERED="1",
        # libpq names every session a subprocess opens (unless it names its own, as a worker's
        # claiming session does): end_subprocess_sessions() finds them by it.
        PGAPPNAME=SUBPROCESS_APP,
    )
    env.update(extra)
    return env


def manage(
    env: dict[str, str], *args: str, timeout: float = 180, check: bool = False
) -> subprocess.CompletedProcess[str]:
    """``python -m django ARGS`` in ``env`` (see worker_env), its output captured as text."""
    return subprocess.run(
        [sys.executable, "-m", "django", *args],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=check,
    )


#: The application name of a test subprocess's database sessions.
SUBPROCESS_APP = "taskengine-test-subprocess"


def end_subprocess_sessions() -> None:
    """End the server sessions that killed worker processes left behind, and wait for them.

    A killed process's session lives on until the server notices: one still running a statement
    holds its locks, and the flush after the test (``TRUNCATE``) can deadlock with it.
    """
    if connection.vendor != "postgresql":
        return
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_terminate_backend(pid, 10000) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
            " AND (application_name = %s OR (application_name LIKE 'taskengine-worker %%'"
            " OR application_name LIKE 'taskengine-relay %%') AND application_name NOT LIKE %s)",
            [SUBPROCESS_APP, f"%:{os.getpid()}"],
        )


class WorkerCommand:
    """A running ``manage.py run_workers`` process (the supervisor), with its log file."""

    def __init__(self, args: list[str], log_path: Path, env: dict[str, str] | None = None) -> None:
        self.args = args
        self.log_path = log_path
        self._log = open(log_path, "ab")  # noqa: SIM115 - closed in wait()/kill()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "django", "run_workers", *args],
            cwd=REPO_ROOT,
            env=env or worker_env(),
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def signal(self, sig: int) -> None:
        self.proc.send_signal(sig)

    def wait(self, timeout: float = 60.0) -> int:
        try:
            code = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(
                f"run_workers {' '.join(self.args)} did not exit within {timeout} s; log:\n"
                + self.log()[-4000:]
            ) from None
        self._log.close()
        return code

    def kill(self) -> None:
        """Kill the supervisor and every worker process it started."""
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait(timeout=10)
        else:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if not self._log.closed:
            self._log.close()


def process_alive(pid: int) -> bool:
    """Whether process ``pid`` exists and is not a zombie (exited, not yet reaped)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def child_pids(supervisor_pid: int) -> list[int]:
    """PIDs of the live children of a process (from /proc)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # Field 4 is the parent pid; the command name (field 2) may contain spaces.
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[1]) == supervisor_pid and fields[0] != "Z":
            pids.append(int(entry.name))
    return sorted(pids)


def claim_statement_params(limit: int = 100, **cursor: Any) -> dict[str, Any]:
    """Parameters of the worker's claim statement (``claim_jobs``) for a claim of ``limit``
    by a new worker of every queue, each job started at once; the cursor from ``cursor`` (the
    head of the queue when none is given)."""
    from django_taskengine.conf import taskengine_settings
    from django_taskengine.store.postgres_plain_claim import (
        START_FENCE_LOCK_ID,
        claim_params,
        engine_lock_key,
    )

    return {
        "queues": [],
        "all_queues": True,
        "limit": limit,
        "free": limit,
        "start": limit,
        "park": [],
        "worker": uuid.uuid4(),
        "ns": taskengine_settings.ADVISORY_LOCK_NAMESPACE,
        "fence": engine_lock_key(START_FENCE_LOCK_ID),
        "flow_tasks": [],
        **claim_params(**cursor),
    }


def attempt_outcomes(job: Any) -> list[str]:
    """The outcomes of ``job``'s attempts, oldest first."""
    return list(job.attempt_set.order_by("id").values_list("outcome", flat=True))


def burst(start_workers: Callable[..., Any], *jobs: Any) -> str:
    """Run every due job with one ``run_workers --burst`` (and the jobs due again within 10 s:
    retries, snoozes, sleeps), then refresh ``jobs``; the workers' log."""
    workers = start_workers("--burst")
    assert workers.wait(timeout=60) == 0, workers.log()[-4000:]
    for job in jobs:
        job.refresh_from_db()
    return workers.log()


def ledger_labels(job_id: int) -> list[str]:
    """The labels of the ledger rows job ``job_id``'s tasks wrote, oldest first."""
    from tests.testapp.models import LedgerEntry

    rows = LedgerEntry.objects.filter(job_id=job_id).order_by("id")
    return list(rows.values_list("label", flat=True))


def in_thread(target: Callable[[], Any], results: list[Any], errors: list[Any]) -> threading.Thread:
    """Start ``target`` in a thread of its own (its own database connection, closed at the
    end): what it returns goes to ``results``, what it raises to ``errors``."""

    def run() -> None:
        try:
            results.append(target())
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            errors.append(exc)
        finally:
            connection.close()

    thread = threading.Thread(target=run)
    thread.start()
    return thread


def each_in_a_thread(
    work: Callable[[Any], Any], items: list[Any], timeout: float = 90
) -> list[Any]:
    """``work(item)`` for every item at once, each in a thread of its own (see
    :func:`in_thread`); fails if any raised. Returns what they returned, in no order."""
    results: list[Any] = []
    errors: list[Any] = []
    threads = [in_thread(lambda item=item: work(item), results, errors) for item in items]
    for thread in threads:
        thread.join(timeout)
    assert not errors, errors
    return results
