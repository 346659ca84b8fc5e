"""The documentation site: it builds with warnings as errors, and every example in it runs.

How each code block is executed is described in ``tests/docs_support/blocks.py``; a block that
cannot run must say why (``<!-- not-executed: reason -->``), and the inventory test prints them.
"""

from __future__ import annotations

import importlib
import inspect
import io
import json
import os
import re
import shlex
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.core.checks import WARNING, run_checks
from django.core.management import call_command, load_command_class
from django.core.management.base import CommandError
from django.dispatch import Signal
from django.test import override_settings

from django_taskengine.conf import DEFAULTS
from django_taskengine.periodic.declarations import restore_declarations, snapshot_declarations
from django_taskengine.registry import tasks as task_registry
from tests.docs_support.blocks import DOCS, Block, blocks, commands, pages
from tests.helpers import WorkerCommand, end_subprocess_sessions, worker_env

REPO = DOCS.parent
PAGES = pages()
#: Languages of blocks that are shown, never executed: files of other tools, and output.
SHOWN_LANGUAGES = {"text", "ini", "yaml", "dockerfile", "systemd", "procfile", "json", ""}
#: The package the examples' project modules live in (``myapp/tasks.py``).
PROJECT_PACKAGES = ("myapp",)


def test_the_site_builds_with_warnings_as_errors(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    started = time.monotonic()
    build = subprocess.run(
        [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html"]
        + ["-d", str(tmp_path / "doctrees"), str(DOCS), str(tmp_path / "html")],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    print(f"sphinx build: {time.monotonic() - started:.1f} s")
    assert build.returncode == 0, build.stdout[-3000:] + build.stderr[-5000:]
    assert "WARNING" not in build.stderr, build.stderr[-5000:]
    settings_page = (tmp_path / "html" / "reference" / "settings.html").read_text()
    for key in DEFAULTS:
        assert key in settings_page, f"the settings reference lacks {key}"
    cli_page = (tmp_path / "html" / "reference" / "cli.html").read_text()
    for subcommand in ("status", "pause", "resume", "retry", "why", "limit", "health", "prune"):
        assert f'id="taskengine-{subcommand}"' in cli_page, f"no taskengine {subcommand}"


def test_the_checks_page_lists_every_check_id() -> None:
    ids = set()
    for path in (REPO / "django_taskengine").rglob("*.py"):
        ids |= set(re.findall(r"taskengine\.[EW]\d{3}", path.read_text()))
    page = (DOCS / "reference" / "checks.md").read_text()
    missing = sorted(check_id for check_id in ids if check_id not in page)
    assert ids and not missing, f"docs/reference/checks.md lacks {missing}"


def test_the_reference_names_every_task_option_metric_and_signal() -> None:
    """The hand-written reference tables keep up with the code."""
    from django_taskengine import signals
    from django_taskengine.task import Task, TaskOptions

    def missing(page: str, names: set[str]) -> list[str]:
        text = (DOCS / page).read_text()
        return sorted(name for name in names if f"`{name}`" not in text)

    options = set(TaskOptions.__annotations__)
    assert not missing("reference/tasks.md", options), "@task options"
    using = set(inspect.signature(Task.using).parameters) - {"self"}
    assert not missing("reference/tasks.md", using), "Task.using() options"
    metrics = set(
        re.findall(
            r'"(taskengine_[a-z_]+)"', (REPO / "django_taskengine" / "metrics.py").read_text()
        )
    )
    assert metrics and not missing("reference/metrics.md", metrics), "metrics"
    sent = {name for name, value in vars(signals).items() if isinstance(value, Signal)}
    assert sent and not missing("reference/signals.md", sent), "signals"


def test_block_inventory() -> None:
    """Every block is of a kind the convention knows; print what runs and what does not."""
    counts: Counter[str] = Counter()
    not_executed = []
    for page in PAGES:
        for block in blocks(page):
            if block.skip_reason:
                not_executed.append(f"{block.where}: {block.skip_reason}")
                counts["not executed"] += 1
            elif block.language == "python":
                counts["python executed"] += 1
            elif block.language in ("console", "shell"):
                for command, _ in commands(block):
                    counts[f"console {_console_kind(command)}"] += 1
            else:
                assert block.language in SHOWN_LANGUAGES or block.language.startswith("{"), (
                    f"{block.where}: unknown block language {block.language!r}"
                )
                kind = "directive" if block.language.startswith("{") else "shown"
                counts[f"{kind} ({block.language or 'plain'})"] += 1
    print("doc blocks:", dict(sorted(counts.items())))
    for line in not_executed:
        print("not executed:", line)
    assert counts["python executed"] > 0


def _console_kind(command: str) -> str:
    words = shlex.split(command)
    if words[:3] == ["python", "manage.py", "taskengine"]:
        return "taskengine (call_command)"
    if words[:3] == ["python", "manage.py", "run_workers"]:
        if "--burst" in words:
            return "run_workers --burst (worker process)"
        return "run_workers (options parsed)"
    return "shown only"


def _starts_workers(page: Path) -> bool:
    return any(
        _console_kind(command).startswith("run_workers --burst")
        for block in blocks(page)
        if block.language in ("console", "shell")
        for command, _ in commands(block)
    )


#: A worker process sees only committed rows: pages that start one run with commits (the tables
#: emptied afterwards); the others in a transaction rolled back at the end, which is faster.
COMMITTING_PAGES = [page for page in PAGES if _starts_workers(page)]
ROLLED_BACK_PAGES = [page for page in PAGES if page not in COMMITTING_PAGES]


def _page_ids(pages: list[Path]) -> list[str]:
    return [str(page.relative_to(DOCS)) for page in pages]


@pytest.mark.parametrize("page", COMMITTING_PAGES, ids=_page_ids(COMMITTING_PAGES))
def test_every_example_of_a_page_with_workers_runs(
    page: Path, transactional_db: None, tmp_path: Path
) -> None:
    _run_page(page, tmp_path)


@pytest.mark.parametrize("page", ROLLED_BACK_PAGES, ids=_page_ids(ROLLED_BACK_PAGES))
def test_every_example_of_the_page_runs(page: Path, db: None, tmp_path: Path) -> None:
    _run_page(page, tmp_path)


def _run_page(page: Path, tmp_path: Path) -> None:
    project = tmp_path / "project"
    project.mkdir()
    snapshot, declarations = task_registry.snapshot(), snapshot_declarations()
    sys.path.insert(0, str(project))
    namespace: dict[str, Any] = {"__name__": f"docs_page_{page.stem}"}
    started_workers = False
    engine = {**settings.TASKENGINE, "TASK_MODULES": list(PROJECT_PACKAGES)}
    try:
        with override_settings(TASKENGINE=engine):
            for block in blocks(page):
                if block.skip_reason:
                    continue
                if block.language == "python":
                    _run_python(block, namespace, project)
                elif block.language in ("console", "shell"):
                    started_workers |= _run_console(block, tmp_path, namespace)
    finally:
        sys.path.remove(str(project))
        for name in list(sys.modules):
            if name.split(".")[0] in PROJECT_PACKAGES:
                del sys.modules[name]
        task_registry.restore(snapshot)
        restore_declarations(declarations)
        if started_workers:
            end_subprocess_sessions()


def _run_python(block: Block, namespace: dict[str, Any], project: Path) -> None:
    code = compile(block.code, block.where, "exec")
    path = block.file
    if path == "settings.py":
        _check_settings(block, code, project)
    elif path == "urls.py":
        exec(code, {"__name__": "docs_urls"})
    elif path and path.startswith("tests/"):
        test_namespace: dict[str, Any] = {"__name__": "docs_tests"}
        exec(code, test_namespace)
        tests = [f for name, f in test_namespace.items() if name.startswith("test_")]
        assert tests, f"{block.where}: a tests/ block defines no test_* function"
        for test in tests:
            test()
    elif path:
        assert path.split("/")[0] in PROJECT_PACKAGES, (
            f"{block.where}: project modules live in {PROJECT_PACKAGES}, not {path}"
        )
        target = project / path
        target.parent.mkdir(parents=True, exist_ok=True)
        for parent in target.relative_to(project).parents:
            if parent != Path("."):
                (project / parent / "__init__.py").touch()
        target.write_text(block.code)
        importlib.invalidate_caches()
        module = path.removesuffix(".py").replace("/", ".")
        sys.modules.pop(module, None)
        importlib.import_module(module)
    else:
        exec(code, namespace)


def _check_settings(block: Block, code: Any, project: Path) -> None:
    # As in a project, where settings.py sits in a package next to manage.py.
    values: dict[str, Any] = {"__name__": "docs_settings", "__file__": str(project / "settings.py")}
    exec(code, values)
    checked = {name: values[name] for name in ("TASKENGINE", "TASKS") if name in values}
    if not checked:
        return
    with override_settings(**checked):
        problems = [
            message
            for message in run_checks(include_deployment_checks=False)
            if message.level >= WARNING
            and (message.id or "").startswith("taskengine.")
            and not message.is_silenced()
        ]
    assert not problems, f"{block.where}: the settings fail the system checks: {problems}"


def _run_console(block: Block, tmp_path: Path, namespace: dict[str, Any]) -> bool:
    started_workers = False
    for command, following in commands(block):
        kind = _console_kind(command)
        # A placeholder such as JOB_ID stands for the value the page's Python gave that name.
        words = [
            str(namespace[word]) if word.isupper() and word in namespace else word
            for word in shlex.split(command)
        ]
        if kind.startswith("taskengine"):
            out, err = io.StringIO(), io.StringIO()
            if following and following.startswith("CommandError:"):
                with pytest.raises(CommandError):
                    call_command(*words[2:], stdout=out, stderr=err)
            else:
                call_command(*words[2:], stdout=out, stderr=err)
        elif kind.startswith("run_workers --burst"):
            started_workers = True
            log = tmp_path / f"run_workers-{block.line}.log"
            # The worker imports the page's modules (myapp.tasks) when a job names their tasks.
            overrides = json.loads(os.environ.get("TASKENGINE_TEST_OVERRIDES", "{}"))
            env = worker_env(
                PYTHONPATH=str(tmp_path / "project") + os.pathsep + worker_env()["PYTHONPATH"],
                TASKENGINE_TEST_OVERRIDES=json.dumps(
                    {**overrides, "TASK_MODULES": list(PROJECT_PACKAGES)}
                ),
            )
            workers = WorkerCommand(words[3:], log, env)
            assert workers.wait(timeout=60) == 0, f"{block.where}: " + workers.log()[-4000:]
        elif kind.startswith("run_workers"):
            # A command that would run until stopped: its options must exist, at least.
            parser = load_command_class("django_taskengine", "run_workers").create_parser(
                "manage.py", "run_workers"
            )
            parser.parse_args(words[3:])
    return started_workers
