"""``taskengine worker drain|resume|stop|kill WORKER_ID``: an operator's requests to one worker
process, as the worker's admin page makes them (:mod:`django_taskengine.operations.workers`).

The process carries the request out at its next heartbeat; the command returns once the
request is written, and says so.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from .. import operations
from ..audit_trail import AuditSource
from ..conf import taskengine_settings
from .values import actor

#: Action -> (operation, what the report says was asked).
ACTIONS = {
    "drain": (operations.drain_worker, "asked to drain (no new jobs; it stays up, idle)"),
    "resume": (operations.resume_worker, "resumed: it takes jobs again"),
    "stop": (operations.stop_worker, "asked to stop (its running jobs finish; not replaced)"),
    "kill": (
        operations.hard_stop_worker,
        "asked to stop now (hard stop: its running jobs are rescued and run again)",
    ),
}


def add_worker_parser(subcommands: Any, parents: list[CommandParser]) -> None:
    """The ``worker`` subcommand (``parents``: the --database and --by/--reason options)."""
    text = (
        "Ask one worker process to drain (take no new jobs, finish its running ones, stay up "
        "idle), resume, stop (as on SIGTERM; run_workers does not replace it) or kill (hard "
        "stop: exit now, its running jobs are rescued). Carried out at its next heartbeat."
    )
    worker = subcommands.add_parser("worker", parents=parents, help=text, description=text)
    worker.add_argument("action", choices=sorted(ACTIONS))
    worker.add_argument(
        "worker_id", metavar="WORKER_ID", help="The process's id, as its admin page shows it."
    )


def worker(command: BaseCommand, database: str, options: dict[str, Any]) -> None:
    """``taskengine worker ACTION WORKER_ID``."""
    operation, done = ACTIONS[options["action"]]
    try:
        row = operation(
            options["worker_id"],
            by=actor(options),
            reason=options["reason"],
            source=AuditSource.CLI,
            using=database,
        )
    except operations.ActionRefused as exc:
        raise CommandError(f"{exc} Nothing was changed.") from None
    command.stdout.write(
        f"worker {row.hostname}:{row.pid} ({row.id}) {done}; it carries this out at its next "
        f"heartbeat (within {taskengine_settings.HEARTBEAT_INTERVAL:g} s)."
    )
