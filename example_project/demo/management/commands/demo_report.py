from __future__ import annotations

import json
from collections import Counter
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from demo.batch import BATCH_SIZE
from django_taskengine.models import Job

COLUMNS = ("id", "task", "queue", "status", "attempts", "result / error")
RESULT_WIDTH = 60


def _one_line(text: str) -> str:
    """The line of an error that says what happened: a traceback's last line, else the first."""
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    if not lines:
        return ""
    return lines[-1] if lines[0].startswith("Traceback") else lines[0]


def _outcome(job: Job) -> str:
    """The result of a job that succeeded, else the last error (if any) of one that did not."""
    if job.status == "succeeded":
        text = json.dumps(job.result)
    elif job.error:
        text = _one_line(str(job.error))
    else:
        text = ""
    return text if len(text) <= RESULT_WIDTH else text[: RESULT_WIDTH - 1] + "…"


class Command(BaseCommand):
    help = "Print a table of the most recent demo jobs: status, attempts, result or error."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--limit",
            type=int,
            default=BATCH_SIZE,
            help=f"How many of the newest demo jobs to show (default: {BATCH_SIZE}, one batch).",
        )

    def handle(self, *args: Any, limit: int, **options: Any) -> None:
        newest = Job.objects.filter(task_name__startswith="demo.").order_by("-created_at", "-pk")
        jobs = list(newest[:limit])[::-1]
        if not jobs:
            self.stdout.write("No demo jobs yet: run `python manage.py enqueue_demo` first.")
            return

        rows = [
            (
                str(job.pk),
                job.task_name.removeprefix("demo.tasks."),
                job.queue,
                job.status,
                f"{job.attempts}/{job.max_attempts}",
                _outcome(job),
            )
            for job in jobs
        ]
        widths = [
            max(len(column), *(len(row[i]) for row in rows)) for i, column in enumerate(COLUMNS)
        ]
        line = "  ".join(f"{{:<{width}}}" for width in widths)
        self.stdout.write(line.format(*COLUMNS).rstrip())
        self.stdout.write(line.format(*("-" * width for width in widths)).rstrip())
        for row in rows:
            self.stdout.write(line.format(*row).rstrip())

        by_status = Counter(job.status for job in jobs)
        summary = ", ".join(f"{count} {status}" for status, count in sorted(by_status.items()))
        self.stdout.write(f"\n{len(jobs)} jobs: {summary}")
        if by_status.keys() - {"succeeded", "failed", "cancelled"}:
            self.stdout.write(
                "Some jobs are not finished (retries wait for their backoff, or no worker ran): "
                "run `python manage.py run_workers --burst` again."
            )
