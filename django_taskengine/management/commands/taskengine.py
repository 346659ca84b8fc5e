"""``manage.py taskengine``: the operator's command line, for runbooks and scripts.

Every change goes through :mod:`django_taskengine.operations`, the functions the admin buttons
call; this module only parses, checks names and values, and reports. Reads come from
:mod:`django_taskengine.inspection` (and a read of the jobs named, to report their old state).

Exit codes: 0 done; 1 a wrong queue, task or job, a bad value, or an action refused (one line
per problem on stderr, nothing half-said); 2 the command line itself is malformed (argparse).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import re
from collections.abc import Callable
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import DatabaseError, connections
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from ... import inspection, operations
from ...conf import taskengine_settings
from ...models import Job, JobStatus, Pause, PauseScope, Queue
from ...retention import (
    DEFAULT_BATCH_SIZE,
    MAX_BATCH_SIZE,
    PRUNABLE_STATUSES,
    format_age,
    parse_age,
    retention_ages,
)
from ...retention import prune as prune_jobs
from ...task import registered_tasks

#: Subcommand -> (operations action, past participle for the report).
JOB_SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "retry": ("retry", "retried"),
    "cancel": ("cancel", "cancelled"),
    "pause-job": ("pause", "paused"),
    "resume-job": ("resume", "resumed"),
    "run-now": ("run_now", "made due now"),
}

_DURATION = re.compile(r"(?:\d+(?:\.\d+)?[smhd])+")
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)([smhd])")
_SECONDS_PER_UNIT = {"s": 1, "m": 60, "h": 3600, "d": 86400}
#: A longer timed pause is almost certainly a slip of the finger; an open pause needs no --for.
_LONGEST_TIMED_PAUSE = dt.timedelta(days=366)
#: Job ids are 64-bit; a larger number would be a database error rather than "no such job".
_LARGEST_JOB_ID = 2**63 - 1
#: Queue.paused_by and Pause.paused_by hold at most this many characters.
_BY_MAX_LENGTH = 150


class Command(BaseCommand):
    help = (
        "Operate the task engine: see queue status, pause and resume queues, task types or "
        "everything, and retry, cancel, pause, resume or run jobs now. Changes go through the "
        "same operations as the admin buttons."
    )

    def create_parser(self, prog_name: str, subcommand: str, **kwargs: Any) -> CommandParser:
        parser = super().create_parser(prog_name, subcommand, **kwargs)
        parser.epilog = (
            "Exit codes: 0 done; 1 a wrong queue, task or job, a bad value, or a refused action "
            "(one line each on stderr; the rest is still applied, and the last line says so); "
            "2 a malformed command line."
        )
        return parser

    def add_arguments(self, parser: CommandParser) -> None:
        database = argparse.ArgumentParser(add_help=False)
        database.add_argument(
            "--database",
            default=None,
            help="Database alias of the job table (default TASKENGINE['DATABASE']).",
        )
        timed = argparse.ArgumentParser(add_help=False)
        timed.add_argument(
            "--by",
            metavar="NAME",
            default=None,
            help="Recorded as who paused (default: $USER, or 'cli').",
        )
        timed.add_argument("--reason", default="", help="Why, shown to other operators.")
        timed.add_argument(
            "--for",
            dest="duration",
            metavar="DURATION",
            default=None,
            help="Resume by itself after this long: 90s, 15m, 1h, 1h30m, 2d.",
        )
        timed.add_argument(
            "--until",
            metavar="ISO-DATETIME",
            default=None,
            help="Resume by itself at this moment, e.g. 2025-06-01T14:30 (without an offset, "
            "in the project's TIME_ZONE).",
        )

        subcommands = parser.add_subparsers(dest="subcommand", metavar="SUBCOMMAND", required=True)

        status = subcommands.add_parser(
            "status",
            parents=[database],
            help="Per-queue table: state, job counts, oldest due job, throughput; pauses; workers.",
        )
        status.add_argument("--json", action="store_true", help="Print JSON, for scripts.")

        pause = subcommands.add_parser(
            "pause",
            parents=[database, timed],
            help="Pause queues (QUEUE...), every queue (--all) or a task type (--task).",
            description="Stop jobs from starting. Running jobs finish. Give queue names, "
            "--all, or --task NAME.",
        )
        pause.add_argument("queues", nargs="*", metavar="QUEUE")
        pause.add_argument("--all", action="store_true", help="Pause every queue at once.")
        pause.add_argument(
            "--task",
            action="append",
            default=[],
            metavar="TASK_NAME",
            help="Pause one task type in every queue (repeat for several).",
        )
        pause.add_argument(
            "--create",
            action="store_true",
            help="Accept a queue or task name that has no jobs yet (otherwise refused as a "
            "probable typo).",
        )

        resume = subcommands.add_parser(
            "resume",
            parents=[database],
            help="Resume queues (QUEUE...), the engine (--all) or a task type (--task).",
        )
        resume.add_argument(
            "--by",
            metavar="NAME",
            default=None,
            help="Who is acting, passed to the operation (default: $USER, or 'cli'). Resuming "
            "clears who paused.",
        )
        resume.add_argument("queues", nargs="*", metavar="QUEUE")
        resume.add_argument(
            "--all",
            action="store_true",
            help="End the engine-wide pause (queues paused on their own stay paused).",
        )
        resume.add_argument(
            "--task", action="append", default=[], metavar="TASK_NAME", help="Resume a task type."
        )

        job_help = {
            "retry": "Failed or cancelled jobs → queued, due now, with a fresh attempt budget.",
            "cancel": "Queued or paused jobs → cancelled; a running job is asked to stop and "
            "becomes cancelled at its next checkpoint.",
            "pause-job": "Queued jobs → paused, not claimed until resume-job; a running job is "
            "asked to stop and becomes paused at its next checkpoint.",
            "resume-job": "Paused jobs → queued.",
            "run-now": "Make queued jobs due now (clears a delay or a retry backoff).",
        }
        for name, text in job_help.items():
            sub = subcommands.add_parser(name, parents=[database], help=text, description=text)
            sub.add_argument("job_ids", nargs="+", metavar="JOB_ID")

        why = subcommands.add_parser(
            "why", parents=[database], help="Say in words why a job is not running."
        )
        why.add_argument("job_id", metavar="JOB_ID")
        why.add_argument("--json", action="store_true", help="Print JSON, for scripts.")

        prune = subcommands.add_parser(
            "prune",
            parents=[database],
            help="Delete finished jobs older than their retention, with their attempts.",
            description="Delete succeeded, failed and cancelled jobs (with their attempts) that "
            "finished longer ago than TASKENGINE['RETENTION'] says, or than --older-than, in "
            "short batches. Queued, running and paused jobs are never deleted. Without "
            "--status, also deletes the rows of workers stopped longer ago than the longest age.",
        )
        prune.add_argument(
            "--older-than",
            metavar="AGE",
            default=None,
            help="Age for every status pruned, instead of the setting: 90s, 15m, 12h, 7d, 2w.",
        )
        prune.add_argument(
            "--status",
            action="append",
            choices=list(PRUNABLE_STATUSES),
            default=[],
            help="Only jobs of this status (repeat for several; default: all three).",
        )
        prune.add_argument(
            "--dry-run", action="store_true", help="Count what would be deleted; delete nothing."
        )
        prune.add_argument(
            "--batch-size",
            type=int,
            default=DEFAULT_BATCH_SIZE,
            metavar="N",
            help=f"Jobs per DELETE and per transaction (default {DEFAULT_BATCH_SIZE}, at most "
            f"{MAX_BATCH_SIZE}).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        database = options.get("database") or taskengine_settings.DATABASE
        if database not in connections:
            raise CommandError(
                f"--database {database!r} is not in settings.DATABASES "
                f"(known: {', '.join(connections)})."
            )
        subcommand = options["subcommand"]
        handlers: dict[str, Callable[[str, dict[str, Any]], None]] = {
            "status": self.status,
            "pause": self.pause,
            "resume": self.resume,
            "why": self.why,
            "prune": self.prune,
        }
        handler = handlers.get(subcommand, self.job_action)
        try:
            handler(database, options)
        except DatabaseError as exc:
            first_line = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            message = (
                f"Database {database!r} failed: {first_line}. Is it reachable, and has "
                "`manage.py migrate` been run?"
            )
            if subcommand not in ("status", "why"):
                message += " Changes reported above were applied, no others."
            raise CommandError(message) from exc

    # -- status ---------------------------------------------------------------------------

    def status(self, database: str, options: dict[str, Any]) -> None:
        stats = inspection.queue_stats(using=database)
        pauses = operations.active_pauses(using=database)
        workers = inspection.live_workers(using=database)
        engine_pause = next((p for p in pauses if p.scope == PauseScope.ENGINE), None)
        if options["json"]:
            data = _status_json(stats, engine_pause, pauses, workers)
            self.stdout.write(json.dumps(data, indent=2))
            return
        now = timezone.localtime()
        self.stdout.write(f"Task engine on database {database!r}, {now:%Y-%m-%d %H:%M:%S %Z}")
        if engine_pause is not None:
            self.stdout.write(
                self.style.WARNING("EVERY QUEUE IS PAUSED " + _pause_text(engine_pause))
            )
        self.stdout.write("")
        if stats:
            rows = [
                [
                    item.name,
                    str(item.queued),
                    str(item.due),
                    str(item.running),
                    str(item.paused_jobs),
                    str(item.failed),
                    _age(item.oldest_due_age) if item.oldest_due_age is not None else "-",
                    f"{item.throughput_per_minute:.1f}",
                    _queue_state(item, engine_pause),
                ]
                for item in stats.values()
            ]
            header = [
                "QUEUE",
                "QUEUED",
                "DUE",
                "RUNNING",
                "PAUSED",
                "FAILED",
                "OLDEST DUE",
                "DONE/MIN",
                "STATE",
            ]
            for line in _table(header, rows, right_aligned={1, 2, 3, 4, 5, 6, 7}):
                self.stdout.write(line)
            self.stdout.write(
                f"(DONE/MIN: jobs finished per minute over the last "
                f"{_age(inspection.THROUGHPUT_WINDOW)}; PAUSED: paused jobs)"
            )
        else:
            self.stdout.write("No queues yet: nothing has been enqueued.")
        self.stdout.write("")
        if pauses:
            self.stdout.write("Engine and task pauses:")
            for pause in pauses:
                self.stdout.write(f"  {_pause_target(pause)}: paused {_pause_text(pause)}")
        else:
            self.stdout.write("Engine and task pauses: none")
        line = f"Live workers: {len(workers)}"
        if not workers:
            line += " (no job starts until one runs: `manage.py run_workers`)"
        self.stdout.write(line)

    # -- pause and resume ---------------------------------------------------------------

    def pause(self, database: str, options: dict[str, Any]) -> None:
        queues, everything, tasks = _targets(options, "pause")
        by = _by(options)
        reason = options["reason"]
        until = _pause_end(options["duration"], options["until"])
        refused: list[str] = []
        total = 0
        if everything:
            total = 1
            was = _engine_pause(database)
            pause = operations.pause_all(by=by, reason=reason, until=until, using=database)
            self.stdout.write(f"all queues: {_was(was)} → paused {_pause_text(pause)}")
        for task_name in tasks:
            total += 1
            was = _task_pause(task_name, database)
            if was is None and not options["create"] and not _task_is_known(task_name, database):
                refused.append(_unknown_task(task_name, database))
                continue
            pause = _call(
                operations.pause_task, task_name, by=by, reason=reason, until=until, using=database
            )
            self.stdout.write(f"task {task_name}: {_was(was)} → paused {_pause_text(pause)}")
        for name in _unique(queues):
            total += 1
            try:
                old: Queue | None = operations.get_queue(name, using=database)
            except operations.NotFound as exc:
                if not options["create"]:
                    refused.append(
                        f"{exc} Check the spelling, or pass --create to pause a queue that has "
                        "no jobs yet."
                    )
                    continue
                old = None
            queue = _call(
                operations.pause_queue, name, by=by, reason=reason, until=until, using=database
            )
            before = "new queue" if old is None else _was(old if old.is_paused else None)
            self.stdout.write(f"queue {name}: {before} → paused {_pause_text(queue)}")
        self._finish(refused, total, "name", "paused")

    def resume(self, database: str, options: dict[str, Any]) -> None:
        queues, everything, tasks = _targets(options, "resume")
        by = _by(options)
        refused: list[str] = []
        total = 0
        if everything:
            total = 1
            if operations.resume_all(by=by, using=database):
                self.stdout.write("all queues: engine-wide pause ended")
            else:
                self.stdout.write("all queues: there was no engine-wide pause; nothing to do")
            still = [q.name for q in Queue.objects.using(database).all() if q.is_paused]
            if still:
                self.stdout.write(
                    f"Queues paused on their own stay paused: {', '.join(still)} "
                    "(resume them by name)."
                )
        for task_name in tasks:
            total += 1
            was = _task_pause(task_name, database)
            if was is None and not _task_is_known(task_name, database):
                refused.append(_unknown_task(task_name, database, resuming=True))
                continue
            operations.resume_task(task_name, by=by, using=database)
            if was is None:
                self.stdout.write(f"task {task_name}: was not paused; nothing to do")
            else:
                self.stdout.write(f"task {task_name}: {_was(was)} → running")
        for name in _unique(queues):
            total += 1
            try:
                old = operations.get_queue(name, using=database)
                operations.resume_queue(name, by=by, using=database)
            except operations.NotFound as exc:
                refused.append(str(exc))
                continue
            if old.is_paused:
                self.stdout.write(f"queue {name}: {_was(old)} → running")
            else:
                self.stdout.write(f"queue {name}: was not paused; nothing to do")
        if (queues or tasks) and not everything:
            engine = _engine_pause(database)
            if engine is not None:
                self.stderr.write(
                    self.style.WARNING(
                        f"Every queue is still paused engine-wide ({_pause_text(engine)}); "
                        "`taskengine resume --all` ends that."
                    )
                )
        self._finish(refused, total, "name", "resumed")

    # -- jobs -----------------------------------------------------------------------------

    def job_action(self, database: str, options: dict[str, Any]) -> None:
        subcommand = options["subcommand"]
        action, done = JOB_SUBCOMMANDS[subcommand]
        job_ids = _unique([_job_id(text) for text in options["job_ids"]])
        function = operations.JOB_ACTION_FUNCTIONS[action]
        # Read what each job is now, then act only if it is still that: the report then says
        # exactly which transition happened (a job changed meanwhile is refused, not guessed).
        seen = {
            job.pk: job
            for job in Job.objects.using(database)
            .filter(pk__in=job_ids)
            .only("id", "status", "attempts", "run_after", "stop_requested")
        }
        refused: list[str] = []
        for job_id in job_ids:
            before = seen.get(job_id)
            if before is None:
                refused.append(f"No job with id {job_id}.")
                continue
            expected = operations.Expected(status=before.status, attempts=before.attempts)
            try:
                after = function(job_id, expected=expected, using=database)
            except operations.ActionRefused as exc:
                refused.append(str(exc))
                continue
            self.stdout.write(f"job {job_id}: {_job_state(before)} → {_job_state(after, action)}")
        self._finish(refused, len(job_ids), "job", done)

    def why(self, database: str, options: dict[str, Any]) -> None:
        job_id = _job_id(options["job_id"])
        job = Job.objects.using(database).filter(pk=job_id).first()
        if job is None:
            raise CommandError(f"No job with id {job_id}.")
        explanation = inspection.explain_job(job, using=database)
        if options["json"]:
            data = {
                "job": job.pk,
                "task": job.task_name,
                "queue": job.queue,
                "status": job.status,
                "reasons": [
                    {"code": r.code, "text": r.text, "blocking": r.blocking}
                    for r in explanation.reasons
                ],
            }
            self.stdout.write(json.dumps(data, indent=2))
            return
        self.stdout.write(
            f"Job {job.pk} ({job.task_name}) in queue {job.queue!r}: {job.status}, "
            f"attempt {job.attempts} of {job.max_attempts}."
        )
        for reason in explanation.reasons:
            self.stdout.write(f"- {reason.text}")

    # -- retention ----------------------------------------------------------------------

    def prune(self, database: str, options: dict[str, Any]) -> None:
        statuses = _unique(options["status"]) or list(PRUNABLE_STATUSES)
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
                parts.append(
                    f"{status}: kept forever by TASKENGINE['RETENTION'] (give --older-than)"
                )
            else:
                parts.append(
                    f"{status} {result.jobs[status]:,} (finished over {format_age(age)} ago)"
                )
        self.stdout.write(f"{verb} {result.total_jobs:,} jobs: {'; '.join(parts)}.")
        if not options["status"]:
            kept = [age for age in ages.values() if age is not None]
            if len(kept) == len(ages):
                self.stdout.write(
                    f"{verb} {result.workers:,} worker rows (stopped over "
                    f"{format_age(max(kept))} ago)."
                )

    # -- reporting ------------------------------------------------------------------------

    def _finish(self, refused: list[str], total: int, noun: str, done: str) -> None:
        """Exit 1 if anything was refused, after saying what was and was not applied."""
        if not refused:
            return
        if total == 1:
            raise CommandError(refused[0])
        for message in refused:
            self.stderr.write(message)
        applied = total - len(refused)
        if not applied:
            raise CommandError(f"All {total} {noun}s refused (above); nothing was {done}.")
        raise CommandError(
            f"{len(refused)} of {total} {noun}s refused (above); the other {applied} "
            f"{'was' if applied == 1 else 'were'} {done}."
        )


# -- parsing ------------------------------------------------------------------------------


def _targets(options: dict[str, Any], verb: str) -> tuple[list[str], bool, list[str]]:
    queues, everything, tasks = options["queues"], options["all"], options["task"]
    given = sum([bool(queues), everything, bool(tasks)])
    if given != 1:
        problem = "Nothing to" if given == 0 else "Too much to"
        raise CommandError(
            f"{problem} {verb}: give queue names, --all, or --task TASK_NAME (one kind at a time)."
        )
    for kind, names, longest in (("queue", queues, 100), ("task", tasks, 255)):
        for name in names:
            if not name.strip() or len(name) > longest:
                raise CommandError(
                    f"{name[:40]!r} is not a {kind} name (1 to {longest} characters). "
                    "Nothing was changed."
                )
    return queues, everything, tasks


def _by(options: dict[str, Any]) -> str:
    by = options.get("by")
    if by is None:
        by = os.environ.get("USER") or "cli"
    if len(by) > _BY_MAX_LENGTH:
        raise CommandError(f"--by is at most {_BY_MAX_LENGTH} characters. Nothing was changed.")
    return by


def parse_duration(text: str) -> dt.timedelta:
    """``90s``, ``15m``, ``1h30m``, ``2d`` → a timedelta; :class:`CommandError` otherwise."""
    compact = text.strip().lower().replace(" ", "")
    if not _DURATION.fullmatch(compact):
        raise CommandError(
            f"--for {text!r} is not a duration: write it like 90s, 15m, 1h or 1h30m. "
            "Nothing was changed."
        )
    seconds = sum(
        float(number) * _SECONDS_PER_UNIT[unit] for number, unit in _DURATION_PART.findall(compact)
    )
    if seconds <= 0:
        raise CommandError(f"--for {text!r} is no time at all. Nothing was changed.")
    if seconds > _LONGEST_TIMED_PAUSE.total_seconds():
        raise CommandError(
            f"--for {text!r} is longer than {_LONGEST_TIMED_PAUSE.days} days: leave out --for "
            "for a pause that lasts until resumed. Nothing was changed."
        )
    return dt.timedelta(seconds=seconds)


def parse_until(text: str) -> dt.datetime:
    """An ISO 8601 datetime in the future; naive ones are in the current time zone."""
    try:
        moment = parse_datetime(text.strip())
    except ValueError:
        moment = None
    if moment is None:
        raise CommandError(
            f"--until {text!r} is not a date and time: write it like 2025-06-01T14:30 or "
            "2025-06-01T14:30+02:00. Nothing was changed."
        )
    if timezone.is_naive(moment):
        moment = timezone.make_aware(moment)
    if moment <= timezone.now():
        raise CommandError(
            f"--until {text!r} is in the past ({_when(moment)}); the pause would end at once. "
            "Nothing was changed."
        )
    return moment


def _pause_end(duration: str | None, until: str | None) -> dt.datetime | dt.timedelta | None:
    if duration is not None and until is not None:
        raise CommandError("Give --for or --until, not both. Nothing was changed.")
    if duration is not None:
        return parse_duration(duration)
    if until is not None:
        return parse_until(until)
    return None


def _job_id(text: str) -> int:
    try:
        job_id = int(text)
    except ValueError:
        job_id = 0
    if not 1 <= job_id <= _LARGEST_JOB_ID:
        raise CommandError(
            f"Job id {text!r} is not a job id (a positive whole number). Nothing was changed."
        )
    return job_id


def _unique(items: list[Any]) -> list[Any]:
    return list(dict.fromkeys(items))


def _call(function: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Call an operation whose arguments it may reject with ValueError, as a CommandError."""
    try:
        return function(*args, **kwargs)
    except ValueError as exc:
        raise CommandError(f"{exc}.") from None


# -- lookups (read only) --------------------------------------------------------------------


def _engine_pause(database: str) -> Pause | None:
    return next(
        (p for p in operations.active_pauses(using=database) if p.scope == PauseScope.ENGINE),
        None,
    )


def _task_pause(task_name: str, database: str) -> Pause | None:
    return next(
        (
            p
            for p in operations.active_pauses(using=database)
            if p.scope == PauseScope.TASK and p.target == task_name
        ),
        None,
    )


def _task_is_known(task_name: str, database: str) -> bool:
    """Registered here, or has jobs: a name that is neither is probably a typo."""
    return (
        task_name in registered_tasks()
        or Job.objects.using(database).filter(task_name=task_name).exists()
    )


def _unknown_task(task_name: str, database: str, *, resuming: bool = False) -> str:
    if resuming:
        paused = [
            p.target for p in operations.active_pauses(using=database) if p.scope == PauseScope.TASK
        ]
        return (
            f"Task type {task_name!r} is not paused and no task of that name is registered or "
            f"has jobs. Paused task types: {', '.join(paused) or 'none'}."
        )
    known = sorted(registered_tasks())
    shown = ", ".join(known[:20]) + (", …" if len(known) > 20 else "")
    return (
        f"No task named {task_name!r} is registered or has jobs. Registered tasks: "
        f"{shown or 'none'}. Check the spelling, or pass --create to pause it anyway."
    )


# -- formatting -----------------------------------------------------------------------------


def _age(delta: dt.timedelta) -> str:
    """A short duration: 45s, 12m, 3h 5m, 2d 4h."""
    seconds = max(0, int(delta.total_seconds()))
    if seconds < 60:
        return f"{seconds}s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m" + (f" {seconds}s" if minutes < 10 and seconds else "")
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours}h" + (f" {minutes}m" if minutes else "")
    days, hours = divmod(hours, 24)
    return f"{days}d" + (f" {hours}h" if hours else "")


def _when(moment: dt.datetime) -> str:
    """A moment in the current time zone, the date left out when it is today."""
    local = timezone.localtime(moment)
    if local.date() == timezone.localtime().date():
        return f"{local:%H:%M:%S %Z}"
    return f"{local:%Y-%m-%d %H:%M %Z}"


def _pause_text(pause: Queue | Pause) -> str:
    """``by alice since 14:02:10 UTC (12m ago) "smtp outage", until 15:00:00 UTC (in 47m)``."""
    now = timezone.now()
    parts = []
    if pause.paused_by:
        parts.append(f"by {pause.paused_by}")
    if pause.paused_at:
        parts.append(f"since {_when(pause.paused_at)} ({_age(now - pause.paused_at)} ago)")
    text = " ".join(parts)
    if pause.pause_reason:
        text += f' "{pause.pause_reason}"'
    if pause.paused_until:
        text += f", until {_when(pause.paused_until)} (in {_age(pause.paused_until - now)})"
    return text.strip()


def _pause_target(pause: Pause) -> str:
    return "all queues" if pause.scope == PauseScope.ENGINE else f"task {pause.target}"


def _was(pause: Queue | Pause | None) -> str:
    return "running" if pause is None else f"paused {_pause_text(pause)}"


def _queue_state(item: inspection.QueueStats, engine_pause: Pause | None) -> str:
    if item.paused and item.queue is not None:
        return f"paused {_pause_text(item.queue)}"
    if engine_pause is not None:
        return "paused (all queues)"
    return "running"


def _job_state(job: Job, action: str = "") -> str:
    if job.status == JobStatus.QUEUED:
        if action == "run_now" or job.run_after <= timezone.now():
            return "queued, due now"
        return f"queued, due in {_age(job.run_after - timezone.now())}"
    if job.status == JobStatus.RUNNING and job.stop_requested:
        return (
            f"running, asked to {job.stop_requested} at its next checkpoint (a task without "
            "checkpoints finishes this attempt)"
        )
    if job.status == JobStatus.FAILED:
        return f"failed after {job.attempts} attempt{'s' if job.attempts != 1 else ''}"
    return str(job.status)


def _table(header: list[str], rows: list[list[str]], right_aligned: set[int]) -> list[str]:
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    last = len(header) - 1

    def line(cells: list[str]) -> str:
        out = []
        for i, cell in enumerate(cells):
            if i == last:
                out.append(cell)
            elif i in right_aligned:
                out.append(cell.rjust(widths[i]))
            else:
                out.append(cell.ljust(widths[i]))
        return "  ".join(out).rstrip()

    return [line(header), *(line(row) for row in rows)]


def _iso(moment: dt.datetime | None) -> str | None:
    return moment.isoformat() if moment else None


def _pause_json(pause: Queue | Pause) -> dict[str, Any]:
    return {
        "paused_by": pause.paused_by,
        "paused_at": _iso(pause.paused_at),
        "reason": pause.pause_reason,
        "paused_until": _iso(pause.paused_until),
    }


def _status_json(
    stats: dict[str, inspection.QueueStats],
    engine_pause: Pause | None,
    pauses: list[Pause],
    workers: list[Any],
) -> dict[str, Any]:
    queues = []
    for item in stats.values():
        entry: dict[str, Any] = {
            "name": item.name,
            "state": _queue_state(item, engine_pause),
            "paused": item.paused,
            "pause": _pause_json(item.queue) if item.paused and item.queue else None,
            "queued": item.queued,
            "due": item.due,
            "running": item.running,
            "paused_jobs": item.paused_jobs,
            "failed": item.failed,
            "oldest_due_age_seconds": (
                round(item.oldest_due_age.total_seconds(), 3)
                if item.oldest_due_age is not None
                else None
            ),
            "finished_per_minute": round(item.throughput_per_minute, 3),
            "finished_recently": item.finished_recently,
            "failed_recently": item.failed_recently,
        }
        queues.append(entry)
    return {
        "at": timezone.now().isoformat(),
        "throughput_window_seconds": inspection.THROUGHPUT_WINDOW.total_seconds(),
        "engine_paused": engine_pause is not None,
        "queues": queues,
        "pauses": [{"scope": p.scope, "target": p.target, **_pause_json(p)} for p in pauses],
        "live_workers": len(workers),
        "workers": [
            {
                "id": str(w.id),
                "hostname": w.hostname,
                "pid": w.pid,
                "queues": w.queues,
                "started_at": _iso(w.started_at),
                "last_heartbeat_at": _iso(w.last_heartbeat_at),
            }
            for w in workers
        ],
    }
