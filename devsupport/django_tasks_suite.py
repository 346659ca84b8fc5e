"""Django's own tests of its Tasks framework, re-pointed at ``TaskEngineBackend``.

The tests are those of the installed Django release: ``tests/tasks/`` of its source
distribution, fetched with pip from the package index. Where they use Django's
``ImmediateBackend`` (which runs a task as it is enqueued) they get ``TaskEngineBackend`` in
eager mode (``TASKENGINE["EAGER"]``: the job runs in-process as it is enqueued, through the
engine's runner), one attempt per job as Django's backends make, and a database, which the
engine's job table needs (``SimpleTestCase`` becomes ``TransactionTestCase``). The tests of the
other backends (dummy, custom) run as they are, in the same settings.

What cannot apply to a database backend, or differs on purpose, is listed in :data:`SKIPPED`
and :data:`EDITS` with the reason; everything else must pass. ``tests/integration/
test_django_tasks_suite.py`` runs it; by hand::

    python -m devsupport.django_tasks_suite   # with the test settings' environment
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tarfile
from pathlib import Path

import django

REPO_ROOT = Path(__file__).resolve().parent.parent
IMMEDIATE = "django.tasks.backends.immediate.ImmediateBackend"
ENGINE = "django_taskengine.backends.TaskEngineBackend"
#: The modules re-pointed at TaskEngineBackend.
REPOINTED = ("test_immediate_backend.py", "test_tasks.py")

#: Test (module.Class.method) -> why it cannot apply to TaskEngineBackend.
SKIPPED = {
    "test_immediate_backend.ImmediateBackendTestCase.test_using_correct_backend": (
        "checks that the backend is an ImmediateBackend"
    ),
    "test_tasks.TaskTestCase.test_get_backend": "checks that the backend is an ImmediateBackend",
    "test_immediate_backend.ImmediateBackendTestCase.test_cannot_get_result": (
        "ImmediateBackend cannot get results; TaskEngineBackend can (supports_get_result: a "
        "result is its job's row)"
    ),
    "test_immediate_backend.ImmediateBackendTestCase.test_cannot_refresh_result": (
        "ImmediateBackend cannot refresh results; TaskEngineBackend can"
    ),
    "test_immediate_backend.ImmediateBackendTestCase.test_cannot_pass_run_after": (
        "ImmediateBackend refuses run_after; TaskEngineBackend supports it (supports_defer)"
    ),
    "test_immediate_backend.ImmediateBackendTestCase.test_throws_keyboard_interrupt": (
        "ImmediateBackend lets a task's KeyboardInterrupt escape enqueue() and leaves the task "
        "running; the engine's in-process runs (eager mode, testing.run_jobs) never let a "
        "task's exception escape: the job ends failed with it"
    ),
}

#: (module, text, replacement, why): edits to a test that applies but checks something the
#: engine does differently on purpose; the rest of the test runs.
EDITS = [
    (
        "test_immediate_backend.py",
        "                self.assertIn(message, captured_logs.output[0])\n",
        "",
        "task_finished is sent once the job's end is committed, not inside the exception "
        "handler, so Django's log receiver has no exception to log with the line; the "
        "exception's class and traceback are checked in result.errors below",
    ),
    (
        "test_immediate_backend.py",
        "    available_apps = []\n",
        '    available_apps = ["django_taskengine"]\n',
        "the job table is a model of the engine's app: the test case must keep that app",
    ),
]

SETTINGS = '''"""Settings of Django's Tasks tests re-pointed at TaskEngineBackend (written by
devsupport/django_tasks_suite.py)."""

from tests.settings import *  # noqa: F403
from tests.settings import INSTALLED_APPS, TASKENGINE

# Jobs run as they are enqueued (as ImmediateBackend runs tasks), one attempt each (Django's
# backends do not retry).
TASKENGINE = {**TASKENGINE, "EAGER": True, "DEFAULT_MAX_ATTEMPTS": 1}
INSTALLED_APPS = [*INSTALLED_APPS, "tasks"]
'''


def fetch_sdist(into: Path) -> Path:
    """The source distribution of the installed Django release, downloaded into ``into``."""
    version = django.get_version()
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--no-binary", ":all:"]
        + ["--dest", str(into), f"Django=={version}"],
        check=True,
        capture_output=True,
        text=True,
    )
    found = [p for p in into.iterdir() if p.name.lower() == f"django-{version}.tar.gz"]
    if not found:
        raise FileNotFoundError(f"pip did not download Django {version}'s sdist into {into}")
    return found[0]


def prepare(sdist: Path, root: Path) -> Path:
    """Extract ``tests/tasks`` of ``sdist`` into ``root/tasks``, re-pointed; write the settings
    module ``root/taskengine_django_settings.py``. Returns ``root``."""
    with tarfile.open(sdist) as archive:
        prefix = f"{archive.getnames()[0].split('/')[0]}/tests/tasks/"
        members = [m for m in archive.getmembers() if m.name.startswith(prefix) and m.isfile()]
        if not members:
            raise FileNotFoundError(f"{sdist.name} has no tests/tasks/")
        target = root / "tasks"
        target.mkdir(parents=True, exist_ok=True)
        for member in members:
            source = archive.extractfile(member)
            assert source is not None
            (target / member.name[len(prefix) :]).write_bytes(source.read())
    for name in REPOINTED:
        path = target / name
        text = path.read_text().replace(IMMEDIATE, ENGINE)
        path.write_text(re.sub(r"\bSimpleTestCase\b", "TransactionTestCase", text))
    for name, old, new, _ in EDITS:
        path = target / name
        text = path.read_text()
        if old not in text:
            raise ValueError(f"{name} no longer has the line to edit: {old.strip()!r}")
        path.write_text(text.replace(old, new))
    skips: dict[str, list[tuple[str, str, str]]] = {}
    for test, reason in SKIPPED.items():
        module, cls, method = test.split(".")
        skips.setdefault(module, []).append((cls, method, reason))
    for module, tests in skips.items():
        lines = ["", "", "# Cannot apply to TaskEngineBackend (devsupport/django_tasks_suite.py)."]
        lines += ["import unittest as _unittest", ""]
        lines += [f"{c}.{m} = _unittest.skip({why!r})({c}.{m})" for c, m, why in tests]
        with (target / f"{module}.py").open("a") as file:
            file.write("\n".join(lines) + "\n")
    (root / "taskengine_django_settings.py").write_text(SETTINGS)
    return root


def run(root: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Django's test runner over ``root/tasks``, in a process of its own."""
    environ = dict(os.environ if env is None else env)
    environ["PYTHONPATH"] = os.pathsep.join(
        [str(root), str(REPO_ROOT), environ.get("PYTHONPATH", "")]
    )
    environ["DJANGO_SETTINGS_MODULE"] = "taskengine_django_settings"
    return subprocess.run(
        [sys.executable, "-m", "django", "test", "tasks", "--noinput", "-v", "2"],
        cwd=root,
        env=environ,
        capture_output=True,
        text=True,
        timeout=600,
    )


if __name__ == "__main__":
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        where = Path(folder)
        done = run(prepare(fetch_sdist(where), where / "suite"))
        sys.stdout.write(done.stdout + done.stderr)
        sys.exit(done.returncode)
