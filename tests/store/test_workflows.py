"""Workflows (django_taskengine/workflows.py): steps enqueued together, run in dependency order."""

from __future__ import annotations

import datetime as dt

import pytest
from django.db import transaction
from django.utils import timezone

from django_taskengine import Workflow, WorkflowCycle, operations
from django_taskengine.models import Dependency, Job
from django_taskengine.models import Workflow as WorkflowRow
from django_taskengine.testing import eager, run_jobs
from tests.testapp.tasks import add, always_fail, noop, results_of_dependencies

pytestmark = pytest.mark.django_db


def _statuses(wf: Workflow) -> dict[str, str]:
    return dict(Job.objects.filter(workflow_id=wf.id).values_list("step", "status"))


def test_a_fan_out_and_fan_in_runs_in_order_and_the_last_step_reads_results_by_name():
    wf = Workflow("sums")
    first = wf.add(add, 1, 1, name="first")
    parts = [wf.add(add, i, 10, after=[first]) for i in range(3)]
    last = wf.add(results_of_dependencies, after=parts, name="last")
    assert wf.enqueue() is wf
    assert WorkflowRow.objects.get(pk=wf.id).name == "sums"
    names = ["first", "tests.testapp.tasks.add", "tests.testapp.tasks.add-2"]
    assert [s.name for s in wf.steps.values()] == [*names, "tests.testapp.tasks.add-3", "last"]
    assert [s.job.blocked for s in wf.steps.values()] == [False, True, True, True, True]
    assert Dependency.objects.count() == 3 + 3
    run_jobs()
    assert set(_statuses(wf).values()) == {"succeeded"}
    last.job.refresh_from_db()
    assert last.job.result == {
        "tests.testapp.tasks.add": 10,
        "tests.testapp.tasks.add-2": 11,
        "tests.testapp.tasks.add-3": 12,
    }
    starts = {s.name: Job.objects.get(pk=s.id).started_at for s in wf.steps.values()}
    ends = {s.name: Job.objects.get(pk=s.id).finished_at for s in wf.steps.values()}
    assert all(ends["first"] <= starts[p.name] for p in parts)
    assert max(ends[p.name] for p in parts) <= starts["last"]


def test_a_diamond_by_step_names_added_in_any_order():
    wf = Workflow("diamond")
    wf.add(results_of_dependencies, after=["left", "right"], name="bottom")
    wf.add(add, 2, 2, after=["top"], name="left")
    wf.add(add, 3, 3, after=["top"], name="right")
    wf.add(noop, name="top")
    wf.enqueue()
    run_jobs()
    bottom = Job.objects.get(workflow_id=wf.id, step="bottom")
    assert (bottom.status, bottom.result) == ("succeeded", {"left": 4, "right": 6})


def test_a_cycle_is_refused_before_anything_is_written():
    wf = Workflow("circle")
    wf.add(noop, name="a", after=["c"])
    wf.add(noop, name="b", after=["a"])
    wf.add(noop, name="c", after=["b"])
    wf.add(noop, name="d")
    with pytest.raises(WorkflowCycle, match=r"in a circle \(a -> c -> b -> a\); nothing was"):
        wf.enqueue()
    assert not Job.objects.exists() and not WorkflowRow.objects.exists()
    assert wf.id is None


@pytest.mark.parametrize(
    ("build", "error", "message"),
    [
        (lambda wf: wf.add(noop, name="x") and wf.add(noop, name="x"), ValueError, "a step named"),
        (lambda wf: wf.add(noop, after=["nope"]) and wf.enqueue(), ValueError, "no step of"),
        (lambda wf: wf.add(noop, after=[Workflow("other").add(noop)]), ValueError, "not a step"),
        (lambda wf: wf.add(noop, after="x"), TypeError, "after must be a list"),
        (lambda wf: wf.add(add, 1), TypeError, "missing a required argument"),
        (lambda wf: wf.add(noop.using(dedup_key="k")), ValueError, "take no dedup_key"),
        (lambda wf: wf.enqueue(), ValueError, "has no steps"),
        (lambda wf: wf.add(noop, name=""), ValueError, "name must be a non-empty string"),
        (lambda wf: wf.add(print), TypeError, "a step is a task made with django_taskengine"),
    ],
)
def test_a_step_that_cannot_be_is_refused(build, error, message):
    with pytest.raises(error, match=message):
        build(Workflow("bad"))
    assert not Job.objects.exists()


def test_a_workflow_is_enqueued_in_the_callers_transaction():
    wf = Workflow("rolled back")
    wf.add(noop)
    with pytest.raises(RuntimeError, match="boom"), transaction.atomic():
        wf.enqueue()
        raise RuntimeError("boom")
    assert not Job.objects.exists() and not WorkflowRow.objects.exists()


def test_steps_take_options_and_jobs_enqueued_before():
    before = add.enqueue(5, 5)
    wf = Workflow("options")
    failing = wf.add(always_fail.using(max_attempts=1, queue="q1", priority=3))
    anyway = wf.add(
        results_of_dependencies.using(on_dependency_failure="run"), after=[failing, before]
    )
    wf.enqueue()
    assert (failing.job.queue, failing.job.priority) == ("q1", 3)
    run_jobs()
    anyway.job.refresh_from_db()
    key = "tests.testapp.tasks.always_fail"
    assert (anyway.job.status, anyway.job.result) == ("succeeded", {key: None, str(before.pk): 10})


def test_cancel_pause_resume_and_retry_a_whole_workflow():
    wf = Workflow("ops")
    bad = wf.add(always_fail.using(max_attempts=1), name="bad")
    wf.add(noop, after=[bad], name="after-bad")
    wf.add(noop, name="alone")
    wf.enqueue()

    paused = operations.pause_workflow(wf.id, by="ops")
    assert len(paused.changed) == 3 and set(_statuses(wf).values()) == {"paused"}
    operations.resume_workflow(wf.id, by="ops")
    run_jobs()
    assert _statuses(wf) == {"bad": "failed", "after-bad": "cancelled", "alone": "succeeded"}

    retried = operations.retry_workflow(wf.id, by="ops")
    assert [job.step for job in retried.changed] == ["bad"]
    assert _statuses(wf) == {"bad": "queued", "after-bad": "queued", "alone": "succeeded"}

    cancelled = operations.cancel_workflow(wf.id, by="ops")
    assert {job.step for job in cancelled.changed} == {"bad", "after-bad"}
    assert _statuses(wf) == {"bad": "cancelled", "after-bad": "cancelled", "alone": "succeeded"}
    assert cancelled.refused == []
    # Retried, every step the operator cancelled waits or runs again, in order.
    assert [job.step for job in operations.retry_workflow(wf.id, by="ops").changed] == [
        "bad",
        "after-bad",
    ]
    assert Job.objects.get(workflow_id=wf.id, step="after-bad").blocked is True
    run_jobs(retries=True)
    assert _statuses(wf) == {"bad": "failed", "after-bad": "cancelled", "alone": "succeeded"}


def test_a_workflow_runs_to_its_end_in_eager_mode():
    wf = Workflow("eager")
    first = wf.add(add, 1, 2)
    last = wf.add(results_of_dependencies, after=[first])
    with eager():
        wf.enqueue()
    assert (last.job.status, last.job.result) == ("succeeded", {first.name: 3})


def test_a_wide_fan_out_and_fan_in():
    wf = Workflow("wide")
    root = wf.add(noop, name="root")
    parts = [wf.add(add, i, 0, after=[root]) for i in range(300)]
    join = wf.add(results_of_dependencies, after=parts, name="join")
    wf.enqueue()
    assert Dependency.objects.count() == 600
    run_jobs()
    assert set(_statuses(wf).values()) == {"succeeded"}
    join.job.refresh_from_db()
    assert sorted(join.job.result.values()) == list(range(300))


def test_retention_deletes_a_workflow_once_its_steps_are_gone():
    from django_taskengine.retention import prune

    done, kept = Workflow("done"), Workflow("kept")
    done.add(noop)
    kept.add(always_fail.using(max_attempts=1))
    done.enqueue()
    kept.enqueue()
    run_jobs()
    old = timezone.now() - dt.timedelta(days=30)
    Job.objects.update(finished_at=old)
    WorkflowRow.objects.update(created_at=old)
    ages = {"succeeded": dt.timedelta(days=1), "failed": None}
    assert prune(ages=ages, dry_run=True).workflows == 1
    result = prune(ages=ages)
    assert (result.jobs, result.workflows) == ({"succeeded": 1}, 1)
    assert list(WorkflowRow.objects.values_list("name", flat=True)) == ["kept"]
