"""The console as the README and the operator guide show it, in Chromium against real workers:
the overview with its charts, a running job's page with its progress bar, the grouped failures
and a worker's page, each at 1280 and 1920 px.

The screenshots go to the test's screenshot folder, and also to the folder that
``TASKENGINE_SCREENSHOTS_TO`` names (the documentation's: ``docs/screenshots``) as
``console-<page>-<width>.png``. Each page is checked for what its screenshot is meant to show
before it is taken, so that a broken page fails the test instead of illustrating the docs.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from django.urls import reverse

from django_taskengine.models import Job, JobStatus, MinuteStats, Worker
from tests.chromium import browser_page, log_in, screenshot_dir  # noqa: F401 - the page fixture
from tests.helpers import wait_for
from tests.testapp.models import LedgerEntry
from tests.testapp.tasks import (
    add,
    always_fail,
    fails_with,
    in_other_queue,
    record,
    reports_progress_until_told,
)

pytestmark = pytest.mark.django_db(transaction=True)

#: Viewport (width, height) of each screenshot.
SIZES = ((1280, 900), (1920, 1080))
#: The running job's progress while the screenshots are taken.
DONE, TOTAL = 96, 240


def _fits(page) -> bool:
    """Nothing sticks out sideways: the page needs no horizontal scrolling."""
    return page.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1")


def _shoot(page, request, name: str) -> list[Path]:
    """Full-page screenshots of the page at each width (reloaded at that width)."""
    folder = screenshot_dir(request)
    target = os.environ.get("TASKENGINE_SCREENSHOTS_TO")
    made = []
    for width, height in SIZES:
        page.set_viewport_size({"width": width, "height": height})
        page.reload()
        page.wait_for_selector("#content")
        path = folder / f"console-{name}-{width}.png"
        page.screenshot(path=str(path), full_page=True)
        assert _fits(page), f"{name} at {width} px is wider than the window: {path}"
        made.append(path)
        if target:
            Path(target).mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, Path(target) / path.name)
    return made


def _set_the_scene(start_workers) -> Job:
    """A few queues of jobs that succeeded, failures of a few kinds, and one job running with
    its progress reported; returns the running job once the rest have finished."""
    start_workers("--processes", "1", "--concurrency", "4")
    running = reports_progress_until_told.using(queue="reports").enqueue(done=DONE, total=TOTAL)
    finishing = [
        *add.bulk_enqueue([((n, n * 2), {}) for n in range(12)]),
        *in_other_queue.bulk_enqueue([((n,), {}) for n in range(6)]),
        *record.using(queue="emails").bulk_enqueue(
            [((), {"label": f"receipt to customer{n}@example.com"}) for n in range(8)]
        ),
        *fails_with.bulk_enqueue(
            [(("timeout", "payment gateway did not answer within 30 s"), {})] * 4
        ),
        *fails_with.bulk_enqueue([(("key", f"SKU-{sku}"), {}) for sku in (1042, 2210, 3007)]),
        *fails_with.using(queue="emails").bulk_enqueue(
            [(("value", f"invalid e-mail address 'customer{n}@example'"), {}) for n in (7, 9)]
        ),
        always_fail.enqueue(),
    ]
    ids = [job.pk for job in finishing]
    wait_for(
        lambda: (
            not Job.objects.filter(pk__in=ids)
            .exclude(status__in=[JobStatus.SUCCEEDED, JobStatus.FAILED])
            .exists()
        ),
        timeout=60,
        message="the scene's jobs to finish",
    )
    assert Job.objects.filter(pk__in=ids, status=JobStatus.FAILED).count() == 10
    wait_for(
        lambda: Job.objects.filter(
            pk=running.pk, status=JobStatus.RUNNING, progress_current=DONE
        ).exists(),
        timeout=30,
        message="the running job to report its progress",
    )
    running.refresh_from_db()
    return running


def test_console_screenshots_of_overview_running_job_failures_and_worker(
    page, live_server, operator, start_workers, request
):
    running = _set_the_scene(start_workers)
    page.set_viewport_size({"width": 1280, "height": 900})
    log_in(page, live_server)
    shots: dict[str, list[Path]] = {}

    # The overview: every queue of the scene, and its charts drawn from the per-minute
    # statistics the workers wrote: bars of the jobs that finished.
    wait_for(
        lambda: MinuteStats.objects.filter(succeeded__gt=0).exists(),
        timeout=30,
        message="the workers' per-minute statistics",
    )
    page.goto(live_server.url + reverse("admin:django_taskengine_overview_changelist"))
    overview = page.inner_text("#content")
    for queue in ("default", "other", "emails", "reports"):
        assert queue in overview
    charts = page.locator("#content svg.te-chart-svg[role=img]")
    assert charts.count() >= 2, "the overview shows no charts"
    assert page.locator("#content svg rect.te-chart-bar").count() >= 1, "the charts are empty"
    shots["overview"] = _shoot(page, request, "overview")

    # The running job: its progress, as a bar and in numbers.
    page.goto(live_server.url + reverse("admin:django_taskengine_job_change", args=[running.pk]))
    content = page.inner_text("#content")
    assert "running" in content and "reports_progress_until_told" in content
    assert str(DONE) in content and str(TOTAL) in content
    bar = page.locator("#content progress, #content [role=progressbar]")
    assert bar.count() >= 1, "the running job's page shows no progress bar"
    assert bar.first.is_visible()
    shots["running-job"] = _shoot(page, request, "running-job")

    # The failures, grouped by exception and message (its numbers left out): four jobs with
    # one message make one row that counts them, not four rows.
    page.goto(live_server.url + reverse("admin:django_taskengine_failures_changelist"))
    groups = {
        "payment gateway did not answer": "4",
        "SKU-": "3",
        "invalid e-mail address": "2",
        "this task always fails": "1",
    }
    for message, jobs in groups.items():
        row = page.locator("#content tr", has_text=message)
        assert row.count() == 1, f"{message!r}: {row.count()} rows, not one group"
        cells = [cell.strip() for cell in row.locator("td, th").all_inner_texts()]
        assert jobs in cells, f"{message!r}: {cells} does not count {jobs} jobs"
    content = page.inner_text("#content")
    for name in ("TimeoutError", "KeyError", "ValueError"):
        assert name in content
    assert page.locator("#content button", has_text="Retry all").count() == len(groups)
    shots["failures"] = _shoot(page, request, "failures")

    # The worker that runs the job: its host and process, the job among its current ones with
    # its progress, and the actions on the worker.
    worker = Worker.objects.get(pk=running.worker_id)
    page.goto(live_server.url + reverse("admin:django_taskengine_worker_change", args=[worker.pk]))
    content = page.inner_text("#content")
    assert worker.hostname in content and str(worker.pid) in content
    current = page.locator(f'#content a[href$="/job/{running.pk}/change/"]')
    assert current.count() >= 1, "the worker's page does not list its running job"
    assert page.locator("#content progress, #content [role=progressbar]").count() >= 1
    for action in ("Drain", "Stop", "Hard stop"):
        assert page.locator("#content button", has_text=action).count() >= 1
    shots["worker"] = _shoot(page, request, "worker")

    LedgerEntry.objects.create(job_id=running.pk, attempt=running.attempts, label="go", pid=0)
    assert running.wait(timeout=30).status == JobStatus.SUCCEEDED
    print("screenshots:", ", ".join(p.name for paths in shots.values() for p in paths))
