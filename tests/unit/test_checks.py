"""System checks of the TASKENGINE setting: each id fires for a bad value, none for defaults."""

from __future__ import annotations

import pytest
from django.core import checks
from django.test import override_settings

from django_taskengine.checks import check_settings, sqlite_atomic_warnings
from django_taskengine.conf import DEFAULTS, taskengine_settings


def ids(messages) -> list[str]:
    return [message.id for message in messages]


@pytest.mark.parametrize("value", [None, {}, dict(DEFAULTS)])
def test_defaults_pass(value):
    with override_settings(TASKENGINE=value):
        assert check_settings() == []


def test_the_test_suite_settings_pass():
    # tests/settings.py shortens every interval; it must still be a valid configuration.
    assert check_settings() == []


def test_check_is_registered_with_django():
    with override_settings(TASKENGINE={"POLL_INTERVAL": 0}):
        messages = checks.run_checks(tags=[checks.Tags.compatibility])
    assert "taskengine.E003" in ids(messages)


@pytest.mark.parametrize("value", [[], "POLL_INTERVAL=1", 1])
def test_e001_taskengine_is_not_a_dict(value):
    with override_settings(TASKENGINE=value):
        messages = check_settings()
    assert ids(messages) == ["taskengine.E001"]
    assert type(value).__name__ in messages[0].msg


def test_e002_unknown_key_is_named_with_the_known_keys():
    with override_settings(TASKENGINE={"POLL_INTERVALL": 1.0, "LEASE_SECONDS": 5.0}):
        messages = check_settings()
    assert ids(messages) == ["taskengine.E002"]
    assert "'POLL_INTERVALL'" in messages[0].msg
    assert "POLL_INTERVAL" in messages[0].hint


@pytest.mark.parametrize(
    "key",
    [
        "POLL_INTERVAL",
        "HEARTBEAT_INTERVAL",
        "RESCUE_GRACE",
        "RESCUE_INTERVAL",
        "LEASE_SECONDS",
        "RETRY_BACKOFF_MAX",
    ],
)
@pytest.mark.parametrize("value", [0, -1.0, "1", True, None])
def test_e003_interval_must_be_a_positive_number(key, value):
    with override_settings(TASKENGINE={key: value}):
        messages = check_settings()
    if key == "RESCUE_GRACE":
        # A grace of zero or less is also shorter than two heartbeats: W001 may come along.
        messages = [m for m in messages if m.id != "taskengine.W001"]
    assert ids(messages) == ["taskengine.E003"]
    assert key in messages[0].msg


@pytest.mark.parametrize("key", ["POLL_INTERVAL", "RESCUE_GRACE", "LEASE_SECONDS"])
def test_e003_accepts_positive_ints_and_floats(key):
    with override_settings(TASKENGINE={key: 5, "RESCUE_GRACE": 5}):
        assert check_settings() == []
    with override_settings(TASKENGINE={key: 0.5, "RESCUE_GRACE": 5}):
        assert check_settings() == []


@pytest.mark.parametrize("value", [0, -2, 1.5, "3", True, None])
def test_e004_default_max_attempts_must_be_an_integer_of_at_least_one(value):
    with override_settings(TASKENGINE={"DEFAULT_MAX_ATTEMPTS": value}):
        assert ids(check_settings()) == ["taskengine.E004"]


def test_e004_accepts_one():
    with override_settings(TASKENGINE={"DEFAULT_MAX_ATTEMPTS": 1}):
        assert check_settings() == []


@pytest.mark.parametrize("key", ["DEFAULT_PRIORITY", "ADVISORY_LOCK_NAMESPACE"])
@pytest.mark.parametrize("value", [2**31, -(2**31) - 1, 1.5, "1", False])
def test_e005_must_be_a_32_bit_integer(key, value):
    with override_settings(TASKENGINE={key: value}):
        messages = check_settings()
    assert ids(messages) == ["taskengine.E005"]
    assert key in messages[0].msg


@pytest.mark.parametrize("key", ["DEFAULT_PRIORITY", "ADVISORY_LOCK_NAMESPACE"])
@pytest.mark.parametrize("value", [2**31 - 1, -(2**31), -5])
def test_e005_accepts_the_32_bit_range(key, value):
    with override_settings(TASKENGINE={key: value}):
        assert check_settings() == []


@pytest.mark.parametrize("key", ["DEFAULT_RETRY_BACKOFF", "SHUTDOWN_TIMEOUT"])
@pytest.mark.parametrize("value", [-0.1, "1", True, None])
def test_e006_must_be_seconds_of_at_least_zero(key, value):
    with override_settings(TASKENGINE={key: value}):
        messages = check_settings()
    assert ids(messages) == ["taskengine.E006"]
    assert key in messages[0].msg


@pytest.mark.parametrize("key", ["DEFAULT_RETRY_BACKOFF", "SHUTDOWN_TIMEOUT"])
def test_e006_accepts_zero(key):
    with override_settings(TASKENGINE={key: 0}):
        assert check_settings() == []


#: Longest value each name setting accepts: DEFAULT_QUEUE is a queue name (as long as the job
#: table stores); the NOTIFY channel is a PostgreSQL identifier.
E007_LONGEST = {"DEFAULT_QUEUE": 100, "NOTIFY_CHANNEL": 63, "AUTODISCOVER_MODULE": 63}


@pytest.mark.parametrize("key", list(E007_LONGEST))
@pytest.mark.parametrize("value", ["", "too long", 5, None])
def test_e007_must_be_a_short_non_empty_string(key, value):
    if value == "too long":
        value = "x" * (E007_LONGEST[key] + 1)
    with override_settings(TASKENGINE={key: value}):
        messages = check_settings()
    assert ids(messages) == ["taskengine.E007"]
    assert key in messages[0].msg
    assert f"≤ {E007_LONGEST[key]} characters" in messages[0].msg


@pytest.mark.parametrize("key", list(E007_LONGEST))
def test_e007_accepts_the_longest_value(key):
    with override_settings(TASKENGINE={key: "x" * E007_LONGEST[key]}):
        assert check_settings() == []


def test_default_queue_may_be_as_long_as_any_queue_name():
    with override_settings(TASKENGINE={"DEFAULT_QUEUE": "q" * 100}):
        assert check_settings() == []


def test_e008_database_must_be_a_configured_alias():
    with override_settings(TASKENGINE={"DATABASE": "jobs"}):
        messages = check_settings()
    assert ids(messages) == ["taskengine.E008"]
    assert "'jobs'" in messages[0].msg
    assert "default" in messages[0].hint


@pytest.mark.parametrize("value", [["default"], {"alias": "default"}, None, 0])
def test_e008_reports_a_database_of_the_wrong_type_instead_of_crashing(value):
    # A list or dict is unhashable: `value in settings.DATABASES` must not raise TypeError.
    with override_settings(TASKENGINE={"DATABASE": value}):
        assert ids(check_settings()) == ["taskengine.E008"]


def test_w001_rescue_grace_shorter_than_two_heartbeats():
    with override_settings(TASKENGINE={"RESCUE_GRACE": 1.9, "HEARTBEAT_INTERVAL": 1.0}):
        messages = check_settings()
    assert ids(messages) == ["taskengine.W001"]
    assert messages[0].level == checks.WARNING


def test_w001_silent_at_exactly_two_heartbeats():
    with override_settings(TASKENGINE={"RESCUE_GRACE": 2.0, "HEARTBEAT_INTERVAL": 1.0}):
        assert check_settings() == []


def test_w001_does_not_stack_on_an_invalid_interval():
    with override_settings(TASKENGINE={"RESCUE_GRACE": "soon"}):
        assert ids(check_settings()) == ["taskengine.E003"]


def test_every_problem_is_reported_at_once():
    bad = {
        "NOPE": 1,
        "POLL_INTERVAL": 0,
        "DEFAULT_MAX_ATTEMPTS": 0,
        "DEFAULT_PRIORITY": 1.5,
        "SHUTDOWN_TIMEOUT": -1,
        "DEFAULT_QUEUE": "",
        "DATABASE": "missing",
    }
    with override_settings(TASKENGINE=bad):
        assert sorted(ids(check_settings())) == [
            "taskengine.E002",
            "taskengine.E003",
            "taskengine.E004",
            "taskengine.E005",
            "taskengine.E006",
            "taskengine.E007",
            "taskengine.E008",
        ]


def test_errors_are_error_level():
    with override_settings(TASKENGINE={"POLL_INTERVAL": 0}):
        assert all(m.level == checks.ERROR for m in check_settings())


class _Task:
    def __init__(self, name: str, atomic: bool, timeout: float | None) -> None:
        self.name, self.atomic, self.timeout = name, atomic, timeout


def test_atomic_tasks_that_may_outlast_sqlites_busy_timeout_are_warned_about():
    tasks = [
        _Task("app.slow", atomic=True, timeout=None),
        _Task("app.long", atomic=True, timeout=30),
        _Task("app.quick", atomic=True, timeout=2),
        _Task("app.plain", atomic=False, timeout=None),
    ]
    sqlite = "django.db.backends.sqlite3"
    (warning,) = sqlite_atomic_warnings(sqlite, {"timeout": 20}, tasks)
    assert warning.id == "taskengine.W002"
    assert "app.long, app.slow" in warning.msg and "20 s" in warning.msg
    assert "app.quick" not in warning.msg and "app.plain" not in warning.msg
    # Django's default busy timeout is 5 s.
    assert sqlite_atomic_warnings(sqlite, {}, [_Task("a", True, 4)]) == []
    assert len(sqlite_atomic_warnings(sqlite, {}, [_Task("a", True, 5)])) == 1


def test_atomic_tasks_on_postgresql_are_not_warned_about():
    slow = [_Task("app.slow", atomic=True, timeout=None)]
    assert sqlite_atomic_warnings("django.db.backends.postgresql", {}, slow) == []


@pytest.mark.parametrize("url", ["db.internal:5432", "postgres://[bad", 5432, "mysql://h/db"])
def test_e028_direct_database_url_must_be_a_postgres_url(url):
    with override_settings(TASKENGINE={"DIRECT_DATABASE_URL": url}):
        messages = check_settings()
    assert ids(messages) == ["taskengine.E028"]
    assert "DIRECT_DATABASE_URL" in messages[0].msg


def test_e028_direct_database_url_only_for_postgresql():
    from django.db import connection

    with override_settings(TASKENGINE={"DIRECT_DATABASE_URL": "postgres://app@db:5432/app"}):
        messages = check_settings()
    if connection.vendor == "postgresql":
        assert messages == []
    else:
        assert ids(messages) == ["taskengine.E028"]
        assert "is not PostgreSQL" in messages[0].msg


def test_the_engines_own_connections_take_the_direct_url():
    from django_taskengine.store.postgres_notices import own_connection_params

    url = "postgres://direct@db.internal:5433/app?sslmode=require"
    with override_settings(TASKENGINE={"DIRECT_DATABASE_URL": url}):
        params = own_connection_params("default")
    assert (params["host"], params["port"], params["dbname"], params["user"]) == (
        "db.internal",
        "5433",
        "app",
        "direct",
    )
    assert params["sslmode"] == "require" and params["autocommit"] is True


@pytest.mark.parametrize("value", ["myproject.jobs", ["my project"], [""], [3], None])
def test_e029_task_modules_must_be_a_list_of_package_names(value):
    with override_settings(TASKENGINE={"TASK_MODULES": value}):
        messages = check_settings()
        assert taskengine_settings.TASK_MODULES == [
            name
            for name in (value if isinstance(value, list) else [])
            if isinstance(name, str) and name
        ]
    assert ids(messages) == ["taskengine.E029"]
    assert "TASK_MODULES" in messages[0].msg


def test_task_modules_accepts_package_names():
    with override_settings(TASKENGINE={"TASK_MODULES": ["myproject.jobs", "reports"]}):
        assert check_settings() == []
        assert taskengine_settings.TASK_MODULES == ["myproject.jobs", "reports"]


GOOD_DISPATCH = {"BACKEND": "redis-streams", "URL": "redis://127.0.0.1:6379/0"}


@pytest.mark.parametrize(
    "value",
    [
        "redis",
        {"BACKEND": "kafka"},
        {"BACKEND": "postgres", "URL": "redis://h/0"},
        {"BACKEND": "redis-streams"},
        {**GOOD_DISPATCH, "URL": "http://h:6379"},
        {**GOOD_DISPATCH, "WINDOW": 0},
        {**GOOD_DISPATCH, "MAXLEN": 2.5},
        {**GOOD_DISPATCH, "REPUBLISH_AFTER": -1},
        {**GOOD_DISPATCH, "STALE_AFTER": True},
        {**GOOD_DISPATCH, "PREFIX": ""},
        {**GOOD_DISPATCH, "GROUP": "mine"},
    ],
)
def test_e030_dispatch_must_name_a_backend_with_valid_options(value):
    with override_settings(TASKENGINE={"DISPATCH": value}):
        messages = check_settings()
    assert ids(messages) == ["taskengine.E030"]
    assert "DISPATCH" in messages[0].msg


def test_e030_redis_streams_dispatch_needs_postgresql():
    from django.db import connection

    full = {**GOOD_DISPATCH, "PREFIX": "app", "WINDOW": 50, "RELAY_INTERVAL": 0.05}
    with override_settings(TASKENGINE={"DISPATCH": full}):
        messages = check_settings()
    if connection.vendor == "postgresql":
        assert messages == []
    else:
        assert ids(messages) == ["taskengine.E030"]
        assert "not PostgreSQL" in messages[0].msg


def test_dispatch_options_and_the_url_shown_without_its_password():
    from django_taskengine.dispatch.options import redis_dispatch
    from django_taskengine.dispatch.state import redacted

    assert redis_dispatch() is None or taskengine_settings.DISPATCH["BACKEND"] == "redis-streams"
    url = "redis://app:s3cret@cache.internal:6380/2"
    with override_settings(TASKENGINE={"DISPATCH": {**GOOD_DISPATCH, "URL": url, "WINDOW": 7}}):
        options = redis_dispatch()
    assert options is not None and options.window == 7 and options.republish_after == 5.0
    assert redacted(options) == "redis://app:***@cache.internal:6380/2"
    with override_settings(TASKENGINE={"DISPATCH": {"BACKEND": "postgres"}}):
        assert redis_dispatch() is None
