"""The demo batch that `manage.py enqueue_demo` puts on the queues."""

from __future__ import annotations

from dataclasses import dataclass, field

from django.utils import timezone

from django_taskengine import Workflow

from .tasks import add, always_fails, flaky, slow, total

ADD_ONE_BY_ONE = 10
ADD_IN_BULK = 10
FLAKY = 3
SLOW = 2
DEDUP_KEY = "demo:once"
#: The demo workflow's parts, between its first step and its total.
WORKFLOW_PARTS = 3
# Jobs a batch creates: the adds, the flaky and slow ones, always_fails, one deduplicated add,
# and the workflow's steps.
BATCH_SIZE = ADD_ONE_BY_ONE + ADD_IN_BULK + FLAKY + SLOW + 1 + 1 + WORKFLOW_PARTS + 2


@dataclass
class DemoBatch:
    """What `enqueue_demo_batch` did, for the command to report."""

    job_ids: list[object] = field(default_factory=list)
    dedup_first_created: bool = False
    dedup_second_created: bool = False
    dedup_job_id: object = None
    workflow_id: object = None


def enqueue_demo_batch() -> DemoBatch:
    """Enqueue quick, flaky, slow and failing demo jobs, plus a deduplicated pair."""
    batch = DemoBatch()

    for i in range(ADD_ONE_BY_ONE):
        batch.job_ids.append(add.enqueue(i, 100).pk)
    batch.job_ids.extend(
        job.pk for job in add.bulk_enqueue([((i, i), {}) for i in range(ADD_IN_BULK)])
    )

    # Keys unique to this batch, so a second demo run starts its flaky counters from zero.
    stamp = timezone.now().strftime("%Y%m%d%H%M%S%f")
    for n in range(FLAKY):
        # Fails 1, 2 and 3 times: all succeed within max_attempts=4.
        batch.job_ids.append(flaky.enqueue(f"demo-{stamp}-{n}", fail_times=n + 1).pk)

    for _ in range(SLOW):
        batch.job_ids.append(slow.enqueue(1.0).pk)

    batch.job_ids.append(always_fails.enqueue().pk)

    first = add.using(dedup_key=DEDUP_KEY).enqueue(1, 2)
    second = add.using(dedup_key=DEDUP_KEY).enqueue(1, 2)
    batch.dedup_first_created = bool(first.created)
    batch.dedup_second_created = bool(second.created)
    batch.dedup_job_id = second.pk
    if first.created:
        batch.job_ids.append(first.pk)

    # A workflow (see it as a graph in the admin): one step, parts that wait for it, a total.
    wf = Workflow("demo sums")
    start = wf.add(add, 1, 1, name="start")
    parts = [wf.add(add, n, 10, after=[start], name=f"part-{n}") for n in range(WORKFLOW_PARTS)]
    wf.add(total, after=parts, name="total")
    wf.enqueue()
    batch.workflow_id = wf.id
    batch.job_ids.extend(step.id for step in wf.steps.values())
    return batch
