"""``manage.py taskengine``: the operator's command line, for runbooks and scripts.

Every change goes through :mod:`django_taskengine.operations`, the functions the admin buttons
call; reads come from :mod:`django_taskengine.inspection`. The subcommands live in
:mod:`django_taskengine.cli`; this module only builds the parser and reports database failures.

Exit codes: 0 done; 1 a wrong queue, task or job, a bad value, or an action refused (one line
per problem on stderr, nothing half-said); 2 the command line itself is malformed (argparse).
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import DatabaseError, connections

from ...cli import HANDLERS, READ_ONLY
from ...cli.arguments import EPILOG
from ...cli.arguments import add_arguments as add_subcommands
from ...conf import taskengine_settings


class Command(BaseCommand):
    help = (
        "Operate the task engine: see queue status, pause and resume queues, task types or "
        "everything, set queue limits, and retry, cancel, pause, resume or run jobs now. "
        "Changes go through the same operations as the admin buttons."
    )

    def create_parser(self, prog_name: str, subcommand: str, **kwargs: Any) -> CommandParser:
        parser = super().create_parser(prog_name, subcommand, **kwargs)
        parser.epilog = EPILOG
        return parser

    def add_arguments(self, parser: CommandParser) -> None:
        add_subcommands(parser)

    def handle(self, *args: Any, **options: Any) -> None:
        database = options.get("database") or taskengine_settings.DATABASE
        if database not in connections:
            raise CommandError(
                f"--database {database!r} is not in settings.DATABASES "
                f"(known: {', '.join(connections)})."
            )
        subcommand = options["subcommand"]
        try:
            HANDLERS[subcommand](self, database, options)
        except DatabaseError as exc:
            first_line = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            message = (
                f"Database {database!r} failed: {first_line}. Is it reachable, and has "
                "`manage.py migrate` been run?"
            )
            if subcommand not in READ_ONLY:
                message += " Changes reported above were applied, no others."
            raise CommandError(message) from exc
