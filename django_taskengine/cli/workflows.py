"""``taskengine workflow ID``: a workflow's steps, what each waits for and its state; with
``--cancel``, ``--pause``, ``--resume`` or ``--retry``, that action on the whole workflow."""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from .. import inspection, operations
from ..audit_trail import AuditSource
from ..inspection import count_text
from .report import finish
from .values import actor, parse_job_id

#: --action -> (the operation, past participle for the report).
WORKFLOW_ACTIONS = {
    "cancel": (operations.cancel_workflow, "cancelled"),
    "pause": (operations.pause_workflow, "paused"),
    "resume": (operations.resume_workflow, "resumed"),
    "retry": (operations.retry_workflow, "retried"),
}


def workflow(command: BaseCommand, database: str, options: dict[str, Any]) -> None:
    """``taskengine workflow ID``."""
    workflow_id = parse_job_id(options["workflow_id"], noun="workflow")
    try:
        found = operations.get_workflow(workflow_id, using=database)
    except operations.NotFound as exc:
        raise CommandError(str(exc)) from None
    action = options.get("action")
    if action:
        function, done = WORKFLOW_ACTIONS[action]
        result = function(
            workflow_id,
            by=actor(options),
            reason=options["reason"],
            source=AuditSource.CLI,
            using=database,
        )
        for job in result.changed:
            command.stdout.write(f"step {job.step} (job {job.pk}): {job.status}")
        if not result.changed and not result.refused:
            command.stdout.write(f"No step of workflow {workflow_id} is in a state to be {done}.")
        total = len(result.changed) + len(result.refused)
        finish(command, [why for _, why in result.refused], total, "step", done)
        return
    nodes = inspection.workflow_graph(workflow_id, using=database)
    if options["json"]:
        steps = [
            {
                "name": node.job.step,
                "job": node.job.pk,
                "status": node.job.status,
                "waiting": node.job.blocked,
                "after": node.after,
            }
            for node in nodes
        ]
        data = {"workflow": found.pk, "name": found.name, "steps": steps}
        command.stdout.write(json.dumps(data, indent=2))
        return
    counts = Counter(node.job.status for node in nodes)
    summary = count_text(counts)
    command.stdout.write(f"Workflow {found.pk} {found.name!r}: {len(nodes)} steps ({summary})")
    for node in nodes:
        state = node.job.status + (", waiting" if node.job.blocked else "")
        after = f"; after {', '.join(node.after)}" if node.after else ""
        command.stdout.write(f"- {node.job.step} (job {node.job.pk}): {state}{after}")
