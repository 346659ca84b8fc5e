"""Periodic tasks: tick computation (time zones, DST, catch-up), definitions and their system
checks, the worker duty against the database, and exactly one job per tick with several worker
processes racing for it."""

from __future__ import annotations

import datetime as dt
import json
import signal
import threading

import pytest
from django.core import checks
from django.db import connection, connections
from django.test import override_settings
from django.utils import timezone

from django_taskengine import periodic as periodic_decorator
from django_taskengine import task
from django_taskengine.checks import check_periodic
from django_taskengine.models import Job, JobStatus, PeriodicTick, Schedule
from django_taskengine.operations import (
    ActionRefused,
    NotFound,
    pause_schedule,
    resume_schedule,
    run_schedule_now,
)
from django_taskengine.periodic import (
    CATCH_UP_LIMIT,
    TICKS_KEPT,
    Cron,
    ScheduleDefinition,
    definitions,
    due_ticks,
    enqueue_due_ticks,
    enqueue_schedule_ticks,
    enqueue_tick,
    prune_ticks,
    restore_declarations,
    snapshot_declarations,
    sync_schedules,
)
from django_taskengine.registry import tasks as registry
from tests.helpers import wait_for
from tests.testapp.models import LedgerEntry

UTC = dt.UTC
PARIS = "Europe/Paris"
ADD = "tests.testapp.tasks.add"
RECORD = "tests.testapp.tasks.record"


def at(*parts: int, tz: str = "UTC") -> dt.datetime:
    """An aware datetime in ``tz``, converted to UTC."""
    from zoneinfo import ZoneInfo

    return dt.datetime(*parts, tzinfo=ZoneInfo(tz)).astimezone(UTC)


def utc(*parts: int) -> dt.datetime:
    return dt.datetime(*parts, tzinfo=UTC)


def settings_with(periodic: dict, **more) -> override_settings:
    """The test settings' TASKENGINE with these schedules (and other keys)."""
    from django.conf import settings

    return override_settings(TASKENGINE={**settings.TASKENGINE, "PERIODIC": periodic, **more})


def ids(messages) -> list[str]:
    return [message.id for message in messages]


@pytest.fixture(autouse=True)
def _own_declarations():
    """A test may declare schedules (and tasks); they are forgotten afterwards."""
    declared, saved = snapshot_declarations(), registry.snapshot()
    yield
    restore_declarations(declared)
    registry.restore(saved)


# -- cron expressions: seconds, time zones, daylight saving time -------------------------


def test_five_fields_are_minutes_and_six_fields_start_with_seconds():
    every_five_minutes = Cron("*/5 * * * *", "UTC")
    every_ten_seconds = Cron("*/10 * * * * *", "UTC")
    start = utc(2024, 1, 1, 10, 2, 3)

    assert every_five_minutes.next_after(start) == utc(2024, 1, 1, 10, 5)
    assert every_ten_seconds.next_after(start) == utc(2024, 1, 1, 10, 2, 10)
    assert Cron("@hourly", "UTC").next_after(start) == utc(2024, 1, 1, 11)


def test_next_after_is_strictly_after_and_ticks_between_include_both_ends():
    every_second = Cron("* * * * * *", "UTC")
    tick = utc(2024, 1, 1, 10, 0, 0)

    assert every_second.next_after(tick) == tick + dt.timedelta(seconds=1)
    assert every_second.ticks_between(tick, tick + dt.timedelta(seconds=2), limit=10) == [
        tick,
        tick + dt.timedelta(seconds=1),
        tick + dt.timedelta(seconds=2),
    ]
    # A limit keeps the latest ticks, and costs only that many steps however long the stretch.
    assert every_second.ticks_between(tick - dt.timedelta(days=30), tick, limit=2) == [
        tick - dt.timedelta(seconds=1),
        tick,
    ]


def test_nine_in_paris_is_nine_in_paris_on_both_sides_of_the_spring_change():
    nine_in_paris = Cron("0 9 * * *", PARIS)

    ticks = nine_in_paris.ticks_between(utc(2024, 3, 29), utc(2024, 4, 2), limit=10)

    # Clocks went forward on 31 March 2024: 9:00 was 08:00 UTC before, 07:00 UTC after.
    assert ticks == [
        utc(2024, 3, 29, 8),
        utc(2024, 3, 30, 8),
        utc(2024, 3, 31, 7),
        utc(2024, 4, 1, 7),
    ]
    assert all(t.astimezone(nine_in_paris.zone).hour == 9 for t in ticks)


def test_a_time_skipped_by_the_spring_change_fires_at_the_first_minute_that_exists():
    half_past_two = Cron("30 2 * * *", PARIS)

    ticks = half_past_two.ticks_between(utc(2024, 3, 30), utc(2024, 4, 2), limit=10)

    assert ticks == [
        at(2024, 3, 30, 2, 30, tz=PARIS),
        at(2024, 3, 31, 3, 0, tz=PARIS),  # 02:30 did not exist that night
        at(2024, 4, 1, 2, 30, tz=PARIS),
    ]
    assert half_past_two.next_after(utc(2024, 3, 30, 12)) == at(2024, 3, 31, 3, 0, tz=PARIS)


def test_a_fixed_time_repeated_by_the_autumn_change_fires_once():
    half_past_two = Cron("30 2 * * *", PARIS)

    ticks = half_past_two.ticks_between(utc(2024, 10, 26, 12), utc(2024, 10, 28, 12), limit=10)

    # 02:30 happened twice on 27 October 2024 (00:30 and 01:30 UTC): the first one fires.
    assert ticks == [utc(2024, 10, 27, 0, 30), utc(2024, 10, 28, 1, 30)]
    assert half_past_two.next_after(utc(2024, 10, 27, 0, 30)) == utc(2024, 10, 28, 1, 30)


def test_an_every_half_hour_schedule_stays_regular_through_the_autumn_change():
    every_half_hour = Cron("*/30 * * * *", PARIS)

    ticks = every_half_hour.ticks_between(utc(2024, 10, 26, 23), utc(2024, 10, 27, 2), limit=20)

    assert ticks == [utc(2024, 10, 26, 23) + dt.timedelta(minutes=30 * n) for n in range(7)]


def test_bad_expressions_and_zones_are_refused():
    with pytest.raises(ValueError, match="out of range"):
        Cron("61 * * * *", "UTC")
    with pytest.raises(ValueError):
        Cron("every day", "UTC")
    with pytest.raises(Exception, match="Mars/Olympus"):
        Cron("* * * * *", "Mars/Olympus")


# -- due ticks and catch-up ---------------------------------------------------------------


def test_nothing_is_due_before_the_next_tick():
    every_minute = Cron("* * * * *", "UTC")
    next_tick = utc(2024, 1, 1, 10, 1)

    assert due_ticks(every_minute, next_tick, next_tick - dt.timedelta(seconds=1)) == (
        [],
        next_tick,
    )


def test_a_tick_is_due_at_its_very_moment():
    every_minute = Cron("* * * * *", "UTC")
    tick = utc(2024, 1, 1, 10, 1)

    assert due_ticks(every_minute, tick, tick) == ([tick], utc(2024, 1, 1, 10, 2))


def test_ticks_that_fell_due_between_two_looks_all_run_even_with_catch_up_once():
    every_second = Cron("* * * * * *", "UTC")
    first = utc(2024, 1, 1, 10, 0, 0)
    now = first + dt.timedelta(seconds=2, milliseconds=300)

    ticks, following = due_ticks(every_second, first, now, catch_up="once", missed_after=60)

    assert ticks == [first + dt.timedelta(seconds=n) for n in range(3)]
    assert following == first + dt.timedelta(seconds=3)


def test_missed_ticks_after_downtime_run_once_for_the_latest_tick():
    every_minute = Cron("* * * * *", "UTC")
    missed_since = utc(2024, 1, 1, 1, 0)
    now = utc(2024, 1, 1, 9, 30, 20)  # workers were down for eight and a half hours

    ticks, following = due_ticks(every_minute, missed_since, now, catch_up="once", missed_after=60)

    assert ticks == [utc(2024, 1, 1, 9, 30)]
    assert following == utc(2024, 1, 1, 9, 31)


def test_a_daily_tick_missed_for_a_week_runs_once():
    nightly = Cron("0 3 * * *", PARIS)
    missed_since = at(2024, 5, 1, 3, tz=PARIS)
    now = at(2024, 5, 8, 12, tz=PARIS)

    ticks, following = due_ticks(nightly, missed_since, now, catch_up="once", missed_after=60)

    assert ticks == [at(2024, 5, 8, 3, tz=PARIS)]
    assert following == at(2024, 5, 9, 3, tz=PARIS)


def test_catch_up_all_runs_every_missed_tick_oldest_first():
    hourly = Cron("0 * * * *", "UTC")

    ticks, following = due_ticks(
        hourly, utc(2024, 1, 1, 1), utc(2024, 1, 1, 5, 30), catch_up="all", missed_after=60
    )

    assert ticks == [utc(2024, 1, 1, h) for h in (1, 2, 3, 4, 5)]
    assert following == utc(2024, 1, 1, 6)


def test_catch_up_all_is_bounded_to_the_latest_ticks():
    every_minute = Cron("* * * * *", "UTC")
    now = utc(2024, 1, 8, 0, 0)

    ticks, _ = due_ticks(every_minute, utc(2024, 1, 1), now, catch_up="all", missed_after=60)

    assert len(ticks) == CATCH_UP_LIMIT
    assert ticks[-1] == now
    assert ticks[0] == now - dt.timedelta(minutes=CATCH_UP_LIMIT - 1)


def test_how_late_counts_as_missed_is_a_setting():
    every_second = Cron("* * * * * *", "UTC")
    first = utc(2024, 1, 1, 10, 0, 0)
    now = first + dt.timedelta(seconds=5)

    with override_settings(TASKENGINE={"PERIODIC_MISSED_AFTER": 2.0}):
        assert due_ticks(every_second, first, now)[0] == [now]
    with override_settings(TASKENGINE={"PERIODIC_MISSED_AFTER": 10.0}):
        assert len(due_ticks(every_second, first, now)[0]) == 6


# -- definitions: the decorator, the setting, and their checks ---------------------------


def test_the_test_apps_schedules_are_found_with_either_decorator_order():
    found = definitions()

    above = found["tests.testapp.periodic_tasks.leap_day_report"]  # @periodic above @task
    assert (above.task_name, above.cron, above.timezone, above.catch_up) == (
        "tests.testapp.periodic_tasks.leap_day_report",
        "0 4 29 2 *",
        PARIS,
        "once",
    )
    below = found["leap-day-below"]  # @periodic below @task
    assert below.task_name == "tests.testapp.periodic_tasks.leap_day_below"
    assert (below.kwargs, below.catch_up, below.timezone) == ({"label": "below"}, "all", "UTC")


def test_a_setting_defines_a_schedule_with_arguments_queue_and_priority():
    entry = {
        "task": ADD,
        "cron": "0 3 * * *",
        "args": [1],
        "kwargs": {"b": 2},
        "timezone": PARIS,
        "queue": "reports",
        "priority": 5,
        "catch_up": "all",
    }
    with settings_with({"nightly-sum": entry}):
        found = definitions()["nightly-sum"]
        assert check_periodic() == []

    assert found.row_fields() == {
        "task_name": ADD,
        "cron": "0 3 * * *",
        "timezone": PARIS,
        "args": [1],
        "kwargs": {"b": 2},
        "queue": "reports",
        "priority": 5,
        "catch_up": "all",
    }


def test_the_timezone_defaults_to_settings_time_zone():
    with (
        override_settings(TIME_ZONE="America/New_York"),
        settings_with({"sum": {"task": ADD, "cron": "0 3 * * *", "args": [1, 2]}}),
    ):
        assert definitions()["sum"].timezone == "America/New_York"


def test_periodic_without_a_cron_expression_is_refused_at_once():
    with pytest.raises(TypeError, match=r'@periodic\("\*/5 \* \* \* \*"\)'):

        @periodic_decorator  # type: ignore[arg-type]
        @task(name="tests.periodic.no_parentheses")
        def no_parentheses():
            pass


@pytest.mark.parametrize(
    "periodic, expected_id, expected_text",
    [
        ([("task", ADD)], "taskengine.E023", "must be a dict of schedule name"),
        ({"x": "0 3 * * *"}, "taskengine.E023", "must be a dict, not str"),
        ({"x": {"task": ADD}}, "taskengine.E023", "lacks 'cron'"),
        ({"x": {"task": ADD, "cron": "* * * * *", "when": 1}}, "taskengine.E023", "'when'"),
        (
            {"x": {"task": ADD, "cron": "* * * * *", "args": [1, 2], "catch_up": "some"}},
            "taskengine.E023",
            "catch_up must be 'once' or 'all'",
        ),
        (
            {"x": {"task": ADD, "cron": "* * * * *", "args": [1, 2], "priority": "high"}},
            "taskengine.E023",
            "priority",
        ),
        ({"x": {"task": ADD, "cron": "61 * * * *", "args": [1, 2]}}, "taskengine.E024", "61"),
        ({"x": {"task": ADD, "cron": "0 0 31 2 *", "args": [1, 2]}}, "taskengine.E024", "31 2"),
        ({"x": {"task": "nowhere.report", "cron": "* * * * *"}}, "taskengine.E025", "nowhere"),
        (
            {"x": {"task": ADD, "cron": "* * * * *", "args": [1, dt.date(2024, 1, 1)]}},
            "taskengine.E026",
            "datetime.date",
        ),
        ({"x": {"task": ADD, "cron": "* * * * *", "args": [1]}}, "taskengine.E026", "'b'"),
        ({"x": {"task": ADD, "cron": "* * * * *", "args": "1, 2"}}, "taskengine.E026", "list"),
        (
            {"x": {"task": ADD, "cron": "* * * * *", "args": [1, 2], "timezone": "Mars/Base"}},
            "taskengine.E027",
            "Mars/Base",
        ),
    ],
)
def test_a_bad_periodic_setting_is_a_check_error_with_a_stable_id(
    periodic, expected_id, expected_text
):
    with settings_with(periodic):
        messages = check_periodic()
        assert "x" not in definitions()

    assert ids(messages) == [expected_id]
    assert expected_text in messages[0].msg


def test_an_unknown_task_gets_a_did_you_mean_hint():
    with settings_with({"x": {"task": "tasks.add", "cron": "* * * * *", "args": [1, 2]}}):
        [message] = check_periodic()

    assert message.id == "taskengine.E025"
    assert ADD in message.hint


def test_bad_decorator_arguments_are_check_errors_too():
    @periodic_decorator("* * * * 8")
    @task(name="tests.periodic.bad_weekday")
    def bad_weekday():
        pass

    @periodic_decorator("* * * * *", args=[object()])
    @task(name="tests.periodic.not_json")
    def not_json(value):
        pass

    @periodic_decorator("* * * * *", timezone="Nowhere/Town")
    @task(name="tests.periodic.bad_zone")
    def bad_zone():
        pass

    @periodic_decorator("* * * * *")
    def not_a_task():
        pass

    messages = {message.id: message.msg for message in check_periodic()}

    assert set(messages) == {
        "taskengine.E023",
        "taskengine.E024",
        "taskengine.E026",
        "taskengine.E027",
    }
    assert "not_a_task is not a task" in messages["taskengine.E023"]
    assert "tests.periodic.bad_weekday" in messages["taskengine.E024"]
    assert "object" in messages["taskengine.E026"]
    assert "Nowhere/Town" in messages["taskengine.E027"]
    assert not {"tests.periodic.bad_weekday", "tests.periodic.not_json"} & set(definitions())


def test_two_schedules_with_one_name_are_an_error_and_neither_runs():
    @periodic_decorator("0 * * * *", name="hourly-sum", args=[1, 2])
    @periodic_decorator("30 * * * *", name="hourly-sum", args=[3, 4])
    @task(name="tests.periodic.summed")
    def summed(a, b):
        return a + b

    with settings_with({"hourly-sum": {"task": ADD, "cron": "* * * * *", "args": [1, 2]}}):
        [message] = check_periodic()
        assert "hourly-sum" not in definitions()

    assert message.id == "taskengine.E023"
    assert "3 periodic schedules are named 'hourly-sum'" in message.msg


def test_the_periodic_check_is_registered_with_django():
    with settings_with({"x": {"task": ADD, "cron": "not cron"}}):
        messages = checks.run_checks(tags=[checks.Tags.compatibility])

    assert "taskengine.E024" in ids(messages)


def test_the_missed_after_setting_is_checked():
    with override_settings(TASKENGINE={"PERIODIC_MISSED_AFTER": 0}):
        messages = checks.run_checks(tags=[checks.Tags.compatibility])

    assert "taskengine.E003" in ids(messages)


# -- the schedule rows and the worker duty (both databases) ------------------------------


def make_schedule(name: str, next_tick_at: dt.datetime | None, **fields) -> Schedule:
    """A Schedule row as a worker's sync would have made it (for definitions in a test)."""
    values = {
        "task_name": ADD,
        "cron": "* * * * *",
        "timezone": "UTC",
        "args": [1, 2],
        "kwargs": {},
        "next_tick_at": next_tick_at,
        **fields,
    }
    return Schedule.objects.create(name=name, **values)


@pytest.mark.django_db
def test_a_worker_creates_the_rows_of_its_schedules_with_their_first_tick_after_now():
    before = timezone.now()
    with settings_with({"sum": {"task": ADD, "cron": "*/5 * * * *", "args": [1, 2]}}):
        assert enqueue_due_ticks("default") == 0

    rows = {row.name: row for row in Schedule.objects.all()}
    assert set(rows) == {
        "sum",
        "tests.testapp.periodic_tasks.leap_day_report",
        "leap-day-below",
    }
    row = rows["sum"]
    assert (row.task_name, row.cron, row.args, row.paused) == (ADD, "*/5 * * * *", [1, 2], False)
    assert before < row.next_tick_at <= before + dt.timedelta(minutes=5)
    assert row.next_tick_at.minute % 5 == 0 and row.next_tick_at.second == 0
    assert row.last_tick_at is None
    assert not Job.objects.exists()


@pytest.mark.django_db
def test_sync_updates_a_changed_definition_keeps_the_pause_and_leaves_other_rows_alone():
    with settings_with({"sum": {"task": ADD, "cron": "0 3 * * *", "args": [1, 2]}}):
        sync_schedules()
    pause_schedule("sum", by="alice")
    other = make_schedule("defined-elsewhere", utc(2030, 1, 1))

    with settings_with({"sum": {"task": ADD, "cron": "0 4 * * *", "args": [5, 6]}}):
        sync_schedules()

    row = Schedule.objects.get(name="sum")
    assert (row.cron, row.args, row.paused, row.paused_by) == ("0 4 * * *", [5, 6], True, "alice")
    assert row.next_tick_at.hour == 4
    assert Schedule.objects.filter(pk=other.pk).exists()


@pytest.mark.django_db
def test_a_due_tick_becomes_one_job_and_the_schedule_moves_on():
    tick = timezone.now().replace(microsecond=0) - dt.timedelta(seconds=2)
    with settings_with({"sum": {"task": ADD, "cron": "* * * * * *", "args": [1, 2]}}):
        sync_schedules()
        Schedule.objects.filter(name="sum").update(next_tick_at=tick)
        enqueued = enqueue_due_ticks("default")

    row = Schedule.objects.get(name="sum")
    ticks = list(PeriodicTick.objects.filter(schedule=row).order_by("tick"))
    jobs = list(Job.objects.filter(task_name=ADD).order_by("run_after"))
    # The tick two seconds ago, the one a second ago, and maybe the one just now.
    assert enqueued == len(ticks) == len(jobs) >= 2
    assert ticks[0].tick == tick
    assert [t.tick for t in ticks] == [j.run_after for j in jobs]
    assert [t.job_id for t in ticks] == [j.pk for j in jobs]
    assert all(j.args == [1, 2] and j.status == JobStatus.QUEUED for j in jobs)
    assert (row.last_tick_at, row.last_job_id) == (ticks[-1].tick, jobs[-1].pk)
    assert row.next_tick_at == ticks[-1].tick + dt.timedelta(seconds=1)


@pytest.mark.django_db
def test_a_worker_with_another_definition_of_a_schedule_leaves_its_row_alone():
    """A deploy that changes a schedule's expression: a worker still running the old code must
    neither enqueue for the new definition's row nor move it to the old expression's next tick."""
    tick = timezone.now().replace(microsecond=0) - dt.timedelta(seconds=2)
    new = {"sum": {"task": ADD, "cron": "* * * * * *", "args": [1, 2]}}
    with settings_with({"sum": {**new["sum"], "cron": "0 0 1 1 *"}}):
        old_definition = definitions()["sum"]
    with settings_with(new):
        sync_schedules()
    Schedule.objects.filter(name="sum").update(next_tick_at=tick)

    row = Schedule.objects.get(name="sum")
    assert enqueue_schedule_ticks(old_definition, row, timezone.now()) == []
    assert Schedule.objects.get(name="sum").next_tick_at == tick
    assert not Job.objects.exists()
    # The workers running the row's own definition carry on from that tick.
    with settings_with(new):
        assert enqueue_due_ticks("default") >= 2
    assert Job.objects.filter(task_name=ADD).order_by("run_after").first().run_after == tick


@pytest.mark.django_db
def test_after_downtime_a_missed_tick_runs_once_by_default():
    now = timezone.now()
    with settings_with({"sum": {"task": ADD, "cron": "* * * * *", "args": [1, 2]}}):
        sync_schedules()
        Schedule.objects.filter(name="sum").update(next_tick_at=now - dt.timedelta(hours=3))
        enqueue_due_ticks("default")

    [job] = Job.objects.filter(task_name=ADD)
    assert job.run_after == now.replace(second=0, microsecond=0)


@pytest.mark.django_db
def test_after_downtime_catch_up_all_runs_each_missed_tick():
    now = timezone.now()
    entry = {"task": ADD, "cron": "*/5 * * * *", "args": [1, 2], "catch_up": "all"}
    with settings_with({"sum": entry}):
        sync_schedules()
        since = Cron("*/5 * * * *", "UTC").next_after(now - dt.timedelta(hours=1))
        Schedule.objects.filter(name="sum").update(next_tick_at=since)
        enqueue_due_ticks("default")

    run_afters = list(
        Job.objects.filter(task_name=ADD).order_by("run_after").values_list("run_after", flat=True)
    )
    assert len(run_afters) == 12
    assert run_afters[0] == since
    assert all(
        b - a == dt.timedelta(minutes=5) for a, b in zip(run_afters, run_afters[1:], strict=False)
    )


@pytest.mark.django_db
def test_a_paused_schedule_enqueues_nothing_and_resumes_from_its_next_tick():
    with settings_with({"sum": {"task": ADD, "cron": "* * * * * *", "args": [1, 2]}}):
        sync_schedules()
        paused = pause_schedule("sum", by="alice")
        an_hour_ago = timezone.now() - dt.timedelta(hours=1)
        Schedule.objects.filter(name="sum").update(next_tick_at=an_hour_ago)
        assert enqueue_due_ticks("default") == 0
        before = timezone.now()
        resumed = resume_schedule("sum")
        after = timezone.now()

    assert (paused.paused, paused.paused_by) == (True, "alice")
    assert paused.paused_at is not None
    assert not Job.objects.exists()
    assert (resumed.paused, resumed.paused_by, resumed.paused_at) == (False, "", None)
    # The hour while it was paused is skipped, not caught up: the next tick is the first
    # second after the moment of resuming, which lies somewhere between before and after.
    assert before < resumed.next_tick_at <= after + dt.timedelta(seconds=1)


@pytest.mark.django_db
def test_pausing_twice_resuming_a_running_schedule_and_unknown_names_are_refused():
    make_schedule("sum", utc(2030, 1, 1))
    pause_schedule("sum")

    with pytest.raises(ActionRefused, match="paused already"):
        pause_schedule("sum")
    resume_schedule("sum")
    with pytest.raises(ActionRefused, match="not paused"):
        resume_schedule("sum")
    with pytest.raises(NotFound, match="No periodic schedule named 'nope'. Known schedules: sum"):
        pause_schedule("nope")


@pytest.mark.django_db
def test_run_now_enqueues_one_job_that_is_not_a_tick():
    row = make_schedule("sum", utc(2030, 1, 1), queue="reports", priority=7)

    job = run_schedule_now("sum")

    assert (job.task_name, job.args, job.queue, job.priority) == (ADD, [1, 2], "reports", 7)
    assert job.run_after <= timezone.now()
    row.refresh_from_db()
    assert (row.last_tick_at, row.last_job_id, row.next_tick_at) == (None, None, utc(2030, 1, 1))
    assert not PeriodicTick.objects.exists()


@pytest.mark.django_db
def test_run_now_of_a_task_this_process_does_not_know_is_refused():
    make_schedule("gone", utc(2030, 1, 1), task_name="myapp.tasks.removed")

    with pytest.raises(ActionRefused, match="'gone' could not run: No task named"):
        run_schedule_now("gone")
    assert not Job.objects.exists()


@pytest.mark.django_db
def test_a_tick_moved_back_by_a_lagging_clock_is_not_enqueued_twice():
    # The guarantee does not rest on next_tick_at: a host whose clock lags, a resume, or a
    # changed definition may move it back over ticks already enqueued.
    tick = timezone.now().replace(microsecond=0) - dt.timedelta(seconds=1)
    with settings_with({"sum": {"task": ADD, "cron": "* * * * * *", "args": [1, 2]}}):
        sync_schedules()
        Schedule.objects.filter(name="sum").update(next_tick_at=tick)
        first = enqueue_due_ticks("default")
        Schedule.objects.filter(name="sum").update(next_tick_at=tick)
        enqueue_due_ticks("default")

    ticks = list(PeriodicTick.objects.values_list("tick", flat=True))
    assert len(ticks) == len(set(ticks)) == Job.objects.count() >= first >= 2


@pytest.mark.django_db
def test_a_failed_enqueue_rolls_the_tick_back_to_be_tried_again(monkeypatch):
    from django_taskengine.task import BoundTask

    tick = timezone.now().replace(microsecond=0) - dt.timedelta(seconds=1)
    with settings_with({"sum": {"task": ADD, "cron": "* * * * * *", "args": [1, 2]}}):
        sync_schedules()
        Schedule.objects.filter(name="sum").update(next_tick_at=tick)

        def broken(self, *args, **kwargs):
            raise RuntimeError("database hiccup")

        with monkeypatch.context() as patch:
            patch.setattr(BoundTask, "enqueue", broken)
            with pytest.raises(RuntimeError):
                enqueue_due_ticks("default")
        assert not PeriodicTick.objects.exists()
        assert Schedule.objects.get(name="sum").next_tick_at == tick
        enqueue_due_ticks("default")

    assert PeriodicTick.objects.filter(tick=tick).exists()
    assert Job.objects.filter(run_after=tick).count() == 1


@pytest.mark.django_db
def test_databases_without_on_conflict_rely_on_the_constraint_too(monkeypatch):
    row = make_schedule("sum", utc(2030, 1, 1))
    definition = _definition_for(row)
    monkeypatch.setattr(connection, "vendor", "other")

    first = enqueue_tick(row.pk, definition, utc(2024, 1, 1))
    second = enqueue_tick(row.pk, definition, utc(2024, 1, 1))

    assert first is not None and second is None
    assert Job.objects.count() == PeriodicTick.objects.count() == 1


@pytest.mark.django_db
def test_prune_keeps_the_latest_ticks_of_each_schedule():
    busy = make_schedule("busy", None)
    quiet = make_schedule("quiet", None)
    start = utc(2024, 1, 1)
    PeriodicTick.objects.bulk_create(
        [PeriodicTick(schedule=busy, tick=start + dt.timedelta(seconds=n)) for n in range(250)]
        + [PeriodicTick(schedule=quiet, tick=start + dt.timedelta(seconds=n)) for n in range(5)]
    )

    assert prune_ticks("default") == 150

    kept = list(
        PeriodicTick.objects.filter(schedule=busy).order_by("tick").values_list("tick", flat=True)
    )
    assert len(kept) == TICKS_KEPT
    assert kept[0] == start + dt.timedelta(seconds=150)
    assert PeriodicTick.objects.filter(schedule=quiet).count() == 5


def _definition_for(row: Schedule):
    return ScheduleDefinition(
        name=row.name,
        **{
            k: getattr(row, k)
            for k in (
                "task_name",
                "cron",
                "timezone",
                "args",
                "kwargs",
                "queue",
                "priority",
                "catch_up",
            )
        },
    )


# -- racing for one tick: threads, then processes on two "hosts" ----------------------------


@pytest.mark.django_db(transaction=True)
def test_eight_threads_racing_for_one_tick_enqueue_exactly_one_job():
    row = make_schedule("sum", utc(2030, 1, 1))
    definition = _definition_for(row)
    tick = utc(2024, 6, 1, 12)
    barrier = threading.Barrier(8)
    results: list[object] = []
    errors: list[BaseException] = []

    def race() -> None:
        try:
            barrier.wait()
            results.append(enqueue_tick(row.pk, definition, tick))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=race) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert errors == []
    assert len(results) == 8
    assert len([job for job in results if job is not None]) == 1
    assert Job.objects.count() == 1
    assert list(PeriodicTick.objects.values_list("tick", "job_id")) == [
        (tick, Job.objects.get().pk)
    ]


EVERY_SECOND = {
    "every-second": {
        "task": RECORD,
        "cron": "* * * * * *",
        "kwargs": {"label": "every-second"},
    }
}


def test_four_worker_processes_on_two_hosts_enqueue_exactly_one_job_per_second(start_workers):
    overrides = json.dumps({"PERIODIC": EVERY_SECOND})
    # Two "hosts": one run_workers with three processes, another with one.
    first_host = start_workers("--processes", "3", TASKENGINE_TEST_OVERRIDES=overrides)
    second_host = start_workers("--processes", "1", TASKENGINE_TEST_OVERRIDES=overrides)
    schedule = wait_for(
        lambda: Schedule.objects.filter(name="every-second").first(),
        message="a worker creates the schedule",
    )
    wait_for(
        lambda: PeriodicTick.objects.filter(schedule=schedule).count() >= 6,
        message="six ticks",
    )
    stopped_at = timezone.now()
    for host in (first_host, second_host):
        host.signal(signal.SIGTERM)
    for host in (first_host, second_host):
        assert host.wait(timeout=60) == 0, host.log()[-3000:]

    ticks = list(
        PeriodicTick.objects.filter(schedule=schedule)
        .order_by("tick")
        .values_list("tick", "job_id")
    )
    times = [tick for tick, _ in ticks]
    # No tick missed while the workers ran: one every second, from the first to the last…
    assert len(times) >= 5
    assert all(b - a == dt.timedelta(seconds=1) for a, b in zip(times, times[1:], strict=False)), (
        times
    )
    assert times[-1] >= stopped_at - dt.timedelta(seconds=2)
    # …and exactly one job per tick, each run once.
    jobs = list(Job.objects.filter(task_name=RECORD).order_by("run_after"))
    assert [job.pk for job in jobs] == [job_id for _, job_id in ticks]
    assert [job.run_after for job in jobs] == times
    assert all(job.kwargs == {"label": "every-second"} for job in jobs)
    finished = [job for job in jobs if job.status == JobStatus.SUCCEEDED]
    # The last ones may have been enqueued as the workers stopped claiming.
    assert len(finished) >= len(jobs) - 2
    ledger = list(LedgerEntry.objects.filter(label="every-second").values_list("job_id", flat=True))
    assert sorted(ledger) == sorted({*ledger}) and set(ledger) >= {job.pk for job in finished}


# -- the package's boundaries ----------------------------------------------------------------


def test_the_package_gives_the_decorator_and_the_package_the_rest():
    import importlib

    import django_taskengine

    declarations_module = importlib.import_module("django_taskengine.periodic.declarations")
    assert django_taskengine.periodic is periodic_decorator
    assert periodic_decorator is declarations_module.periodic


def test_a_cron_expression_is_parsed_once_per_zone():
    from django_taskengine.periodic import parsed_cron

    assert parsed_cron("*/5 * * * *", PARIS) is parsed_cron("*/5 * * * *", PARIS)
    assert parsed_cron("*/5 * * * *", PARIS) is not parsed_cron("*/5 * * * *", "UTC")


def test_the_tick_insert_is_a_named_sql_block():
    from django_taskengine.store.sql import query

    assert "ON CONFLICT (schedule_id, tick) DO NOTHING" in query("insert_periodic_tick")


def test_a_declaration_snapshot_restores_what_was_declared():
    saved = snapshot_declarations()

    @periodic_decorator("0 * * * *", name="tests.periodic.snapshot")
    @task(name="tests.periodic.snapshot")
    def snapshotted():
        pass

    assert len(snapshot_declarations()) == len(saved) + 1
    restore_declarations(saved)
    assert snapshot_declarations() == saved
