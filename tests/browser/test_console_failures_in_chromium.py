"""The console's search, failures page and queue list in a real browser, with real workers."""

from __future__ import annotations

import pytest
from django.utils import timezone

from django_taskengine.models import Job, JobStatus, Queue
from tests.chromium import browser_page, log_in, screenshot_dir  # noqa: F401 - the page fixture
from tests.helpers import wait_for
from tests.testapp.tasks import add

pytestmark = pytest.mark.django_db(transaction=True)


def _failed(job: Job, error: str) -> Job:
    Job.objects.filter(pk=job.pk).update(
        status=JobStatus.FAILED,
        attempts=3,
        error=error,
        started_at=timezone.now(),
        finished_at=timezone.now(),
    )
    return job


def _listed_ids(page) -> list[int]:
    """The ids of the job list's rows (its first column)."""
    return [int(text) for text in page.locator("#result_list tbody tr th").all_inner_texts()]


def _fits(page, width: int) -> bool:
    """Nothing is cut or scrolls sideways: neither the page nor the change list's table."""
    return bool(
        page.evaluate(
            f"""() => document.documentElement.scrollWidth <= {width} && [
                ...document.querySelectorAll('#changelist .results, #failure-groups')
            ].every((box) => box.scrollWidth <= box.clientWidth)"""
        )
    )


def test_search_an_error_text_and_find_the_job(page, live_server, operator):
    timed_out = _failed(add.enqueue(1, 2), "TimeoutError: upstream timed out after 30 s")
    refused = _failed(add.enqueue(3, 4), "ConnectionRefusedError: [Errno 111] Connection refused")
    by_argument = add.enqueue("carol@example.com", 5)
    log_in(page, live_server)
    page.goto(f"{live_server.url}/admin/django_taskengine/job/")

    page.fill("#searchbar", "timed out")
    page.press("#searchbar", "Enter")
    page.wait_for_url("**q=timed+out**")
    assert _listed_ids(page) == [timed_out.pk]
    assert refused.pk not in _listed_ids(page)

    page.fill("#searchbar", "carol@example.com")
    page.press("#searchbar", "Enter")
    page.wait_for_url("**q=carol**")
    assert _listed_ids(page) == [by_argument.pk]


def test_retry_a_failure_group_and_its_jobs_run(
    page, live_server, operator, start_workers, request
):
    orders = [_failed(add.enqueue(n, 1), f"ValueError: order {n} not found") for n in (17, 18, 19)]
    others = [_failed(add.enqueue(0, n), f"KeyError: 'customer_{n}'") for n in (1, 2)] + [
        _failed(add.enqueue(0, 9), "ConnectionRefusedError: [Errno 111] Connection refused")
    ]
    start_workers("--processes", "1", "--concurrency", "2")
    log_in(page, live_server)

    page.goto(f"{live_server.url}/admin/")
    page.click('a[href="/admin/django_taskengine/failures/"]')
    page.wait_for_selector("#failure-groups")
    rows = page.locator("#failure-groups tbody tr")
    assert rows.count() == 3
    group = page.locator("#failure-groups tbody tr", has_text="order <n> not found")
    assert group.locator("td.te-num").inner_text() == "3"
    folder = screenshot_dir(request)
    for width in (1280, 1920):
        page.set_viewport_size({"width": width, "height": 900})
        assert _fits(page, width)
        page.screenshot(path=str(folder / f"failures-{width}.png"), full_page=True)
    page.emulate_media(color_scheme="dark")
    page.set_viewport_size({"width": 1280, "height": 900})
    page.screenshot(path=str(folder / "failures-1280-dark.png"), full_page=True)
    page.emulate_media(color_scheme="light")

    group.locator('button[data-action="retry-group"]').click()
    page.wait_for_selector('button[data-action="confirm-retry-group"]')
    assert "Retry 3 failed jobs" in page.inner_text("#content-main")
    page.click('button[data-action="confirm-retry-group"]')
    page.wait_for_selector(".messagelist")
    assert "Retried 3 jobs" in page.inner_text(".messagelist")

    for job in orders:
        finished = job.wait(timeout=30)
        assert finished.status == JobStatus.SUCCEEDED and finished.result == job.args[0] + 1
    assert {Job.objects.get(pk=job.pk).status for job in others} == {JobStatus.FAILED}
    page.reload()
    assert page.locator("#failure-groups tbody tr").count() == 2


def test_pause_a_queue_from_its_row_with_a_reason(page, live_server, operator, request):
    add.enqueue(0, 0)  # creates the queue row "default"
    log_in(page, live_server)
    page.set_viewport_size({"width": 1280, "height": 900})
    page.goto(f"{live_server.url}/admin/django_taskengine/queue/")
    assert _fits(page, 1280)
    page.screenshot(
        path=str(screenshot_dir(request) / "queue-list-1280-running.png"), full_page=True
    )
    row = page.locator("#result_list tbody tr", has_text="default")
    row.locator('input[name="reason"]').fill("smtp outage")
    row.locator('select[name="duration"]').select_option("1h")
    page.click('button[data-action="pause-queue"][data-queue="default"]')
    page.wait_for_selector('button[data-action="resume-queue"][data-queue="default"]')
    queue = Queue.objects.get(name="default")
    assert queue.paused and queue.paused_by == "alice" and queue.pause_reason == "smtp outage"
    assert queue.paused_until is not None
    assert "smtp outage" in page.inner_text("#result_list")
    wait_for(lambda: _fits(page, 1280), timeout=5)
    page.screenshot(path=str(screenshot_dir(request) / "queue-list-1280.png"), full_page=True)
