"""The workflow admin: the list with steps counted, the page with its graph and steps, actions
on the whole workflow by POST with the job permissions, and a step's page with its graph."""

from __future__ import annotations

import re

import pytest

from django_taskengine import Batch, Workflow
from django_taskengine.models import AuditEntry, Job
from tests.admin_helpers import admin_url, content, messages_of, staff_client
from tests.testapp.tasks import add, batch_done, noop

pytestmark = pytest.mark.django_db

SCRIPT = "<script>alert(1)</script>"
ESCAPED = "&lt;script&gt;alert(1)&lt;/script&gt;"


def _svg(html: str) -> str:
    start = html.index('<svg class="te-graph"')
    return html[start : html.index("</svg>", start)]


def _workflow(fan_out: int = 2) -> Workflow:
    wf = Workflow(f"import {SCRIPT}")
    top = wf.add(noop, name=f"top {SCRIPT}")
    parts = [wf.add(add, i, i, after=[top]) for i in range(fan_out)]
    wf.add(noop, after=parts, name="end")
    return wf.enqueue()


def test_the_list_counts_each_workflows_steps(admin_client):
    wf = _workflow()
    batch = Batch(on_complete=batch_done)
    batch.add(noop)
    batch.enqueue()
    html = content(admin_client.get(admin_url("workflow_changelist")))
    assert ESCAPED in html and SCRIPT not in html
    assert "4 queued" in html and "2 queued" in html and ">batch<" in html
    assert admin_url("workflow_change", wf.id) in html


def test_the_page_draws_the_graph_and_lists_the_steps(admin_client):
    wf = _workflow()
    html = content(admin_client.get(admin_url("workflow_change", wf.id)))
    svg = _svg(html)
    assert SCRIPT not in html and ESCAPED in svg
    # A box per step, linked to its job, and an arrow per dependency.
    for step in wf.steps.values():
        assert admin_url("job_change", step.id) in svg
    assert svg.count('class="te-edge"') == 4
    assert "te-fill-queued" in svg and "te-fill-waiting" in svg
    assert re.search(r'data-step="end">.*?waiting', svg)
    assert html.count("<tr data-step=") == 4


def test_a_wide_fan_out_is_one_box_that_counts_its_steps(admin_client):
    wf = _workflow(fan_out=40)
    html = content(admin_client.get(admin_url("workflow_change", wf.id)))
    svg = _svg(html)
    assert 'data-steps="40"' in svg and "40 steps" in svg and "40 waiting" in svg
    assert svg.count('class="te-edge"') == 2  # top -> the 40, the 40 -> end


def test_actions_on_the_whole_workflow_are_posts_with_the_job_permissions(client):
    wf = _workflow()
    url = admin_url("workflow_pause", wf.id)
    viewer = staff_client("view_workflow", "view_job")
    assert viewer.get(url).status_code == 405
    assert viewer.post(url).status_code == 403
    page = content(viewer.get(admin_url("workflow_change", wf.id)))
    assert 'data-action="pause-workflow"' not in page
    operator = staff_client("view_workflow", "pause_job", username="ops")
    response = operator.post(url, {"next": admin_url("workflow_change", wf.id)}, follow=True)
    assert messages_of(response) == [f"Paused 4 step(s) of workflow {wf.id}."]
    assert set(Job.objects.values_list("status", flat=True)) == {"paused"}
    assert AuditEntry.objects.filter(action="pause_job", actor="ops").count() == 4
    assert operator.post(admin_url("workflow_cancel", wf.id)).status_code == 403


def test_a_steps_page_links_its_workflow_and_outlines_itself_in_the_graph(admin_client):
    wf = _workflow()
    step = wf.steps["end"]
    html = content(admin_client.get(admin_url("job_change", step.id)))
    assert f'<a href="{admin_url("workflow_change", wf.id)}">workflow {wf.id}</a>, step end' in html
    assert re.search(r'data-step="end"><g class="te-node te-fill-waiting te-node-current"', html)
    plain = add.enqueue(1, 1)
    assert "te-graph" not in content(admin_client.get(admin_url("job_change", plain.pk)))
