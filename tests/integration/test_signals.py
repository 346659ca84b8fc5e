"""job_enqueued, job_started and job_finished reach user receivers."""

from __future__ import annotations

import json

import pytest

from django_taskengine.signals import job_enqueued
from tests.testapp.models import LedgerEntry
from tests.testapp.tasks import add, always_fail

pytestmark = pytest.mark.django_db(transaction=True)


def test_job_enqueued_is_sent_for_each_job_with_created():
    seen = []

    def receiver(sender, job, created, **kwargs):
        seen.append((sender, job.id, created))

    job_enqueued.connect(receiver)
    try:
        first = add.using(dedup_key="once").enqueue(1, 2)
        again = add.using(dedup_key="once").enqueue(1, 2)
        many = add.bulk_enqueue([((1, 1), {}), ((2, 2), {})])
    finally:
        job_enqueued.disconnect(receiver)
    assert seen == [
        (add, first.id, True),
        (add, again.id, False),
        (add, many[0].id, True),
        (add, many[1].id, True),
    ]


def test_worker_sends_job_started_and_job_finished(start_workers):
    ok = add.enqueue(1, 2)
    bad = always_fail.enqueue()
    # The worker process loads tests.testapp.signal_receivers, which writes ledger rows.
    workers = start_workers("--burst", TASKENGINE_TEST_SIGNAL_RECEIVERS="1")
    assert workers.wait() == 0
    events = [
        json.loads(label)
        for label in LedgerEntry.objects.order_by("id").values_list("label", flat=True)
    ]
    ok_events = [e for e in events if e["job"] == ok.id]
    assert ok_events == [
        {"signal": "started", "job": ok.id, "attempt": 1},
        {
            "signal": "finished",
            "job": ok.id,
            "attempt": 1,
            "outcome": "succeeded",
            "status": "succeeded",
        },
    ]
    bad_finished = [e for e in events if e["job"] == bad.id and e["signal"] == "finished"]
    assert [(e["outcome"], e["status"]) for e in bad_finished] == [
        ("failed", "queued"),
        ("failed", "failed"),
    ]


def test_a_failing_job_finished_receiver_neither_stops_the_others_nor_the_run(caplog):
    from django_taskengine.signals import job_finished
    from django_taskengine.testing import run_jobs

    seen = []

    def broken(sender, **kwargs):
        raise RuntimeError("receiver bug")

    def recording(sender, job_id, outcome, **kwargs):
        seen.append((job_id, outcome))

    job = add.enqueue(1, 2)
    job_finished.connect(broken)
    job_finished.connect(recording)
    try:
        run_jobs()
    finally:
        job_finished.disconnect(broken)
        job_finished.disconnect(recording)
    assert seen == [(job.id, "succeeded")]
    assert f"a job_finished receiver failed for job {job.id}" in caplog.text
    assert "receiver bug" in caplog.text
