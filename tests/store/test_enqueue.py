"""Enqueueing: the Job it returns, options and defaults, validation before any write,
transactional visibility, queue rows, and ``bulk_enqueue``."""

from __future__ import annotations

import datetime as dt
import math
import threading
import uuid
import zoneinfo

import pytest
from django.db import connection, transaction
from django.test import override_settings
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from django_taskengine import NotJSONError, task
from django_taskengine.conf import taskengine_settings
from django_taskengine.models import Job, JobStatus, Queue
from tests.helpers import committed_db
from tests.testapp.tasks import add, record

pytestmark = pytest.mark.django_db


@task(queue="emails", priority=10, max_attempts=5, retry_backoff=2.0, timeout=30)
def send_welcome(user_id):
    return user_id


@task
def anything(*args, **kwargs):
    return None


class Boom(Exception):
    pass


def job_inserts(queries) -> int:
    return sum(
        1 for q in queries if "INSERT INTO taskengine_job " in q["sql"].replace('"', "") + " "
    )


def fresh_queue_name() -> str:
    # The store remembers queues it has committed; a new name per test keeps that out of play.
    return f"q-{uuid.uuid4().hex[:12]}"


def seen_from_another_connection(job_id: int) -> bool:
    """Whether a different database connection (another thread's) sees the job."""
    seen: dict[str, bool] = {}

    def look() -> None:
        try:
            seen["job"] = Job.objects.filter(pk=job_id).exists()
        finally:
            connection.close()

    thread = threading.Thread(target=look)
    thread.start()
    thread.join(timeout=20)
    assert not thread.is_alive(), "the other connection blocked"
    return seen["job"]


# -- the returned job -------------------------------------------------------------------------


def test_enqueue_returns_a_saved_queued_job():
    job = add.enqueue(2, b=3)
    assert isinstance(job, Job)
    assert job.pk is not None
    assert job.status == JobStatus.QUEUED
    assert job.created is True
    saved = Job.objects.get(pk=job.pk)
    assert saved.task_name == "tests.testapp.tasks.add"
    assert saved.status == "queued"
    assert saved.args == [2]
    assert saved.kwargs == {"b": 3}
    assert saved.attempts == 0
    assert saved.result is None
    assert saved.started_at is None and saved.finished_at is None
    assert saved.token is None and saved.worker_id is None


_CONCRETE_FIELDS = [f.attname for f in Job._meta.concrete_fields]


@pytest.mark.parametrize(
    "enqueue",
    [
        pytest.param(lambda: send_welcome.enqueue(1), id="one job"),
        pytest.param(lambda: add.enqueue(1, 2), id="one job, task defaults"),
        pytest.param(
            lambda: send_welcome.using(
                run_after=dt.datetime(
                    2030, 6, 1, 9, 30, 0, 123456, tzinfo=zoneinfo.ZoneInfo("Europe/Paris")
                )
            ).enqueue(user_id=1),
            id="one job, run_after in another time zone",
        ),
        pytest.param(lambda: send_welcome.using(run_after=90).enqueue(1), id="one job, delayed"),
        pytest.param(lambda: send_welcome.using(dedup_key="welcome:1").enqueue(1), id="dedup key"),
        pytest.param(lambda: send_welcome.bulk_enqueue([((1,), {}), ((2,), {})])[1], id="bulk"),
    ],
)
def test_returned_job_matches_the_stored_row(enqueue):
    job = enqueue()
    saved = Job.objects.get(pk=job.pk)
    for field in _CONCRETE_FIELDS:
        assert getattr(job, field) == getattr(saved, field), field
    assert job.created_at.utcoffset() == dt.timedelta(0)
    assert job._state.adding is False and job._state.db == saved._state.db
    assert job.created is True


@pytest.mark.parametrize(
    "enqueue", [lambda: add.enqueue(1, 2), lambda: add.bulk_enqueue([((1, 2), {})])[0]]
)
def test_returned_job_has_naive_times_without_time_zone_support(enqueue):
    add.enqueue(0, 0)  # with time zone support: a cursor kept from this one must not be reused
    with (
        override_settings(USE_TZ=False, TIME_ZONE="Europe/Paris"),
        timezone.override("America/New_York"),
    ):
        job = enqueue()
        saved = Job.objects.get(pk=job.pk)
    assert timezone.is_naive(saved.created_at)
    assert job.created_at == saved.created_at and job.run_after == saved.run_after


def test_returned_job_can_be_refreshed_and_saved():
    job = add.enqueue(1, 2)
    job.refresh_from_db()
    job.priority = 5
    job.save(update_fields=["priority"])
    assert Job.objects.get(pk=job.pk).priority == 5


def test_run_after_defaults_to_now():
    before = timezone.now()
    job = add.enqueue(1, 2)
    after = timezone.now()
    run_after = Job.objects.get(pk=job.pk).run_after
    # PostgreSQL uses the transaction's now(), which may precede `before` by the test's age.
    assert before - dt.timedelta(seconds=60) <= run_after <= after


@pytest.mark.parametrize(
    "value",
    [
        0,
        -7,
        2**62,
        1.5,
        "ü€😀 text",
        "",
        None,
        True,
        [],
        {},
        [1, [2, [3, {"four": [None, False]}]]],
        {"nested": {"list": [1.25, "x"], "empty": {}}},
    ],
)
def test_arguments_round_trip_through_json(value):
    job = anything.enqueue(value, key=value)
    saved = Job.objects.get(pk=job.pk)
    assert saved.args == [value]
    assert saved.kwargs == {"key": value}
    assert job.args == [value]


def test_tuples_are_stored_as_lists():
    job = anything.enqueue((1, (2, 3)))
    assert Job.objects.get(pk=job.pk).args == [[1, [2, 3]]]


@pytest.mark.parametrize("text", ["NUL \x00 inside", "lone surrogate \ud800"])
def test_a_string_the_database_cannot_store_is_refused_before_writing_or_round_trips(text):
    # Python's json accepts these, PostgreSQL's jsonb does not: the caller must get a
    # NotJSONError naming the argument, not a database error that aborts their transaction.
    try:
        with transaction.atomic():
            job = anything.enqueue("fine", text)
    except NotJSONError as exc:
        assert "positional argument 1" in str(exc)
        assert not Job.objects.exists()
    else:
        assert Job.objects.get(pk=job.pk).args == ["fine", text]


# -- defaults and options -------------------------------------------------------------------


def test_task_options_are_the_job_defaults():
    job = send_welcome.enqueue(42)
    saved = Job.objects.get(pk=job.pk)
    assert saved.queue == "emails"
    assert saved.priority == 10
    assert saved.max_attempts == 5
    assert saved.retry_backoff == 2.0
    assert saved.timeout == 30.0


def test_a_task_without_options_uses_the_documented_defaults():
    saved = Job.objects.get(pk=add.enqueue(1, 2).pk)
    assert saved.queue == "default"
    assert saved.priority == 0
    assert saved.max_attempts == 3
    assert saved.retry_backoff == 1.0
    assert saved.timeout is None


SETTINGS_DEFAULTS = {
    "DEFAULT_QUEUE": "bulk",
    "DEFAULT_PRIORITY": 7,
    "DEFAULT_MAX_ATTEMPTS": 9,
    "DEFAULT_RETRY_BACKOFF": 0.5,
}


@override_settings(TASKENGINE=SETTINGS_DEFAULTS)
def test_taskengine_settings_supply_defaults_for_tasks_without_options():
    saved = Job.objects.get(pk=add.enqueue(1, 2).pk)
    assert saved.queue == "bulk"
    assert saved.priority == 7
    assert saved.max_attempts == 9
    assert saved.retry_backoff == 0.5


@override_settings(TASKENGINE=SETTINGS_DEFAULTS)
def test_task_options_win_over_taskengine_settings():
    saved = Job.objects.get(pk=send_welcome.enqueue(1).pk)
    assert (saved.queue, saved.priority, saved.max_attempts, saved.retry_backoff) == (
        "emails",
        10,
        5,
        2.0,
    )


def test_using_overrides_every_option():
    run_after = timezone.now() + dt.timedelta(minutes=5)
    job = send_welcome.using(
        dedup_key="welcome:42", run_after=run_after, priority=50, queue="vip", max_attempts=8
    ).enqueue(42)
    saved = Job.objects.get(pk=job.pk)
    assert saved.dedup_key == "welcome:42"
    assert saved.run_after == run_after
    assert saved.priority == 50
    assert saved.queue == "vip"
    assert saved.max_attempts == 8
    assert saved.args == [42]


def test_using_priority_zero_overrides_a_task_priority():
    assert Job.objects.get(pk=send_welcome.using(priority=0).enqueue(1).pk).priority == 0


def test_using_can_be_chained_and_does_not_change_the_task():
    bound = send_welcome.using(queue="vip").using(priority=-5)
    saved = Job.objects.get(pk=bound.enqueue(1).pk)
    assert (saved.queue, saved.priority) == ("vip", -5)
    plain = Job.objects.get(pk=send_welcome.enqueue(2).pk)
    assert (plain.queue, plain.priority) == ("emails", 10)


def test_run_after_accepts_an_aware_datetime_in_any_time_zone():
    when = dt.datetime(2030, 6, 1, 9, 30, tzinfo=zoneinfo.ZoneInfo("Europe/Paris"))
    saved = Job.objects.get(pk=add.using(run_after=when).enqueue(1, 2).pk)
    assert saved.run_after == when
    assert saved.run_after == dt.datetime(2030, 6, 1, 7, 30, tzinfo=dt.UTC)


@pytest.mark.parametrize(
    ("value", "seconds"),
    [(dt.timedelta(minutes=5), 300.0), (90, 90.0), (2.5, 2.5), (0, 0.0)],
)
def test_run_after_accepts_a_delay_from_now(value, seconds):
    before = timezone.now()
    job = add.using(run_after=value).enqueue(1, 2)
    after = timezone.now()
    run_after = Job.objects.get(pk=job.pk).run_after
    delay = dt.timedelta(seconds=seconds)
    assert before + delay <= run_after <= after + delay


def test_a_naive_run_after_is_refused():
    with pytest.raises(ValueError) as excinfo:
        add.using(run_after=dt.datetime(2030, 1, 1, 12, 0))
    assert "naive" in str(excinfo.value)
    assert "tests.testapp.tasks.add" in str(excinfo.value)
    assert not Job.objects.exists()


@pytest.mark.parametrize(
    ("options", "error", "fragment"),
    [
        ({"run_after": "tomorrow"}, TypeError, "run_after must be an aware datetime"),
        ({"run_after": True}, TypeError, "run_after"),
        ({"run_after": dt.date(2030, 1, 1)}, TypeError, "run_after"),
        ({"priority": "high"}, TypeError, "priority"),
        ({"priority": 1.5}, TypeError, "priority"),
        ({"priority": True}, TypeError, "priority"),
        ({"max_attempts": 0}, ValueError, "max_attempts must be at least 1"),
        ({"max_attempts": "5"}, TypeError, "max_attempts"),
        ({"queue": ""}, ValueError, "queue must be a non-empty string"),
        ({"queue": 5}, ValueError, "queue must be a non-empty string"),
        ({"queue": "q" * 101}, ValueError, "at most 100 characters"),
        ({"dedup_key": ""}, ValueError, "dedup_key must be a non-empty string"),
        ({"dedup_key": "k" * 256}, ValueError, "at most 255 characters"),
    ],
)
def test_bad_options_raise_clear_errors_and_write_nothing(options, error, fragment):
    with CaptureQueriesContext(connection) as queries:
        with pytest.raises(error) as excinfo:
            add.using(**options).enqueue(1, 2)
    assert fragment in str(excinfo.value)
    assert "tests.testapp.tasks.add" in str(excinfo.value)
    assert len(queries) == 0
    assert not Job.objects.exists()


def test_the_longest_allowed_queue_and_dedup_key_are_stored():
    job = add.using(queue="q" * 100, dedup_key="k" * 255).enqueue(1, 2)
    saved = Job.objects.get(pk=job.pk)
    assert (saved.queue, saved.dedup_key) == ("q" * 100, "k" * 255)


@pytest.mark.parametrize("priority", [2**31, -(2**31) - 1])
def test_a_priority_outside_the_32_bit_column_is_refused_before_writing(priority):
    # The column is a 32-bit integer (and TASKENGINE's DEFAULT_PRIORITY is checked to fit):
    # a larger value must be a clear error, not a database error on PostgreSQL and a silently
    # stored value on SQLite.
    with CaptureQueriesContext(connection) as queries:
        with pytest.raises(ValueError, match="priority"):
            add.using(priority=priority).enqueue(1, 2)
    assert len(queries) == 0


# -- validation before anything is written --------------------------------------------------


NOT_JSON = [
    pytest.param(object(), "builtins.object", id="object"),
    pytest.param(dt.datetime(2024, 1, 1, tzinfo=dt.UTC), "datetime.datetime", id="datetime"),
    pytest.param({1, 2}, "builtins.set", id="set"),
    pytest.param(math.nan, "nan", id="nan"),
    pytest.param(math.inf, "inf", id="inf"),
    pytest.param({1: "one"}, "has a key 1 of type int", id="int-key"),
    pytest.param([1, [2, {"x": [object()]}]], "[1][1]['x'][0]", id="nested"),
]


@pytest.mark.parametrize(("value", "fragment"), NOT_JSON)
def test_a_non_json_positional_argument_is_named_and_nothing_is_written(value, fragment):
    with CaptureQueriesContext(connection) as queries:
        with pytest.raises(NotJSONError) as excinfo:
            anything.enqueue("fine", value)
    message = str(excinfo.value)
    assert "positional argument 1" in message
    assert fragment in message
    assert "anything" in message
    assert isinstance(excinfo.value, TypeError)
    assert len(queries) == 0
    assert Job.objects.count() == 0


@pytest.mark.parametrize(("value", "fragment"), NOT_JSON)
def test_a_non_json_keyword_argument_is_named_and_nothing_is_written(value, fragment):
    with CaptureQueriesContext(connection) as queries:
        with pytest.raises(NotJSONError) as excinfo:
            anything.enqueue(payload=value)
    assert "argument 'payload'" in str(excinfo.value)
    assert fragment in str(excinfo.value)
    assert len(queries) == 0
    assert Job.objects.count() == 0


def test_a_failed_enqueue_leaves_the_callers_transaction_usable():
    with transaction.atomic():
        with pytest.raises(NotJSONError):
            anything.enqueue(object())
        job = anything.enqueue(1)
    assert Job.objects.get().pk == job.pk


@pytest.mark.parametrize(
    ("args", "kwargs", "fragment"),
    [
        ((1,), {}, "missing a required argument: 'b'"),
        ((1, 2, 3), {}, "too many positional arguments"),
        ((1, 2), {"c": 3}, "unexpected keyword argument 'c'"),
        ((1,), {"a": 2}, "multiple values for argument 'a'"),
    ],
)
def test_arguments_that_do_not_fit_the_signature_raise_type_error_and_write_nothing(
    args, kwargs, fragment
):
    with CaptureQueriesContext(connection) as queries:
        with pytest.raises(TypeError) as excinfo:
            add.enqueue(*args, **kwargs)
    message = str(excinfo.value)
    assert "tests.testapp.tasks.add(a, b)" in message
    assert fragment in message
    assert "Nothing was enqueued" in message
    assert len(queries) == 0
    assert Job.objects.count() == 0


def test_the_context_parameter_is_not_an_enqueue_argument():
    job = record.enqueue("label", 0.5)
    assert Job.objects.get(pk=job.pk).args == ["label", 0.5]
    with pytest.raises(TypeError, match="too many positional arguments"):
        record.enqueue("ctx", "label", 0.5)
    assert Job.objects.count() == 1


# -- transactions ---------------------------------------------------------------------------


@committed_db
def test_an_enqueue_rolled_back_with_its_transaction_leaves_no_job():
    with pytest.raises(Boom):
        with transaction.atomic():
            job = add.enqueue(1, 2)
            assert Job.objects.filter(pk=job.pk).exists()
            raise Boom
    assert not Job.objects.exists()


@committed_db
def test_an_enqueue_rolled_back_with_a_savepoint_leaves_no_job():
    with transaction.atomic():
        kept = add.enqueue(1, 2)
        with pytest.raises(Boom):
            with transaction.atomic():
                add.enqueue(3, 4)
                raise Boom
    assert list(Job.objects.values_list("pk", flat=True)) == [kept.pk]


@committed_db
def test_an_enqueued_job_is_invisible_to_other_connections_until_commit():
    with transaction.atomic():
        job = add.enqueue(1, 2)
        assert not seen_from_another_connection(job.pk)
    assert seen_from_another_connection(job.pk)


@committed_db
def test_enqueue_outside_a_transaction_is_visible_at_once():
    job = add.enqueue(1, 2)
    assert seen_from_another_connection(job.pk)


@committed_db
def test_notify_is_sent_at_commit_not_before():
    if connection.vendor != "postgresql":
        pytest.skip("LISTEN/NOTIFY is PostgreSQL only; SQLite workers poll")
    import psycopg

    params = dict(connection.get_connection_params())
    for key in ("cursor_factory", "pool", "context"):
        params.pop(key, None)
    with psycopg.connect(**params, autocommit=True) as listener:
        channel = taskengine_settings.NOTIFY_CHANNEL
        listener.execute(f'LISTEN "{channel}"')
        with transaction.atomic():
            add.using(queue="emails-notify").enqueue(1, 2)
            assert list(listener.notifies(timeout=0.3, stop_after=1)) == []
        notes = list(listener.notifies(timeout=5, stop_after=1))
        assert [(n.channel, n.payload) for n in notes] == [(channel, "emails-notify")]
        # A job that is not due yet wakes nobody.
        add.using(run_after=3600).enqueue(1, 2)
        assert list(listener.notifies(timeout=0.3, stop_after=1)) == []


@committed_db
def test_a_new_queue_gets_its_row_on_first_use():
    name = fresh_queue_name()
    assert not Queue.objects.filter(name=name).exists()
    add.using(queue=name).enqueue(1, 2)
    queue = Queue.objects.get(name=name)
    assert queue.paused is False


@committed_db
def test_a_queue_row_is_inserted_once_not_on_every_enqueue():
    name = fresh_queue_name()
    add.using(queue=name).enqueue(1, 2)
    with CaptureQueriesContext(connection) as queries:
        add.using(queue=name).enqueue(3, 4)
    assert not [q for q in queries if "taskengine_queue" in q["sql"]]
    assert Queue.objects.filter(name=name).count() == 1


@committed_db
def test_a_rolled_back_enqueue_does_not_stop_the_next_one_creating_the_queue_row():
    name = fresh_queue_name()
    with pytest.raises(Boom):
        with transaction.atomic():
            add.using(queue=name).enqueue(1, 2)
            assert Queue.objects.filter(name=name).exists()
            raise Boom
    assert not Queue.objects.filter(name=name).exists()
    add.using(queue=name).enqueue(1, 2)
    assert Queue.objects.filter(name=name).exists()


@committed_db
def test_a_savepoint_rolled_back_inside_a_committed_transaction_does_not_hide_the_queue():
    name = fresh_queue_name()
    with transaction.atomic():
        with pytest.raises(Boom):
            with transaction.atomic():
                add.using(queue=name).enqueue(1, 2)
                raise Boom
    assert not Queue.objects.filter(name=name).exists()
    add.using(queue=name).enqueue(1, 2)
    assert Queue.objects.filter(name=name).exists()


# -- bulk_enqueue ---------------------------------------------------------------------------


def test_bulk_enqueue_inserts_500_jobs_in_one_statement():
    if connection.vendor == "sqlite":
        pytest.skip(
            "Django limits an SQLite statement to 999 parameters, so bulk_create batches; "
            "see test_bulk_enqueue_on_sqlite_uses_as_few_statements_as_django_allows"
        )
    with CaptureQueriesContext(connection) as queries:
        jobs = add.bulk_enqueue([((i, i), {}) for i in range(500)])
    assert len(jobs) == 500
    assert job_inserts(queries) == 1
    assert len(queries) <= 3
    assert Job.objects.count() == 500


def test_bulk_enqueue_on_sqlite_uses_as_few_statements_as_django_allows():
    if connection.vendor != "sqlite":
        pytest.skip("PostgreSQL inserts them in one statement (tested above)")
    fields = [f for f in Job._meta.concrete_fields if not f.primary_key]
    batch = connection.ops.bulk_batch_size(fields, [None] * 500)
    with CaptureQueriesContext(connection) as queries:
        jobs = add.bulk_enqueue([((i, i), {}) for i in range(500)])
    assert len(jobs) == 500
    assert batch > 1
    assert job_inserts(queries) == math.ceil(500 / batch)


def test_bulk_enqueue_preserves_order_and_returns_ids():
    calls = [((i,), {"b": -i}) for i in range(50)]
    jobs = add.bulk_enqueue(calls)
    ids = [job.pk for job in jobs]
    assert all(isinstance(pk, int) for pk in ids)
    assert ids == sorted(ids) and len(set(ids)) == 50
    assert [(job.args, job.kwargs) for job in jobs] == [([i], {"b": -i}) for i in range(50)]
    stored = {row.pk: (row.args, row.kwargs) for row in Job.objects.all()}
    assert [stored[pk] for pk in ids] == [([i], {"b": -i}) for i in range(50)]
    assert all(job.created and job.status == "queued" for job in jobs)


def test_bulk_enqueue_accepts_any_iterable():
    jobs = add.bulk_enqueue(((i, i), {}) for i in range(3))
    assert [job.args for job in jobs] == [[0, 0], [1, 1], [2, 2]]


def test_bulk_enqueue_of_nothing_returns_an_empty_list_without_queries():
    with CaptureQueriesContext(connection) as queries:
        assert add.bulk_enqueue([]) == []
    assert len(queries) == 0


def test_bulk_enqueue_applies_options_to_every_job():
    jobs = send_welcome.using(queue="vip", priority=3, run_after=60).bulk_enqueue(
        [((1,), {}), ((2,), {})]
    )
    stored = Job.objects.filter(pk__in=[j.pk for j in jobs])
    assert {(j.queue, j.priority, j.max_attempts) for j in stored} == {("vip", 3, 5)}
    assert all(j.run_after > timezone.now() + dt.timedelta(seconds=50) for j in stored)


def test_one_bad_call_in_a_bulk_enqueue_writes_nothing():
    calls = [((1, 2), {}), ((3, 4), {}), ((5, object()), {}), ((7, 8), {})]
    with CaptureQueriesContext(connection) as queries:
        with pytest.raises(NotJSONError, match="positional argument 1"):
            add.bulk_enqueue(calls)
    assert len(queries) == 0
    assert Job.objects.count() == 0


def test_one_call_with_the_wrong_arity_in_a_bulk_enqueue_writes_nothing():
    with pytest.raises(TypeError, match="Nothing was enqueued"):
        add.bulk_enqueue([((1, 2), {}), ((1,), {})])
    assert Job.objects.count() == 0


@pytest.mark.parametrize("call", [((1, 2),), (1, 2), 5, ((1,), {}, "extra")])
def test_bulk_enqueue_explains_the_shape_it_expects(call):
    with pytest.raises(TypeError, match=r"takes \(args, kwargs\) pairs"):
        add.bulk_enqueue([call])
    assert Job.objects.count() == 0


@pytest.mark.parametrize(
    ("module", "arguments"),
    [("0008_enqueue_function", 10), ("0009_job_uid_audit_entry", 11), ("0016_flow_control", 14)],
    ids=["v1", "v2", "v3"],
)
def test_an_enqueue_function_migration_drops_exactly_what_it_creates(module, arguments):
    """Each version's migration backwards removes the function it created (its DROP names the
    same argument types) and no other version, and forwards again restores it; enqueue works."""
    if connection.vendor != "postgresql":
        pytest.skip("the enqueue function exists on PostgreSQL only")
    import importlib

    migration = importlib.import_module(f"django_taskengine.migrations.{module}")
    (operation,) = [
        op for op in migration.Migration.operations if _runs_block(op, "create_enqueue_function")
    ]

    def versions():
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT pronargs FROM pg_proc WHERE proname = 'taskengine_enqueue_job' "
                "ORDER BY pronargs"
            )
            return [row[0] for row in cursor.fetchall()]

    assert versions() == [10, 11, 14]
    with transaction.atomic():
        with connection.schema_editor(atomic=False) as editor:
            operation.reverse_code(None, editor)
            assert versions() == [n for n in (10, 11, 14) if n != arguments]
            operation.code(None, editor)
        assert versions() == [10, 11, 14]
        job = add.enqueue(1, 2)
        assert Job.objects.get(pk=job.pk).args == [1, 2]


def _runs_block(operation, prefix):
    """Whether a RunPython of run_on_postgresql runs a block whose name starts with prefix."""
    code = getattr(operation, "code", None)
    cells = getattr(code, "__closure__", None) or ()
    return any(
        isinstance(c.cell_contents, str) and c.cell_contents.startswith(prefix) for c in cells
    )


def test_enqueue_statements_are_seen_by_query_capture_and_execute_wrappers():
    add.enqueue(1, 2)  # a cursor kept from an earlier enqueue must not hide the next one
    seen = []

    def wrapper(execute, sql, params, many, context):
        seen.append(sql)
        return execute(sql, params, many, context)

    def job_inserts(statements):
        return [
            sql
            for sql in statements
            if "taskengine_enqueue_job" in sql or 'INTO "taskengine_job"' in sql
        ]

    with CaptureQueriesContext(connection) as queries:
        add.enqueue(1, 2)
    assert len(job_inserts(q["sql"] for q in queries.captured_queries)) == 1
    with connection.execute_wrapper(wrapper):
        add.enqueue(3, 4)
    assert len(job_inserts(seen)) == 1
    add.enqueue(5, 6)
    assert Job.objects.filter(task_name=add.name).count() == 3 + 1


@committed_db
def test_enqueue_works_after_the_connection_is_closed_and_from_other_threads():
    add.enqueue(1, 2)
    connection.close()
    job = add.enqueue(3, 4)
    assert Job.objects.get(pk=job.pk).args == [3, 4]
    ids = []

    def other_thread():
        from django.db import connections

        try:
            ids.extend(j.pk for j in [add.enqueue(5, 6), add.enqueue(7, 8)])
        finally:
            connections.close_all()

    thread = threading.Thread(target=other_thread)
    thread.start()
    thread.join()
    assert sorted(Job.objects.filter(pk__in=ids).values_list("args", flat=True)) == [[5, 6], [7, 8]]
    assert add.enqueue(9, 10).pk > max(ids)


def test_database_errors_from_enqueue_are_djangos():
    from django.db import DatabaseError

    if connection.vendor != "postgresql":
        pytest.skip("drops the PostgreSQL enqueue function")
    add.enqueue(1, 2)
    with pytest.raises(DatabaseError, match="taskengine_enqueue_job"):
        with transaction.atomic():
            with connection.cursor() as cursor:
                cursor.execute("DROP FUNCTION taskengine_enqueue_job")
            add.enqueue(3, 4)
    assert add.enqueue(5, 6).args == [5, 6]


def test_enqueue_from_async_code_is_refused_like_any_database_call():
    import asyncio

    from django.core.exceptions import SynchronousOnlyOperation

    add.enqueue(1, 2)

    async def from_a_coroutine():
        add.enqueue(3, 4)

    with pytest.raises(SynchronousOnlyOperation):
        asyncio.run(from_a_coroutine())


def test_a_kept_cursor_still_asks_for_the_connection(monkeypatch):
    """Test runners block database access by hooking ensure_connection; reusing the cursor of
    an earlier enqueue must not get around that."""
    add.enqueue(1, 2)

    def blocked(self):
        raise RuntimeError("database access not allowed")

    from django.db import connections

    monkeypatch.setattr(type(connections["default"]), "ensure_connection", blocked)
    with pytest.raises(RuntimeError, match="not allowed"):
        add.enqueue(3, 4)


def test_overridden_settings_apply_to_enqueue_and_stop_applying_after():
    before = add.enqueue(1, 2)
    with override_settings(
        TASKENGINE={"DEFAULT_QUEUE": "elsewhere", "DEFAULT_PRIORITY": 7, "DEFAULT_MAX_ATTEMPTS": 9}
    ):
        inside = add.enqueue(1, 2)
    after = add.enqueue(1, 2)
    assert (inside.queue, inside.priority, inside.max_attempts) == ("elsewhere", 7, 9)
    for job in (before, after):
        assert (job.queue, job.priority, job.max_attempts) == ("default", 0, 3)
