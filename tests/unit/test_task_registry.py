"""``@task``: names, the registry, option validation, and calling a task directly."""

from __future__ import annotations

import importlib

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.test import override_settings

from django_taskengine import Task, TaskNotRegistered, get_task, task
from django_taskengine.registry import registered_tasks
from django_taskengine.registry import tasks as registry
from tests.testapp import tasks as testapp_tasks


@pytest.fixture(autouse=True)
def isolated_registry():
    """Tasks registered by a test are forgotten after it."""
    saved = registry.snapshot()
    yield
    registry.restore(saved)


def resize(image_id, width=800):
    """Resize an image."""
    return (image_id, width)


def other_resize(image_id):
    return image_id


class Images:
    @staticmethod
    def thumbnail(image_id):
        return image_id


def test_default_name_is_module_and_qualname():
    registered = task(resize)
    assert registered.name == "tests.unit.test_task_registry.resize"
    assert get_task("tests.unit.test_task_registry.resize") is registered


def test_default_name_of_a_method_uses_its_qualname():
    assert task(Images.thumbnail).name == "tests.unit.test_task_registry.Images.thumbnail"


def test_decorator_with_options_and_without_parentheses_both_register():
    plain = task(resize)
    configured = task(queue="images")(other_resize)
    assert isinstance(plain, Task) and isinstance(configured, Task)
    assert get_task(plain.name) is plain
    assert get_task(configured.name) is configured
    assert configured.queue == "images"


def test_explicit_name_replaces_the_default():
    registered = task(name="images.resize")(resize)
    assert registered.name == "images.resize"
    assert get_task("images.resize") is registered
    assert "tests.unit.test_task_registry.resize" not in registered_tasks()


def test_two_different_functions_with_the_same_name_are_refused():
    task(name="images.resize")(resize)
    with pytest.raises(ImproperlyConfigured) as excinfo:
        task(name="images.resize")(other_resize)
    message = str(excinfo.value)
    assert "'images.resize'" in message
    assert "tests.unit.test_task_registry.resize" in message
    assert "tests.unit.test_task_registry.other_resize" in message
    assert "@task(name=...)" in message
    # The first registration stands.
    assert get_task("images.resize").func is resize


def test_registering_the_same_function_again_is_allowed():
    # A module imported twice (e.g. reloaded) registers the same function again.
    first = task(resize)
    second = task(queue="later")(resize)
    assert get_task(first.name) is second


def test_unknown_task_name_raises_task_not_registered_with_a_helpful_message():
    with pytest.raises(TaskNotRegistered) as excinfo:
        get_task("myapp.tasks.gone")
    message = str(excinfo.value)
    assert "'myapp.tasks.gone'" in message
    assert "'tasks.py'" in message
    assert "INSTALLED_APPS" in message
    assert "renamed" in message
    assert isinstance(excinfo.value, LookupError)


@override_settings(TASKENGINE={"AUTODISCOVER_MODULE": "jobs"})
def test_unknown_task_message_names_the_autodiscovered_module():
    with pytest.raises(TaskNotRegistered, match="'jobs.py'"):
        get_task("myapp.jobs.gone")


def test_tasks_of_installed_apps_are_autodiscovered():
    assert get_task("tests.testapp.tasks.add") is testapp_tasks.add
    assert "tests.testapp.tasks.record" in registered_tasks()


def test_registered_tasks_is_a_copy():
    registered_tasks().clear()
    assert "tests.testapp.tasks.add" in registered_tasks()


def test_calling_a_task_runs_the_function_here_and_now():
    registered = task(resize)
    assert registered(7) == (7, 800)
    assert registered(7, width=640) == (7, 640)
    assert testapp_tasks.add(2, 3) == 5


def test_calling_a_task_propagates_its_exception():
    with pytest.raises(ValueError, match="always fails"):
        testapp_tasks.always_fail()


def test_task_keeps_the_function_metadata():
    registered = task(resize)
    assert registered.__doc__ == "Resize an image."
    assert registered.__name__ == "resize"
    assert registered.__module__ == "tests.unit.test_task_registry"
    assert registered.__wrapped__ is resize
    assert repr(registered) == "<Task tests.unit.test_task_registry.resize>"


def test_options_are_kept():
    registered = task(
        queue="emails", priority=10, max_attempts=5, retry_backoff=2, timeout=30, atomic=True
    )(resize)
    assert registered.queue == "emails"
    assert registered.priority == 10
    assert registered.max_attempts == 5
    assert registered.retry_backoff == 2.0
    assert registered.timeout == 30
    assert registered.atomic is True
    assert registered.on_orphan == "retry"


def test_unset_options_follow_the_settings_when_read():
    registered = task(resize)
    settings = {
        "DEFAULT_QUEUE": "bulk",
        "DEFAULT_PRIORITY": -3,
        "DEFAULT_MAX_ATTEMPTS": 9,
        "DEFAULT_RETRY_BACKOFF": 0.25,
    }
    with override_settings(TASKENGINE=settings):
        assert registered.queue == "bulk"
        assert registered.priority == -3
        assert registered.max_attempts == 9
        assert registered.retry_backoff == 0.25
    assert registered.queue == "default"
    assert registered.priority == 0
    assert registered.max_attempts == 3
    assert registered.retry_backoff == 1.0


def test_takes_context_removes_the_context_from_the_enqueue_signature():
    assert str(testapp_tasks.record.signature) == "(label='', sleep=0.0)"


def test_takes_context_needs_a_parameter_for_the_context():
    def no_params():
        return None

    with pytest.raises(TypeError, match="must accept a context argument"):
        task(takes_context=True)(no_params)


def test_a_non_callable_is_refused():
    with pytest.raises(TypeError, match="needs a function"):
        Task("not a function")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("options", "error", "fragment"),
    [
        ({"max_attempts": 0}, ValueError, "max_attempts must be at least 1"),
        ({"max_attempts": "3"}, TypeError, "max_attempts"),
        ({"max_attempts": True}, TypeError, "max_attempts"),
        ({"priority": "high"}, TypeError, "priority"),
        ({"priority": 1.5}, TypeError, "priority"),
        ({"retry_backoff": -1}, ValueError, "retry_backoff must be at least 0"),
        ({"retry_backoff": "2"}, TypeError, "retry_backoff"),
        ({"timeout": -5}, ValueError, "timeout must be at least 0"),
        ({"timeout": "30s"}, TypeError, "timeout"),
        ({"on_orphan": "explode"}, ValueError, "on_orphan must be 'retry' or 'park'"),
    ],
)
def test_bad_options_raise_clear_errors_naming_the_task(options, error, fragment):
    with pytest.raises(error) as excinfo:
        task(**options)(resize)
    assert fragment in str(excinfo.value)
    assert "tests.unit.test_task_registry.resize" in str(excinfo.value)
    assert "tests.unit.test_task_registry.resize" not in registered_tasks()


@pytest.mark.parametrize(("option", "value"), [("max_attempts", 2.5), ("priority", 1.5)])
def test_an_integer_option_given_a_float_says_it_must_be_an_integer(option, value):
    # "must be a number, not 2.5" would contradict itself: 2.5 is a number.
    with pytest.raises(TypeError) as excinfo:
        task(**{option: value})(resize)
    assert "integer" in str(excinfo.value)


def _takes(a, b=1, *, c=2):
    return a


def test_a_call_shape_that_bound_once_is_remembered_and_no_other_is():
    checked = Task(_takes, name="tests.unit.test_task_registry._takes")
    checked.check_call((1,), {})
    checked.check_call((1, 2), {"c": 3})
    assert checked._accepted_shapes == {(1, frozenset()), (2, frozenset({"c"}))}
    # Other shapes are bound, and refused, every time: a refused one is never remembered.
    for args, kwargs in [((), {}), ((1, 2, 3), {}), ((1,), {"d": 4}), ((1,), {"a": 1})] * 2:
        with pytest.raises(TypeError):
            checked.check_call(args, kwargs)
    with pytest.raises(TypeError):
        checked.check_call((1,), {5: "not a name"})
    assert len(checked._accepted_shapes) == 2
    # Keywords are a set: their order makes no other shape.
    checked.check_call((1,), {"c": 3, "b": 2})
    checked.check_call((1,), {"b": 2, "c": 3})
    assert len(checked._accepted_shapes) == 3


def test_the_call_shapes_a_task_remembers_are_bounded(monkeypatch):
    # The module, not the decorator the package exports under the same name.
    monkeypatch.setattr(importlib.import_module("django_taskengine.task"), "MAX_CALL_SHAPES", 2)

    def anything(*args):
        return args

    checked = Task(anything, name="tests.unit.test_task_registry.anything")
    for n in range(5):
        checked.check_call((0,) * n, {})
    assert len(checked._accepted_shapes) == 2
