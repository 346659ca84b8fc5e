"""Workflows and batches through a kill storm: worker processes SIGKILLed mid-workflow lose
nothing, run no atomic step twice, and run no step before the steps it waits for."""

from __future__ import annotations

from collections import Counter

import pytest

from django_taskengine import Batch, Workflow
from django_taskengine.models import Job, JobStatus
from tests.faults.test_fault_injection import KILLS, _all_finished, _kill_storm
from tests.helpers import wait_for
from tests.testapp.models import LedgerEntry
from tests.testapp.tasks import batch_done, record_atomic

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_kill_storm_mid_workflow_loses_nothing_and_runs_no_atomic_step_twice(start_workers):
    step = record_atomic.using(max_attempts=KILLS + 1)
    wf = Workflow("storm")
    root = wf.add(step, label="root", name="root")
    middle = [wf.add(step, label="middle", sleep=0.05, after=[root]) for _ in range(150)]
    chain = [wf.add(step, label="chain", sleep=0.05, after=middle[:10], name="chain-0")]
    for n in range(1, 10):
        chain.append(wf.add(step, label="chain", sleep=0.05, after=[chain[-1]], name=f"chain-{n}"))
    join = wf.add(step, label="join", after=[*middle, chain[-1]], name="join")
    wf.enqueue()
    batch = Batch(on_complete=batch_done)
    for _ in range(50):
        batch.add(step, label="batch", sleep=0.05)
    batch.enqueue()

    workers = start_workers("--processes", "3", "--concurrency", "2")
    wait_for(lambda: LedgerEntry.objects.exists(), timeout=30, message="work under way")
    landed = _kill_storm(workers)
    _all_finished(180, workers.log)
    assert landed >= 8
    statuses = Counter(Job.objects.values_list("status", flat=True))
    assert statuses == {JobStatus.SUCCEEDED: len(wf.steps) + len(batch.steps)}, statuses
    # One ledger row per atomic step: none ran its effects twice.
    rows = Counter(LedgerEntry.objects.values_list("job_id", flat=True))
    atomic = set(Job.objects.exclude(step="on_complete").values_list("id", flat=True))
    assert set(rows) == atomic and set(rows.values()) == {1}
    # No step started before the steps it waits for had finished.
    ended = dict(Job.objects.values_list("id", "finished_at"))
    started = dict(Job.objects.values_list("id", "started_at"))
    for later, earlier in [(m, root) for m in middle] + [(join, m) for m in [*middle, *chain]]:
        assert ended[earlier.id] <= started[later.id]
    for earlier, later in zip(chain, chain[1:], strict=False):
        assert ended[earlier.id] <= started[later.id]
    callback = Job.objects.get(workflow_id=batch.id, step="on_complete")
    assert callback.result == {"id": batch.id, "succeeded": 50, "failed": 0, "cancelled": 0}
    assert callback.attempt_set.filter(outcome="succeeded").count() == 1
