"""The ``taskengine`` command line: its subcommands, their options and help texts."""

from __future__ import annotations

from django.core.management.base import CommandParser

from ..retention import DEFAULT_BATCH_SIZE, MAX_BATCH_SIZE, PRUNABLE_STATUSES
from .workers import add_worker_parser

#: Entries ``taskengine audit`` shows without ``--limit``.
DEFAULT_AUDIT_LIMIT = 20

#: What the exit codes mean, shown under ``--help``.
EPILOG = (
    "Exit codes: 0 done; 1 a wrong queue, task or job, a bad value, or a refused action "
    "(one line each on stderr; the rest is still applied, and the last line says so); "
    "2 a malformed command line."
)


def add_arguments(parser: CommandParser) -> None:
    """The subcommands and their options."""
    database = CommandParser(add_help=False)
    database.add_argument(
        "--database",
        default=None,
        help="Database alias of the job table (default TASKENGINE['DATABASE']).",
    )
    acting = CommandParser(add_help=False)
    acting.add_argument(
        "--by",
        metavar="NAME",
        default=None,
        help="Who is acting, recorded in the audit trail (and on a pause) (default: $USER, "
        "or 'cli').",
    )
    acting.add_argument(
        "--reason", default="", help="Why, recorded in the audit trail and shown to operators."
    )
    timed = CommandParser(add_help=False)
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
        help="Per-queue table: state, job counts, oldest due job, throughput; queue and task "
        "limits with what they count; pauses; workers.",
    )
    status.add_argument("--json", action="store_true", help="Print JSON, for scripts.")

    pause = subcommands.add_parser(
        "pause",
        parents=[database, acting, timed],
        help="Pause queues (QUEUE...), every queue (--all) or a task type (--task).",
        description="Stop jobs from starting. Running jobs finish, unless --stop-running. "
        "Give queue names, --all, or --task NAME.",
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
        "--stop-running",
        action="store_true",
        help="Also ask their running jobs to pause at their next checkpoint (a task without "
        "checkpoints finishes its attempt); the end of this pause requeues them.",
    )
    pause.add_argument(
        "--create",
        action="store_true",
        help="Accept a queue or task name that has no jobs yet (otherwise refused as a "
        "probable typo).",
    )

    resume = subcommands.add_parser(
        "resume",
        parents=[database, acting],
        help="Resume queues (QUEUE...), the engine (--all) or a task type (--task).",
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
        sub = subcommands.add_parser(name, parents=[database, acting], help=text, description=text)
        sub.add_argument("job_ids", nargs="+", metavar="JOB_ID")
        if name in ("cancel", "pause-job"):
            sub.add_argument(
                "--hard",
                action="store_true",
                help="A running job's attempt is ended at once with its worker process (which "
                "is replaced once its other jobs finish), for a task that never checkpoints; "
                "the job is "
                + ("cancelled" if name == "cancel" else "paused")
                + " once that code can no longer run. Other jobs: as without --hard.",
            )

    limit = subcommands.add_parser(
        "limit",
        parents=[database, acting],
        help="Show or set a queue's fleet-wide limits: concurrency and rate.",
        description="Set a queue's limits at runtime, for every worker on every host, from "
        "their next claim on; the runtime value of a knob overrides TASKENGINE['QUEUES'] "
        "until cleared with 'setting'. Without --concurrency or --rate: show the queue's "
        "limits, where they come from, and what they count now.",
    )
    limit.add_argument("queue", metavar="QUEUE")
    limit.add_argument(
        "--concurrency",
        metavar="N|none|setting",
        default=None,
        help="At most N jobs of the queue running at once; none: no limit (whatever the "
        "setting says); setting: clear the runtime value (the setting applies again).",
    )
    limit.add_argument(
        "--rate",
        metavar="N/s|N/m|N/h|none|setting",
        default=None,
        help="At most N starts in any second, minute or hour (a sliding window); none: no "
        "limit; setting: clear the runtime value (the setting applies again).",
    )
    limit.add_argument(
        "--create",
        action="store_true",
        help="Accept a queue name that has no jobs and no setting yet (otherwise refused as a "
        "probable typo).",
    )

    why = subcommands.add_parser(
        "why", parents=[database], help="Say in words why a job is not running."
    )
    why.add_argument("job_id", metavar="JOB_ID")
    why.add_argument("--json", action="store_true", help="Print JSON, for scripts.")

    workflow = subcommands.add_parser(
        "workflow",
        parents=[database, acting],
        help="Show a workflow's steps, what each waits for and its state; or act on them all.",
        description="A workflow's steps in the order they were added: each step's job, "
        "status, and the steps (or jobs) it waits for. With an action, that action on every "
        "step it fits (each recorded in the audit trail).",
    )
    workflow.add_argument("workflow_id", metavar="WORKFLOW_ID")
    workflow.add_argument("--json", action="store_true", help="Print JSON, for scripts.")
    acts = workflow.add_mutually_exclusive_group()
    for name, text in (
        ("cancel", "Cancel every step not finished (running ones at their next checkpoint)."),
        ("pause", "Pause every queued or running step."),
        ("resume", "Resume every paused step."),
        ("retry", "Retry every failed or cancelled step; what waits for them waits again."),
    ):
        acts.add_argument(f"--{name}", dest="action", action="store_const", const=name, help=text)

    audit = subcommands.add_parser(
        "audit",
        parents=[database],
        help="Who did what, when, why and from where (admin, cli, python): latest first.",
        description="The audit trail of operator actions (pauses, resumes, retries, cancels, "
        "run now…) from the admin, this command and Python code, latest first.",
    )
    audit.add_argument(
        "--limit",
        type=int,
        default=DEFAULT_AUDIT_LIMIT,
        metavar="N",
        help=f"Show the latest N entries (default {DEFAULT_AUDIT_LIMIT}).",
    )
    about = audit.add_mutually_exclusive_group()
    about.add_argument("--job", metavar="JOB_ID", help="Only the entries of this job.")
    about.add_argument("--queue", metavar="NAME", help="Only the entries of this queue.")
    about.add_argument("--task", metavar="TASK_NAME", help="Only the entries of this task type.")
    about.add_argument(
        "--schedule", metavar="NAME", help="Only the entries of this periodic schedule."
    )
    audit.add_argument("--json", action="store_true", help="Print JSON, for scripts.")

    health = subcommands.add_parser(
        "health",
        parents=[database],
        help="A probe for liveness and readiness: exit 0 while this host's worker processes "
        "send heartbeats, 1 with a one-line reason otherwise.",
        description="Exit 0 while at least --min-processes worker processes of this host "
        "(serving --queue, if given) sent a heartbeat within --max-age seconds; otherwise exit "
        "1 with one line that says why (none running, heartbeats too old, too few, or the "
        "database unreachable). Use it as a container's or unit's health check.",
    )
    health.add_argument(
        "--host",
        default=None,
        help="The host whose workers to check, as run_workers records it (default: this host's "
        "name, socket.gethostname()).",
    )
    health.add_argument(
        "--min-processes",
        type=int,
        default=1,
        metavar="N",
        help="How many live worker processes it takes to be healthy (default 1).",
    )
    health.add_argument(
        "--max-age",
        type=float,
        default=None,
        metavar="SECONDS",
        help="The oldest heartbeat that counts as live (default: the age after which a worker "
        "is presumed dead, max(RESCUE_GRACE, 3 x HEARTBEAT_INTERVAL)).",
    )
    health.add_argument(
        "--queue", default=None, help="Only workers that serve this queue (or every queue)."
    )

    add_worker_parser(subcommands, [database, acting])

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
