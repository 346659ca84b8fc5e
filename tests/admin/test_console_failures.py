"""The failures page: failed jobs grouped by exception class and normalized message, and
"Retry all in this group"."""

from __future__ import annotations

import datetime as dt

import pytest
from django.contrib.admin.models import LogEntry
from django.utils import timezone

from django_taskengine.admin.failures import (
    failure_groups,
    group_key,
    normalize_message,
    search_term,
    split_error,
)
from django_taskengine.models import AuditEntry, Job, JobStatus
from tests.admin_helpers import admin_url, content, messages_of, staff_client
from tests.factories import JobFactory

# -- normalization (no database) ----------------------------------------------------------


def test_split_error_takes_the_exception_class_and_the_first_line():
    assert split_error("ValueError: bad input\nmore") == ("ValueError", "bad input")
    assert split_error("myapp.errors.PaymentDeclined: card declined") == (
        "myapp.errors.PaymentDeclined",
        "card declined",
    )
    assert split_error("cancelled by an operator's hard stop: the attempt") == (
        "",
        "cancelled by an operator's hard stop: the attempt",
    )
    assert split_error("") == ("", "")


def test_numbers_ids_uuids_and_hex_are_normalized():
    assert normalize_message("order 17 not found") == normalize_message("order 18 not found")
    assert normalize_message("order 17 not found") == "order <n> not found"
    assert normalize_message("job 3f2c1e6a-1b2c-4d5e-8f90-123456789abc gone") == "job <uuid> gone"
    assert normalize_message("at 0xdeadbeef") == "at <hex>"
    assert normalize_message("commit 9f8e7d6c5b4a") == "commit <hex>"
    assert normalize_message("took 1.25 s") == "took <n> s"
    # Words that only look like hex stay words.
    assert normalize_message("database defaced") == "database defaced"


def test_different_messages_stay_different_groups():
    assert group_key("ValueError", "order <n> not found") != group_key(
        "KeyError", "order <n> not found"
    )
    assert group_key("ValueError", "a") != group_key("ValueError", "b")


def test_search_term_leaves_placeholders_out():
    assert search_term("ValueError", "order <n> not found") == "ValueError order not found"
    assert search_term("KeyError", "'customer_<n>'") == "KeyError customer_"


# -- the page -----------------------------------------------------------------------------


def _failed(error: str, *, minutes_ago: float = 1, **fields) -> Job:
    when = timezone.now() - dt.timedelta(minutes=minutes_ago)
    return JobFactory(
        status=JobStatus.FAILED,
        error=error,
        attempts=3,
        started_at=when,
        finished_at=when,
        **fields,
    )


@pytest.fixture
def failures() -> dict[str, list[Job]]:
    orders = [_failed(f"ValueError: order {n} not found", minutes_ago=n) for n in (3, 2, 1)]
    refused = [
        _failed("ConnectionRefusedError: [Errno 111] Connection refused", queue="emails"),
        _failed(
            "ConnectionRefusedError: [Errno 111] Connection refused",
            task_name="tests.testapp.tasks.noop",
        ),
    ]
    old = [_failed("ValueError: order 99 not found", minutes_ago=60 * 30)]
    succeeded = [JobFactory(succeeded=True, error="")]
    return {"orders": orders, "refused": refused, "old": old, "succeeded": succeeded}


@pytest.mark.django_db
def test_groups_count_jobs_of_the_window_by_class_and_message(failures):
    report = failure_groups(timezone.now() - dt.timedelta(hours=24), using="default")
    groups = {(g.exception, g.message): g for g in report.groups}
    assert set(groups) == {
        ("ValueError", "order <n> not found"),
        ("ConnectionRefusedError", "[Errno <n>] Connection refused"),
    }
    orders = groups[("ValueError", "order <n> not found")]
    assert orders.count == 3  # the 30-hour-old one is outside the window
    assert orders.job_ids[0] == failures["orders"][-1].pk  # newest first
    assert orders.first_seen == failures["orders"][0].finished_at
    assert orders.last_seen == failures["orders"][-1].finished_at
    refused = groups[("ConnectionRefusedError", "[Errno <n>] Connection refused")]
    assert refused.queues == {"default", "emails"}
    assert refused.tasks == {"tests.testapp.tasks.add", "tests.testapp.tasks.noop"}
    assert report.groups[0] is orders  # largest first
    assert not report.truncated


@pytest.mark.django_db
def test_a_sample_bound_says_the_counts_are_of_the_newest(failures):
    report = failure_groups(timezone.now() - dt.timedelta(hours=24), using="default", sample=2)
    assert report.truncated and sum(g.count for g in report.groups) == 2


@pytest.mark.django_db
def test_the_page_lists_groups_with_counts_times_and_links(admin_client, failures):
    response = admin_client.get(admin_url("failures_changelist"))
    html = content(response)
    assert response.status_code == 200
    assert "order &lt;n&gt; not found" in html and "ConnectionRefusedError" in html
    assert (
        '<a href="/admin/django_taskengine/job/?status=failed&amp;q=ValueError+order+not+found"'
        in html
    )
    assert f'href="{admin_url("job_change", failures["orders"][-1].pk)}"' in html
    assert 'data-action="retry-group"' in html
    assert " UTC" in html  # exact times, with the zone
    week = content(admin_client.get(admin_url("failures_changelist", query="hours=168")))
    assert ">4</a>" in week  # the 30-hour-old failure joins its group


@pytest.mark.django_db
def test_the_group_link_finds_exactly_the_group_in_the_job_list(admin_client, failures):
    response = admin_client.get(
        admin_url("job_changelist", query="status=failed&q=ValueError+order+not+found")
    )
    found = {job.pk for job in response.context["cl"].result_list}
    assert found == {job.pk for job in failures["orders"] + failures["old"]}


@pytest.mark.django_db
def test_the_admin_index_lists_the_failures_page(admin_client):
    assert admin_url("failures_changelist") in content(admin_client.get("/admin/"))


@pytest.mark.django_db
def test_retry_all_asks_first_and_shows_how_many(admin_client, failures):
    key = group_key("ValueError", "order <n> not found")
    response = admin_client.post(admin_url("failures_retry"), {"group": key, "hours": "24"})
    assert response.status_code == 200
    assert "Retry <strong>3</strong> failed jobs" in content(response)
    assert 'data-action="confirm-retry-group"' in content(response)
    assert set(Job.objects.values_list("status", flat=True).distinct()) == {
        JobStatus.FAILED,
        JobStatus.SUCCEEDED,
    }


@pytest.mark.django_db
def test_retry_all_retries_exactly_that_groups_jobs(admin_client, failures):
    key = group_key("ValueError", "order <n> not found")
    response = admin_client.post(
        admin_url("failures_retry"),
        {"group": key, "hours": "24", "confirmed": "yes"},
        follow=True,
    )
    assert any("Retried 3 jobs" in message for message in messages_of(response))
    statuses = {job.pk: job.status for job in Job.objects.all()}
    for job in failures["orders"]:
        assert statuses[job.pk] == JobStatus.QUEUED
    for job in failures["refused"] + failures["old"]:
        assert statuses[job.pk] == JobStatus.FAILED
    assert statuses[failures["succeeded"][0].pk] == JobStatus.SUCCEEDED
    audited = AuditEntry.objects.filter(object_id__in=[str(j.pk) for j in failures["orders"]])
    assert audited.count() == 3
    assert all("failure group" in entry.reason for entry in audited)
    assert (
        LogEntry.objects.filter(object_id__in=[str(j.pk) for j in failures["orders"]]).count() == 3
    )


@pytest.mark.django_db
def test_a_group_gone_meanwhile_retries_nothing(admin_client, failures):
    response = admin_client.post(
        admin_url("failures_retry"),
        {"group": "0000000000000000", "hours": "24", "confirmed": "yes"},
        follow=True,
    )
    assert any("nothing was retried" in message for message in messages_of(response))
    assert not Job.objects.filter(status=JobStatus.QUEUED).exists()


@pytest.mark.django_db
def test_retry_all_needs_a_post_and_the_retry_permission(failures):
    key = group_key("ValueError", "order <n> not found")
    viewer = staff_client("view_job", username="viewer")
    assert viewer.get(admin_url("failures_changelist")).status_code == 200
    assert 'data-action="retry-group"' not in content(viewer.get(admin_url("failures_changelist")))
    refused = viewer.post(admin_url("failures_retry"), {"group": key, "confirmed": "yes"})
    assert refused.status_code == 403
    retrier = staff_client("retry_job", username="retrier")
    assert retrier.get(admin_url("failures_retry")).status_code == 405
    assert not Job.objects.filter(status=JobStatus.QUEUED).exists()
    nobody = staff_client(username="nobody")
    assert nobody.get(admin_url("failures_changelist")).status_code == 403


@pytest.mark.django_db
def test_the_overview_links_to_the_failures_page(admin_client):
    html = content(admin_client.get(admin_url("overview_changelist")))
    assert f'<a href="{admin_url("failures_changelist")}" id="summary-failure-groups">' in html
