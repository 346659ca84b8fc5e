"""``manage.py taskengine health``: the probe a container or unit runs against real workers."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys

import pytest
from django.core.management import CommandError, call_command
from django.db import connection

from django_taskengine.models import Worker
from tests.helpers import REPO_ROOT, wait_for, worker_env

pytestmark = pytest.mark.django_db(transaction=True)

HOST = socket.gethostname()


def probe(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """The probe as a health check runs it: a process of its own, judged by its exit code."""
    return subprocess.run(
        [sys.executable, "-m", "django", "taskengine", "health", *args],
        cwd=REPO_ROOT,
        env=worker_env(**env),
        capture_output=True,
        text=True,
        timeout=60,
    )


def verdict(*args: str) -> str:
    """The probe in this process: 'ok: …' or the reason it fails."""
    try:
        call_command("taskengine", "health", *args, stdout=(out := _Buffer()))
    except CommandError as exc:
        return str(exc)
    return out.text


class _Buffer:
    def __init__(self) -> None:
        self.text = ""

    def write(self, text: str) -> None:
        self.text += text

    def flush(self) -> None:
        pass


def test_no_worker_on_this_host_is_unhealthy_with_one_line():
    result = probe()
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert f"no worker process is running on {HOST}" in lines[0]


def test_healthy_while_workers_heartbeat_then_not_once_they_die(start_workers):
    workers = start_workers("--processes", "2")
    wait_for(lambda: verdict().startswith("ok: 2 worker processes"), timeout=30)
    result = probe()
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"ok: 2 worker processes on {HOST}")
    assert "fewer than --min-processes 3" in verdict("--min-processes", "3")
    assert verdict("--queue", "elsewhere").startswith("ok")  # they serve every queue
    assert verdict("--host", "no-such-host").startswith("unhealthy: no worker process")

    # SIGKILL: no process is left to say it stopped; the heartbeats age until they are too old.
    workers.kill()
    reason = wait_for(
        lambda: (text := verdict()).startswith("unhealthy") and text, timeout=30, interval=0.2
    )
    assert "has sent a heartbeat within" in reason and "the latest, pid" in reason
    assert probe().returncode == 1


def test_a_worker_that_stopped_gracefully_is_not_counted(start_workers):
    workers = start_workers("--processes", "1", "--queues", "emails")
    wait_for(lambda: verdict().startswith("ok: 1 worker process "), timeout=30)
    assert verdict("--queue", "emails").startswith("ok")
    assert "serving queue 'default'" in verdict("--queue", "default")
    workers.signal(signal.SIGTERM)
    assert workers.wait(timeout=60) == 0
    assert Worker.objects.filter(hostname=HOST, stopped_at__isnull=False).exists()
    assert "no worker process is running on" in verdict()


def test_bad_values_and_an_unreachable_database_are_one_line_each():
    assert "--min-processes must be at least 1" in verdict("--min-processes", "0")
    assert "--max-age must be a positive number" in verdict("--max-age", "0")
    if connection.vendor == "postgresql":
        result = probe(DATABASE_URL="postgres://postgres@127.0.0.1:1/nothing")
        assert result.returncode == 1
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and "failed" in lines[0], result.stderr
