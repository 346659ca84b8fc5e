"""Pages that refresh themselves, in a real browser with real workers: the overview and the job
list show what the workers did without a reload, keep the operator's selection and scroll, and
stop when the operator pauses them. Screenshots of the overview's charts, light and dark."""

from __future__ import annotations

import pytest

from django_taskengine.models import Job, JobStatus
from tests.chromium import browser_page, log_in, screenshot_dir  # noqa: F401 - the page fixture
from tests.helpers import wait_for
from tests.testapp.tasks import add, always_fail, in_other_queue, record

pytestmark = pytest.mark.django_db(transaction=True)

#: The test pages refresh every second (the default is 5 s): set on the page, as an operator's
#: template could.
FAST = "document.body.setAttribute('data-te-live-interval', '1')"
#: Counts the refreshes the page has done, and marks the page: a reload would lose the mark.
MARK = """
window.teRefreshes = 0;
window.teMark = 'still the same page';
document.addEventListener('te-live:refreshed', () => { window.teRefreshes += 1; });
"""


def _open_live(page, url: str) -> None:
    page.evaluate("localStorage.clear()")
    page.goto(url)
    page.evaluate(FAST)
    page.evaluate(MARK)
    page.wait_for_selector("#te-live-toggle:has-text('Live')")


def _refreshes(page) -> int:
    return page.evaluate("window.teRefreshes")


def test_the_overview_refreshes_itself_as_workers_finish_jobs(
    page, live_server, operator, start_workers, request
):
    add.enqueue(1, 1)  # the queue "default", with one queued job
    log_in(page, live_server)
    _open_live(page, f"{live_server.url}/admin/django_taskengine/overview/")
    queued = page.locator('#overview-queues tr[data-queue="default"] td').nth(2)
    assert queued.inner_text() == "1"

    start_workers("--processes", "1")
    wait_for(
        lambda: (
            page.locator('#overview-queues tr[data-queue="default"] td').nth(2).inner_text() == "0"
        ),
        timeout=30,
        message="the overview shows the job no longer queued",
    )
    # The charts follow: the job's success is counted once its worker flushed (every 5 s).
    wait_for(
        lambda: "1 succeeded" in page.inner_text("#te-charts"),
        timeout=30,
        message="the chart counts the job",
    )
    assert page.evaluate("window.teMark") == "still the same page"
    page.screenshot(path=str(screenshot_dir(request) / "overview-live.png"), full_page=True)


def test_the_job_list_refreshes_itself_keeping_selection_and_scroll(
    page, live_server, operator, start_workers, request
):
    page.set_viewport_size({"width": 1280, "height": 600})
    done = add.bulk_enqueue([((n, n), {}) for n in range(30)])
    start_workers("--processes", "1", "--concurrency", "2")
    wait_for(lambda: Job.objects.filter(status=JobStatus.SUCCEEDED).count() == 30, timeout=60)
    slow = record.enqueue(label="slow", sleep=6.0)
    wait_for(lambda: Job.objects.get(pk=slow.pk).status == JobStatus.RUNNING, timeout=30)

    log_in(page, live_server)
    _open_live(page, f"{live_server.url}/admin/django_taskengine/job/?o=-1")
    slow_row = page.locator(f'#result_list tr:has(input.action-select[value="{slow.pk}"])')
    assert "running" in slow_row.inner_text()
    chosen = done[3].pk
    box = page.locator(f'#result_list input.action-select[value="{chosen}"]')
    box.check()
    assert page.inner_text("span.action-counter").startswith("1 of 31 selected")
    page.evaluate("window.scrollTo(0, 400)")
    page.mouse.move(5, 5)  # nothing focused in the table but the checkbox; move away
    page.evaluate("document.activeElement.blur()")
    scrolled = page.evaluate("window.scrollY")
    assert scrolled > 100

    wait_for(
        lambda: "succeeded" in slow_row.inner_text(),
        timeout=30,
        message="the slow job's new status appears without a reload",
    )
    assert page.evaluate("window.teMark") == "still the same page"
    assert box.is_checked()
    assert page.locator(f'#result_list tr.selected input[value="{chosen}"]').count() == 1
    assert page.inner_text("span.action-counter").startswith("1 of 31 selected")
    assert abs(page.evaluate("window.scrollY") - scrolled) <= 2
    # "Select all" still works on the refreshed rows.
    page.check("#action-toggle")
    assert page.inner_text("span.action-counter").startswith("31 of 31 selected")
    page.uncheck("#action-toggle")
    assert page.inner_text("span.action-counter").startswith("0 of 31 selected")
    page.screenshot(path=str(screenshot_dir(request) / "job-list-live.png"))


def test_paused_stops_refreshing_until_the_operator_resumes(
    page, live_server, operator, start_workers
):
    add.enqueue(1, 1)
    log_in(page, live_server)
    _open_live(page, f"{live_server.url}/admin/django_taskengine/job/")
    wait_for(lambda: _refreshes(page) >= 1, timeout=15, message="a first refresh")

    page.click("#te-live-toggle")
    assert page.inner_text("#te-live-toggle") == "Paused"
    assert page.get_attribute("#te-live-toggle", "aria-pressed") == "false"
    paused_at = _refreshes(page)
    start_workers("--processes", "1")
    wait_for(lambda: Job.objects.filter(status=JobStatus.SUCCEEDED).exists(), timeout=30)
    # Three intervals and more pass: not one refresh, and the finished job is not shown.
    page.wait_for_timeout(3500)
    assert _refreshes(page) == paused_at
    assert "queued" in page.inner_text("#result_list")

    # Remembered across pages: a reload stays paused.
    page.reload()
    page.evaluate(FAST)
    page.evaluate(MARK)
    assert page.inner_text("#te-live-toggle") == "Paused"
    page.wait_for_timeout(2500)
    assert _refreshes(page) == 0

    page.click("#te-live-toggle")
    assert page.inner_text("#te-live-toggle").startswith("Live")
    wait_for(lambda: _refreshes(page) >= 1, timeout=15, message="refreshing again")


def test_screenshots_of_the_overview_with_charts(
    page, live_server, operator, start_workers, request
):
    add.bulk_enqueue([((n, n), {}) for n in range(120)])
    in_other_queue.bulk_enqueue([((n,), {}) for n in range(40)])
    for _ in range(6):
        always_fail.enqueue()
    record.using(queue="reports").bulk_enqueue([((), {"label": "r", "sleep": 0.3})] * 8)
    workers = start_workers("--burst", "--processes", "2", "--concurrency", "2")
    assert workers.wait(timeout=120) == 0
    log_in(page, live_server)
    folder = screenshot_dir(request)
    for scheme in ("light", "dark"):
        page.emulate_media(color_scheme=scheme)
        for width in (1280, 1920):
            page.set_viewport_size({"width": width, "height": 1000})
            page.goto(f"{live_server.url}/admin/django_taskengine/overview/")
            charts = page.locator("#te-charts")
            assert "168 succeeded, 6 failed" in charts.inner_text()
            assert charts.locator("svg.te-chart-svg").count() == 3
            # Every chart fits its column: nothing wider than the page.
            assert page.evaluate("document.documentElement.scrollWidth") <= width
            page.screenshot(
                path=str(folder / f"overview-charts-{width}-{scheme}.png"), full_page=True
            )
        page.goto(
            f"{live_server.url}/admin/django_taskengine/overview/?charts=day&chart_queue=default"
        )
        assert "Activity of queue default" in page.inner_text("#te-charts")
        title = page.locator("#te-charts svg title").first.text_content()
        assert title == "Jobs finished per 15 minutes, last day, queue default"
        page.screenshot(
            path=str(folder / f"overview-charts-day-default-{scheme}.png"), full_page=True
        )


def test_a_failed_refresh_says_so_quietly_and_a_hidden_tab_fetches_nothing(
    page, live_server, operator
):
    add.enqueue(1, 1)
    log_in(page, live_server)
    url = f"{live_server.url}/admin/django_taskengine/job/"
    _open_live(page, url)
    wait_for(lambda: _refreshes(page) >= 1, timeout=15, message="a first refresh")

    # The server stops answering: the page says so, keeps its rows, and tries again.
    page.route(url, lambda route: route.abort())
    page.wait_for_selector("#te-live-status:has-text('refresh failed, retrying')")
    assert page.locator("#result_list input.action-select").count() == 1
    page.unroute(url)
    before = _refreshes(page)
    wait_for(lambda: _refreshes(page) > before, timeout=30, message="a refresh after the failure")
    assert page.inner_text("#te-live-status") == ""

    # A hidden tab fetches nothing; shown again, it refreshes at once.
    page.evaluate(
        "Object.defineProperty(document, 'hidden', {configurable: true, get: () => true});"
        "document.dispatchEvent(new Event('visibilitychange'));"
    )
    page.wait_for_timeout(1000)  # a request already under way may still land
    hidden_at = _refreshes(page)
    page.wait_for_timeout(3000)
    assert _refreshes(page) == hidden_at
    page.evaluate(
        "Object.defineProperty(document, 'hidden', {configurable: true, get: () => false});"
        "document.dispatchEvent(new Event('visibilitychange'));"
    )
    wait_for(lambda: _refreshes(page) > hidden_at, timeout=15, message="a refresh once shown")


def test_unsaved_input_holds_the_refresh_until_it_is_sent_or_undone(page, live_server, operator):
    add.enqueue(1, 1)
    log_in(page, live_server)
    _open_live(page, f"{live_server.url}/admin/django_taskengine/job/")
    # The navigation's filter belongs to no form: typing there holds nothing.
    page.fill("#nav-filter", "jo")
    start = _refreshes(page)
    wait_for(lambda: _refreshes(page) >= start + 2, timeout=15, message="refreshes go on")

    page.fill("#searchbar", "half-typed")
    page.wait_for_timeout(1000)  # a request already under way may still land
    held = _refreshes(page)
    page.wait_for_timeout(3000)
    assert _refreshes(page) == held
    assert page.input_value("#searchbar") == "half-typed"

    page.fill("#searchbar", "")
    wait_for(lambda: _refreshes(page) > held, timeout=15, message="refreshing once undone")
