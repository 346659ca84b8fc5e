"""State sync: runner threads' checkpoints and progress saved by the main thread, in one write."""

from __future__ import annotations

import threading
import uuid

import pytest

from django_taskengine import operations
from django_taskengine.core import lifecycle
from django_taskengine.models import Job
from django_taskengine.store import WorkerSession
from django_taskengine.worker.claimer import Claimer
from django_taskengine.worker.completer import Completer
from django_taskengine.worker.state_sync import StateSync
from tests.helpers import wait_for
from tests.testapp.tasks import steps

pytestmark = pytest.mark.django_db(transaction=True)


class Parts:
    """A claimed ``steps`` job, and the state sync a worker would give its runner thread."""

    def __init__(self, session: WorkerSession) -> None:
        self.job = steps.enqueue(total=3)
        self.claimer = Claimer(concurrency=1)
        self.claimer.claim(session)
        (self.entry,) = self.claimer.take_unstarted()
        self.wakes = 0
        self.sync = StateSync(self.claimer.running, self._wake)

    def _wake(self) -> None:
        self.wakes += 1

    def checkpoint_in_a_thread(self, state_json: str) -> tuple[threading.Thread, list[str]]:
        """A runner thread calling ``ctx.checkpoint()``; returns once the request is waiting."""
        answers: list[str] = []
        wakes = self.wakes
        thread = threading.Thread(
            target=lambda: answers.append(self.sync.save_checkpoint(self.entry.job, state_json))
        )
        thread.start()
        wait_for(lambda: self.wakes > wakes, timeout=10, message="the checkpoint request")
        assert thread.is_alive(), "save_checkpoint returned before the main thread saved it"
        return thread, answers


@pytest.fixture
def parts(session: WorkerSession) -> Parts:
    return Parts(session)


def test_a_checkpoint_and_progress_are_saved_together_and_the_thread_goes_on(session, parts):
    parts.sync.report_progress(parts.entry.job, 1, 3)
    thread, answers = parts.checkpoint_in_a_thread('{"next": 1}')
    parts.sync.sync(session)
    thread.join(10)
    assert answers == [""]
    job = Job.objects.get(id=parts.job.id)
    assert job.checkpoint == {"next": 1}
    assert (job.progress_current, job.progress_total) == (1, 3)


def test_progress_alone_is_written_without_waking_anyone_up_twice(session, parts):
    parts.sync.report_progress(parts.entry.job, 1, 3)
    parts.sync.report_progress(parts.entry.job, 2, 3)
    parts.sync.sync(session)
    job = Job.objects.get(id=parts.job.id)
    assert (job.progress_current, job.progress_total, job.checkpoint) == (2, 3, None)


def test_an_operators_pause_is_the_checkpoints_answer(session, parts):
    operations.pause_job(parts.job.id)
    thread, answers = parts.checkpoint_in_a_thread('{"next": 1}')
    parts.sync.sync(session)
    thread.join(10)
    assert answers == ["pause"]
    assert parts.entry.stop_reason == "pause"
    assert parts.sync.stop_reason(parts.entry.job) == "pause"


def test_an_attempt_the_worker_gave_up_is_told_it_is_superseded(session, parts):
    Completer(parts.claimer).give_up(parts.entry, lifecycle.timed_out(parts.entry.job))
    assert parts.sync.stop_reason(parts.entry.job) == "superseded"
    thread, answers = parts.checkpoint_in_a_thread('{"next": 1}')
    parts.sync.sync(session)
    thread.join(10)
    assert answers == ["superseded"]
    assert Job.objects.get(id=parts.job.id).checkpoint is None


def test_a_checkpoint_the_store_fences_out_is_told_it_is_superseded(session, parts):
    Job.objects.filter(id=parts.job.id).update(token=uuid.uuid4())
    thread, answers = parts.checkpoint_in_a_thread('{"next": 1}')
    parts.sync.sync(session)
    thread.join(10)
    assert answers == ["superseded"]
    assert Job.objects.get(id=parts.job.id).checkpoint is None


def test_a_worker_exiting_releases_the_threads_still_waiting(parts):
    thread, answers = parts.checkpoint_in_a_thread('{"next": 1}')
    parts.sync.release_waiting_threads()
    thread.join(10)
    assert answers == ["superseded"]


def test_a_job_the_worker_no_longer_holds_is_superseded_and_its_progress_dropped(session, parts):
    parts.sync.report_progress(parts.entry.job, 1, 3)
    del parts.claimer.running[parts.job.id]
    assert parts.sync.stop_reason(parts.entry.job) == "superseded"
    parts.sync.sync(session)
    assert Job.objects.get(id=parts.job.id).progress_current is None
