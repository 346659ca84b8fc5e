"""The job subcommands: ``retry``, ``cancel``, ``pause-job``, ``resume-job``, ``run-now``
(``cancel --hard`` and ``pause-job --hard``: a hard stop of a running job)."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from .. import inspection, operations
from ..audit_trail import AuditSource
from .report import finish, job_state
from .values import actor, parse_job_id, unique

#: Subcommand -> (operations action, past participle for the report).
JOB_SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "retry": ("retry", "retried"),
    "cancel": ("cancel", "cancelled"),
    "pause-job": ("pause", "paused"),
    "resume-job": ("resume", "resumed"),
    "run-now": ("run_now", "made due now"),
}


def job_action(command: BaseCommand, database: str, options: dict[str, Any]) -> None:
    """``taskengine retry|cancel|pause-job|resume-job|run-now JOB_ID...``."""
    subcommand = options["subcommand"]
    action, done = JOB_SUBCOMMANDS[subcommand]
    if options.get("hard"):
        action = f"hard_{action}"  # cancel --hard, pause-job --hard
    job_ids = unique([parse_job_id(text) for text in options["job_ids"]])
    function = operations.JOB_ACTION_FUNCTIONS[action]
    by = actor(options)
    # Read what each job is now, then act only if it is still that: the report then says
    # exactly which transition happened (a job changed meanwhile is refused, not guessed).
    seen = inspection.jobs_by_id(job_ids, using=database)
    refused: list[str] = []
    for job_id in job_ids:
        before = seen.get(job_id)
        if before is None:
            refused.append(f"No job with id {job_id}.")
            continue
        expected = operations.Expected(status=before.status, attempts=before.attempts)
        try:
            after = function(
                job_id,
                expected=expected,
                by=by,
                reason=options["reason"],
                source=AuditSource.CLI,
                using=database,
            )
        except operations.ActionRefused as exc:
            refused.append(str(exc))
            continue
        command.stdout.write(f"job {job_id}: {job_state(before)} → {job_state(after, action)}")
    finish(command, refused, len(job_ids), "job", done)
