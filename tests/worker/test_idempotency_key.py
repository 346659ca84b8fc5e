"""ctx.idempotency_key in a real worker process: carried by the claim,
the same for every attempt of a run, new after an operator's retry."""

from __future__ import annotations

import pytest

from django_taskengine import operations as ops
from django_taskengine.models import JobStatus
from tests.helpers import ledger_labels
from tests.testapp.tasks import keep_idempotency_key

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_worker_gives_every_attempt_of_a_run_the_jobs_key_and_a_retry_a_new_one(
    start_workers,
):
    job = keep_idempotency_key.enqueue(failures=3)  # fails all 3 attempts of its first run
    start_workers("--processes", "1")
    assert job.wait(timeout=30).status == JobStatus.FAILED
    first_key = f"taskengine-{job.uid}"
    assert ledger_labels(job.id) == [first_key] * 3

    ops.retry_job(job.id, by="oncall")  # attempt 4: succeeds
    finished = job.wait(timeout=30)
    assert finished.status == JobStatus.SUCCEEDED
    second_key = f"taskengine-{finished.uid}"
    assert second_key != first_key
    assert ledger_labels(job.id) == [first_key] * 3 + [second_key]
    assert finished.result == second_key
