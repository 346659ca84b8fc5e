"""``manage.py taskengine limit``, the limits section of ``taskengine status``, and ``taskengine
why`` naming the limit that holds a job back, with real jobs started by a worker session."""

from __future__ import annotations

import json

import pytest

from django_taskengine import operations
from django_taskengine.cli.limits import limits_lines
from django_taskengine.core.flow import Policy, Usage
from django_taskengine.flow_status import FlowState
from django_taskengine.models import AuditEntry, Queue
from tests.helpers import committed_db
from tests.integration.test_cli import audited, fails, run, table_row
from tests.testapp.flow_tasks import (
    five_per_second,
    flow_step,
    per_tenant,
    per_tenant_two,
    two_at_a_time,
)

pytestmark = [pytest.mark.django_db, pytest.mark.timeout(120)]

#: What a queue row holds of its limits.
LIMIT_FIELDS = ("concurrency", "rate_limit", "runtime_limits", "limits_changed_by")


def limits_of(name: str) -> tuple:
    return Queue.objects.filter(name=name).values_list(*LIMIT_FIELDS).first()


def start(session, limit: int = 10) -> list[int]:
    """Start what the limits let start, as a worker does; the ids started."""
    session.flow.notified()  # a fresh look, whatever the worker's pacing
    return [job.id for job in session.claim(limit)]


def lines(output: str) -> list[str]:
    return output.splitlines()


@pytest.fixture
def flow_settings(settings):
    """``TASKENGINE["QUEUES"]`` limits queue "flow", and a worker has written them to its row."""
    settings.TASKENGINE = {
        **settings.TASKENGINE,
        "QUEUES": {"flow": {"concurrency": 2, "rate_limit": "5/s"}},
    }
    operations.sync_settings()
    return settings


# -- limit: set ---------------------------------------------------------------------------


def test_limit_sets_concurrency_and_rate_and_records_who_and_why():
    flow_step.enqueue()

    out, _ = run(
        "limit", "flow", "--concurrency", "3", "--rate", "14/s", "--by", "alice", "--reason", "SES"
    )

    assert lines(out)[0] == "queue flow: no limit → concurrency 3, rate 14/s"
    assert "  set at runtime: concurrency 3, rate 14/s (overrides the setting" in out
    assert limits_of("flow") == (3, "14/s", {"concurrency": 3, "rate_limit": "14/s"}, "alice")
    assert audited() == [("set_queue_limits", "flow", "alice", "cli", "SES")]


def test_limit_none_lifts_a_knob_whatever_the_setting_says(flow_settings):
    out, _ = run("limit", "flow", "--concurrency", "none", "--by", "bob")

    assert lines(out)[0] == "queue flow: concurrency 2, rate 5/s → rate 5/s"
    assert "  from settings:  concurrency 2, rate 5/s" in lines(out)
    assert "  set at runtime: concurrency none (no limit) (overrides" in out
    assert limits_of("flow") == (None, "5/s", {"concurrency": None}, "bob")


def test_limit_setting_clears_the_runtime_value(flow_settings):
    run("limit", "flow", "--concurrency", "7", "--rate", "NONE")
    assert limits_of("flow")[:3] == (7, "", {"concurrency": 7, "rate_limit": None})

    out, _ = run("limit", "flow", "--concurrency", "setting", "--rate", "Setting")

    assert lines(out)[0] == "queue flow: concurrency 7 → concurrency 2, rate 5/s"
    assert "  set at runtime: none (the settings apply)" in lines(out)
    assert limits_of("flow")[:3] == (2, "5/s", {})


def test_limit_changes_one_knob_and_leaves_the_other(flow_settings):
    run("limit", "flow", "--rate", "100/m")
    assert limits_of("flow")[:3] == (2, "100/m", {"rate_limit": "100/m"})


# -- limit: show --------------------------------------------------------------------------


@committed_db
def test_limit_alone_shows_the_limits_where_they_come_from_and_their_usage(flow_settings, session):
    operations.set_queue_limits("flow", rate_limit="10/m", by="bob")
    flow_step.enqueue()
    flow_step.enqueue()
    flow_step.enqueue()
    assert len(start(session)) == 2
    before = list(AuditEntry.objects.values_list("id", flat=True))

    out, _ = run("limit", "flow")

    assert lines(out)[:4] == [
        "Queue 'flow', limits for every worker on every host:",
        "  in force:       concurrency 2, rate 10/m",
        "  from settings:  concurrency 2, rate 5/s",
        "  set at runtime: rate 10/m (overrides the setting until cleared with 'setting')",
    ]
    assert lines(out)[4].startswith("  last changed:   by bob at ")
    assert lines(out)[5] == (
        "  now:            concurrency 2/2 running, rate 10/m: 2 starts in the last minute"
    )
    assert list(AuditEntry.objects.values_list("id", flat=True)) == before


def test_limit_alone_on_a_queue_without_limits():
    flow_step.enqueue()

    out, _ = run("limit", "flow")

    assert "  in force:       no limit" in lines(out)
    assert "  set at runtime: none (the settings apply)" in lines(out)
    assert "  now:            nothing to count" in lines(out)
    assert not any(line.startswith("  last changed:") for line in lines(out))


def test_limit_shows_a_setting_no_worker_has_written_yet(settings):
    settings.TASKENGINE = {**settings.TASKENGINE, "QUEUES": {"emails": {"rate_limit": "14/s"}}}

    out, _ = run("limit", "emails")

    assert (
        "  from settings:  none (this process's TASKENGINE['QUEUES'] says rate 14/s: workers "
        "write it as they start)"
    ) in lines(out)
    assert not Queue.objects.filter(name="emails").exists()


# -- limit: refusals ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--concurrency", "0"], "--concurrency '0' is not a number of jobs: give N (at least 1)"),
        (["--concurrency", "1.5"], "--concurrency '1.5' is not a number of jobs"),
        (["--concurrency", "many"], "none (no limit) or setting (clear the runtime value"),
        (["--concurrency", str(2**31)], "is not a number of jobs"),
        (["--rate", "14"], "--rate must be written N/s, N/m or N/h"),
        (["--rate", "14/d"], "not '14/d'; or none (no limit) or setting"),
        (["--rate", "0/s"], "--rate: N must be between 1 and 100000, not 0"),
        (["--concurrency", "3", "--rate", "fast"], "--rate must be written"),
        (["--by", "x" * 151, "--concurrency", "3"], "--by is at most 150 characters"),
    ],
)
def test_limit_with_a_bad_value_changes_nothing(args, expected):
    flow_step.enqueue()
    before = limits_of("flow")

    message, out, _ = fails("limit", "flow", *args)

    assert expected in message
    assert message.endswith("Nothing was changed.")
    assert out == ""
    assert limits_of("flow") == before
    assert not AuditEntry.objects.exists()


def test_limit_of_an_unknown_queue_is_refused_unless_created():
    flow_step.enqueue()

    message, _, _ = fails("limit", "flwo", "--concurrency", "1")

    assert message == (
        "No queue named 'flwo'. Known queues: flow. Check the spelling, or pass --create to "
        "limit a queue that has no jobs yet. Nothing was changed."
    )
    assert not Queue.objects.filter(name="flwo").exists()
    assert fails("limit", "flwo")[0] == "No queue named 'flwo'. Known queues: flow."

    out, _ = run("limit", "flwo", "--concurrency", "1", "--create")

    assert lines(out)[0] == "queue flwo: new queue → concurrency 1"
    assert limits_of("flwo")[0] == 1


def test_a_queue_known_from_the_settings_can_be_limited_before_its_first_job(settings):
    settings.TASKENGINE = {**settings.TASKENGINE, "QUEUES": {"emails": {"concurrency": 4}}}

    run("limit", "emails", "--rate", "14/s")

    assert limits_of("emails")[:3] == (None, "14/s", {"rate_limit": "14/s"})


def test_limit_refuses_a_blank_queue_name():
    message, _, _ = fails("limit", " ", "--concurrency", "1")
    assert message == "' ' is not a queue name (1 to 100 characters). Nothing was changed."


# -- status ---------------------------------------------------------------------------------


@committed_db
def test_status_shows_queue_and_task_limits_with_what_they_count(session):
    operations.set_queue_limits("flow", concurrency=5, rate_limit="100/h", by="alice")
    for _ in range(3):
        flow_step.enqueue()
    for _ in range(3):
        two_at_a_time.enqueue()
    per_tenant.using(group="a").enqueue()
    per_tenant.using(group="a").enqueue()
    per_tenant.using(group="b").enqueue()
    assert len(start(session)) == 3 + 2 + 2

    out, _ = run("status")

    assert table_row(out, "flow")[3] == "3"  # the table is as it was: RUNNING
    assert (
        "  flow: concurrency 3/5 running, rate 100/h: 3 starts in the last hour "
        "(set at runtime by alice)"
    ) in lines(out)
    assert "Queue limits (fleet-wide):" in lines(out)
    assert "Task limits (fleet-wide):" in lines(out)
    assert f"  {two_at_a_time.name}: concurrency 2/2 running" in lines(out)
    assert f"  {five_per_second.name}: rate 5/s: 0 starts in the last second" in lines(out)
    assert (
        f"  {per_tenant.name}: group concurrency 1: 2 groups running now ('a' 1/1, 'b' 1/1)"
    ) in lines(out)
    assert f"  {per_tenant_two.name}: group concurrency 2: no group running now" in lines(out)


@committed_db
def test_status_json_gives_limits_and_usage(session):
    operations.set_queue_limits("flow", concurrency=1)
    flow_step.enqueue()
    flow_step.enqueue()
    per_tenant.using(group="tenant-42").enqueue()
    start(session)

    data = json.loads(run("status", "--json")[0])

    queues = {q["name"]: q for q in data["queues"]}
    assert queues["flow"]["limits"] == {
        "concurrency": 1,
        "running": 1,
        "rate_limit": None,
        "recent_starts": 0,
        "next_start_in_seconds": None,
    }
    assert queues["default"]["limits"] is None
    assert data["task_limits"][per_tenant.name] == {
        "limits": None,
        "group_concurrency": 1,
        "groups_running": {"tenant-42": 1},
    }
    assert data["task_limits"][five_per_second.name]["limits"]["rate_limit"] == "5/s"


def test_status_without_any_limit_says_so():
    assert limits_lines(FlowState(Policy(), Usage(now=0.0)), {}) == ["Queue and task limits: none"]


# -- why ------------------------------------------------------------------------------------


def why_lines(job_id: int) -> list[str]:
    return lines(run("why", str(job_id))[0])


@committed_db
def test_why_names_a_queue_limit_with_its_count(session):
    operations.set_queue_limits("flow", concurrency=1)
    first, second = flow_step.enqueue(), flow_step.enqueue()
    assert start(session) == [first.id]

    assert "- The limit of queue 'flow' is reached: concurrency 1/1 running." in why_lines(
        second.id
    )
    data = json.loads(run("why", str(second.id), "--json")[0])
    assert "flow_limit" in [reason["code"] for reason in data["reasons"]]


@committed_db
def test_why_names_a_task_limit_with_its_count(session):
    jobs = [two_at_a_time.using(queue=name).enqueue() for name in ("a", "b", "c")]
    assert sorted(start(session)) == [jobs[0].id, jobs[1].id]

    assert (
        f"- The limit of task '{two_at_a_time.name}' is reached: concurrency 2/2 running."
        in why_lines(jobs[2].id)
    )


@committed_db
def test_why_names_a_group_limit_with_its_count(session):
    first = per_tenant.using(group="tenant-42").enqueue()
    second = per_tenant.using(group="tenant-42").enqueue()
    other = per_tenant.using(group="tenant-7").enqueue()
    assert sorted(start(session)) == [first.id, other.id]

    assert (
        f"- The limit of group 'tenant-42' of task {per_tenant.name} is reached: "
        "concurrency 1/1 running." in why_lines(second.id)
    )


@committed_db
def test_why_names_a_rate_limit_with_its_count_and_the_next_start(session):
    operations.set_queue_limits("flow", rate_limit="1/m")
    first, second = flow_step.enqueue(), flow_step.enqueue()
    assert start(session) == [first.id]

    [reason] = [line for line in why_lines(second.id) if "limit" in line]
    assert reason.startswith(
        "- The limit of queue 'flow' is reached: rate 1/m: 1 start in the last minute (full: "
        "the next start in "
    )


@committed_db
def test_why_names_the_sequence_member_that_goes_first(session):
    first = flow_step.using(sequence="order-17").enqueue()
    second = flow_step.using(sequence="order-17").enqueue()
    assert start(session) == [first.id]

    assert (
        f"- Sequence 'order-17' runs one job at a time in enqueue order: job {first.id} "
        "(running) goes first."
    ) in why_lines(second.id)


@committed_db
def test_why_names_no_limit_once_the_job_may_start(session):
    operations.set_queue_limits("flow", concurrency=1)
    first, second = flow_step.enqueue(), flow_step.enqueue()
    assert start(session) == [first.id]
    operations.set_queue_limits("flow", concurrency=2)

    assert not any("limit" in line for line in why_lines(second.id))
