"""The job list and the job page in Chromium against a real ``run_workers``: a running job's
progress bar with its percentage, on the list and on its page; Run again, whose new job runs;
priority and due time of a waiting job; Delete and Discard, each confirmed first. Screenshots at
1280 and 1920 px, light and dark; the list is no wider than its box at 1280 px, and nothing of
the job's own elements has a light background in dark mode."""

from __future__ import annotations

import datetime as dt

import pytest
from django.urls import reverse
from django.utils import timezone

from django_taskengine.models import AttemptOutcome, AuditEntry, Job, JobStatus
from tests.chromium import browser_page, log_in, screenshot_dir  # noqa: F401 - the page fixture
from tests.factories import AttemptFactory, WorkerFactory
from tests.helpers import wait_for
from tests.testapp.models import LedgerEntry
from tests.testapp.tasks import add, fails_with, record, reports_progress_until_told

pytestmark = pytest.mark.django_db(transaction=True)

SIZES = ((1280, 900), (1920, 1080))
#: The job page's and list's own elements (their backgrounds must follow the theme).
OWN_ELEMENTS = (
    ".te-panel, .te-progress, .te-progress-bar, .te-args, .te-error, .te-when, .te-task, "
    "#job-attempts, #job-edits input, pre.te-pre"
)


def _list_fits(page) -> bool:
    """The change list's results box does not scroll sideways, nor does the page."""
    return page.evaluate(
        """() => {
            const box = document.querySelector('#changelist-form .results');
            return box.scrollWidth <= box.clientWidth + 1
                && document.documentElement.scrollWidth <= window.innerWidth + 1;
        }"""
    )


def _light_backgrounds(page) -> list[str]:
    """Own elements whose background is light (luminance above 0.5)."""
    return page.evaluate(
        """(selector) => [...document.querySelectorAll(selector)].flatMap((el) => {
            const m = getComputedStyle(el).backgroundColor.match(/[\\d.]+/g);
            if (!m || (m.length > 3 && Number(m[3]) === 0)) return [];
            const [r, g, b] = m.map(Number);
            const light = (0.2126 * r + 0.7152 * g + 0.0722 * b) / 255 > 0.5;
            return light ? [`${el.tagName}.${el.className} ${m}`] : [];
        })""",
        OWN_ELEMENTS,
    )


def _shoot(page, request, name: str, *, check_list: bool = False) -> None:
    folder = screenshot_dir(request)
    for scheme in ("light", "dark"):
        page.emulate_media(color_scheme=scheme)
        for width, height in SIZES:
            page.set_viewport_size({"width": width, "height": height})
            page.reload()
            page.wait_for_selector("#content")
            if check_list:
                assert _list_fits(page), f"{name} at {width} px ({scheme}) is wider than its box"
            else:
                assert page.evaluate(
                    "document.documentElement.scrollWidth <= window.innerWidth + 1"
                ), f"{name} at {width} px ({scheme}) is wider than the window"
            if scheme == "dark":
                assert _light_backgrounds(page) == [], f"{name}: light backgrounds in dark mode"
            page.screenshot(path=str(folder / f"{name}-{width}-{scheme}.png"), full_page=True)
    page.emulate_media(color_scheme="light")
    page.set_viewport_size({"width": 1280, "height": 900})


def _job_url(live_server, job_id: int) -> str:
    return live_server.url + reverse("admin:django_taskengine_job_change", args=[job_id])


def _go(job_id: int) -> None:
    """Tell a reports_progress_until_told job to finish."""
    LedgerEntry.objects.create(job_id=job_id, attempt=1, label="go", pid=0)


def test_a_running_job_shows_its_progress_and_runs_again_as_a_new_job(
    page, live_server, operator, start_workers, request
):
    # Rows of every kind around it, so that the width check sees long arguments and errors.
    add.enqueue("a-long-argument-" * 6, {"nested": ["json", 1, 2, 3]})
    fails_with.enqueue("value", "the upstream service answered 503 Service Unavailable " * 3)
    record.using(run_after=dt.timedelta(hours=2), priority=5).enqueue(label="later")
    job = reports_progress_until_told.enqueue(done=96, total=240, seconds=120.0)
    start_workers("--processes", "1", "--concurrency", "3")
    wait_for(
        lambda: Job.objects.filter(
            pk=job.pk, status=JobStatus.RUNNING, progress_current=96
        ).exists(),
        timeout=30,
        message="the job to run and report its progress",
    )
    wait_for(lambda: Job.objects.filter(status=JobStatus.FAILED).exists(), timeout=30)
    log_in(page, live_server)
    page.set_viewport_size({"width": 1280, "height": 900})

    page.goto(f"{live_server.url}/admin/django_taskengine/job/")
    row = page.locator(f"#result_list tr:has(a[href$='/job/{job.pk}/change/'])")
    assert row.locator(".te-progress-percent").inner_text() == "40%"
    assert "left" in row.locator(".te-progress-eta").inner_text()
    # Kept when the list is too wide, to see why.
    page.screenshot(path=str(screenshot_dir(request) / "job-list-first.png"), full_page=True)
    widths = page.evaluate(
        """() => [...document.querySelectorAll('#result_list thead th')].map(
            (th) => th.className + ' ' + Math.round(th.getBoundingClientRect().width)).join(', ')"""
    )
    assert _list_fits(page), f"the job list is wider than its box at 1280 px: {widths}"
    _shoot(page, request, "job-list", check_list=True)

    page.goto(_job_url(live_server, job.pk))
    panel = page.locator('[data-te-live="job-progress"]')
    assert panel.locator(".te-progress-percent").inner_text() == "40%"
    assert "about" in panel.inner_text() and "96 of 240" in page.inner_text("#content")
    _shoot(page, request, "job-running")

    _go(job.pk)
    assert job.wait(timeout=30).status == JobStatus.SUCCEEDED
    page.reload()
    page.click('button[data-action="run-again-job"]')
    page.wait_for_selector("text=runs again as this new job")
    new = Job.objects.exclude(pk=job.pk).get(task_name=job.task_name)
    assert page.url.endswith(f"/job/{new.pk}/change/")
    wait_for(lambda: Job.objects.filter(pk=new.pk, status=JobStatus.RUNNING).exists(), timeout=30)
    _go(new.pk)
    finished = new.wait(timeout=30)
    assert (finished.status, finished.args, finished.kwargs) == (
        JobStatus.SUCCEEDED,
        job.args,
        job.kwargs,
    )
    assert AuditEntry.objects.filter(action="run_job_again", actor="alice").count() == 2


def test_change_priority_and_due_time_then_delete_and_discard(
    page, live_server, operator, start_workers, request
):
    job = add.using(run_after=dt.timedelta(hours=1)).enqueue(20, 22)
    spare = add.using(run_after=dt.timedelta(hours=1)).enqueue(1, 1)
    start_workers("--processes", "1")
    log_in(page, live_server)
    page.set_viewport_size({"width": 1280, "height": 900})
    page.goto(_job_url(live_server, job.pk))
    assert "(UTC)" in page.inner_text("#job-run-after-form label")
    _shoot(page, request, "job-queued")

    page.fill("#te-priority", "7")
    page.click('button[data-action="set-priority-job"]')
    page.wait_for_selector(f"text=Priority of job {job.pk} set to 7.")
    job.refresh_from_db()
    assert (job.priority, job.status) == (7, JobStatus.QUEUED)

    soon = timezone.localtime() - dt.timedelta(seconds=1)
    page.fill("#te-run-after", soon.strftime("%Y-%m-%dT%H:%M:%S"))
    page.click('button[data-action="set-run-after-job"]')
    page.wait_for_selector(f"text=Job {job.pk} is due at")
    finished = job.wait(timeout=30)
    assert (finished.status, finished.result) == (JobStatus.SUCCEEDED, 42)
    assert Job.objects.get(pk=spare.pk).status == JobStatus.QUEUED  # still not due

    page.goto(_job_url(live_server, job.pk))
    page.click('button[data-action="delete-job"]')
    page.wait_for_selector('button[data-action="confirm-delete-job"]')
    assert Job.objects.filter(pk=job.pk).exists()  # asked, not done
    page.screenshot(path=str(screenshot_dir(request) / "job-delete-confirm-1280.png"))
    page.click('button[data-action="confirm-delete-job"]')
    page.wait_for_selector(f"text=Deleted job {job.pk}.")
    assert not Job.objects.filter(pk=job.pk).exists()

    page.goto(_job_url(live_server, spare.pk))
    page.click('button[data-action="discard-job"]')
    page.click('button[data-action="confirm-discard-job"]')
    page.wait_for_selector(f"text=Discarded job {spare.pk}.")
    assert not Job.objects.filter(pk=spare.pk).exists()


def test_the_page_of_a_job_waiting_for_its_retry(page, live_server, operator, request):
    """Its runs numbered (a paused run gave its attempt back), its last attempt's error labelled
    as such, its worker linked, its start time as the last attempt's; no wider than the window."""
    now = timezone.now()
    job = fails_with.using(run_after=dt.timedelta(seconds=40)).enqueue("value", "bad row 17")
    worker = WorkerFactory(hostname="web-3")
    error = "ValueError: bad row 17"
    Job.objects.filter(pk=job.pk).update(
        attempts=2, max_attempts=3, error=error, started_at=now - dt.timedelta(seconds=20)
    )
    for number, outcome, ago, text in (
        (1, AttemptOutcome.PAUSED, 300, "paused by an operator at a checkpoint"),
        (1, AttemptOutcome.FAILED, 200, error),
        (2, AttemptOutcome.FAILED, 20, error),
    ):
        AttemptFactory(
            job_id=job.pk,
            number=number,
            outcome=outcome,
            worker_id=worker.id,
            started_at=now - dt.timedelta(seconds=ago),
            finished_at=now - dt.timedelta(seconds=ago - 5),
            error=text,
        )
    log_in(page, live_server)
    page.goto(_job_url(live_server, job.pk))

    assert page.locator(".field-last_error_text").inner_text().startswith("Last attempt's error")
    assert page.locator(".field-last_started_label").count() == 1
    assert page.locator(".field-started_label").count() == 0
    runs = page.locator("#job-attempts tbody tr")
    assert [runs.nth(i).locator("td").nth(1).inner_text() for i in range(3)] == [
        "1 (not counted)",
        "1",
        "2",
    ]
    page.click(f"#job-attempts a:has-text('{worker.id}') >> nth=0")
    page.wait_for_selector("#content")
    assert str(worker.id) in page.url
    page.goto(_job_url(live_server, job.pk))
    _shoot(page, request, "job-retrying")
