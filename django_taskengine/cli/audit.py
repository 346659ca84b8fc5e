"""``taskengine audit``: the latest operator actions, from the admin, the command line and Python
code (read-only)."""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from .. import operations
from ..audit_trail import AuditEntry, AuditObject
from .report import table, when
from .values import parse_job_id

#: More than this is what the admin's audit list (or --json with a script) is for.
MAX_AUDIT_LIMIT = 10_000


def audit(command: BaseCommand, database: str, options: dict[str, Any]) -> None:
    """``taskengine audit [--limit N] [--job ID | --queue NAME | --task NAME | --schedule NAME]
    [--json]``."""
    limit = options["limit"]
    if not 1 <= limit <= MAX_AUDIT_LIMIT:
        raise CommandError(f"--limit must be from 1 to {MAX_AUDIT_LIMIT:,}, not {limit}.")
    kind, target = _object(options)
    entries = operations.audit_entries(kind, target, limit=limit, using=database)
    if options["json"]:
        command.stdout.write(json.dumps([_entry_json(entry) for entry in entries], indent=2))
        return
    if not entries:
        about = "" if kind is None else f" for {_label(kind, target)}"
        command.stdout.write(f"No operator actions recorded{about}.")
        return
    rows = [
        [
            when(entry.at),
            entry.actor or "-",
            entry.source,
            entry.action,
            entry.object_label,
            _detail_text(entry.detail),
            entry.reason,
        ]
        for entry in entries
    ]
    header = ["AT", "WHO", "FROM", "ACTION", "OBJECT", "DETAIL", "REASON"]
    for line in table(header, rows, right_aligned=set()):
        command.stdout.write(line)


def _object(options: dict[str, Any]) -> tuple[str | None, str | None]:
    """The object ``--job``, ``--queue``, ``--task`` or ``--schedule`` names, if any (a name
    nothing was done to simply has no entries)."""
    if options["job"] is not None:
        return AuditObject.JOB, str(parse_job_id(options["job"]))
    for kind in (AuditObject.QUEUE, AuditObject.TASK, AuditObject.SCHEDULE):
        if options[str(kind)] is not None:
            return kind, options[str(kind)]
    return None, None


def _label(kind: str, target: str | None) -> str:
    return AuditEntry(object_kind=kind, object_id=target or "").object_label


def _detail_text(detail: dict[str, Any]) -> str:
    """``status=queued until=…``: what the action set, in one cell."""
    return " ".join(f"{key}={value}" for key, value in sorted(detail.items()))


def _entry_json(entry: AuditEntry) -> dict[str, Any]:
    return {
        "id": entry.pk,
        "at": entry.at.isoformat(),
        "by": entry.actor,
        "source": entry.source,
        "action": entry.action,
        "object_kind": entry.object_kind,
        "object_id": entry.object_id,
        "reason": entry.reason,
        "detail": entry.detail,
    }
