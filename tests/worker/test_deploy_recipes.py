"""The deployment recipes in deploy/, run as their platform would run them.

Each recipe's worker command is taken from its file and started against the test database with
a job in flight, then stopped the way its platform stops it (systemd's KillMode and KillSignal,
`docker stop`, a Heroku dyno's shutdown): the job must finish and the command exit 0 well inside
the platform's grace period, which the recipe must set above run_workers' --shutdown-timeout.
Building the Docker image needs a Docker engine, which the test machines lack: the Dockerfile
is checked for the exec form that lets run_workers receive `docker stop`'s signal.
"""

from __future__ import annotations

import configparser
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from django_taskengine.models import JobStatus
from tests.helpers import (
    REPO_ROOT,
    WorkerCommand,
    end_subprocess_sessions,
    ledger_labels,
    wait_for,
    worker_env,
)
from tests.testapp.tasks import record

pytestmark = pytest.mark.django_db(transaction=True)

DEPLOY = REPO_ROOT / "deploy"
#: How long the job in flight runs once the stop signal arrives.
JOB_SECONDS = 2.0


def manage_py_args(argv: list[str]) -> list[str]:
    """The arguments after ``manage.py`` in a recipe's command line."""
    return argv[argv.index("manage.py") + 1 :]


def shutdown_timeout(args: list[str]) -> float:
    return float(args[args.index("--shutdown-timeout") + 1])


class Recipe(WorkerCommand):
    """A recipe's command, started as ``python -m django`` with the same arguments."""

    def __init__(self, args: list[str], log_path: Path, shell: str | None = None) -> None:
        if shell is None:
            super().__init__(manage_py_args(args)[1:], log_path)
            return
        # A Procfile line: run by bash, as Heroku runs it (bash replaces itself with a lone
        # command, so the dyno's SIGTERM reaches run_workers), "python manage.py" made ours.
        line = shell.replace("python manage.py", f"{shlex.quote(sys.executable)} -m django")
        self.args = [line]
        self.log_path = log_path
        self._log = open(log_path, "ab")  # noqa: SIM115 - closed in wait()/kill()
        self.proc = subprocess.Popen(
            ["bash", "-c", line],
            cwd=REPO_ROOT,
            env=worker_env(),
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def stop_with_a_job_in_flight(command: Recipe, to_group: bool, grace: float) -> None:
    """Start a job, send SIGTERM while it runs (to the process, or to its process group), and
    check that the job finished and the command exited 0 within ``grace`` seconds."""
    job = record.enqueue(label="in flight", sleep=JOB_SECONDS)
    # Its ledger row, not its status: a job claimed ahead is running before its task starts,
    # and the stop gives such a job back to the queue, untouched, instead of finishing it.
    wait_for(lambda: ledger_labels(job.pk), timeout=60, message="the job's task to start")
    started = time.monotonic()
    if to_group:
        os.killpg(command.pid, signal.SIGTERM)
    else:
        command.signal(signal.SIGTERM)
    code = command.wait(timeout=grace)
    took = time.monotonic() - started
    assert code == 0, command.log()[-3000:]
    job.refresh_from_db()
    assert job.status == JobStatus.SUCCEEDED, (job.status, command.log()[-3000:])
    assert took < grace, f"stopped in {took:.1f} s, past the platform's {grace} s"
    end_subprocess_sessions()


# -- systemd ----------------------------------------------------------------------------------


def read_unit() -> configparser.ConfigParser:
    unit = configparser.ConfigParser(interpolation=None, strict=False)
    unit.optionxform = str  # type: ignore[assignment,method-assign]
    unit.read(DEPLOY / "systemd" / "taskengine-workers.service")
    return unit


def test_the_systemd_unit_verifies_and_stops_gracefully_within_its_timeout(tmp_path):
    service = read_unit()["Service"]
    argv = shlex.split(service["ExecStart"])
    stop_timeout = float(service["TimeoutStopSec"])
    assert stop_timeout > shutdown_timeout(argv) + 5
    assert service["KillMode"] in ("mixed", "control-group")
    assert service["KillSignal"] == "SIGTERM"

    analyze = shutil.which("systemd-analyze")
    if analyze:
        # The unit as installed on this machine: its interpreter and folder made real.
        text = (DEPLOY / "systemd" / "taskengine-workers.service").read_text()
        text = text.replace("/srv/myproject/.venv/bin/python", sys.executable)
        text = text.replace("/srv/myproject", str(REPO_ROOT))
        text = re.sub(r"^(User|Group)=.*$", r"\1=root", text, flags=re.M)
        unit_path = tmp_path / "taskengine-workers.service"
        unit_path.write_text(text)
        verified = subprocess.run(
            [analyze, "verify", str(unit_path)], capture_output=True, text=True, timeout=60
        )
        problems = [
            line
            for line in verified.stderr.splitlines()
            if "taskengine-workers.service" in line or "Failed to parse" in line
        ]
        assert verified.returncode == 0 and not problems, verified.stderr

    # KillMode=mixed: SIGTERM to the main process only; control-group: to every process.
    command = Recipe(argv, tmp_path / "systemd.log")
    try:
        stop_with_a_job_in_flight(
            command, to_group=service["KillMode"] == "control-group", grace=stop_timeout
        )
    finally:
        command.kill()


# -- Docker -----------------------------------------------------------------------------------


def test_the_compose_worker_runs_reports_health_and_survives_docker_stop(tmp_path):
    compose = yaml.safe_load((DEPLOY / "docker" / "compose.yaml").read_text())
    services = compose["services"]
    assert {"db", "migrate", "web", "worker"} <= set(services)
    worker = services["worker"]
    # Exec form: run_workers is the container's PID 1 and gets docker stop's SIGTERM itself.
    assert isinstance(worker["command"], list)
    grace = float(worker["stop_grace_period"].removesuffix("s"))
    assert grace > shutdown_timeout(worker["command"]) + 5
    assert worker["environment"]["DATABASE_URL"].startswith("postgres://")
    assert worker["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    assert manage_py_args(services["migrate"]["command"])[:2] == ["migrate", "--noinput"]

    health = worker["healthcheck"]["test"]
    assert health[0] == "CMD"
    health_args = manage_py_args(health[1:])
    assert health_args[:2] == ["taskengine", "health"]

    def healthy() -> bool:
        probe = subprocess.run(
            [sys.executable, "-m", "django", *health_args],
            cwd=REPO_ROOT,
            env=worker_env(),
            capture_output=True,
            text=True,
            timeout=60,
        )
        return probe.returncode == 0

    assert not healthy()
    command = Recipe(worker["command"], tmp_path / "docker.log")
    try:
        wait_for(healthy, timeout=60, interval=0.5, message="the health check to pass")
        stop_with_a_job_in_flight(command, to_group=False, grace=grace)
    finally:
        command.kill()
    assert not healthy()


def test_the_dockerfile_runs_its_command_in_exec_form():
    instructions = [
        line.split(None, 1)
        for line in (DEPLOY / "docker" / "Dockerfile").read_text().splitlines()
        if line.strip() and not line.startswith("#") and not line.startswith(" ")
    ]
    commands = [rest for word, rest in instructions if word in ("CMD", "ENTRYPOINT")]
    assert commands, "the Dockerfile names no command"
    for rest in commands:
        assert isinstance(json.loads(rest), list), f"not exec form: {rest}"


# -- a Procfile (Heroku, Dokku, honcho…) --------------------------------------------------------


def read_procfile() -> dict[str, str]:
    lines = (DEPLOY / "heroku" / "Procfile").read_text().splitlines()
    return dict(line.split(": ", 1) for line in lines if line.strip())


def test_the_procfile_release_migrates_and_its_worker_stops_on_the_dyno_sigterm(tmp_path):
    processes = read_procfile()
    assert set(processes) == {"release", "web", "worker"}
    release = processes["release"].replace("python manage.py", f"{sys.executable} -m django")
    migrated = subprocess.run(
        ["bash", "-c", release],
        cwd=REPO_ROOT,
        env=worker_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert migrated.returncode == 0, migrated.stdout + migrated.stderr
    assert "wsgi" in processes["web"] and "$PORT" in processes["web"]

    # A dyno's shutdown: SIGTERM to every process of the dyno, SIGKILL 30 s later.
    worker = processes["worker"]
    assert shutdown_timeout(shlex.split(worker)) < 30 - 2
    command = Recipe([], tmp_path / "procfile.log", shell=worker)
    try:
        stop_with_a_job_in_flight(command, to_group=True, grace=30)
    finally:
        command.kill()
