"""A worker's page in Chromium against a real ``run_workers``: drain it from its page and watch
it go from draining to drained while queued jobs wait; resume it and they run. Screenshots at
1280 and 1920 px, light and dark, with the page and the worker list no wider than the window."""

from __future__ import annotations

import pytest
from django.urls import reverse

from django_taskengine.models import Job, JobStatus, Worker
from tests.chromium import browser_page, log_in, screenshot_dir  # noqa: F401 - the page fixture
from tests.helpers import wait_for
from tests.testapp.models import LedgerEntry
from tests.testapp.tasks import always_fail, record, reports_progress_until_told

pytestmark = pytest.mark.django_db(transaction=True)

SIZES = ((1280, 900), (1920, 1080))


def _fits(page) -> bool:
    """No sideways scrolling: not of the page, nor of the list inside its scrolling box."""
    return page.evaluate(
        """() => document.documentElement.scrollWidth <= window.innerWidth + 1 &&
            [...document.querySelectorAll('.results, .te-panel')].every(
                (box) => box.scrollWidth <= box.clientWidth + 1)"""
    )


def _shoot(page, request, name: str) -> None:
    folder = screenshot_dir(request)
    for scheme in ("light", "dark"):
        page.emulate_media(color_scheme=scheme)
        for width, height in SIZES:
            page.set_viewport_size({"width": width, "height": height})
            page.reload()
            page.wait_for_selector("#content")
            assert _fits(page), f"{name} at {width} px ({scheme}) is wider than the window"
            page.screenshot(path=str(folder / f"{name}-{width}-{scheme}.png"), full_page=True)
    page.emulate_media(color_scheme="light")


def _state(page) -> str:
    return page.inner_text("#worker-state .te-worker-state")


def _status(job: Job) -> str:
    job.refresh_from_db()
    return job.status


def test_drain_and_resume_a_worker_from_its_page(
    page, live_server, operator, start_workers, request
):
    for n in range(3):
        record.enqueue(label=f"history-{n}")
    always_fail.enqueue()
    # Runs until the test lets it finish: the worker is draining for as long as the test looks.
    sleeper = reports_progress_until_told.enqueue()
    start_workers("--processes", "1", "--concurrency", "2")
    wait_for(lambda: _status(sleeper) == JobStatus.RUNNING, timeout=30)
    wait_for(lambda: Job.objects.filter(status=JobStatus.FAILED).exists(), timeout=30)
    sleeper.refresh_from_db()
    worker = Worker.objects.get(id=sleeper.worker_id)
    log_in(page, live_server)
    url = live_server.url + reverse("admin:django_taskengine_worker_change", args=[worker.pk])
    page.goto(url)
    assert _state(page) == "live"
    assert page.locator(f'#worker-jobs tr[data-job="{sleeper.id}"]').count() == 1
    assert page.locator("#worker-history tr.te-past-attempt").count() >= 4
    _shoot(page, request, "worker-page-live")

    page.fill("#worker-state input[name=reason]", "deploy in progress")
    page.click('button[data-action="drain-worker"]')
    page.wait_for_selector('button[data-action="resume-worker"]')
    assert "Drain requested by alice" in page.inner_text("#worker-state")
    assert _state(page) == "draining"
    _shoot(page, request, "worker-page-draining")
    waiting = record.enqueue(label="while drained")

    # Its running job finishes; then the page says drained, and the new job still waits.
    LedgerEntry.objects.create(job_id=sleeper.id, attempt=1, label="go", pid=0)
    assert wait_for(lambda: _status(sleeper) == JobStatus.SUCCEEDED, timeout=30)

    def drained() -> bool:
        page.reload()
        return _state(page) == "drained"

    wait_for(drained, timeout=15, interval=0.3, message="the page to say drained")
    assert _status(waiting) == JobStatus.QUEUED
    _shoot(page, request, "worker-page-drained")

    page.click('button[data-action="resume-worker"]')
    page.wait_for_selector('button[data-action="drain-worker"]')
    assert wait_for(lambda: _status(waiting) == JobStatus.SUCCEEDED, timeout=30)

    page.goto(live_server.url + reverse("admin:django_taskengine_worker_changelist"))
    assert "failed" in page.inner_text("#result_list thead").lower().split()
    _shoot(page, request, "worker-list")
