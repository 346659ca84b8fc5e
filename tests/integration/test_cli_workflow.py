"""``manage.py taskengine workflow ID``: a workflow's steps and edges, and actions on them all."""

from __future__ import annotations

import json

import pytest

from django_taskengine import Workflow
from django_taskengine.models import AuditEntry, Job
from django_taskengine.testing import run_jobs
from tests.integration.test_cli import fails, run
from tests.testapp.tasks import add, always_fail, noop

pytestmark = pytest.mark.django_db


def _workflow() -> Workflow:
    wf = Workflow("nightly <import>")
    top = wf.add(add, 1, 1, name="top")
    wf.add(always_fail.using(max_attempts=1), after=[top], name="bad")
    wf.add(noop, after=["bad", top], name="last")
    return wf.enqueue()


def test_shows_each_step_with_what_it_waits_for():
    wf = _workflow()
    out, _ = run("workflow", str(wf.id))
    ids = {name: step.id for name, step in wf.steps.items()}
    assert out.splitlines() == [
        f"Workflow {wf.id} 'nightly <import>': 3 steps (3 queued)",
        f"- top (job {ids['top']}): queued",
        f"- bad (job {ids['bad']}): queued, waiting; after top",
        f"- last (job {ids['last']}): queued, waiting; after top, bad",
    ]
    data = json.loads(run("workflow", str(wf.id), "--json")[0])
    assert data["name"] == "nightly <import>"
    assert [(s["name"], s["waiting"], s["after"]) for s in data["steps"]] == [
        ("top", False, []),
        ("bad", True, ["top"]),
        ("last", True, ["top", "bad"]),
    ]


def test_acts_on_every_step_and_records_each():
    wf = _workflow()
    out, _ = run("workflow", str(wf.id), "--pause", "--by", "ops", "--reason", "deploy")
    assert len(out.splitlines()) == 3 and "step top" in out and "paused" in out
    assert AuditEntry.objects.filter(action="pause_job", reason="deploy").count() == 3
    run("workflow", str(wf.id), "--resume", "--by", "ops")
    run_jobs()
    out, _ = run("workflow", str(wf.id), "--retry", "--by", "ops")
    assert out.splitlines() == [f"step bad (job {wf.steps['bad'].id}): queued"]
    assert Job.objects.get(pk=wf.steps["last"].id).blocked is True


def test_a_wrong_id_is_refused():
    assert fails("workflow", "x")[0] == (
        "Workflow id 'x' is not a workflow id (a positive whole number). Nothing was changed."
    )
    assert fails("workflow", "999")[0] == "No workflow with id 999."
