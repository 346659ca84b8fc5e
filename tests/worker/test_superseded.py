"""An attempt that learns it lost its job (rescued and finished elsewhere) is superseded:
reported as such, not as a failure, and recorded with a superseded attempt row."""

from __future__ import annotations

import logging
import time
import uuid

import pytest

from django_taskengine.core.lifecycle import ClaimedJob
from django_taskengine.models import Attempt, AttemptOutcome, Job, JobStatus
from django_taskengine.signals import job_finished
from django_taskengine.store import StateWrite, WorkerSession, get_store
from django_taskengine.worker.claimer import Claimer
from django_taskengine.worker.completer import Completer
from django_taskengine.worker.runner import run_attempt
from tests.testapp.models import LedgerEntry
from tests.testapp.tasks import record_atomic, steps

pytestmark = pytest.mark.django_db(transaction=True)


class FencedChannel:
    """Saves checkpoints at once through the worker session, fenced by the attempt's token."""

    def __init__(self, session: WorkerSession) -> None:
        self.session = session

    def save_checkpoint(self, job: ClaimedJob, state_json: str) -> str:
        applied = self.session.save_state([StateWrite(job.id, job.token, state_json)])
        return applied.get(job.id, "superseded")

    def report_progress(self, job: ClaimedJob, current: int, total: int | None) -> None:
        pass

    def stop_reason(self, job: ClaimedJob) -> str:
        return ""


@pytest.mark.parametrize("kind", ["atomic", "checkpointing"])
def test_a_superseded_attempt_is_reported_and_recorded_as_superseded(session, caplog, kind):
    job = record_atomic.enqueue(label="late") if kind == "atomic" else steps.enqueue(total=3)
    claimer = Claimer(concurrency=1)
    claimer.claim(session)
    (entry,) = claimer.take_unstarted()
    entry.started = time.monotonic()
    # Meanwhile the job was rescued and finished by another worker: its token moved on.
    Job.objects.filter(id=job.id).update(token=uuid.uuid4(), status=JobStatus.SUCCEEDED)
    reported: list[str] = []

    def receiver(sender: object, job_id: int, outcome: str, **_: object) -> None:
        reported.append(outcome)

    job_finished.connect(receiver)
    try:
        with caplog.at_level(logging.INFO, logger="django_taskengine.worker"):
            channel = FencedChannel(session)
            result = run_attempt(entry.job, get_store(), uuid.uuid4(), channel)
            completer = Completer(claimer)
            completer.done.append((entry, result))
            completer.collect()
            completer.flush(session)
    finally:
        job_finished.disconnect(receiver)
    assert reported == ["superseded"]
    assert (completer.succeeded, completer.failed) == (0, 0)
    lines = [(r.levelno, r.getMessage()) for r in caplog.records if str(job.id) in r.getMessage()]
    assert [level for level, _ in lines] == [logging.WARNING], lines
    assert "superseded" in lines[0][1] and "failed" not in lines[0][1]
    (attempt,) = Attempt.objects.filter(job_id=job.id)
    assert (attempt.outcome, attempt.number) == (AttemptOutcome.SUPERSEDED, 1)
    assert "rescued or changed" in attempt.error
    job.refresh_from_db()
    assert job.status == JobStatus.SUCCEEDED
    if kind == "atomic":
        assert not LedgerEntry.objects.filter(label="late").exists(), "rolled back"
