"""The job list's search: words of a job's arguments and error (through a GIN index on
PostgreSQL, LIKE on SQLite), besides the exact matches by id, dedup key and task name."""

from __future__ import annotations

import re

import pytest
from django.db import connection
from django.db.models import Q
from django.test.utils import CaptureQueriesContext

from django_taskengine.admin.job_search import ACTIVE, JobTextMatch
from django_taskengine.job_indexes import AT_REST
from django_taskengine.models import Job, JobStatus
from tests.admin_helpers import admin_url
from tests.factories import JobFactory

pytestmark = pytest.mark.django_db


def _found(admin_client, query: str) -> set[int]:
    response = admin_client.get(admin_url("job_changelist", query=query))
    assert response.status_code == 200
    return {job.pk for job in response.context["cl"].result_list}


@pytest.fixture
def jobs() -> dict[str, Job]:
    return {
        "alice": JobFactory(args=["alice@example.com", 17]),
        "order": JobFactory(kwargs={"order_id": 884213, "region": "eu"}),
        "refused": JobFactory(
            status=JobStatus.FAILED,
            error="ConnectionRefusedError: [Errno 111] Connection refused",
        ),
        "timeout": JobFactory(status=JobStatus.FAILED, error="TimeoutError: timed out after 30 s"),
        "queued_refused": JobFactory(
            error="ConnectionRefusedError: [Errno 111] Connection refused"
        ),
        "other": JobFactory(args=["bob@example.com"], kwargs={"order_id": 5}),
    }


def test_search_finds_a_job_by_an_argument_value(admin_client, jobs):
    assert _found(admin_client, "q=alice%40example.com") == {jobs["alice"].pk}


def test_search_finds_a_job_by_a_keyword_argument_value(admin_client, jobs):
    assert _found(admin_client, "q=884213") == {jobs["order"].pk}


def test_search_finds_jobs_by_words_of_their_error(admin_client, jobs):
    assert _found(admin_client, "q=timed+out") == {jobs["timeout"].pk}
    assert _found(admin_client, "q=Connection+refused") == {
        jobs["refused"].pk,
        jobs["queued_refused"].pk,
    }


def test_search_finds_jobs_by_exception_class(admin_client, jobs):
    assert _found(admin_client, "q=ConnectionRefusedError") == {
        jobs["refused"].pk,
        jobs["queued_refused"].pk,
    }


def test_search_combines_with_the_status_filter(admin_client, jobs):
    assert _found(admin_client, "q=ConnectionRefusedError&status=failed") == {jobs["refused"].pk}


def test_queued_jobs_are_found_in_any_case_and_through_punctuation(admin_client, jobs):
    assert _found(admin_client, "q=connectionrefusederror") >= {jobs["queued_refused"].pk}
    assert _found(admin_client, "q=ALICE%40example.com") == {jobs["alice"].pk}
    both = {jobs["refused"].pk, jobs["queued_refused"].pk}
    assert _found(admin_client, "q=%5BErrno+111%5D") == both


def test_every_word_must_match(admin_client, jobs):
    assert _found(admin_client, "q=timed+refused") == set()


def test_search_finds_nothing_for_words_no_job_holds(admin_client, jobs):
    assert _found(admin_client, "q=xyzzy") == set()
    assert _found(admin_client, "q=qqq+zzzz") == set()


def test_exact_matches_still_work(admin_client, jobs):
    keyed = JobFactory(dedup_key="invoice-2024-17")
    assert _found(admin_client, f"q={jobs['other'].pk}") >= {jobs["other"].pk}
    assert keyed.pk in _found(admin_client, "q=invoice-2024-17")
    assert jobs["alice"].pk in _found(admin_client, "q=tests.testapp.tasks.add")


def test_search_keeps_the_newest_first_order(admin_client):
    ids = [JobFactory(args=["shared-word"]).pk for _ in range(3)]
    response = admin_client.get(admin_url("job_changelist", query="q=shared-word"))
    assert [job.pk for job in response.context["cl"].result_list] == sorted(ids, reverse=True)


def test_the_list_counts_the_matches_once(admin_client, jobs):
    """The page's count of matches is right, filters included; on PostgreSQL the search's own
    list of ids gives it (no second count of the table), with a job id typed as the term too."""
    for n in range(3):
        JobFactory(args=["counted-word", n], status=JobStatus.SUCCEEDED)
    JobFactory(args=["counted-word"])
    cases = [
        ("q=counted-word", 4),
        ("q=counted-word&status=succeeded", 3),
        (f"q={jobs['other'].pk}", None),  # the id, and jobs that hold the number
        ("q=ConnectionRefusedError&status=failed", 1),
    ]
    for query, expected in cases:
        with CaptureQueriesContext(connection) as captured:
            response = admin_client.get(admin_url("job_changelist", query=query))
        changelist = response.context["cl"]
        assert changelist.result_count == len(changelist.result_list), query
        if expected is not None:
            assert changelist.result_count == expected, query
        counts = [q["sql"] for q in captured.captured_queries if "COUNT(" in q["sql"]]
        if connection.vendor == "postgresql":
            assert not counts, counts


def test_special_characters_of_like_are_taken_literally(admin_client):
    percent = JobFactory(args=["100% done"])
    JobFactory(args=["100 done"])
    found = _found(admin_client, "q=100%25")
    assert percent.pk in found
    if connection.vendor == "sqlite":
        assert len(found) == 1


@pytest.mark.skipif("connection.vendor != 'postgresql'")
def test_the_search_reads_jobs_through_indexes_on_postgresql(jobs):
    """Jobs at rest through the GIN index of their words, queued and running jobs through their
    status indexes: no read walks the table."""
    # A table of some size, analyzed: the plans then are the ones a real table gets.
    Job.objects.bulk_create(
        Job(task_name="tests.testapp.tasks.add", status=JobStatus.SUCCEEDED, args=[n, n + 1])
        for n in range(5000)
    )
    plans = []
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE taskengine_job")
        cursor.execute("SET enable_seqscan = off")
        for arm in (Q(status__in=AT_REST), ACTIVE):
            sql, params = (
                Job.objects.filter(arm, JobTextMatch("ConnectionRefusedError"))
                .order_by()
                .values("pk")
                .query.sql_with_params()
            )
            cursor.execute("EXPLAIN " + sql, params)
            plans.append("\n".join(row[0] for row in cursor.fetchall()))
        cursor.execute("RESET enable_seqscan")
    at_rest, active = plans
    assert "taskengine_job_search_idx" in at_rest, at_rest
    assert "taskengine_job_claimable_idx" in active and "taskengine_job_running_idx" in active
    assert "Seq Scan" not in at_rest + active
    assert "taskengine_job_pkey" not in at_rest + active


@pytest.mark.skipif("connection.vendor != 'postgresql'")
def test_the_search_index_holds_jobs_at_rest_only(jobs):
    """Its condition is the one the at-rest read repeats: paused and finished jobs."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_get_expr(indpred, indrelid) FROM pg_index"
            " WHERE indexrelid = 'taskengine_job_search_idx'::regclass"
        )
        (predicate,) = cursor.fetchone()
    assert sorted(re.findall(r"'(\w+)'", predicate)) == sorted(AT_REST), predicate
