from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from demo.batch import (
    ADD_IN_BULK,
    ADD_ONE_BY_ONE,
    DEDUP_KEY,
    FLAKY,
    SLOW,
    WORKFLOW_PARTS,
    enqueue_demo_batch,
)


class Command(BaseCommand):
    help = (
        "Enqueue a batch of demo jobs: quick, flaky (retried), slow, failing, deduplicated, and "
        "a small workflow."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        batch = enqueue_demo_batch()
        self.stdout.write(f"Enqueued {len(batch.job_ids)} jobs:")
        self.stdout.write(
            f"  demo.tasks.add           x{ADD_ONE_BY_ONE + ADD_IN_BULK}"
            f"  ({ADD_ONE_BY_ONE} one by one, {ADD_IN_BULK} in one bulk_enqueue)"
        )
        self.stdout.write(
            f"  demo.tasks.flaky         x{FLAKY}  (fail 1, 2, 3 times, then succeed)"
        )
        self.stdout.write(f"  demo.tasks.slow          x{SLOW}  (queue 'slow', 1 s each)")
        self.stdout.write("  demo.tasks.always_fails  x1  (fails both attempts)")
        self.stdout.write(
            f"  workflow {batch.workflow_id} 'demo sums': start, {WORKFLOW_PARTS} parts after it, "
            "then their total (taskengine workflow ID, or the admin's graph)"
        )
        if batch.dedup_first_created:
            self.stdout.write(f"  demo.tasks.add           x1  (dedup_key {DEDUP_KEY!r})")
        else:
            self.stdout.write(
                f"  dedup_key {DEDUP_KEY!r}: job {batch.dedup_job_id} was still active, "
                "so no new job was created"
            )
        if batch.dedup_second_created:
            self.stdout.write(
                self.style.ERROR(f"Enqueued dedup_key {DEDUP_KEY!r} twice: deduplication failed")
            )
        else:
            self.stdout.write(
                f"Second enqueue with dedup_key {DEDUP_KEY!r} returned existing job "
                f"{batch.dedup_job_id} (created=False): not created again."
            )
        self.stdout.write("Run them with: python manage.py run_workers --burst")
