"""The operator's admin in a real browser, with real workers: pause, resume, retry, limits."""

from __future__ import annotations

import pytest

from django_taskengine.models import Job, JobStatus, Queue
from tests.chromium import browser_page, log_in, screenshot_dir  # noqa: F401 - the page fixture
from tests.helpers import wait_for
from tests.testapp.tasks import add, in_other_queue, record

pytestmark = pytest.mark.django_db(transaction=True)


def _status(job: Job) -> str:
    job.refresh_from_db()
    return job.status


def test_pause_a_queue_in_the_browser_and_no_job_of_it_starts_until_resume(
    page, live_server, operator, start_workers, request
):
    add.enqueue(0, 0)  # creates the queue row "default"
    start_workers("--processes", "1", "--concurrency", "2")
    wait_for(lambda: Job.objects.filter(status=JobStatus.SUCCEEDED).exists(), timeout=30)
    log_in(page, live_server)
    page.goto(f"{live_server.url}/admin/django_taskengine/queue/")
    page.click('button[data-action="pause-queue"][data-queue="default"]')
    page.wait_for_selector('button[data-action="resume-queue"][data-queue="default"]')
    queue = Queue.objects.get(name="default")
    assert queue.paused and queue.paused_by == "alice"

    paused_jobs = record.bulk_enqueue([((), {"label": "while paused"})] * 5)
    # A job of another queue, enqueued after them, proves the worker is claiming meanwhile.
    witness = in_other_queue.enqueue(7)
    assert witness.wait(timeout=30).status == JobStatus.SUCCEEDED
    assert {_status(job) for job in paused_jobs} == {JobStatus.QUEUED}
    page.reload()
    assert "paused" in page.inner_text("#result_list").lower()
    page.screenshot(path=str(screenshot_dir(request) / "queue-list-paused.png"), full_page=True)

    page.click('button[data-action="resume-queue"][data-queue="default"]')
    page.wait_for_selector('button[data-action="pause-queue"][data-queue="default"]')
    for job in paused_jobs:
        assert job.wait(timeout=30).status == JobStatus.SUCCEEDED
    page.reload()
    page.screenshot(path=str(screenshot_dir(request) / "queue-list.png"), full_page=True)


def test_retry_a_failed_job_from_its_page(page, live_server, operator, start_workers, request):
    job = add.enqueue(2, 3)
    Job.objects.filter(pk=job.pk).update(
        status=JobStatus.FAILED,
        attempts=3,
        error="RuntimeError: upstream timed out",
        traceback="Traceback (most recent call last):\n  ...\nRuntimeError: upstream timed out",
    )
    start_workers("--processes", "1")
    log_in(page, live_server)
    page.goto(f"{live_server.url}/admin/django_taskengine/job/{job.pk}/change/")
    assert "RuntimeError: upstream timed out" in page.content()
    page.screenshot(path=str(screenshot_dir(request) / "job-page-failed.png"), full_page=True)
    page.click('button[data-action="retry-job"]')
    finished = job.wait(timeout=30)
    assert finished.status == JobStatus.SUCCEEDED
    assert finished.result == 5
    assert finished.attempts == 4
    page.goto(f"{live_server.url}/admin/django_taskengine/job/{job.pk}/change/")
    assert "succeeded" in page.content()
    page.screenshot(path=str(screenshot_dir(request) / "job-page.png"), full_page=True)


def test_a_script_in_job_arguments_is_shown_as_text(page, live_server, operator):
    job = add.enqueue("<script>document.title='pwned'</script>", "x")
    log_in(page, live_server)
    page.goto(f"{live_server.url}/admin/django_taskengine/job/{job.pk}/change/")
    assert page.title() != "pwned"
    assert "<script>document.title='pwned'</script>" in page.inner_text("body")


def test_set_a_queue_limit_on_its_page(page, live_server, operator, request):
    add.enqueue(0, 0)  # creates the queue row "default"
    log_in(page, live_server)
    page.goto(f"{live_server.url}/admin/django_taskengine/queue/default/change/")
    form = page.locator("#queue-limits-form")
    form.locator('input[name="concurrency_setting"]').uncheck()
    form.locator('input[name="concurrency"]').fill("3")
    form.locator('input[name="rate_limit_setting"]').uncheck()
    form.locator('input[name="rate_limit"]').fill("14/s")
    form.locator('button[data-action="limit-queue"]').click()
    page.wait_for_selector("#limits-in-force:has-text('concurrency 3, rate 14/s')")
    queue = Queue.objects.get(name="default")
    assert (queue.concurrency, queue.rate_limit, queue.limits_changed_by) == (3, "14/s", "alice")
    page.screenshot(path=str(screenshot_dir(request) / "queue-limits.png"), full_page=True)
