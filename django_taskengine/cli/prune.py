"""``taskengine prune``: retention on demand (workers also prune, a little at a time)."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError
from django.db import DatabaseError

from ..retention import (
    MAX_BATCH_SIZE,
    PRUNABLE_STATUSES,
    audit_retention,
    events_retention,
    format_age,
    parse_age,
    retention_ages,
)
from ..retention import prune as prune_jobs
from .values import unique


def prune(command: BaseCommand, database: str, options: dict[str, Any]) -> None:
    """``taskengine prune``: delete finished jobs older than their retention."""
    statuses = unique(options["status"]) or list(PRUNABLE_STATUSES)
    if options["older_than"] is not None:
        try:
            age = parse_age(options["older_than"])
        except ValueError as exc:
            raise CommandError(f"--older-than: {exc}. Nothing was deleted.") from None
        ages = dict.fromkeys(statuses, age)
    else:
        try:
            configured = retention_ages()
        except ValueError as exc:
            raise CommandError(
                f"TASKENGINE['RETENTION'] is not valid ({exc}); fix it (`manage.py check` "
                "says more) or pass --older-than. Nothing was deleted."
            ) from None
        ages = {status: configured[status] for status in statuses}
    # The audit trail is pruned by its own setting, and only with every status (no --status).
    prune_audit = not options["status"]
    try:
        audit_age = audit_retention() if prune_audit else None
        events_age = events_retention() if prune_audit else None
    except ValueError as exc:
        raise CommandError(
            f"TASKENGINE['RETENTION'] for the audit trail or events is not valid ({exc}); fix "
            "it (`manage.py check` says more). Nothing was deleted."
        ) from None
    batch_size = options["batch_size"]
    if not 1 <= batch_size <= MAX_BATCH_SIZE:
        raise CommandError(
            f"--batch-size must be from 1 to {MAX_BATCH_SIZE}, not {batch_size}. "
            "Nothing was deleted."
        )
    try:
        result = prune_jobs(
            ages,
            batch_size=batch_size,
            dry_run=options["dry_run"],
            workers=not options["status"],
            audit=prune_audit,
            using=database,
        )
    except DatabaseError as exc:
        first_line = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise CommandError(
            f"Database {database!r} failed while pruning: {first_line}. Batches deleted "
            "before the failure stay deleted (each is its own transaction); run prune again "
            "to finish."
        ) from exc
    verb = "Would delete" if options["dry_run"] else "Deleted"
    parts = []
    for status in statuses:
        age = ages[status]
        if age is None:
            parts.append(f"{status}: kept forever by TASKENGINE['RETENTION'] (give --older-than)")
        else:
            parts.append(f"{status} {result.jobs[status]:,} (finished over {format_age(age)} ago)")
    command.stdout.write(f"{verb} {result.total_jobs:,} jobs: {'; '.join(parts)}.")
    if not options["status"]:
        kept = [age for age in ages.values() if age is not None]
        if len(kept) == len(ages):
            command.stdout.write(
                f"{verb} {result.workers:,} worker rows (stopped over {format_age(max(kept))} ago)."
            )
    if audit_age is not None:
        command.stdout.write(
            f"{verb} {result.audit_entries:,} audit entries (older than {format_age(audit_age)})."
        )
    if events_age is not None:
        command.stdout.write(
            f"{verb} {result.events:,} events (sent over {format_age(events_age)} ago)."
        )
    if result.workflows:
        command.stdout.write(f"{verb} {result.workflows:,} workflows whose steps were all deleted.")
