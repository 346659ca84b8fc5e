"""``manage.py run_workers``: run supervised worker processes."""

from __future__ import annotations

import atexit
import importlib
import logging
import os
import pkgutil
import sys
import threading
import time
from typing import Any

from django.core.checks import Tags
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import DatabaseError, connections
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.migrations.executor import MigrationExecutor
from django.db.migrations.loader import MigrationLoader
from django.db.migrations.recorder import MigrationRecorder

from ...conf import taskengine_settings
from ...core.limits import QUEUE_NAME_MAX, check_queue_name
from ...operations.limits import sync_settings
from ...worker.supervisor import Supervisor

logger = logging.getLogger("django_taskengine.supervisor")


class Command(BaseCommand):
    help = (
        "Run worker processes that claim and run jobs. SIGTERM or Ctrl-C (to this process or "
        "its process group) stops them gracefully: no new claims, running jobs get "
        "--shutdown-timeout seconds, unfinished ones go back to the queue. SIGQUIT, or a second "
        "SIGTERM or Ctrl-C to this process, stops now: running jobs go back to the queue at once."
    )
    # The engine's own checks (its settings, its tasks, its database), not every app's models
    # and URLs: `manage.py check` and a deployment's checks cover those, and a worker that
    # `run_workers --burst` starts for a batch of jobs should not spend its start-up on them.
    requires_system_checks = [Tags.compatibility]

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--queues",
            default="",
            help="Comma-separated queue names to take jobs from (default: every queue).",
        )
        parser.add_argument(
            "--processes", type=int, default=1, help="Worker processes (default 1)."
        )
        parser.add_argument(
            "--concurrency",
            type=int,
            default=1,
            help="Threads running jobs in each process (default 1).",
        )
        parser.add_argument(
            "--burst",
            action="store_true",
            help="Run every job that is due, then exit 0 (jobs due later stay queued).",
        )
        parser.add_argument(
            "--max-jobs",
            type=int,
            default=None,
            help="Each worker process exits after claiming this many jobs; the command exits "
            "when all have.",
        )
        parser.add_argument(
            "--shutdown-timeout",
            type=float,
            default=None,
            help="Seconds running jobs get to finish after SIGTERM before they are requeued "
            f"(default TASKENGINE['SHUTDOWN_TIMEOUT'], {taskengine_settings.SHUTDOWN_TIMEOUT:g}).",
        )
        parser.add_argument(
            "--database",
            default=None,
            help="Database alias of the job table (default TASKENGINE['DATABASE']).",
        )

    def run_from_argv(self, argv: list[str]) -> None:
        # From the command line, the process ends here once the workers are done.
        try:
            super().run_from_argv(argv)
        except SystemExit as exc:
            code = exc.code
        else:
            code = 0
        _exit_without_teardown(code)

    def handle(self, *args: Any, **options: Any) -> None:
        _configure_logging(options["verbosity"])
        queues = [q.strip() for q in options["queues"].split(",") if q.strip()]
        for name in queues:
            try:
                check_queue_name(name)
            except ValueError:
                raise CommandError(
                    f"Queue name {name[:40]!r}… is longer than {QUEUE_NAME_MAX} characters."
                ) from None
        for key in ("processes", "concurrency"):
            if options[key] < 1:
                raise CommandError(f"--{key} must be at least 1, not {options[key]}.")
        if options["max_jobs"] is not None and options["max_jobs"] < 1:
            raise CommandError(f"--max-jobs must be at least 1, not {options['max_jobs']}.")
        database = options["database"] or taskengine_settings.DATABASE
        if database not in connections:
            raise CommandError(f"--database {database!r} is not in settings.DATABASES.")
        shutdown_timeout = options["shutdown_timeout"]
        if shutdown_timeout is None:
            shutdown_timeout = taskengine_settings.SHUTDOWN_TIMEOUT
        if shutdown_timeout < 0:
            raise CommandError("--shutdown-timeout must be 0 or more seconds.")
        _wait_for_schema(database)
        # TASKENGINE["QUEUES"] as this command's settings say: the queue rows every worker's
        # claims read the limits from.
        sync_settings(database)
        supervisor = Supervisor(
            processes=options["processes"],
            worker_options={
                "queues": queues,
                "concurrency": options["concurrency"],
                "burst": options["burst"],
                "max_jobs": options["max_jobs"],
                "shutdown_timeout": shutdown_timeout,
                "database": database,
            },
        )
        code = supervisor.run()
        if code:
            sys.exit(code)


def _exit_without_teardown(code: int | str | None) -> None:
    """End the process as the interpreter would, minus freeing every object one by one.

    Tearing down a process that has loaded Django takes tens of milliseconds, which a script
    running ``run_workers --burst`` would wait for. Everything with an observable effect still
    happens: other non-daemon threads are waited for, exit hooks run (``logging.shutdown`` and
    whatever the project registered, such as an error reporter's flush), streams are flushed.
    """
    if isinstance(code, str):
        print(code, file=sys.stderr)
        code = 1
    # What the interpreter does first on exit: its thread-exit hooks (which stop idle
    # concurrent.futures workers), then wait for the other non-daemon threads.
    threading._shutdown()  # type: ignore[attr-defined]
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(code or 0)


def _wait_for_schema(alias: str) -> None:
    """Wait for the database to answer, then insist that our migrations are applied."""
    delay = 0.5
    while True:
        try:
            connection = connections[alias]
            connection.ensure_connection()
            if _all_recorded(connection):
                plan = []
                break
            executor = MigrationExecutor(connection)
            targets = [
                node
                for node in executor.loader.graph.leaf_nodes()
                if node[0] == "django_taskengine"
            ]
            plan = executor.migration_plan(targets)
            break
        except DatabaseError as exc:
            logger.error(
                "database %r is unavailable (%s); retrying in %.1f s",
                alias,
                str(exc).strip() or type(exc).__name__,
                delay,
            )
            connections[alias].close()
            time.sleep(delay)
            delay = min(delay * 2, 10.0)
    connections[alias].close()
    if plan:
        missing = ", ".join(f"{m.app_label}.{m.name}" for m, _ in plan)
        raise CommandError(
            f"The task engine's tables in database {alias!r} are missing or out of date "
            f"(unapplied migrations: {missing}). Run `python manage.py migrate` first."
        )


def _all_recorded(connection: BaseDatabaseWrapper) -> bool:
    """Whether every migration file of the engine is recorded as applied: one query, and only
    the migrations package's names read, not its modules (loading every app's migrations into
    a graph costs a worker's start-up tens of milliseconds). False leaves the answer to the
    full plan (a migration missing, a squashed one, migrations not in files)."""
    module_name, _ = MigrationLoader.migrations_module("django_taskengine")
    if module_name is None:
        return False
    try:
        package = importlib.import_module(module_name)
    except ImportError:
        return False
    names = {
        name
        for _, name, is_package in pkgutil.iter_modules(getattr(package, "__path__", []))
        if not is_package and name[0] not in "_~"
    }
    recorder = MigrationRecorder(connection)
    if not names or not recorder.has_table():
        return False
    applied = recorder.migration_qs.filter(app="django_taskengine", name__in=names)
    return set(applied.values_list("name", flat=True)) == names


def _configure_logging(verbosity: int) -> None:
    """Show worker logs on stderr unless the project's LOGGING already routes them."""
    root = logging.getLogger("django_taskengine")
    if root.handlers or logging.getLogger().handlers:
        return
    handler = logging.StreamHandler()
    handler.setFormatter(
        logging.Formatter("%(asctime)s %(levelname)s [%(process)d] %(name)s: %(message)s")
    )
    root.addHandler(handler)
    root.setLevel(
        logging.DEBUG if verbosity >= 3 else logging.INFO if verbosity >= 1 else logging.WARNING
    )
